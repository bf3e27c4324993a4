-- SPDX-License-Identifier: Apache-2.0
-- What the guest API attests with: the TEE's event log (cached until the runtime event log
-- changes), quotes over report_data (dstack's padding and hashing rules, guest-and-attestation.md
-- §1.3, §1.4, §7.1), the event-log JSON forms (§5.3) and VersionedAttestation bytes (§5.6).
--
-- Event-log forms served here:
--   * full ('full'): every event with digest and payload (Info.tcb_info, Attest);
--   * quote ('quote', GetQuote/TdxQuote): boot events keep their digest and lose their payload
--     (the ACPI DATA labels keep theirs), runtime events keep digest AND payload — 0.5.x clients
--     replay the digests (SDK replayRtmrs), HEAD verifiers recompute them from the payloads;
--   * cert ('cert', RA-TLS extension 1.8): RTMR3 events with empty digests plus the three ACPI
--     DATA events, as dstack HEAD embeds them.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local eventlog = require('moonstack.tdx.eventlog')
local attestation = require('moonstack.tdx.attestation')

local M = {}

local ACPI = { ['acpi-loader'] = true, ['acpi-rsdp'] = true, ['acpi-tables'] = true }
local ZERO64 = string.rep('\0', 64)

--- TdxQuote hash algorithms (original Keccak padding for keccak*, NIST for sha3-*).
M.HASH_ALGORITHMS = { 'sha256', 'sha384', 'sha512', 'sha3-256', 'sha3-384', 'sha3-512',
  'keccak256', 'keccak384', 'keccak512' }
local HASHES = {}
for _, h in ipairs(M.HASH_ALGORITHMS) do
  HASHES[h] = true
end

local Evidence = {}
Evidence.__index = Evidence

--- The evidence source of a context (its `tee` backend and `vm_config`).
function M.new(ctx)
  return setmetatable({ ctx = ctx, tee = ctx.tee }, Evidence)
end

-- A cheap identity of the runtime event log's state (nil when it cannot be watched).
function Evidence:_log_stamp()
  local dir = self.tee.runtime_log_dir
  if not dir then
    return nil
  end
  local st = uv.fs_stat(dir .. '/runtime_events.log')
  if not st then
    return 'none'
  end
  return ('%d.%d.%d'):format(st.size, st.mtime.sec, st.mtime.nsec)
end

--- A token that changes whenever the event log (hence RTMR3) may have changed.
function Evidence:version()
  return (self:_log_stamp() or 'x') .. '/' .. (self.generation or 0)
end

--- Forget cached state (after this process extended an RTMR).
function Evidence:invalidate()
  self.generation = (self.generation or 0) + 1
  self.events_cache = nil
end

--- The full event log (TdxEvent tables), cached while the runtime log is unchanged.
function Evidence:events()
  local stamp = self:version()
  local c = self.events_cache
  if c and c.stamp == stamp and self.tee.runtime_log_dir then
    return c.events
  end
  local events, err, code = self.tee:event_log()
  if not events then
    return nil, err, code
  end
  self.events_cache = { stamp = stamp, events = events }
  return events
end

--- report_data of GetQuote/Attest: at most 64 bytes, right-padded with zeros.
function M.pad_report_data(rd)
  if #rd > 64 then
    return nil, 'EINVAL: Report data is too long', 'EINVAL'
  end
  return rd .. ZERO64:sub(1, 64 - #rd)
end

--- Legacy Tappd.TdxQuote report_data: (64 bytes, effective algorithm, effective prefix) or nil,
--- err. 'raw' takes exactly 64 bytes; otherwise pad64(H(prefix ':' data)).
function M.tdx_quote_report_data(data, alg, prefix)
  alg = (alg == nil or alg == '') and 'sha512' or alg
  if alg == 'raw' then
    if #data ~= 64 then
      return nil, 'EINVAL: invalid content length', 'EINVAL'
    end
    return data, 'raw', ''
  end
  prefix = (prefix == nil or prefix == '') and 'app-data' or prefix
  local h = HASHES[alg] and crypto.hash(alg, prefix .. ':' .. data)
  if not h then
    return nil, 'EINVAL: invalid hash algorithm', 'EINVAL'
  end
  return h .. ZERO64:sub(1, 64 - #h), alg, prefix
end

--- A quote over exactly `rd` (64 bytes) from the TEE.
function Evidence:quote(rd)
  return self.tee:get_quote(rd)
end

local function copy(e)
  local c = {}
  for k, v in pairs(e) do
    c[k] = v
  end
  return c
end

local is_runtime = eventlog.is_runtime

--- `events` in one of the forms above ('full', 'quote', 'cert'): a new list.
function M.shape(events, form)
  local out = {}
  for _, e in ipairs(events) do
    if form == 'full' then
      out[#out + 1] = e
    elseif form == 'quote' then
      if is_runtime(e) or ACPI[e.event] then
        out[#out + 1] = e
      else
        local c = copy(e)
        c.event_payload = ''
        out[#out + 1] = c
      end
    elseif form == 'cert' then
      if is_runtime(e) and e.imr == 3 then
        local c = copy(e)
        c.digest = ''
        out[#out + 1] = c
      elseif ACPI[e.event] then
        out[#out + 1] = e
      end
    else
      error('evidence.shape: unknown form ' .. tostring(form), 2)
    end
  end
  return out
end

--- The TdxEvent JSON array text of `events` in `form`.
function M.event_log_json(events, form)
  return eventlog.to_json(M.shape(events, form))
end

--- The runtime (RTMR3) events of a log as { event, payload, version } (moonstack.tdx.eventlog's).
M.runtime_events = eventlog.runtime_events

--- VersionedAttestation bytes for a quote over `rd`: V0 SCALE when every runtime event is V1,
--- else V1 msgpack. `form` shapes the event log ('full' for Attest, 'cert' for RA-TLS).
--- Returns bytes, quote or nil, err, code.
function Evidence:attestation(rd, form)
  local events, err, code = self:events()
  if not events then
    return nil, err, code
  end
  local quote
  quote, err, code = self:quote(rd)
  if not quote then
    return nil, err, code
  end
  local bytes
  bytes, err, code = attestation.encode({
    quote = quote, event_log = M.shape(events, form or 'full'),
    runtime_events = M.runtime_events(events), report_data = rd,
    config = self.ctx.vm_config or '',
  })
  if not bytes then
    return nil, err, code
  end
  return bytes, quote
end

return M
