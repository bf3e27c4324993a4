-- SPDX-License-Identifier: Apache-2.0
-- The policy host: loads an operator policy into its own sandboxed VM
-- (moonstack.native.policyvm), validates it (moonstack.policy.schema), runs its own `tests`,
-- and swaps it in only if all of that succeeds; a failed load or reload keeps the previous
-- policy. decide() never fails: an error, a timeout or an invalid answer is a deny. Every
-- load (accepted or refused) is published on the event bus as 'policy.reload'.
--
-- The sandbox guards against operator mistakes (endless loops, runaway memory, typos that
-- write globals), not against hostile code: LuaJIT is not a security boundary. Policy files
-- should be root-owned; their sha256 is logged on every load.
--
-- A policy file returns { name, version, description?, on_auth?, on_route?, tests? } where
-- tests = { { name = 'optional label', hook = 'on_auth', input = {...}, expect = {...} }, ... }.
-- A test passes when the hook returns a valid decision whose fields equal (deeply) every
-- field listed in `expect`; a hook error fails the test (it is not turned into a deny).
local pvm = require('moonstack.native.policyvm')
local schema = require('moonstack.policy.schema')
local events = require('moonstack.core.events')
local logging = require('moonstack.core.log')

local M = {}

--- Largest policy file accepted, in bytes.
M.MAX_SOURCE = 1024 * 1024

local log = logging.new('policy')

local Host = {}
Host.__index = Host

local fail = require('moonstack.core.errors').fail
local fs = require('moonstack.core.fs')

local deep_equal = require('moonstack.core.tables').equal
M.deep_equal = deep_equal

local function show(v)
  if type(v) == 'string' then
    return ('%q'):format(v)
  elseif type(v) == 'table' then
    local ok, cjson = pcall(require, 'cjson.safe')
    local text = ok and cjson.encode(v)
    return text or tostring(v)
  end
  return tostring(v)
end

--- Read a policy file. Returns its text, or nil, message, code (ENOENT, EACCES, EIO, ETOOBIG).
function M.read_file(path)
  if type(path) ~= 'string' then
    error('policy.read_file: path must be a string', 2)
  end
  return fs.read_file(path, M.MAX_SOURCE)
end

local function drain_logs(vm, policy_name)
  local lines, dropped = vm:logs()
  for _, line in ipairs(lines) do
    log.info(line, { policy = policy_name })
  end
  if dropped > 0 then
    log.warn('policy output dropped', { policy = policy_name, lines = dropped })
  end
  return lines
end

