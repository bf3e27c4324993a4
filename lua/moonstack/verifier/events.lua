-- SPDX-License-Identifier: Apache-2.0
-- Event-log checks for a verified TD report, and what may be read from the log afterwards.
--
-- check() binds the log to the quote: every dstack runtime event's logged digest (when the
-- log carries one) must equal the digest recomputed from its name and payload (V1 or V2; a V2
-- preimage, when present, must be the canonical one), runtime events must sit in RTMR3, and the
-- replay (moonstack.tdx.eventlog, which recomputes runtime digests) must reproduce the quote's
-- RTMRs. Atlas and the dstack SDK replay the logged digests and then read the payloads, so a
-- payload that does not match its digest goes unnoticed there; here it is an error.
--
-- app_info() reads the runtime events (app-id, compose-hash, instance-id, os-image-hash,
-- key-provider, init-script-hash: the first of each before system-ready) and derives dstack's
-- AppInfo (guest-and-attestation.md §5.5). It refuses to run on a log that check() rejected.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local eventlog = require('moonstack.tdx.eventlog')
local codec = require('moonstack.core.codec')
local json = require('moonstack.core.json')

local M = {}

local hex, unhex = codec.hex, codec.unhex
local ZERO32 = string.rep('\0', 32)

local is_runtime = eventlog.is_runtime

-- Problems with one runtime event's digest binding, or nil.
local function binding_problem(e)
  if e.imr ~= 3 then
    return ('runtime event in RTMR%s (dstack measures runtime events into RTMR3 only)')
      :format(tostring(e.imr))
  end
  local want, err = eventlog.runtime_digest(e.event or '', e.event_payload or '', e.version or 1)
  if not want then
    return err
  end
  if e.digest and e.digest ~= '' and e.digest ~= want then
    return ('logged digest %s is not the digest of its name and payload (V%d: %s)'):format(
      hex(e.digest), e.version or 1, hex(want))
  end
  if e.preimage and e.preimage ~= '' then
    if crypto.sha384(e.preimage) ~= want then
      return 'its preimage does not hash to the digest of its name and payload'
    end
    if e.preimage ~= eventlog.preimage(e.event or '', e.event_payload or '', e.version or 1) then
      return 'its preimage is not the canonical representation of its name and payload'
    end
  end
  return nil
end

