-- SPDX-License-Identifier: Apache-2.0
-- The policy host: loads an operator policy into a pool of policy worker processes
-- (moonstack.policy.pool: each a sandboxed policy VM that the daemon kills at the deadline),
-- validates it (moonstack.policy.schema), runs its own `tests` under a total deadline, and
-- swaps it in only if all of that succeeds; a failed load or reload (an error, a timeout, a
-- crash) keeps the previous policy. decide() never fails: an error, a timeout, a crash of the
-- worker or an invalid answer is a deny. Every load (accepted or refused) is published on the
-- event bus as 'policy.reload'. check, load_*, reload and decide wait on the workers: call
-- them from a task (moonstack.core.task); the loop itself never waits for a policy.
--
-- The sandbox guards against operator mistakes (endless loops, runaway memory, typos that
-- write globals); the worker processes contain what the sandbox cannot stop (a crash inside
-- LuaJIT, a C call that runs for minutes). LuaJIT is not a security boundary: policy files
-- should be root-owned; their sha256 is logged on every load.
--
-- A policy file returns { name, version, description?, on_auth?, on_route?, tests? } where
-- tests = { { name = 'optional label', hook = 'on_auth', input = {...}, expect = {...} }, ... }.
-- A test passes when the hook returns a valid decision whose fields equal (deeply) every
-- field listed in `expect`; a hook error fails the test (it is not turned into a deny).
local uv = require('luv')
local pvm = require('moonstack.native.policyvm')
local schema = require('moonstack.policy.schema')
local pool = require('moonstack.policy.pool')
local task = require('moonstack.core.task')
local events = require('moonstack.core.events')
local logging = require('moonstack.core.log')

local M = {}

--- Largest policy file accepted, in bytes.
M.MAX_SOURCE = 1024 * 1024
--- Default number of worker processes of a host (decisions run in parallel on them).
M.DEFAULT_WORKERS = 2
--- Default total deadline of a policy's self-tests at load, in milliseconds.
M.DEFAULT_TESTS_TIME_MS = 2000

local log = logging.new('policy')

local Host = {}
Host.__index = Host

local fail = require('moonstack.core.errors').fail
local fs = require('moonstack.core.fs')

local deep_equal = require('moonstack.core.tables').equal
local sorted_keys = require('moonstack.core.tables').sorted_keys
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

