-- SPDX-License-Identifier: Apache-2.0
-- Little-endian integers, GUIDs, UTF-16LE and the SHA-384 log measurement that every
-- dstack-mr computation shares (kms-vmm-gateway.md §7). Integers are Lua numbers: exact up to
-- 2^53, which covers every address and size a VM configuration has.
local crypto = require('moonstack.crypto')

local M = {}

--- `n` as `width` little-endian bytes (n a non-negative integer < 2^53).
function M.le(n, width)
  local t = {}
  for i = 1, width do
    local b = n % 256
    t[i] = string.char(b)
    n = (n - b) / 256
  end
  return table.concat(t)
end

--- The unsigned little-endian integer of `width` bytes at 1-based `pos` of `s`, or nil when
--- `s` is too short.
function M.rd(s, pos, width)
  if pos < 1 or pos + width - 1 > #s then
    return nil
  end
  local n = 0
  for i = pos + width - 1, pos, -1 do
    n = n * 256 + s:byte(i)
  end
  return n
end

--- A GUID string ('8be4df61-93ca-11d2-aa0d-00e098032b8c') as its 16 bytes: the first three
--- groups byte-reversed, the last two as written.
function M.guid(str)
  local g = { str:match('^(%x%x%x%x%x%x%x%x)%-(%x%x%x%x)%-(%x%x%x%x)%-(%x%x%x%x)%-(%x+)$') }
  assert(#g == 5 and #g[5] == 12, 'mr.bytes.guid: malformed GUID ' .. tostring(str))
  local out = {}
  for i, part in ipairs(g) do
    local raw = crypto.unhex(part)
    out[i] = i <= 3 and raw:reverse() or raw
  end
  return table.concat(out)
end

--- ASCII `s` as UTF-16LE (every name dstack-mr encodes is ASCII).
function M.utf16le(s)
  return (s:gsub('.', '%0\0'))
end

--- SHA-384 of `s`.
function M.h384(s)
  return crypto.sha384(s)
end

--- A log's measurement register: 48 zero bytes, then MR = SHA-384(MR ‖ digest) per entry.
function M.measure_log(log)
  local mr = ('\0'):rep(48)
  for _, d in ipairs(log) do
    mr = crypto.sha384(mr .. d)
  end
  return mr
end

M.hex = crypto.hex
M.unhex = crypto.unhex

return M
