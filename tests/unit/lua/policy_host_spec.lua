-- SPDX-License-Identifier: Apache-2.0
-- moonstack.policy.host and moonstack.policy.schema: load, validate, self-test, swap only on
-- success (a failed reload keeps the previous policy), and decide() that denies on failure.
-- The host waits on its policy worker processes, so every case runs in a task.
local host = require('moonstack.policy.host')
local schema = require('moonstack.policy.schema')
local log = require('moonstack.core.log')
local pvm = require('moonstack.native.policyvm')
local task = require('moonstack.core.task')
local hostile = require('hostile_policies')
local loop = require('loop')
local uv = require('luv')

local function in_task(fn)
  return function()
    loop.run_task(fn, 30000)
  end
end

-- Whether process `pid` is gone (or a zombie, i.e. exited and not yet reaped).
local function gone(pid)
  local f = io.open(('/proc/%d/stat'):format(pid))
  if not f then
    return true
  end
  local stat = f:read('*a')
  f:close()
  return stat:match('^%d+ %b() (%a)') == 'Z'
end

local function wait_gone(pids)
  for _ = 1, 200 do
    local all = true
    for _, pid in ipairs(pids) do
      all = all and gone(pid)
    end
    if all then
      return true
    end
    task.sleep(10)
  end
  return false
end

