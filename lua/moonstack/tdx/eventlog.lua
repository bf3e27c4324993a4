-- SPDX-License-Identifier: Apache-2.0
-- TDX event logs for Lua: the boot-time CCEL, dstack's TdxEvent JSON (as agents return it),
-- the runtime event log file, RTMR replay, runtime event digests (V1/V2) and emitting a
-- runtime event (extend RTMR3 through a backend, then log it). Events are tables
--   { imr, event_type, digest (binary, '' when stripped), event (name), event_payload
--     (binary), version (1|2), preimage (binary, optional) }.
local cjson = require('cjson.safe')
local fs = require('moonstack.core.fs')
local native = require('moonstack.native.tdx')
local codec = require('moonstack.core.codec')
local errors = require('moonstack.core.errors')

local M = {}

--- Event type of dstack runtime events.
M.RUNTIME_EVENT_TYPE = native.RUNTIME_EVENT_TYPE

--- Parse a TCG log (CCEL or TPM): { spec_id, events = { {mr_index, event_type, digests =
--- { {alg, digest} }, data} }, end_offset } or nil, msg, 'EEVENTLOG'.
---@param bytes string
function M.parse_tcg(bytes)
  return native.parse_tcg(bytes)
end

--- CCEL bytes to TdxEvents (MRTD records dropped, imr 0-based). opts.acpi_labels (default
--- true) names the three ACPI DATA events acpi-loader/-rsdp/-tables as dstack HEAD does.
---@param bytes string
---@param opts table|nil
function M.from_ccel(bytes, opts)
  local labels = not (opts and opts.acpi_labels == false)
  local events, err, code = native.ccel_events(bytes, labels)
  if not events then
    return nil, err, code
  end
  for _, e in ipairs(events) do
    e.version = 1
  end
  return events
end

local function bad(i, msg)
  return errors.fail('EEVENTLOG', ('event %d: %s'):format(i, msg))
end

local function bytes_field(i, ev, key)
  local v = ev[key]
  if v == nil or v == cjson.null then
    return ''
  end
  local b, err = codec.unhex(v)
  if not b then
    return bad(i, ('%s: %s'):format(key, err))
  end
  return b
end