local function record(report, result)
  report.tests.results[#report.tests.results + 1] = result
  if result.ok then
    report.tests.passed = report.tests.passed + 1
  else
    report.tests.failed = report.tests.failed + 1
  end
end

local function check_case(case, decision)
  local ok, derr = schema.check_decision(case.hook, decision)
  if not ok then
    return 'invalid decision: ' .. derr
  end
  local keys = sorted_keys(case.expect)
  for _, k in ipairs(keys) do
    if not deep_equal(decision[k], case.expect[k]) then
      return ('expected %s = %s, got %s'):format(k, show(case.expect[k]), show(decision[k]))
    end
  end
end

-- Run the tests one by one in the pool `p`; once `budget_ms` are spent, the rest fail unrun.
local function run_tests(p, tests, report, budget_ms)
  tests = tests or {}
  local deadline = uv.hrtime() + budget_ms * 1e6
  for i, case in ipairs(tests) do
    local result = { index = i, name = case.name or ('#%d'):format(i), hook = case.hook }
    if uv.hrtime() > deadline then
      result.ok = false
      result.message = ('not run (nor the %d after it): the self-tests exceeded their total '
        .. 'deadline of %d ms'):format(#tests - i, budget_ms)
      record(report, result)
      report.tests.failed = report.tests.failed + #tests - i
      report.tests.cut = i
      return
    end
    local decision, err, _, output = p:call(case.hook, case.input or {})
    for _, line in ipairs((decision and err or output) or {}) do
      report.output[#report.output + 1] = line
    end
    if decision then
      result.message = check_case(case, decision)
    else
      result.message = err
    end
    result.ok = result.message == nil
    record(report, result)
  end
end

--- Compile, validate and self-test a policy in a policy worker. Never raises on a bad policy.
--- Call from a task. Returns report, candidate: report = { ok, code?, error?, chunkname,
--- sha256, name?, version?, hooks = {sorted names}, tests = { passed, failed, results = {
--- {index, name, hook, ok, message?} } }, output = {printed lines} } (code ECRASH: the policy
--- crashed its worker); candidate (only when ok) = { pool, info, report } for Host:swap-in.
--- Options: limits (policy VM limits), required (hooks that must exist), tests_time_limit_ms
--- (total deadline of the self-tests, default 2000), grace_ms (see moonstack.policy.pool).
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
  local p
  local function failed(msg, code)
    report.error, report.code = msg, code
    if p then
      p:close()
    end
    return report
  end
  if #source > M.MAX_SOURCE then
    return failed(('ETOOBIG: the policy is larger than %d bytes'):format(M.MAX_SOURCE), 'ETOOBIG')
  end
  if source:byte(1) == 27 then
    return failed('EINVAL: bytecode is not allowed: policies load as source text only', 'EINVAL')
  end
  local info, code, output
  p, info, code, output = pool.start({ source = source, chunkname = report.chunkname:sub(1, 255),
    limits = opts.limits, size = 1, label = report.chunkname, grace_ms = opts.grace_ms })
  if not p then
    report.output = output or {}
    return failed(info, code)
  end
  report.output = code or {} -- start() returned pool, info, output
  report.name, report.version = info.fields.name, info.fields.version
  for name in pairs(info.hooks) do
    report.hooks[#report.hooks + 1] = name
  end
  table.sort(report.hooks)
  local ok, verr = schema.check_policy(info, opts.required)
  if not ok then
    return failed('EINVAL: ' .. verr, 'EINVAL')
  end
  run_tests(p, info.fields.tests, report, opts.tests_time_limit_ms or M.DEFAULT_TESTS_TIME_MS)
  if report.tests.failed > 0 then
    local first
    for _, r in ipairs(report.tests.results) do
      if not r.ok then
        first = ('%s: %s'):format(r.name, r.message)
        break
      end
    end
    if report.tests.cut then
      first = ('%s; tests #%d to #%d not run: the self-tests exceeded their total deadline of %d ms')
        :format(first, report.tests.cut, #info.fields.tests,
          opts.tests_time_limit_ms or M.DEFAULT_TESTS_TIME_MS)
    end
    return failed(('EPOLICY: %d of %d policy tests failed (%s)'):format(report.tests.failed,
      report.tests.failed + report.tests.passed, first), 'EPOLICY')
  end
  report.ok = true
  return report, { pool = p, info = info, report = report }
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
--- limits), required (hooks every policy loaded here must define, e.g. { 'on_auth' }),
--- workers (worker processes deciding in parallel, default 2), tests_time_limit_ms (total
--- deadline of a policy's self-tests at load, default 2000), grace_ms and queue_timeout_ms
--- (see moonstack.policy.pool).
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= 'table' then
    error('policy.new: opts must be a table', 2)
  end
  local workers = opts.workers or M.DEFAULT_WORKERS
  if type(workers) ~= 'number' or workers % 1 ~= 0 or workers < 1 or workers > pool.MAX_WORKERS then
    error(('policy.new: workers must be an integer in [1, %d]'):format(pool.MAX_WORKERS), 2)
  end
  return setmetatable({
    label = opts.name or 'policy',
    limits = opts.limits,
    required = opts.required,
    pool_size = workers,
    tests_time_limit_ms = opts.tests_time_limit_ms,
    grace_ms = opts.grace_ms,
    queue_timeout_ms = opts.queue_timeout_ms,
    current = nil,
    path = nil,
    loading = false,
    load_waiters = {},
    epoch = 0, -- counts close() calls: a load that outlives a close() is dropped
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

-- One load at a time: a later load waits for the one in progress, so the last one wins.
local function locked(self, fn, ...)
  while self.loading do
    task.await(function(resume)
      self.load_waiters[#self.load_waiters + 1] = resume
    end)
  end
  self.loading = true
  local r = { n = select('#', ...) + 1, pcall(fn, ...) }
  self.loading = false
  local waiters = self.load_waiters
  self.load_waiters = {}
  for _, resume in ipairs(waiters) do
    resume()
  end
  if not r[1] then
    error(r[2], 0)
  end
  return unpack(r, 2, 4)
end

local function load_string(self, source, chunkname, path)
  local epoch = self.epoch
  local report, cand = M.check(source, chunkname, { limits = self.limits, required = self.required,
    tests_time_limit_ms = self.tests_time_limit_ms, grace_ms = self.grace_ms })
  for _, line in ipairs(report.output) do
    log.info(line, { policy = report.name, host = self.label })
  end
  if cand and epoch ~= self.epoch then
    cand.pool:close()
    return fail('ECANCELED', 'the policy host was closed during the load')
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
  cand.pool.label = self.label
  cand.pool.queue_timeout_ms = self.queue_timeout_ms or cand.pool.queue_timeout_ms
  cand.pool:grow(self.pool_size)
  local old = self.current
  self.current = cand
  if path then
    self.path = path
  end
  if old then
    old.pool:retire() -- its decisions in flight finish with the old policy
  end
  log.info('policy loaded', {
    what = 'policy', host = self.label, ok = true, name = report.name, version = report.version,
    sha256 = report.sha256, path = path, tests = report.tests.passed, workers = self.pool_size,
  })
  events.publish('policy.reload', { host = self.label, ok = true, name = report.name,
    version = report.version, sha256 = report.sha256, path = path, tests = report.tests.passed })
  return summary(cand)
end

--- Compile, validate and self-test `source` in a worker; on success make it the active policy
--- (the previous policy's workers end once their decisions in flight are done), on failure
--- keep the previous one. Call from a task. Returns the active policy's summary { name,
--- version, sha256, path, hooks, tests, loaded_at }, or nil, message, code.
function Host:load_string(source, chunkname, path)
  if type(source) ~= 'string' then
    error('host:load_string: source must be a string', 2)
  end
  return locked(self, load_string, self, source, chunkname, path)
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

local function deny(self, hook, reason, err, code, dry)
  if dry then
    return { allow = false, reason = reason }, err, code
  end
  self.stats.errors = self.stats.errors + 1
  self.stats.denied = self.stats.denied + 1
  local cur = self.current
  log.warn('policy failed; denying', {
    host = self.label, hook = hook, code = code, error = err,
    policy = cur and cur.report.name or nil, sha256 = cur and cur.report.sha256 or nil,
  })
  return { allow = false, reason = reason }, err, code
end

-- decide() and try(): with `dry`, nothing is counted or logged and the policy's output is
-- returned as a fourth value instead of logged.
local function decide(self, hook, input, dry)
  if type(hook) ~= 'string' or not schema.hooks[hook] then
    error(('host:decide: unknown hook %s (known: %s)'):format(show(hook),
      table.concat(schema.hook_names(), ', ')), 3)
  end
  if input ~= nil and type(input) ~= 'table' then
    error('host:decide: input must be a table', 3)
  end
  if not dry then
    self.stats.decisions = self.stats.decisions + 1
  end
  local cur = self.current
  if not cur then
    return deny(self, hook, 'no policy is loaded', 'ENOENT: no policy is loaded', 'ENOENT', dry)
  end
  if not cur.info.hooks[hook] then
    local msg = ('policy %s has no %s hook'):format(cur.report.name, hook)
    return deny(self, hook, msg, 'ENOENT: ' .. msg, 'ENOENT', dry)
  end
  local decision, err, code, output = cur.pool:call(hook, input or {})
  if not decision and self.current ~= cur and self.current and self.current.info.hooks[hook] then
    -- the policy was replaced while this call waited (its pool closed under it): the new one
    -- decides
    cur = self.current
    decision, err, code, output = cur.pool:call(hook, input or {})
  end
  local printed = (decision and err or output) or {}
  if not dry then
    for _, line in ipairs(printed) do
      log.info(line, { policy = cur.report.name })
    end
  end
  if not decision then
    local d, derr, dcode = deny(self, hook, ('policy %s failed (%s)'):format(cur.report.name,
      code), err, code, dry)
    return d, derr, dcode, dry and printed or nil
  end
  local ok, verr = schema.check_decision(hook, decision)
  if not ok then
    local d, derr, dcode = deny(self, hook, ('policy %s returned an invalid decision'):format(
      cur.report.name), 'EINVAL: ' .. verr, 'EINVAL', dry)
    return d, derr, dcode, dry and printed or nil
  end
  if dry then
    return decision, nil, nil, printed
  end
  if decision.allow then
    self.stats.allowed = self.stats.allowed + 1
  else
    self.stats.denied = self.stats.denied + 1
  end
  return decision
end

--- Ask the active policy's `hook` about `input` (a table, copied into a policy worker). Call
--- from a task. Always returns a valid decision table. When the policy could not answer (none
--- loaded, no such hook, an error, a timeout, a crash, an invalid answer) the decision is
--- { allow = false, reason = ... } and the message and code of the failure follow it.
function Host:decide(hook, input)
  return decide(self, hook, input, false)
end

--- decide() as a dry run (an operator trying the policy out): nothing is counted or logged.
--- Returns the decision, the failure's message and code (or nil, nil) and what the policy
--- printed (a list of lines).
function Host:try(hook, input)
  return decide(self, hook, input, true)
end

--- The active policy's workers: { size, live, idle, queued, spawned, crashes, kills, pids },
--- or nil when no policy is loaded.
function Host:workers()
  return self.current and self.current.pool:status() or nil
end

--- Kill the active policy's workers; the host then denies everything until a new load.
function Host:close()
  self.epoch = self.epoch + 1
  if self.current then
    self.current.pool:close()
    self.current = nil
  end
end

return M
