-- SPDX-License-Identifier: Apache-2.0
-- `moonstack audit`: Atlas's production checklist as checks over a verifier policy (Atlas's
-- JSON or ours, moonstack.verifier.rules) and the deployment's configs, loaded by the command
-- the way each daemon loads its own. A finding = { id, severity ('error' | 'warning'), file,
-- key (the field path), message, fix }. This module holds the findings list, the policy checks
-- and the entry point; audit_config.lua checks the configs, audit_host.lua the files they name
-- (modes) and the running processes (/proc cmdline).
local audit_config = require('moonstack.verifier.audit_config')
local audit_host = require('moonstack.verifier.audit_host')
local rules = require('moonstack.verifier.rules')

local M = {}

--- A findings list: add(id, severity, file, key, message, fix), sorted() for output.
function M.findings()
  local list = {}
  local self = { list = list }
  function self.add(id, severity, file, key, message, fix)
    list[#list + 1] = { id = id, severity = severity, file = file, key = key, message = message,
      fix = fix }
  end
  function self.sorted()
    local rank = { error = 0, warning = 1 }
    local out = {}
    for i, f in ipairs(list) do
      out[i] = f
      f.n = i
    end
    table.sort(out, function(a, b)
      if rank[a.severity] ~= rank[b.severity] then
        return rank[a.severity] < rank[b.severity]
      end
      return a.n < b.n
    end)
    for _, f in ipairs(out) do
      f.n = nil
    end
    return out
  end
  return self
end

local OUTDATED = { OutOfDate = true, OutOfDateConfigurationNeeded = true }
local BOOTCHAIN = { 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2' }

local function is_array_of_strings(v)
  if type(v) ~= 'table' then
    return false
  end
  for _, s in ipairs(v) do
    if type(s) ~= 'string' then
      return false
    end
  end
  return true
end

--- Check a verifier policy `p` (the decoded JSON or Lua table, not validated) read from
--- `file`, adding to `out` (a findings list).
function M.policy(p, file, out)
  local add = out.add
  if type(p) ~= 'table' then
    add('policy.invalid', 'error', file, '(root)', 'the policy is not an object', 'write a JSON object')
    return
  end
  local statuses = p.allowed_tcb_status
  if statuses == nil then
    statuses = { 'UpToDate' } -- the default of both verifiers
  end
  if not is_array_of_strings(statuses) then
    add('policy.invalid', 'error', file, 'allowed_tcb_status', 'not a list of status names',
      'list the accepted TCB statuses, e.g. ["UpToDate"]')
    statuses = {}
  end
  local grace = p.grace_period
  for i, s in ipairs(statuses) do
    local key = ('allowed_tcb_status[%d]'):format(i)
    if s == 'Revoked' then
      add('tcb.revoked', 'error', file, key,
        'Revoked platforms are accepted: a revoked TCB (compromised keys or microcode) passes',
        'remove "Revoked" from allowed_tcb_status')
    elseif OUTDATED[s] and (type(grace) ~= 'number' or grace <= 0) then
      add('tcb.outdated_without_grace', 'error', file, key,
        ('%s is accepted without a grace_period: an unpatched platform passes forever'):format(s),
        'set grace_period (seconds after the TCB level\'s tcbDate, e.g. 2592000 = 30 days) '
          .. 'or remove ' .. s)
    end
  end
  if p.disable_runtime_verification == true then
    add('runtime.disabled', 'error', file, 'disable_runtime_verification',
      'runtime verification is off: the bootchain, OS image and app compose are not checked',
      'remove disable_runtime_verification and pin expected_bootchain, os_image_hash, '
        .. 'app_compose')
  end
  local bc = p.expected_bootchain
  if bc == nil then
    add('runtime.no_bootchain', 'error', file, 'expected_bootchain',
      'no expected_bootchain: any firmware and kernel (MRTD, RTMR0-2) pass',
      'pin expected_bootchain {mrtd, rtmr0, rtmr1, rtmr2} (moonstack mr)')
  elseif type(bc) ~= 'table' then
    add('policy.invalid', 'error', file, 'expected_bootchain', 'not an object',
      'give {mrtd, rtmr0, rtmr1, rtmr2}')
  else
    for _, k in ipairs(BOOTCHAIN) do
      if type(bc[k]) ~= 'string' or bc[k] == '' then
        add('runtime.no_bootchain', 'error', file, 'expected_bootchain.' .. k,
          k .. ' is missing from expected_bootchain', 'pin ' .. k .. ' (moonstack mr)')
      end
    end
  end
  if p.os_image_hash == nil or p.os_image_hash == '' then
    add('runtime.no_os_image_hash', 'error', file, 'os_image_hash',
      'no os_image_hash: any OS image passes', 'pin the image\'s os_image_hash (moonstack mr)')
  end
  if p.app_compose == nil or p.app_compose == '' then
    add('runtime.no_app_compose', 'error', file, 'app_compose',
      'no app_compose: any application passes',
      'pin the app-compose (its JSON or `moonstack compose hash`)')
  end
  if p.allow_simulator == true then
    add('policy.simulator', 'error', file, 'allow_simulator',
      'simulated quotes are accepted (no hardware behind them)', 'remove allow_simulator')
  end
  if p.allow_debug == true then
    add('policy.debug', 'error', file, 'allow_debug',
      'debug TDs are accepted (the host can read their memory)', 'remove allow_debug')
  end
  audit_config.plain_urls({ file = file, cfg = p }, out) -- pccs_url
  local ok, err = rules.validate(p)
  if not ok then
    add('policy.invalid', 'error', file, (err:match('policy%.([%w_%.%[%]]+)') or '(root)'),
      'moonstack\'s verifier refuses this policy: ' .. err:gsub('^EINVAL: ', ''),
      'fix the field (lua/moonstack/verifier/README.md, Policy)')
  end
end

--- Run the audit. opts: policy = { file, value } (decoded, optional), configs = { { file,
--- kind, cfg, dir }... } (loaded by the daemons' loaders), proc = '/proc' | false (the process
--- scan), stat = true (the file modes). Returns the sorted findings.
function M.run(opts)
  local out = M.findings()
  if opts.policy then
    M.policy(opts.policy.value, opts.policy.file, out)
  end
  for _, c in ipairs(opts.configs or {}) do
    audit_config.check(c, out)
    if opts.stat ~= false then
      audit_host.modes(c, out)
    end
  end
  if opts.proc then
    audit_host.processes(opts.proc, out)
  end
  return out.sorted()
end

return M
