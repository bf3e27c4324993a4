-- SPDX-License-Identifier: Apache-2.0
-- dstack's VersionedAttestation (the `attestation` of a dstack-verifier request, RA-TLS
-- extension 1.8): V0, SCALE-encoded (guest-and-attestation.md §5.6). Decoded into
--   { version = 0, platform = 'tdx', quote (binary), event_log = {TdxEvent tables},
--     runtime_events = { {event, payload} }, report_data (64 bytes), config (string) }
-- V1 (MessagePack) is recognised and refused with a clear message by decode(). encode() writes
-- both: V0 when every runtime event is V1, V1 (named msgpack maps, as dstack HEAD) otherwise;
-- app_info_ext() writes the RA-TLS AppInfo extension (1.9, compact msgpack array).
local eventlog = require('moonstack.tdx.eventlog')
local errors = require('moonstack.core.errors')
local scale = require('moonstack.core.scale')

local M = {}

local MAX_SIZE = 10 * 1024 * 1024
local PLATFORMS = { [0] = 'tdx', [1] = 'gcp-tdx', [2] = 'nitro-enclave', [3] = 'sev-snp',
  [4] = 'aws-nitro-tpm' }

local function tdx_event(r, what)
  return {
    imr = r:u32(what .. '.imr'),
    event_type = r:u32(what .. '.event_type'),
    digest = r:bytes(what .. '.digest'),
    event = r:bytes(what .. '.event'),
    event_payload = r:bytes(what .. '.event_payload'),
    version = 1, -- V0 cannot carry V2 events
  }
end

local function runtime_event(r, what)
  return { event = r:bytes(what .. '.event'), payload = r:bytes(what .. '.payload') }
end

