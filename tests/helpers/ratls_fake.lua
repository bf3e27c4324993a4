-- SPDX-License-Identifier: Apache-2.0
-- Test helper: synthetic RA-TLS evidence. A fake TDX v4 quote (header + TD report body with
-- the caller's report_data at byte 568, an empty auth data section, no signature: it is not
-- verifiable and only stands in for a quote where the binding is checked), and a
-- VersionedAttestation V0 (SCALE) wrapping it, laid out as in guest-and-attestation.md §5.6.
-- Real quote verification is M3's job; these only exercise where report_data sits.
local M = {}

local function u16le(n)
  return string.char(n % 256, math.floor(n / 256) % 256)
end

local function u32le(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 16777216) % 256)
end

--- SCALE compact length prefix (modes 0..2, enough for tests).
function M.compact(n)
  if n < 64 then
    return string.char(n * 4)
  elseif n < 16384 then
    return u16le(n * 4 + 1)
  end
  return u32le(n * 4 + 2)
end

--- A 636-byte fake TDX v4 quote carrying `report_data` (64 bytes), zeros elsewhere.
function M.quote(report_data)
  assert(#report_data == 64, 'fake quote: report_data must be 64 bytes')
  local header = u16le(4) .. u16le(2) .. u32le(0x81) .. ('\0'):rep(40)
  local body_before_rd = ('\0'):rep(568 - 48)
  return header .. body_before_rd .. report_data .. u32le(0)
end

--- VersionedAttestation V0 bytes: DstackTdx { quote, no events }, no runtime events,
--- `report_data` (defaults to the quote's), config JSON.
function M.attestation(quote_report_data, attestation_report_data, config)
  local quote = M.quote(quote_report_data)
  config = config or '{"os_image_hash":"00"}'
  return '\0\0' .. M.compact(#quote) .. quote .. M.compact(0) .. M.compact(0)
    .. (attestation_report_data or quote_report_data) .. M.compact(#config) .. config
end

return M