local function run_tests(vm, tests, report)
  for i, case in ipairs(tests or {}) do
    local result = { index = i, name = case.name or ('#%d'):format(i), hook = case.hook }
    local decision, err = vm:call(case.hook, case.input or {})
    if not decision then
      result.message = err
    else
      local ok, derr = schema.check_decision(case.hook, decision)
      if not ok then
        result.message = 'invalid decision: ' .. derr
      else
        local keys = {}
        for k in pairs(case.expect) do
          keys[#keys + 1] = k
        end
        table.sort(keys)
        for _, k in ipairs(keys) do
          if not deep_equal(decision[k], case.expect[k]) then
            result.message = ('expected %s = %s, got %s'):format(k, show(case.expect[k]), show(decision[k]))
            break
          end
        end
      end
    end
    result.ok = result.message == nil
    report.tests.results[#report.tests.results + 1] = result
    if result.ok then
      report.tests.passed = report.tests.passed + 1
    else
      report.tests.failed = report.tests.failed + 1
    end
  end
end

--- Compile, validate and self-test a policy. Never raises on a bad policy.
--- Returns report, candidate: report = { ok, code?, error?, chunkname, sha256, name?, version?,
--- hooks = {sorted names}, tests = { passed, failed, results = { {index, name, hook, ok,
--- message?} } }, output = {printed lines} }; candidate (only when ok) = { vm, info, report }
--- for Host:swap-in. Options: limits (policy VM limits), required (hooks that must exist).
function M.check(source, chunkname, opts)
  if type(source) ~= 'string' then
    error('policy.check: source must be a string', 2)
  end
  opts = opts or {}
  local report = {
    ok = false,
    chunkname = chunkname or '=policy',
    sha256 = pvm.sha256(source),
    hooks = {},
    tests = { passed = 0, failed = 0, results = {} },
    output = {},
  }
  local function failed(vm, msg, code)
    report.error, report.code = msg, code
    if vm then
      vm:close()
    end
    return report
  end
  local vm, err, code = pvm.new(opts.limits)
  if not vm then
    return failed(nil, err, code)
  end
  local info
  info, err, code = vm:load(source, report.chunkname)
  if not info then
    report.output = vm:logs()
    return failed(vm, err, code)
  end
  report.output = vm:logs()
  report.name, report.version = info.fields.name, info.fields.version
  for name in pairs(info.hooks) do
    report.hooks[#report.hooks + 1] = name
  end
  table.sort(report.hooks)
  local ok, verr = schema.check_policy(info, opts.required)
  if not ok then
    return failed(vm, 'EINVAL: ' .. verr, 'EINVAL')
  end
  run_tests(vm, info.fields.tests, report)
  local lines = vm:logs()
  for _, line in ipairs(lines) do
    report.output[#report.output + 1] = line
  end
  if report.tests.failed > 0 then
    local first
    for _, r in ipairs(report.tests.results) do
      if not r.ok then
        first = ('%s: %s'):format(r.name, r.message)
        break
      end
    end
    return failed(vm, ('EPOLICY: %d of %d policy tests failed (%s)'):format(report.tests.failed,
      report.tests.failed + report.tests.passed, first), 'EPOLICY')
  end
  report.ok = true
  return report, { vm = vm, info = info, report = report }
end

--- check() for a file: returns the report, or nil, message, code when the file cannot be read.
function M.check_file(path, opts)
  local source, err, code = M.read_file(path)
  if not source then
    return nil, err, code
  end
  return M.check(source, '@' .. path, opts)
end

--- Create a policy host. Options: name (for logs, e.g. 'kms-auth'), limits (policy VM
--- limits), required (hooks every policy loaded here must define, e.g. { 'on_auth' }).
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= 'table' then
    error('policy.new: opts must be a table', 2)
  end
  return setmetatable({
    label = opts.name or 'policy',
    limits = opts.limits,
    required = opts.required,
    current = nil,
    path = nil,
    stats = { decisions = 0, allowed = 0, denied = 0, errors = 0, reloads = 0, reload_failures = 0 },
  }, Host)
end

local function summary(cur)
  local r = cur.report
  return {
    name = r.name,
    version = r.version,
    sha256 = r.sha256,
    path = cur.path,
    hooks = r.hooks,
    tests = { passed = r.tests.passed, failed = r.tests.failed },
    loaded_at = cur.loaded_at,
  }
end

--- Compile, validate and self-test `source`; on success make it the active policy (the
--- previous one is closed), on failure keep the previous one. Returns the active policy's
--- summary { name, version, sha256, path, hooks, tests, loaded_at }, or nil, message, code.
function Host:load_string(source, chunkname, path)
  if type(source) ~= 'string' then
    error('host:load_string: source must be a string', 2)
  end
  local report, cand = M.check(source, chunkname, { limits = self.limits, required = self.required })
  for _, line in ipairs(report.output) do
    log.info(line, { policy = report.name, host = self.label })
  end
  self.stats.reloads = self.stats.reloads + 1
  if not report.ok then
    self.stats.reload_failures = self.stats.reload_failures + 1
    log.error('policy rejected; the previous policy stays active', {
      what = 'policy', host = self.label, ok = false, error = report.error, sha256 = report.sha256,
      path = path, active = self.current and self.current.report.sha256 or nil,
    })
    events.publish('policy.reload', { host = self.label, ok = false, error = report.error,
      code = report.code, sha256 = report.sha256, path = path,
      active_sha256 = self.current and self.current.report.sha256 or nil })
    return nil, report.error, report.code
  end
  cand.path = path
  cand.loaded_at = os.time()
  local old = self.current
  self.current = cand
  if path then
    self.path = path
  end
  if old then
    old.vm:close()
  end
  log.info('policy loaded', {
    what = 'policy', host = self.label, ok = true, name = report.name, version = report.version,
    sha256 = report.sha256, path = path, tests = report.tests.passed,
  })
  events.publish('policy.reload', { host = self.label, ok = true, name = report.name,
    version = report.version, sha256 = report.sha256, path = path, tests = report.tests.passed })
  return summary(cand)
end

--- load_string() for a file, which becomes the file reload() re-reads.
function Host:load_file(path)
  if type(path) ~= 'string' then
    error('host:load_file: path must be a string', 2)
  end
  local source, err, code = M.read_file(path)
  if not source then
    self.stats.reload_failures = self.stats.reload_failures + 1
    log.error('policy file unreadable; the previous policy stays active', {
      what = 'policy', host = self.label, ok = false, error = err, path = path,
    })
    events.publish('policy.reload', { host = self.label, ok = false, error = err, code = code,
      path = path, active_sha256 = self.current and self.current.report.sha256 or nil })
    return nil, err, code
  end
  return self:load_string(source, '@' .. path, path)
end

--- Re-read the active policy's file (see load_file()). Returns the summary or nil, msg, code.
function Host:reload()
  local path = self.path
  if not path then
    return fail('ENOENT', 'no policy file to reload')
  end
  return self:load_file(path)
end

--- The active policy's summary, or nil when none is loaded.
function Host:active()
  return self.current and summary(self.current) or nil
end

local function deny(self, hook, reason, err, code)
  self.stats.errors = self.stats.errors + 1
  self.stats.denied = self.stats.denied + 1
  local cur = self.current
  log.warn('policy failed; denying', {
    host = self.label, hook = hook, code = code, error = err,
    policy = cur and cur.report.name or nil, sha256 = cur and cur.report.sha256 or nil,
  })
  return { allow = false, reason = reason }, err, code
end

--- Ask the active policy's `hook` about `input` (a table, copied into the policy VM).
--- Always returns a valid decision table. When the policy could not answer (none loaded, no
--- such hook, an error, a timeout, an invalid answer) the decision is
--- { allow = false, reason = ... } and the message and code of the failure follow it.
function Host:decide(hook, input)
  if type(hook) ~= 'string' or not schema.hooks[hook] then
    error(('host:decide: unknown hook %s (known: %s)'):format(show(hook),
      table.concat(schema.hook_names(), ', ')), 2)
  end
  if input ~= nil and type(input) ~= 'table' then
    error('host:decide: input must be a table', 2)
  end
  self.stats.decisions = self.stats.decisions + 1
  local cur = self.current
  if not cur then
    return deny(self, hook, 'no policy is loaded', 'ENOENT: no policy is loaded', 'ENOENT')
  end
  if not cur.info.hooks[hook] then
    local msg = ('policy %s has no %s hook'):format(cur.report.name, hook)
    return deny(self, hook, msg, 'ENOENT: ' .. msg, 'ENOENT')
  end
  local decision, err, code = cur.vm:call(hook, input)
  drain_logs(cur.vm, cur.report.name)
  if not decision then
    return deny(self, hook, ('policy %s failed (%s)'):format(cur.report.name, code), err, code)
  end
  local ok, verr = schema.check_decision(hook, decision)
  if not ok then
    return deny(self, hook, ('policy %s returned an invalid decision'):format(cur.report.name),
      'EINVAL: ' .. verr, 'EINVAL')
  end
  if decision.allow then
    self.stats.allowed = self.stats.allowed + 1
  else
    self.stats.denied = self.stats.denied + 1
  end
  return decision
end

--- Close the active policy's VM; the host then denies everything until a new load.
function Host:close()
  if self.current then
    self.current.vm:close()
    self.current = nil
  end
end

return M