--- Decode attestation bytes (binary). Returns the table above or nil,
--- 'EATTESTATION: <what> at offset N', 'EATTESTATION'.
---@param data string
function M.decode(data)
  if type(data) ~= 'string' then
    error('attestation.decode: data must be a string', 2)
  end
  if #data == 0 then
    return errors.fail('EATTESTATION', 'empty attestation')
  end
  if #data > MAX_SIZE then
    return errors.fail('EATTESTATION', ('attestation is %d bytes (at most %d)'):format(#data, MAX_SIZE))
  end
  local first = data:byte(1)
  if (first >= 0x80 and first <= 0x8f) or first == 0xde or first == 0xdf then
    return errors.fail('EATTESTATION', 'V1 (MessagePack) attestations are not supported; send '
      .. 'the quote, event_log and vm_config fields instead')
  end
  if first ~= 0 then
    return errors.fail('EATTESTATION', ('unknown attestation version byte 0x%02x'):format(first))
  end
  local r = scale.reader(data, 2)
  local ok, res = pcall(function()
    local platform = r:u8('platform')
    if platform ~= 0 then
      r:fail(('platform %s is not supported (only DstackTdx)'):format(PLATFORMS[platform]
        or tostring(platform)))
    end
    local out = { version = 0, platform = 'tdx' }
    out.quote = r:bytes('quote')
    out.event_log = r:vec('event_log', tdx_event)
    out.runtime_events = r:vec('runtime_events', runtime_event)
    out.report_data = r:take(64, 'report_data')
    out.config = r:bytes('config')
    if r.pos <= #data then
      r:fail(('%d trailing bytes'):format(#data - r.pos + 1))
    end
    return out
  end)
  if not ok then
    if type(res) == 'table' and res.scale_error then
      return errors.fail('EATTESTATION', res.scale_error)
    end
    error(res, 0)
  end
  return res
end

--- The event log to verify: the attestation's TdxEvents, plus its runtime events as RTMR3
--- events when the log itself carries none (digests computed).
function M.events(att)
  local events, has_runtime = {}, false
  for i, e in ipairs(att.event_log or {}) do
    events[i] = e
    has_runtime = has_runtime or e.event_type == eventlog.RUNTIME_EVENT_TYPE
  end
  if not has_runtime then
    for _, re in ipairs(att.runtime_events or {}) do
      local ev, err, code = eventlog.runtime_event(re.event, re.payload, 1)
      if not ev then
        return nil, err, code
      end
      events[#events + 1] = ev
    end
  end
  return events
end

-- ---- encoding ----

local char, concat = string.char, table.concat

local le, compact, vec = scale.uint, scale.compact, scale.bytes

local function u32le(n)
  return le(n, 4)
end

-- The fields encode() takes; also checks them.
local function check_att(fn, att)
  if type(att) ~= 'table' or type(att.quote) ~= 'string' or type(att.report_data) ~= 'string'
      or #att.report_data ~= 64 then
    error(('attestation.%s: needs { quote, report_data (64 bytes), event_log?, runtime_events?, '
      .. 'config? }'):format(fn), 3)
  end
end

--- VersionedAttestation V0 (SCALE, DstackTdx) bytes of { quote, event_log = {TdxEvent},
--- runtime_events = { {event, payload} }, report_data (64 bytes), config }. V0 cannot carry V2
--- events: returns nil, 'EATTESTATION: ...' if the log holds one.
function M.encode_v0(att)
  check_att('encode_v0', att)
  local parts = { '\0\0', vec(att.quote) }
  local events = att.event_log or {}
  parts[#parts + 1] = compact(#events)
  for _, e in ipairs(events) do
    if e.version == 2 then
      return errors.fail('EATTESTATION', 'V0 attestations cannot carry V2 runtime events')
    end
    parts[#parts + 1] = u32le(e.imr) .. u32le(e.event_type) .. vec(e.digest or '')
      .. vec(e.event or '') .. vec(e.event_payload or '')
  end
  local runtime = att.runtime_events or {}
  parts[#parts + 1] = compact(#runtime)
  for _, r in ipairs(runtime) do
    if r.version == 2 then
      return errors.fail('EATTESTATION', 'V0 attestations cannot carry V2 runtime events')
    end
    parts[#parts + 1] = vec(r.event or '') .. vec(r.payload or '')
  end
  parts[#parts + 1] = att.report_data
  parts[#parts + 1] = vec(att.config or '')
  return concat(parts)
end

-- A minimal MessagePack writer over tagged values: strings are str, numbers non-negative
-- integers, booleans; { bin = s }, { ints = s } (bytes as an array of small integers, how
-- rmp-serde writes a plain Vec<u8>), { array = {...} }, { map = { {k, v}, ... } } (ordered).
local function mp_len(n, fix, fixmax, c8, c16, c32)
  if fix and n <= fixmax then
    return char(fix + n)
  elseif c8 and n < 0x100 then
    return char(c8, n)
  elseif n < 0x10000 then
    return char(c16) .. le(n, 2):reverse()
  end
  return char(c32) .. le(n, 4):reverse()
end

local function mp(v, out)
  local t = type(v)
  if t == 'string' then
    out[#out + 1] = mp_len(#v, 0xa0, 31, 0xd9, 0xda, 0xdb) .. v
  elseif t == 'number' then
    if v < 0x80 then
      out[#out + 1] = char(v)
    elseif v < 0x100 then
      out[#out + 1] = char(0xcc, v)
    elseif v < 0x10000 then
      out[#out + 1] = char(0xcd) .. le(v, 2):reverse()
    elseif v < 0x100000000 then
      out[#out + 1] = char(0xce) .. le(v, 4):reverse()
    else
      out[#out + 1] = char(0xcf) .. le(v, 8):reverse()
    end
  elseif t == 'boolean' then
    out[#out + 1] = v and '\195' or '\194'
  elseif t == 'nil' then
    out[#out + 1] = '\192'
  elseif v.bin then
    out[#out + 1] = mp_len(#v.bin, nil, nil, 0xc4, 0xc5, 0xc6) .. v.bin
  elseif v.ints then
    out[#out + 1] = mp_len(#v.ints, 0x90, 15, nil, 0xdc, 0xdd)
    for i = 1, #v.ints do
      local b = v.ints:byte(i)
      out[#out + 1] = b < 0x80 and char(b) or char(0xcc, b)
    end
  elseif v.array then
    out[#out + 1] = mp_len(#v.array, 0x90, 15, nil, 0xdc, 0xdd)
    for _, item in ipairs(v.array) do
      mp(item, out)
    end
  else
    out[#out + 1] = mp_len(#v.map, 0x80, 15, nil, 0xde, 0xdf)
    for _, kv in ipairs(v.map) do
      mp(kv[1], out)
      mp(kv[2], out)
    end
  end
end

local function msgpack(v)
  local out = {}
  mp(v, out)
  return concat(out)
end

--- VersionedAttestation V1 (msgpack named maps, platform tdx, stack dstack) of the same fields
--- as encode_v0; V2 events carry "version":2 (and their preimage when known).
function M.encode_v1(att)
  check_att('encode_v1', att)
  local events = {}
  for i, e in ipairs(att.event_log or {}) do
    local m = { { 'imr', e.imr }, { 'event_type', e.event_type }, { 'digest', { bin = e.digest or '' } },
      { 'event', e.event or '' }, { 'event_payload', { bin = e.event_payload or '' } } }
    if e.version == 2 then
      m[#m + 1] = { 'version', 2 }
    end
    if e.preimage then
      m[#m + 1] = { 'preimage', { bin = e.preimage } }
    end
    events[i] = { map = m }
  end
  local runtime = {}
  for i, r in ipairs(att.runtime_events or {}) do
    local m = { { 'event', r.event or '' }, { 'payload', { bin = r.payload or '' } } }
    if r.version == 2 then
      m[#m + 1] = { 'version', 2 }
    end
    runtime[i] = { map = m }
  end
  return msgpack({ map = {
    { 'version', 1 },
    { 'platform', { map = { { 'kind', 'tdx' }, { 'data', { map = {
      { 'quote', { ints = att.quote } }, { 'event_log', { array = events } } } } } } } },
    { 'stack', { map = { { 'kind', 'dstack' }, { 'data', { map = {
      { 'report_data', { ints = att.report_data } }, { 'runtime_events', { array = runtime } },
      { 'config', att.config or '' } } } } } } },
  } })
end

--- V0 when every event is V1 (upstream's rule), else V1.
function M.encode(att)
  for _, e in ipairs(att.event_log or {}) do
    if e.version == 2 then
      return M.encode_v1(att)
    end
  end
  for _, r in ipairs(att.runtime_events or {}) do
    if r.version == 2 then
      return M.encode_v1(att)
    end
  end
  return M.encode_v0(att)
end

local APP_INFO_FIELDS = { 'app_id', 'compose_hash', 'instance_id', 'device_id', 'mr_system',
  'mr_aggregated', 'os_image_hash', 'key_provider_info' }

--- The RA-TLS AppInfo extension (OID …62397.1.9): compact msgpack array of the 0.5.x AppInfo
--- fields (binary values): app_id, compose_hash, instance_id, device_id, mr_system,
--- mr_aggregated, os_image_hash, key_provider_info.
function M.app_info_ext(info)
  local arr = {}
  for i, k in ipairs(APP_INFO_FIELDS) do
    arr[i] = { bin = info[k] or '' }
  end
  return msgpack({ array = arr })
end

return M
