-- SPDX-License-Identifier: Apache-2.0
-- The contract of moonstack.native.policyvm: misuse raises naming the function, failures
-- return nil, "CODE: message", CODE, values cross as copies, close is idempotent.
local pvm = require('moonstack.native.policyvm')

local POLICY = [[
local calls = 0
return {
  name = 'echo',
  version = 2,
  on_auth = function(input)
    calls = calls + 1
    if input.mode == 'error' then error('boom') end
    if input.mode == 'loop' then while true do end end
    if input.mode == 'number' then return 42 end
    if input.mode == 'function' then return { f = function() end } end
    if input.mode == 'mutate' then input.added = true return input end
    if input.mode == 'print' then print('hello', input.n) return {} end
    return { allow = true, echo = input, calls = calls }
  end,
  tests = { { hook = 'on_auth', input = { a = 1 }, expect = { allow = true } } },
}
]]

local function loaded(opts)
  local vm = assert(pvm.new(opts))
  assert(vm:load(POLICY, '@echo.lua'))
  return vm
end

describe('moonstack.native.policyvm', function()
  it('exposes new, sha256 and the default limits', function()
    assert.is_function(pvm.new)
    assert.is_function(pvm.sha256)
    assert.is_function(pvm.open_count)
    assert.same({
      memory_limit = 16 * 1024 * 1024,
      instruction_limit = 10000000,
      time_limit_ms = 50,
      max_depth = 32,
      max_items = 10000,
      max_string = 1024 * 1024,
      max_bytes = 4 * 1024 * 1024,
    }, pvm.defaults)
  end)

  it('hashes with SHA-256 (lowercase hex)', function()
    assert.equal('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', pvm.sha256('abc'))
    assert.equal('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', pvm.sha256(''))
    assert.has_error(function() pvm.sha256() end)
  end)

  describe('new', function()
    it('applies options and defaults', function()
      local vm = pvm.new({ memory_limit = 1048576, instruction_limit = 5000, time_limit_ms = 20,
        max_depth = 4, max_items = 100, max_string = 64 })
      local l = vm:limits()
      assert.equal(1048576, l.memory_limit)
      assert.equal(5000, l.instruction_limit)
      assert.equal(20, l.time_limit_ms)
      assert.equal(4, l.max_depth)
      assert.equal(100, l.max_items)
      assert.equal(64, l.max_string)
      local used, limit, peak = vm:memory()
      assert.equal(1048576, limit)
      assert.is_true(used > 0 and used < limit)
      assert.is_true(peak >= used)
      vm:close()
      assert.same(pvm.defaults.time_limit_ms, pvm.new():limits().time_limit_ms)
    end)

    it('raises on misuse, naming the function', function()
      assert.has_error(function() pvm.new('x') end)
      assert.has_error(function() pvm.new({ memory_limit = 1 }) end,
        "policyvm.new: option 'memory_limit' must be an integer in [131072, 17179869184]")
      assert.has_error(function() pvm.new({ time_limit_ms = 1.5 }) end,
        "policyvm.new: option 'time_limit_ms' must be an integer in [1, 3600000]")
      assert.has_error(function() pvm.new({ max_depth = 65 }) end)
      assert.has_error(function() pvm.new({ instruction_limit = '5' }) end)
      assert.has_error(function() pvm.new({ memry_limit = 5 }) end,
        "policyvm.new: unknown option 'memry_limit'")
    end)
  end)

  describe('vm:load', function()
    it('returns the policy fields (copied) and its hooks', function()
      local vm = pvm.new()
      local info = assert(vm:load(POLICY, '@echo.lua'))
      assert.same({ on_auth = true }, info.hooks)
      assert.equal('echo', info.fields.name)
      assert.equal(2, info.fields.version)
      assert.same({ { hook = 'on_auth', input = { a = 1 }, expect = { allow = true } } }, info.fields.tests)
      assert.is_true(vm:loaded())
      assert.same(info, vm:info())
      vm:close()
    end)

    it('returns nil, message, code on failure', function()
      local vm = pvm.new()
      local ok, err, code = vm:load('return {', '@broken.lua')
      assert.is_nil(ok)
      assert.equal('EPOLICY', code)
      assert.matches('^EPOLICY: broken.lua:1: ', err)
      assert.is_false(vm:loaded())

      ok, err, code = vm:load('return 1')
      assert.is_nil(ok)
      assert.equal('EPOLICY', code)
      assert.matches('must return a table', err)

      ok, err, code = vm:load(string.dump(function() return {} end))
      assert.is_nil(ok)
      assert.equal('EINVAL', code)
      assert.matches('^EINVAL: bytecode is not allowed', err)

      ok, err, code = vm:load('return { name = "x", tests = { { f = function() end } } }')
      assert.is_nil(ok)
      assert.equal('EINVAL', code)
      assert.matches('policy.tests%[1%].f: a function value cannot be copied', err)
      assert.is_false(vm:loaded()) -- a policy that cannot be described is not kept

      assert.truthy(vm:load('return { on_auth = function() return {} end }'))
      vm:close()
    end)

    it('raises on misuse', function()
      local vm = pvm.new()
      assert.has_error(function() vm:load() end)
      assert.has_error(function() vm:load({}) end)
      assert.has_error(function() pvm.new().load(io.stdout, 'return {}') end)
      assert(vm:load('return {}'))
      assert.has_error(function() vm:load('return {}') end,
        'vm:load: a policy is already loaded (use a new VM)')
      vm:close()
      assert.has_error(function() vm:load('return {}') end, 'vm:load: the policy VM is closed')
    end)
  end)

  describe('vm:call', function()
    it('passes a copy in and returns a copy out', function()
      local vm = loaded()
      local input = { n = 1, list = { 'a', 'b' }, nested = { deep = { x = true } } }
      local r = assert(vm:call('on_auth', input))
      assert.is_true(r.allow)
      assert.same(input, r.echo)
      assert.are_not.equal(input, r.echo)
      assert.equal(1, r.calls)
      -- the policy changing its copy does not change ours
      local mine = { mode = 'mutate' }
      r = assert(vm:call('on_auth', mine))
      assert.is_true(r.added)
      assert.is_nil(mine.added)
      -- no input is an empty table
      r = assert(vm:call('on_auth'))
      assert.same({}, r.echo)
      assert.equal(3, r.calls) -- the policy's own state lives on between calls
      vm:close()
    end)

    it('returns nil, message, code on failure', function()
      local vm = loaded()
      local function check(input, code, pattern, hook)
        local r, err, c = vm:call(hook or 'on_auth', input)
        assert.is_nil(r)
        assert.equal(code, c)
        assert.equal(code, err:match('^(E%u+): '))
        assert.matches(pattern, err)
      end
      check({ mode = 'error' }, 'EPOLICY', 'echo.lua:7: boom')
      check({ mode = 'loop' }, 'ETIMEDOUT', 'exceeded')
      check({ mode = 'number' }, 'EPOLICY', "hook 'on_auth' returned number, not a table")
      check({ mode = 'function' }, 'EINVAL', 'result.f: a function value cannot be copied')
      check({ f = print }, 'EINVAL', 'input.f: a function value cannot be copied')
      check({ co = coroutine.create(print) }, 'EINVAL', 'input.co: a thread value')
      check({ s = io.stdout }, 'EINVAL', 'input.s: a userdata value')
      check({}, 'ENOENT', "the policy has no hook 'on_route'", 'on_route')
      local cyclic = {}
      cyclic.self = cyclic
      check(cyclic, 'EINVAL', 'input.self: the table contains itself')
      -- still usable after each failure
      assert.is_true(assert(vm:call('on_auth', {})).allow)
      vm:close()
    end)

    it('enforces the copy limits', function()
      local vm = pvm.new({ max_depth = 3, max_items = 5, max_string = 4 })
      assert(vm:load('return { on_auth = function(input) return input end }'))
      local r, err, code = vm:call('on_auth', { a = { b = { c = {} } } })
      assert.is_nil(r)
      assert.equal('EINVAL', code)
      assert.matches('input.a.b.c: tables nested deeper than 3 levels', err)
      r, err = vm:call('on_auth', { 1, 2, 3, 4, 5, 6 })
      assert.is_nil(r)
      assert.matches('more than 5 table entries', err)
      r, err = vm:call('on_auth', { s = 'hello' })
      assert.is_nil(r)
      assert.matches('input.s: a string of 5 bytes exceeds the limit of 4', err)
      vm:close()
    end)

    it('raises on misuse', function()
      local vm = pvm.new()
      assert.has_error(function() vm:call('on_auth', {}) end, 'vm:call: no policy is loaded')
      assert(vm:load(POLICY))
      assert.has_error(function() vm:call() end)
      assert.has_error(function() vm:call('on_auth', 'input') end)
      assert.has_error(function() vm:call('on_auth', 5) end)
      vm:close()
      assert.has_error(function() vm:call('on_auth', {}) end, 'vm:call: the policy VM is closed')
    end)
  end)

  it('captures what the policy prints', function()
    local vm = loaded()
    assert(vm:call('on_auth', { mode = 'print', n = 7 }))
    local lines, dropped = vm:logs()
    assert.same({ 'hello\t7' }, lines)
    assert.equal(0, dropped)
    assert.same({}, (vm:logs()))
    vm:close()
  end)

  it('closes idempotently, and __tostring tells the state', function()
    local vm = pvm.new()
    assert.matches('^moonstack.policyvm.VM %(empty, %d+ KiB%)', tostring(vm))
    assert(vm:load('return {}'))
    assert.matches('^moonstack.policyvm.VM %(loaded', tostring(vm))
    vm:close()
    vm:close()
    assert.matches('^moonstack.policyvm.VM %(closed%)', tostring(vm))
    for _, m in ipairs({ 'memory', 'limits', 'logs', 'loaded', 'info' }) do
      assert.has_error(function() vm[m](vm) end, ('vm:%s: the policy VM is closed'):format(m))
    end
    assert.has_error(function() vm.close({}) end)
  end)

  it('frees VMs that are never closed when they are collected', function()
    collectgarbage()
    local before = pvm.open_count()
    local closed = pvm.new()
    assert.equal(before + 1, pvm.open_count())
    closed:close()
    assert.equal(before, pvm.open_count())
    for _ = 1, 20 do
      local vm = pvm.new()
      assert(vm:load(POLICY))
      assert(vm:call('on_auth', { n = 1 }))
    end
    assert.equal(before + 20, pvm.open_count())
    collectgarbage()
    collectgarbage()
    assert.equal(before, pvm.open_count())
  end)
end)