--- Check `events` (TdxEvent tables, moonstack.tdx.eventlog) against `report` (hex rtmr0..3).
--- `rtmrs` lists the registers whose replay must match (default {0, 1, 2, 3}).
--- Returns { ok, replayed = {rtmr0..3 hex}, rtmr_ok = {[0..3] = bool}, problems =
--- { {field, reason} }, checked = {indices} }. problems' fields are 'event_log.rtmrN' and
--- 'event_log.events[i]'.
function M.check(events, report, rtmrs)
  if type(events) ~= 'table' or type(report) ~= 'table' then
    error('events.check: events and report must be tables', 2)
  end
  rtmrs = rtmrs or { 0, 1, 2, 3 }
  local result = { ok = true, problems = {}, rtmr_ok = {}, checked = rtmrs }
  local function problem(field, reason)
    result.ok = false
    result.problems[#result.problems + 1] = { field = field, reason = reason }
  end
  for i, e in ipairs(events) do
    if is_runtime(e) then
      local p = binding_problem(e)
      if p then
        problem(('event_log.events[%d]'):format(i), ('%q: %s'):format(e.event or '', p))
      end
    end
  end
  local replayed, err = eventlog.replay(events)
  if not replayed then
    problem('event_log', 'replay failed: ' .. tostring(err))
    return result
  end
  result.replayed = {}
  for i = 0, 3 do
    result.replayed['rtmr' .. i] = replayed[i + 1]
  end
  for _, i in ipairs(rtmrs) do
    local key = 'rtmr' .. i
    local quoted = report[key]
    if type(quoted) ~= 'string' then
      problem('event_log.' .. key, 'the report has no ' .. key .. ' (not a TD quote)')
      result.rtmr_ok[i] = false
    elseif quoted:lower() ~= replayed[i + 1] then
      problem('event_log.' .. key, ('replay gives %s, the quote has %s'):format(replayed[i + 1],
        quoted:lower()))
      result.rtmr_ok[i] = false
    else
      result.rtmr_ok[i] = true
    end
  end
  return result
end

--- The payload (binary) of the first runtime event named `name` before system-ready, or nil.
function M.find(events, name)
  for _, e in ipairs(events) do
    if is_runtime(e) then
      if e.event == 'system-ready' then
        return nil
      end
      if e.event == name then
        return e.event_payload or ''
      end
    end
  end
  return nil
end

local function all_zero(h)
  return h == nil or not h:find('[^0]')
end

local function bytes(report, key, size)
  local v = report[key]
  if type(v) ~= 'string' then
    return string.rep('\0', size)
  end
  return unhex(v) or string.rep('\0', size)
end

--- The vm_config object of a vm_config (a JSON string or table; an object with a nested
--- `vm_config` string, as older attestations embed the whole sys-config, is unwrapped, up to
--- three levels): the first level that has an os_image_hash, or nil.
function M.vm_config_object(vm_config)
  local v = vm_config
  for _ = 1, 3 do
    if type(v) == 'string' then
      v = cjson.decode(v)
    end
    if type(v) ~= 'table' then
      return nil
    end
    if v.os_image_hash ~= nil then
      return v
    end
    v = v.vm_config
  end
  return nil
end

--- The os_image_hash of a vm_config (as vm_config_object unwraps it). Returns lowercase hex
--- or nil.
function M.vm_config_os_image_hash(vm_config)
  local v = M.vm_config_object(vm_config)
  if v and type(v.os_image_hash) == 'string' then
    return (v.os_image_hash:lower():gsub('^0x', ''))
  end
  return nil
end

--- dstack's AppInfo from a log that passed check() (`checked` is its result) and the verified
--- report (hex fields). opts.vm_config gives os_image_hash (upstream's source); otherwise the
--- measured os-image-hash event is used. opts.ppid (binary) gives device_id = SHA-256(PPID);
--- without it device_id is SHA-256("") as in an unverified Info. Returns the table (hex
--- strings; key_provider = {name, id} when the event is JSON) or nil, 'EEVENTLOG: ...'.
function M.app_info(events, report, checked, opts)
  if type(checked) ~= 'table' or not checked.ok then
    return nil, 'EEVENTLOG: the event log did not pass the binding and replay checks', 'EEVENTLOG'
  end
  opts = opts or {}
  local function payload_hex(name)
    local p = M.find(events, name)
    return p and hex(p) or ''
  end
  local kp = M.find(events, 'key-provider')
  local info = {
    app_id = payload_hex('app-id'),
    compose_hash = payload_hex('compose-hash'),
    instance_id = payload_hex('instance-id'),
    key_provider_info = kp and hex(kp) or '',
    init_script_hashes = json.array(),
  }
  for _, e in ipairs(events) do
    if is_runtime(e) then
      if e.event == 'system-ready' then
        break
      end
      if e.event == 'init-script-hash' then
        info.init_script_hashes[#info.init_script_hashes + 1] = hex(e.event_payload or '')
      end
    end
  end
  local measured_os = M.find(events, 'os-image-hash')
  info.os_image_hash = opts.vm_config and M.vm_config_os_image_hash(opts.vm_config)
    or (measured_os and hex(measured_os)) or ''
  if kp then
    local decoded = cjson.decode(kp)
    if type(decoded) == 'table' and type(decoded.name) == 'string' then
      info.key_provider = { name = decoded.name, id = type(decoded.id) == 'string' and decoded.id or '' }
    end
  end
  local mrtd, r0, r1, r2 = bytes(report, 'mrtd', 48), bytes(report, 'rtmr0', 48),
    bytes(report, 'rtmr1', 48), bytes(report, 'rtmr2', 48)
  local r3 = bytes(report, 'rtmr3', 48)
  local mr_key_provider = kp and crypto.sha256(kp) or ZERO32
  info.mr_system = hex(crypto.sha256(mrtd .. r0 .. r1 .. r2 .. mr_key_provider))
  local agg = mrtd .. r0 .. r1 .. r2 .. r3
  if not (all_zero(report.mr_config_id) and all_zero(report.mr_owner)
      and all_zero(report.mr_owner_config)) then
    agg = agg .. bytes(report, 'mr_config_id', 48) .. bytes(report, 'mr_owner', 48)
      .. bytes(report, 'mr_owner_config', 48)
  end
  info.mr_aggregated = hex(crypto.sha256(agg))
  info.device_id = hex(crypto.sha256(opts.ppid or ''))
  return info
end

return M
