-- SPDX-License-Identifier: Apache-2.0
-- dstack's VersionedAttestation (the `attestation` of a dstack-verifier request, RA-TLS
-- extension 1.8): V0, SCALE-encoded (guest-and-attestation.md §5.6). Decoded into
--   { version = 0, platform = 'tdx', quote (binary), event_log = {TdxEvent tables},
--     runtime_events = { {event, payload} }, report_data (64 bytes), config (string) }
-- V1 (MessagePack named maps, platform tdx, stack dstack) decodes to the same table with
-- version = 1 (events keep their own versions and preimages). encode() writes
-- both: V0 when every runtime event is V1, V1 (named msgpack maps, as dstack HEAD) otherwise;
-- app_info_ext() writes the RA-TLS AppInfo extension (1.9, compact msgpack array).
local eventlog = require('moonstack.tdx.eventlog')
local errors = require('moonstack.core.errors')
local msgpack_mod = require('moonstack.core.msgpack')
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
    return M.decode_v1(data)
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

-- V1 field readers: each raises { v1_error = 'what' } on a missing or mistyped field.
local function v1_fail(what)
  error({ v1_error = what }, 0)
end

local function v1_map(v, what)
  if type(v) ~= 'table' then
    v1_fail(what .. ' is not a map')
  end
  return v
end

local function v1_bytes(v, what, len)
  local b = msgpack_mod.bytes(v)
  if not b then
    v1_fail(what .. ' is not bytes')
  end
  if len and #b ~= len then
    v1_fail(('%s is %d bytes, not %d'):format(what, #b, len))
  end
  return b
end

local function v1_str(v, what)
  if type(v) ~= 'string' then
    v1_fail(what .. ' is not a string')
  end
  return v
end

local function v1_uint(v, what)
  if type(v) ~= 'number' or v < 0 or v > 0xffffffff or v ~= math.floor(v) then
    v1_fail(what .. ' is not a u32')
  end
  return v
end

local function v1_version(v, what)
  if v == nil then
    return 1
  end
  if v ~= 1 and v ~= 2 then
    v1_fail(what .. '.version must be 1 or 2')
  end
  return v
end

local function v1_list(v, what)
  if type(v) ~= 'table' or (next(v) ~= nil and v[1] == nil) then
    v1_fail(what .. ' is not an array')
  end
  return v
end

--- Decode a VersionedAttestation V1 (msgpack named maps: platform tdx, stack dstack) into the
--- same table as decode(), with version = 1 and the events' versions (and preimages) kept.
function M.decode_v1(data)
  local top, err = msgpack_mod.decode(data)
  if not top then
    return errors.fail('EATTESTATION', 'V1 attestation: ' .. err:gsub('^EMSGPACK: ', ''))
  end
  local ok, res = pcall(function()
    v1_map(top, 'the attestation')
    if top.version ~= 1 then
      v1_fail('version is ' .. tostring(top.version) .. ', not 1')
    end
    local platform, stack = v1_map(top.platform, 'platform'), v1_map(top.stack, 'stack')
    if platform.kind ~= 'tdx' then
      v1_fail(('platform %s is not supported (only tdx)'):format(tostring(platform.kind)))
    end
    if stack.kind ~= 'dstack' then
      v1_fail(('stack %s is not supported (only dstack)'):format(tostring(stack.kind)))
    end
    local pd, sd = v1_map(platform.data, 'platform.data'), v1_map(stack.data, 'stack.data')
    local out = { version = 1, platform = 'tdx', event_log = {}, runtime_events = {} }
    out.quote = v1_bytes(pd.quote, 'platform.data.quote')
    for i, e in ipairs(v1_list(pd.event_log or {}, 'platform.data.event_log')) do
      local w = ('event_log[%d]'):format(i)
      v1_map(e, w)
      out.event_log[i] = { imr = v1_uint(e.imr, w .. '.imr'),
        event_type = v1_uint(e.event_type, w .. '.event_type'),
        digest = v1_bytes(e.digest or '', w .. '.digest'), event = v1_str(e.event or '', w .. '.event'),
        event_payload = v1_bytes(e.event_payload or '', w .. '.event_payload'),
        version = v1_version(e.version, w),
        preimage = e.preimage ~= nil and v1_bytes(e.preimage, w .. '.preimage') or nil }
    end
    for i, r in ipairs(v1_list(sd.runtime_events or {}, 'stack.data.runtime_events')) do
      local w = ('runtime_events[%d]'):format(i)
      v1_map(r, w)
      out.runtime_events[i] = { event = v1_str(r.event, w .. '.event'),
        payload = v1_bytes(r.payload or '', w .. '.payload'), version = v1_version(r.version, w) }
    end
    out.report_data = v1_bytes(sd.report_data, 'stack.data.report_data', 64)
    out.config = v1_str(sd.config or '', 'stack.data.config')
    return out
  end)
  if not ok then
    if type(res) == 'table' and res.v1_error then
      return errors.fail('EATTESTATION', 'V1 attestation: ' .. res.v1_error)
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
      local ev, err, code = eventlog.runtime_event(re.event, re.payload, re.version or 1)
      if not ev then
        return nil, err, code
      end
      events[#events + 1] = ev
    end
  end
  return events
end

-- ---- encoding ----

local concat = table.concat

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
  return msgpack_mod.encode({ map = {
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
  return msgpack_mod.encode({ array = arr })
end

--- Decode the RA-TLS AppInfo extension (1.9): the compact array app_info_ext() writes or the
--- named-field map (rmp-serde's struct-as-map). Returns { app_id, compose_hash, instance_id,
--- device_id, mr_system, mr_aggregated, os_image_hash, key_provider_info } (raw bytes; ''
--- when absent), or nil, 'EATTEST: ...', 'EATTEST'.
function M.app_info_decode(bytes)
  local v, err = msgpack_mod.decode(bytes or '')
  if type(v) ~= 'table' then
    return nil, 'EATTEST: app-info extension: ' .. tostring(err or 'not a map or an array'),
      'EATTEST'
  end
  local out = {}
  for i, k in ipairs(APP_INFO_FIELDS) do
    local f = v[i]
    if f == nil then
      f = v[k]
    end
    if f ~= nil and type(f) ~= 'string' then
      return nil, ('EATTEST: app-info extension: %s is not bytes'):format(k), 'EATTEST'
    end
    out[k] = f or ''
  end
  return out
end

return M