-- Whether v is a u32 (TdxEvent's imr and event_type): not a fraction, a negative, NaN or inf.
local function u32(v)
  return type(v) == 'number' and v >= 0 and v <= 4294967295 and v == math.floor(v)
end

-- One TdxEvent JSON object to an event table.
local function decode_event(i, ev)
  if type(ev) ~= 'table' then
    return bad(i, 'not an object')
  end
  if not u32(ev.imr) or not u32(ev.event_type) then
    return bad(i, 'imr and event_type must be integers in 0..4294967295')
  end
  local name = ev.event
  if name == nil or name == cjson.null then
    name = ''
  elseif type(name) ~= 'string' then
    return bad(i, 'event must be a string')
  end
  local version = ev.version
  if version == nil or version == cjson.null then
    version = 1
  elseif version ~= 1 and version ~= 2 then
    return bad(i, 'version must be 1 or 2')
  end
  local out = { imr = ev.imr, event_type = ev.event_type, event = name, version = version }
  local err, code
  for _, key in ipairs({ 'digest', 'event_payload', 'preimage' }) do
    out[key], err, code = bytes_field(i, ev, key)
    if not out[key] then
      return nil, err, code
    end
  end
  if ev.preimage == nil or ev.preimage == cjson.null then
    out.preimage = nil
  end
  if #out.digest ~= 0 and #out.digest ~= 48 then
    return bad(i, ('digest has %d bytes (48 expected)'):format(#out.digest))
  end
  return out
end

-- The event list inside a decoded JSON value (array, {event_log=}, {tcb_info={event_log=}}).
local function find_list(v, depth)
  if type(v) == 'string' and depth < 3 then
    local decoded = cjson.decode(v)
    return decoded ~= nil and find_list(decoded, depth + 1) or nil
  end
  if type(v) ~= 'table' then
    return nil
  end
  if #v > 0 or next(v) == nil then
    return v
  end
  if v.event_log ~= nil then
    return find_list(v.event_log, depth + 1)
  end
  if v.tcb_info ~= nil then
    return find_list(v.tcb_info, depth + 1)
  end
  return nil
end

--- TdxEvent JSON (text or decoded) to events: a JSON array, or an object carrying it in
--- `event_log` (array or JSON string, as GetQuote returns) or `tcb_info.event_log` (Info).
--- Stripped runtime events (empty digest) are fine: replay recomputes them.
---@param value string|table
function M.from_json(value)
  local v = value
  if type(v) == 'string' then
    local err
    v, err = cjson.decode(v)
    if v == nil then
      return errors.fail('EEVENTLOG', 'invalid JSON: ' .. tostring(err))
    end
  end
  local list = find_list(v, 0)
  if not list then
    return errors.fail('EEVENTLOG', 'no event log found (expected a JSON array of events, or '
      .. 'an object with event_log or tcb_info.event_log)')
  end
  local events = {}
  for i, ev in ipairs(list) do
    local e, err, code = decode_event(i, ev)
    if not e then
      return nil, err, code
    end
    events[i] = e
  end
  return events
end

--- The digest preimage (binary) of a runtime event; version 1 (default) or 2.
function M.preimage(name, payload, version)
  return native.runtime_preimage(name, payload, version or 1)
end

--- SHA-384 digest (binary) of a runtime event; version 1 (default) or 2.
function M.runtime_digest(name, payload, version)
  return native.runtime_digest(name, payload, version or 1)
end

--- A runtime event as a TdxEvent (imr 3, type 0x08000001, digest computed; V2 events get
--- their preimage).
function M.runtime_event(name, payload, version)
  version = version or 1
  local digest, err, code = native.runtime_digest(name, payload, version)
  if not digest then
    return nil, err, code
  end
  local ev = { imr = 3, event_type = M.RUNTIME_EVENT_TYPE, digest = digest, event = name,
    event_payload = payload, version = version }
  if version == 2 then
    ev.preimage = native.runtime_preimage(name, payload, 2)
  end
  return ev
end

--- Parse the runtime event log file's text: one JSON object per line,
--- {"event": name, "payload": base64[, "version": 2]}. Returns TdxEvents (digests computed).
---@param text string
function M.parse_runtime_log(text)
  local events, n = {}, 0
  for line in text:gmatch('[^\n]+') do
    n = n + 1
    if line:find('%S') then
      local obj = cjson.decode(line)
      if type(obj) ~= 'table' or type(obj.event) ~= 'string' or type(obj.payload) ~= 'string' then
        return errors.fail('EEVENTLOG', ('runtime log line %d: expected {"event", "payload"}'):format(n))
      end
      local payload = codec.unbase64(obj.payload)
      if not payload then
        return errors.fail('EEVENTLOG', ('runtime log line %d: payload is not base64'):format(n))
      end
      local version = obj.version == nil and 1 or obj.version
      local ev, err, code = M.runtime_event(obj.event, payload, version)
      if not ev then
        return nil, ('%s (runtime log line %d)'):format(err, n), code
      end
      events[#events + 1] = ev
    end
  end
  return events
end

--- The line appended to the runtime event log for an event.
function M.runtime_log_line(name, payload, version)
  local line = '{"event":' .. cjson.encode(name) .. ',"payload":"' .. codec.base64(payload) .. '"'
  if version == 2 then
    line = line .. ',"version":2'
  end
  return line .. '}'
end

--- Replay events into RTMR0..3 (48 zero bytes, then SHA-384 extends in order; runtime events'
--- digests are recomputed). opts.to_event = name stops after that runtime event (boot-time
--- value with 'boot-mr-done'); opts.binary returns binary instead of hex.
--- Returns { rtmr0, rtmr1, rtmr2, rtmr3 } (array, hex) or nil, msg, 'EEVENTLOG'.
function M.replay(events, opts)
  local r, err, code = native.replay(events, opts and opts.to_event or nil)
  if not r then
    return nil, err, code
  end
  if not (opts and opts.binary) then
    for i = 1, 4 do
      r[i] = codec.hex(r[i])
    end
  end
  return r
end

--- Check every V2 runtime event's preimage as dstack HEAD does: present, hashes (SHA-384) to
--- the digest, and equal to the canonical form rebuilt from the fields.
function M.validate_v2(events)
  for i, e in ipairs(events) do
    if e.event_type == M.RUNTIME_EVENT_TYPE and e.version == 2 then
      if not e.preimage or e.preimage == '' then
        return errors.fail('EEVENTLOG', ('V2 runtime event %d is missing its digest preimage'):format(i))
      end
      if native.sha384(e.preimage) ~= e.digest then
        return errors.fail('EEVENTLOG', ('V2 runtime event %d digest does not match its preimage'):format(i))
      end
      if native.runtime_preimage(e.event, e.event_payload, 2) ~= e.preimage then
        return errors.fail('EEVENTLOG',
          ('V2 runtime event %d preimage is not the canonical event representation'):format(i))
      end
    end
  end
  return true
end

--- One event as a TdxEvent JSON object text, keys in dstack's order (imr, event_type, digest,
--- event, event_payload, version only for V2, preimage when set).
function M.event_json(e)
  local parts = {
    '{"imr":', ('%d'):format(e.imr), ',"event_type":', ('%d'):format(e.event_type),
    ',"digest":"', codec.hex(e.digest or ''), '","event":', cjson.encode(e.event or ''),
    ',"event_payload":"', codec.hex(e.event_payload or ''), '"',
  }
  if e.version == 2 then
    parts[#parts + 1] = ',"version":2'
  end
  if e.preimage then
    parts[#parts + 1] = ',"preimage":"' .. codec.hex(e.preimage) .. '"'
  end
  parts[#parts + 1] = '}'
  return table.concat(parts)
end

--- Events as a TdxEvent JSON array text (the `event_log` string of GetQuote).
function M.to_json(events)
  local out = {}
  for i, e in ipairs(events) do
    out[i] = M.event_json(e)
  end
  return '[' .. table.concat(out, ',') .. ']'
end



--- Emit a runtime event as dstack HEAD does: lock <dir>/runtime_event.lock, read the digest
--- version from <dir>/runtime_event_version (or opts.version), extend RTMR3 through
--- `backend:extend_rtmr(3, digest)`, and only then append the log line to
--- <dir>/runtime_events.log (created 0600). opts.dir defaults to /run/log/dstack.
--- Returns the digest (binary) or nil, msg, code.
function M.emit(backend, name, payload, opts)
  if type(backend) ~= 'table' or type(backend.extend_rtmr) ~= 'function' then
    error('eventlog.emit: backend must have extend_rtmr', 2)
  end
  if type(name) ~= 'string' or type(payload) ~= 'string' then
    error('eventlog.emit: name and payload must be strings', 2)
  end
  opts = opts or {}
  local dir = opts.dir or '/run/log/dstack'
  local ok, err, code = fs.mkdir_p(dir)
  if not ok then
    return nil, err, code
  end
  local lock
  lock, err, code = native.flock(dir .. '/runtime_event.lock')
  if not lock then
    return nil, err, code
  end
  local result = { pcall(function()
    local version = opts.version
    if not version then
      local text = fs.read_file(dir .. '/runtime_event_version')
      if not text then
        return errors.fail('ENOENT', dir .. '/runtime_event_version is missing')
      end
      version = tonumber(text:match('^%s*(%d+)%s*$'))
      if version ~= 1 and version ~= 2 then
        return errors.fail('EINVAL', 'runtime_event_version must be 1 or 2')
      end
    end
    local digest, derr, dcode = native.runtime_digest(name, payload, version)
    if not digest then
      return nil, derr, dcode
    end
    local eok, eerr, ecode = backend:extend_rtmr(3, digest)
    if not eok then
      return nil, eerr, ecode
    end
    local uv = require('luv') -- loaded here: the verifier also runs in plain LuaJIT (rockspecs/)
    local fd, ferr, fcode = uv.fs_open(dir .. '/runtime_events.log', 'a', 384) -- 0600
    if not fd then
      return nil, ferr, fcode
    end
    local line = M.runtime_log_line(name, payload, version) .. '\n'
    local n, werr, wcode = uv.fs_write(fd, line, -1)
    uv.fs_close(fd)
    if n ~= #line then
      return nil, werr or 'EIO: short write to the runtime event log', wcode or 'EIO'
    end
    return digest
  end) }
  lock:unlock()
  if not result[1] then
    error(result[2], 0)
  end
  return unpack(result, 2, 4)
end

--- Whether a TdxEvent is a dstack runtime event (event type 0x08000001).
function M.is_runtime(e)
  return e.event_type == M.RUNTIME_EVENT_TYPE
end

--- The dstack runtime (RTMR3) events of a TdxEvent list, in order, as { event = name,
--- payload = bytes, version } (the one reading of them: the guest API's attestations and
--- the verifier both take it from here).
function M.runtime_events(events)
  local out = {}
  for _, e in ipairs(events) do
    if M.is_runtime(e) then
      out[#out + 1] = { event = e.event or '', payload = e.event_payload or '', version = e.version }
    end
  end
  return out
end

--- Append the runtime events logged in `dir`/runtime_events.log (none when the file is
--- absent) to `events`, the boot events a backend read. Returns events or nil, msg, code.
function M.append_runtime_log(events, dir)
  local f = io.open(dir .. '/runtime_events.log', 'rb')
  if not f then
    return events
  end
  local runtime, err, code = M.parse_runtime_log(f:read('*a'))
  f:close()
  if not runtime then
    return nil, err, code
  end
  for _, e in ipairs(runtime) do
    events[#events + 1] = e
  end
  return events
end

--- A backend's emit_event: extend RTMR3 and log the event in `dir` (M.emit with opts.dir =
--- dir; other opts passed on). Returns the digest or nil, msg, code.
function M.emit_logged(backend, dir, name, payload, opts)
  local o = { dir = dir }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return M.emit(backend, name, payload, o)
end

return M
