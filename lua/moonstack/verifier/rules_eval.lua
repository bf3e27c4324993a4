-- SPDX-License-Identifier: Apache-2.0
-- Evaluation of a validated verification policy (moonstack.verifier.rules) against a
-- verified report and an optional event log. Every check that fails adds a violation
-- { field = <policy field>, reason = <why, with the values> }; runtime events (compose-hash,
-- os-image-hash, key-provider) are read only after the event log passed its digest-binding
-- and replay checks (moonstack.verifier.events).
local cjson = require('cjson.safe')
local codec = require('moonstack.core.codec')
local eventlog = require('moonstack.tdx.eventlog')
local events_mod = require('moonstack.verifier.events')
local json = require('moonstack.core.json')
local vtime = require('moonstack.verifier.time')

local hex = codec.hex

local OUT_OF_DATE = { OutOfDate = true, OutOfDateConfigurationNeeded = true }

local contains = require('moonstack.core.tables').contains

-- The event list from opts.event_log: TdxEvent tables (binary fields, as moonstack.tdx.eventlog
-- returns them) or TdxEvent JSON text.
local function event_list(v)
  if v == nil or type(v) == 'table' then
    return v
  end
  return eventlog.from_json(v)
end

local function check_report_data(c, report, violate)
  local rd = c.report_data
  local actual = codec.unhex(report.report_data or '')
  if not actual then
    return violate('report_data', 'the report has no report_data')
  end
  if rd.mode == 'exact' and actual ~= rd.bytes then
    violate('report_data', ('report_data is %s, expected %s%s'):format(hex(actual), hex(rd.bytes),
      rd.rule and (' = ' .. rd.rule) or ''))
  elseif rd.mode == 'prefix' and actual:sub(1, #rd.bytes) ~= rd.bytes then
    violate('report_data', ('report_data %s does not start with %s'):format(hex(actual), hex(rd.bytes)))
  end
end

local function check_bootchain(p, report, tdx, violate)
  local want = p.expected_bootchain
  if not tdx then
    return violate('expected_bootchain', 'the quote is not a TD quote (no MRTD/RTMRs)')
  end
  for _, k in ipairs({ 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2' }) do
    local got = (report[k] or ''):lower()
    if got ~= want[k] then
      violate('expected_bootchain.' .. k, ('%s is %s, expected %s'):format(k, got, want[k]))
    end
  end
end

-- compose-hash, os-image-hash, key-provider: the log has passed check() when this runs.
local function check_runtime_events(p, c, report, evs, violate)
  if c.compose_hash then
    local got = events_mod.find(evs, 'compose-hash')
    if not got then
      violate('app_compose', 'the event log has no compose-hash event before system-ready')
    elseif hex(got) ~= c.compose_hash then
      violate('app_compose', ('compose-hash event is %s, expected %s'):format(hex(got), c.compose_hash))
    end
    local cfg = (report.mr_config_id or ''):lower()
    if cfg:sub(1, 2) == '01' and cfg:sub(3, 66) ~= c.compose_hash then
      violate('app_compose', ('mr_config_id binds compose hash %s, expected %s'):format(
        cfg:sub(3, 66), c.compose_hash))
    end
  end
  if p.os_image_hash then
    local got = events_mod.find(evs, 'os-image-hash')
    if not got then
      violate('os_image_hash', 'the event log has no os-image-hash event before system-ready '
        .. '(only KMS-backed CVMs measure it)')
    elseif hex(got) ~= p.os_image_hash then
      violate('os_image_hash', ('os-image-hash event is %s, expected %s'):format(hex(got), p.os_image_hash))
    end
  end
  if p.key_provider then
    local got = events_mod.find(evs, 'key-provider')
    local kp = got and cjson.decode(got)
    if not got then
      violate('key_provider', 'the event log has no key-provider event before system-ready')
    elseif type(kp) ~= 'table' or type(kp.name) ~= 'string' then
      violate('key_provider', 'the key-provider event payload is not {"name", "id"} JSON')
    elseif kp.name ~= p.key_provider.name then
      violate('key_provider.name', ('key provider is %s, expected %s'):format(kp.name, p.key_provider.name))
    elseif p.key_provider.id and tostring(kp.id or ''):lower() ~= p.key_provider.id then
      violate('key_provider.id', ('key provider id is %s, expected %s'):format(tostring(kp.id),
        p.key_provider.id))
    end
  end
end

local RUNTIME_FIELDS = { 'app_compose', 'os_image_hash', 'key_provider' }

return function(p, c, report, opts)
  local violations = json.array()
  local function violate(field, reason)
    violations[#violations + 1] = { field = field, reason = reason }
  end
  local result = { violations = violations, event_log = { given = false, verified = false } }
  local tdx = report.tee_type == 'TDX'
  local now = opts.now or os.time()

  if report.simulated and not p.allow_simulator then
    violate('allow_simulator', 'the quote chains to a simulator root, and the policy does not '
      .. 'allow simulated quotes')
  end
  local status = report.status
  if not contains(p.allowed_tcb_status, status) then
    violate('allowed_tcb_status', ('TCB status %s is not allowed (allowed: %s)'):format(
      tostring(status), table.concat(p.allowed_tcb_status, ', ')))
  elseif OUT_OF_DATE[status] and p.grace_period then
    local date = vtime.parse(report.tcb_date)
    if not date then
      violate('grace_period', 'the verification report carries no TCB date (tcb_date), so the '
        .. 'grace period cannot be applied')
    elseif date + p.grace_period < now then
      violate('grace_period', ('TCB level dated %s + grace period %d s ended %s, before the '
        .. 'verification time %s'):format(vtime.iso(date), p.grace_period,
        vtime.iso(date + p.grace_period), vtime.iso(now)))
    end
  end
  local attrs = codec.unhex(report.td_attributes or '')
  if tdx and attrs and #attrs > 0 and attrs:byte(1) % 2 == 1 and not p.allow_debug then
    violate('allow_debug', ('the TD has the DEBUG attribute (td_attributes %s)'):format(report.td_attributes))
  end
  if c.report_data then
    check_report_data(c, report, violate)
  end
  if not p.disable_runtime_verification and p.expected_bootchain then
    check_bootchain(p, report, tdx, violate)
  end

  local evs, err = event_list(opts.event_log)
  local checked
  if opts.event_log ~= nil and not evs then
    violate('event_log', 'cannot read the event log: ' .. tostring(err))
  elseif evs then
    result.event_log.given = true
    if not tdx then
      violate('event_log', 'the quote is not a TD quote: there are no RTMRs to replay')
    else
      checked = events_mod.check(evs, report, p.replay_rtmrs)
      for _, prob in ipairs(checked.problems) do
        violate(prob.field, prob.reason)
      end
      result.event_log.verified = checked.ok
      result.event_log.replayed = checked.replayed
    end
  end
  if not p.disable_runtime_verification then
    local wanted = {}
    for _, f in ipairs(RUNTIME_FIELDS) do
      if (f == 'app_compose' and c.compose_hash) or (f ~= 'app_compose' and p[f] ~= nil) then
        wanted[#wanted + 1] = f
      end
    end
    if #wanted > 0 and not evs then
      violate('event_log', ('required to check %s (runtime events), but none was given')
        :format(table.concat(wanted, ', ')))
    elseif #wanted > 0 and not (checked and checked.ok) then
      for _, f in ipairs(wanted) do
        violate(f, 'not checked: the event log failed its digest-binding or replay checks')
      end
    elseif #wanted > 0 then
      check_runtime_events(p, c, report, evs, violate)
    end
  end
  if checked and checked.ok then
    result.app_info = events_mod.app_info(evs, report, checked,
      { vm_config = opts.vm_config, ppid = opts.ppid })
  end
  result.ok = #violations == 0
  return result
end