-- A policy allowing the apps in `apps` (a list of ids), at `version`, with tests.
local function allow_list(version, apps, extra)
  local set = {}
  for _, a in ipairs(apps) do
    set[#set + 1] = ('[%q] = true'):format(a)
  end
  return ([[
local APPS = { %s }
return {
  name = 'allow-list',
  version = %q,
  on_auth = function(boot)
    if APPS[boot.appId] then return { allow = true, gateway_app_id = 'any' } end
    return { allow = false, reason = 'unknown app' }
  end,
  tests = {
    { name = 'first app', hook = 'on_auth', input = { appId = %q }, expect = { allow = true } },
    { hook = 'on_auth', input = { appId = 'nobody' }, expect = { allow = false, reason = 'unknown app' } },
  },
  %s
}
]]):format(table.concat(set, ', '), version, apps[1], extra or '')
end

local function tmpdir()
  local base = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
  uv.fs_mkdir(base, 493)
  return assert(uv.fs_mkdtemp(base .. '/policy-host-XXXXXX'))
end

local function write(path, text)
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
end

describe('moonstack.policy.host', function()
  local level
  setup(function()
    level = log.level()
    log.set_level('error')
  end)
  teardown(function()
    log.set_level(level)
  end)

  describe('check', function()
    it('reports name, version, hash, hooks and test results', in_task(function()
      local src = allow_list('1.0', { 'app1' })
      local report, cand = host.check(src, '=p')
      assert.is_true(report.ok, report.error)
      assert.equal('allow-list', report.name)
      assert.equal('1.0', report.version)
      assert.equal(pvm.sha256(src), report.sha256)
      assert.same({ 'on_auth' }, report.hooks)
      assert.equal(2, report.tests.passed)
      assert.equal(0, report.tests.failed)
      assert.equal('first app', report.tests.results[1].name)
      assert.equal('#2', report.tests.results[2].name)
      assert.equal(1, cand.pool:status().live)
      cand.pool:close()
    end))

    it('fails on failing tests, naming the test and the difference', in_task(function()
      local src = allow_list('1', { 'app1' },
        "tests = { { hook = 'on_auth', input = { appId = 'app1' }, expect = { allow = false } } },")
      -- a second `tests` key: Lua keeps the last one
      local report, cand = host.check(src, '=p')
      assert.is_false(report.ok)
      assert.is_nil(cand)
      assert.equal('EPOLICY', report.code)
      assert.equal(1, report.tests.failed)
      assert.equal('expected allow = false, got true', report.tests.results[1].message)
      assert.matches('1 of 1 policy tests failed', report.error)
    end))

    it('counts a hook error or an invalid decision as a failed test', in_task(function()
      local report = host.check([[return { name = 'p', version = 1,
        on_auth = function(i) if i.boom then error('kaput') end return { allow = 'yes' } end,
        tests = { { hook = 'on_auth', input = { boom = true }, expect = { allow = false } },
                  { hook = 'on_auth', expect = { allow = false } } } }]], '=p')
      assert.is_false(report.ok)
      assert.equal(2, report.tests.failed)
      assert.matches('^EPOLICY: p:2: kaput', report.tests.results[1].message)
      assert.matches('^invalid decision: on_auth decision field allow must be a boolean',
        report.tests.results[2].message)
    end))

    it('validates the policy shape, naming the field', in_task(function()
      local H = "return { name = 'p', version = 1, on_auth = function() end, "
      local cases = {
        { 'return { version = 1, on_auth = function() end }', 'missing the required field name' },
        { "return { name = 'p', on_auth = function() end }", 'missing the required field version' },
        { "return { name = '', version = 1, on_auth = function() end }", 'name must not be empty' },
        { "return { name = 1, version = 1, on_auth = function() end }",
          'name must be a string, not number' },
        { "return { name = 'p', version = true, on_auth = function() end }",
          'version must be a number or string' },
        { "return { name = 'p', version = 1 }", 'defines no hook' },
        { "return { name = 'p', version = 1, on_auth = true }", 'on_auth must be a function' },
        { "return { name = 'p', version = 1, on_atuh = function() end }", "unknown hook 'on_atuh'" },
        { H .. 'extra = 1 }', "unknown field 'extra'" },
        { H .. "tests = 'x' }", 'tests must be a table' },
        { H .. 'tests = { x = {} } }', 'tests must be a list' },
        { H .. 'tests = { { expect = {} } } }', 'tests%[1%].hook is required' },
        { H .. "tests = { { hook = 'on_route', expect = {} } } }",
          "hook 'on_route' is not a hook of this policy" },
        { H .. "tests = { { hook = 'on_auth' } } }", 'tests%[1%].expect is required' },
        { H .. "tests = { { hook = 'on_auth', expect = { allow = 'yes' } } } }",
          'tests%[1%].expect.allow must be a boolean' },
        { H .. "tests = { { hook = 'on_auth', expect = { backend = 'b' } } } }",
          "unknown field 'backend' for on_auth" },
        { H .. "tests = { { hook = 'on_auth', expect = {}, inptu = {} } } }",
          "tests%[1%] has unknown field 'inptu'" },
      }
      for _, case in ipairs(cases) do
        local report = host.check(case[1], '=p')
        assert.is_false(report.ok, case[1])
        assert.equal('EINVAL', report.code, case[1])
        assert.matches(case[2], report.error)
      end
    end))

    it('requires the hooks a host needs', in_task(function()
      local src = "return { name = 'r', version = 1, on_route = function() return { allow = true } end }"
      assert.is_true(host.check(src).ok)
      local report = host.check(src, '=p', { required = { 'on_auth' } })
      assert.is_false(report.ok)
      assert.matches('must define the hook on_auth', report.error)
    end))

    it('reads files, and reports unreadable ones', in_task(function()
      local dir = tmpdir()
      write(dir .. '/p.lua', allow_list('1', { 'a' }))
      local report = assert(host.check_file(dir .. '/p.lua'))
      assert.is_true(report.ok)
      assert.equal('@' .. dir .. '/p.lua', report.chunkname)
      local ok, err, code = host.check_file(dir .. '/missing.lua')
      assert.is_nil(ok)
      assert.equal('ENOENT', code)
      assert.matches('^ENOENT: ', err)
      write(dir .. '/big.lua', ('-'):rep(host.MAX_SOURCE + 1))
      ok, err, code = host.check_file(dir .. '/big.lua')
      assert.is_nil(ok)
      assert.equal('ETOOBIG', code)
      assert.matches('larger than', err)
      assert.has_error(function() host.check(nil) end)
      os.remove(dir .. '/p.lua')
      os.remove(dir .. '/big.lua')
      uv.fs_rmdir(dir)
    end))
  end)

  describe('load and reload', function()
    it('swaps in a good policy and keeps the old one when the new one fails', in_task(function()
      local h = host.new({ name = 'spec' })
      local v1 = allow_list('1', { 'app1' })
      local active = assert(h:load_string(v1, '=v1'))
      assert.equal('1', active.version)
      assert.equal(pvm.sha256(v1), active.sha256)
      assert.is_true(h:decide('on_auth', { appId = 'app1' }).allow)

      local bad = {
        compile = 'return {',
        validation = "return { name = 'x', version = 2, on_auth = 5 }",
        tests = allow_list('2', { 'app2' },
          "tests = { { hook = 'on_auth', input = {}, expect = { allow = true } } },"),
        timeout = 'while true do end',
        ['runtime error'] = "error('no')",
        bytecode = string.dump(function() return {} end),
        memory = "local t = {} for i = 1, 1e9 do t[i] = ('m'):rep(1e6) .. i end",
      }
      for what, src in pairs(bad) do
        local ok, err, code = h:load_string(src, '=bad')
        assert.is_nil(ok, what)
        assert.is_string(err, what)
        assert.is_string(code, what)
        assert.equal(pvm.sha256(v1), h:active().sha256, what)
        assert.is_true(h:decide('on_auth', { appId = 'app1' }).allow, what)
      end
      assert.equal(8, h.stats.reloads)
      assert.equal(7, h.stats.reload_failures)

      assert(h:load_string(allow_list('3', { 'app3' }), '=v3'))
      assert.equal('3', h:active().version)
      assert.is_false(h:decide('on_auth', { appId = 'app1' }).allow)
      assert.is_true(h:decide('on_auth', { appId = 'app3' }).allow)
      h:close()
    end))

    it('keeps the old policy when a new one crashes or stalls its worker, at load or in its tests',
      in_task(function()
        local h = host.new({ name = 'spec' })
        local v1 = allow_list('1', { 'app1' })
        assert(h:load_string(v1, '=v1'))
        for _, case in ipairs(hostile.loads) do
          local t0 = uv.hrtime()
          local ok, err, code = h:load_string(case.source, '=bad')
          local ms = (uv.hrtime() - t0) / 1e6
          assert.is_nil(ok, case.name)
          assert.is_true(case.codes[code] ~= nil,
            ('%s: %s %s'):format(case.name, tostring(code), tostring(err)))
          if case.pattern then
            assert.matches(case.pattern, err)
          end
          -- bounded by the tests' total deadline (2 s) plus one call's
          assert.is_true(ms < 4000, ('%s: refused after %.1f ms'):format(case.name, ms))
          assert.equal(pvm.sha256(v1), h:active().sha256, case.name)
          assert.is_true(h:decide('on_auth', { appId = 'app1' }).allow, case.name)
        end
        h:close()
      end))

    it('ends the workers of the policy it replaces, and kills them all on close', in_task(function()
      local h = host.new({ workers = 2 })
      assert(h:load_string(allow_list('1', { 'a' })))
      assert.is_true(h:decide('on_auth', { appId = 'a' }).allow)
      local function two_workers() -- the second worker starts in the background
        for _ = 1, 100 do
          local w = h:workers()
          if w and #w.pids == 2 then
            return w
          end
          task.sleep(20)
        end
        return h:workers()
      end
      local v1 = two_workers()
      assert.equal(2, v1.size)
      assert.equal(2, #v1.pids)
      assert(h:load_string(allow_list('2', { 'a' })))
      assert.is_true(wait_gone(v1.pids), 'the workers of v1 exited')
      assert.is_nil(h:load_string('return {'))
      local v2 = two_workers()
      assert.equal(2, #v2.pids)
      h:close()
      assert.is_nil(h:workers())
      assert.is_true(wait_gone(v2.pids), 'close() killed the workers of v2')
    end))

    it('reloads its file; a broken or missing file keeps the old policy', in_task(function()
      local dir = tmpdir()
      local path = dir .. '/auth.lua'
      local h = host.new()
      local ok, _, code = h:reload()
      assert.is_nil(ok)
      assert.equal('ENOENT', code)

      write(path, allow_list('1', { 'app1' }))
      local active = assert(h:load_file(path))
      assert.equal(path, active.path)
      assert.equal('1', active.version)

      write(path, allow_list('2', { 'app2' }))
      active = assert(h:reload())
      assert.equal('2', active.version)
      assert.is_true(h:decide('on_auth', { appId = 'app2' }).allow)

      write(path, 'return { name = ')
      ok, _, code = h:reload()
      assert.is_nil(ok)
      assert.equal('EPOLICY', code)
      assert.equal('2', h:active().version)

      os.remove(path)
      ok, _, code = h:reload()
      assert.is_nil(ok)
      assert.equal('ENOENT', code)
      assert.equal('2', h:active().version)
      assert.is_true(h:decide('on_auth', { appId = 'app2' }).allow)

      -- a failed load of another file does not change which file reload() reads
      assert.is_nil(h:load_file(dir .. '/other.lua'))
      write(path, allow_list('4', { 'app4' }))
      assert.equal('4', assert(h:reload()).version)
      assert.equal(path, h:active().path)
      h:close()
      os.remove(path)
      uv.fs_rmdir(dir)
    end))
  end)

  describe('decide', function()
    local h
    before_each(function()
      h = host.new()
    end)
    after_each(function()
      h:close()
    end)

    it('denies when no policy is loaded', in_task(function()
      local d, err, code = h:decide('on_auth', {})
      assert.same({ allow = false, reason = 'no policy is loaded' }, d)
      assert.equal('ENOENT', code)
      assert.matches('^ENOENT', err)
    end))

    it('denies when the policy lacks the hook', in_task(function()
      assert(h:load_string(allow_list('1', { 'a' })))
      local d, _, code = h:decide('on_route', { app_id = 'a' })
      assert.is_false(d.allow)
      assert.equal('policy allow-list has no on_route hook', d.reason)
      assert.equal('ENOENT', code)
    end))

    it('denies on an error, a timeout or an invalid answer, and says why', in_task(function()
      assert(h:load_string([[return { name = 'flaky', version = 1, on_auth = function(i)
        if i.mode == 'error' then error('oops') end
        if i.mode == 'loop' then while true do end end
        if i.mode == 'bad' then return { allow = 'yes' } end
        if i.mode == 'extra' then return { allow = true, backend = 'x' } end
        if i.mode == 'long' then return { allow = true, reason = ('r'):rep(2000) } end
        return { allow = true, reason = 'fine' }
      end }]], '=flaky'))
      local cases = {
        error = { 'EPOLICY', 'policy flaky failed %(EPOLICY%)', 'flaky:2: oops' },
        loop = { 'ETIMEDOUT', 'policy flaky failed %(ETIMEDOUT%)', 'exceeded' },
        bad = { 'EINVAL', 'policy flaky returned an invalid decision', 'allow must be a boolean' },
        extra = { 'EINVAL', 'invalid decision', "unknown field 'backend'" },
        long = { 'EINVAL', 'invalid decision', 'reason is longer than 1024 bytes' },
      }
      for mode, want in pairs(cases) do
        local d, err, code = h:decide('on_auth', { mode = mode })
        assert.is_false(d.allow, mode)
        assert.equal(want[1], code, mode)
        assert.matches(want[2], d.reason)
        assert.matches(want[3], err)
        assert.is_nil(next(d, next(d, next(d)))) -- only allow and reason
      end
      local d, err = h:decide('on_auth', {})
      assert.is_nil(err)
      assert.same({ allow = true, reason = 'fine' }, d)
      assert.equal(6, h.stats.decisions)
      assert.equal(1, h.stats.allowed)
      assert.equal(5, h.stats.denied)
      assert.equal(5, h.stats.errors)
    end))

    it('raises on misuse', in_task(function()
      assert.has_error(function() h:decide('on_nothing', {}) end)
      assert.has_error(function() h:decide(nil, {}) end)
      assert.has_error(function() h:decide('on_auth', 'input') end)
      assert.has_error(function() h:load_string(nil) end)
      assert.has_error(function() h:load_file(5) end)
      assert.has_error(function() host.new('x') end)
    end))
  end)
end)

describe('moonstack.policy.schema', function()
  it('checks decisions against the hook table', in_task(function()
    assert.is_true(schema.check_decision('on_auth', { allow = true, reason = 'r', gateway_app_id = 'g' }))
    assert.is_true(schema.check_decision('on_route', { allow = false, backend = 'b' }))
    assert.is_nil(schema.check_decision('on_route', { allow = true, gateway_app_id = 'g' }))
    assert.is_nil(schema.check_decision('on_auth', { allow = true, reason = 'a\0b' }))
    assert.is_nil(schema.check_decision('on_x', { allow = true }))
    assert.is_nil(schema.check_decision('on_auth', 'allow'))
  end))

  it('lets components register new hooks', in_task(function()
    assert.has_error(function() schema.add_hook('on_auth', { decision = {} }) end)
    assert.has_error(function() schema.add_hook('check', { decision = {} }) end)
    assert.has_error(function() schema.add_hook('on_y', { decision = { f = { type = 'table' } } }) end)
    schema.add_hook('on_spec_test', { summary = 'spec', decision = {
      allow = { type = 'boolean', required = true }, weight = { type = 'number' } } })
    finally(function() schema.hooks.on_spec_test = nil end)
    local h = host.new()
    assert(h:load_string([[return { name = 'w', version = 1,
      on_spec_test = function(i) return { allow = true, weight = i.w * 2 } end,
      tests = { { hook = 'on_spec_test', input = { w = 2 }, expect = { weight = 4 } } } }]]))
    assert.same({ allow = true, weight = 6 }, h:decide('on_spec_test', { w = 3 }))
    h:close()
  end))
end)
