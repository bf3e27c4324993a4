-- SPDX-License-Identifier: Apache-2.0
-- The policy sandbox: every escape attempt ends in a deny. Each case is a real policy loaded
-- through the policy host (moonstack.policy.host) into real policy workers; the hook tries the
-- escape and the host's decision must be { allow = false } with the failure code. Escapes
-- tried while the policy file loads must make the load fail instead. What the VM alone cannot
-- stop (crashes inside LuaJIT, C calls that run for minutes: tests/helpers/hostile_policies.lua)
-- ends in a deny within the deadline while this process's loop keeps turning.
local host = require('moonstack.policy.host')
local log = require('moonstack.core.log')
local hostile = require('hostile_policies')
local loop = require('loop')
local uv = require('luv')

-- The host waits on its policy worker processes: every case runs in a task.
local function in_task(fn)
  return function()
    loop.run_task(fn, 60000)
  end
end

local function policy_with(body)
  return ([[
return {
  name = 'escape',
  version = 1,
  on_auth = function(input)
    %s
    return { allow = true, reason = 'escaped' }
  end,
}
]]):format(body)
end

-- Load `body` as an on_auth hook and ask for a decision; returns decision, err, code, ms.
local function decide_with(body, limits)
  local h = host.new({ name = 'sandbox-spec', limits = limits })
  assert(h:load_string(policy_with(body), '=escape'))
  local t0 = uv.hrtime()
  local decision, err, code = h:decide('on_auth', { appId = 'aa' })
  local ms = (uv.hrtime() - t0) / 1e6
  h:close()
  return decision, err, code, ms
end

local function assert_denied(body, code, pattern, limits)
  local decision, err, c, ms = decide_with(body, limits)
  assert.is_false(decision.allow, body)
  assert.is_string(decision.reason)
  assert.equal(code, c, ('%s: %s'):format(body, tostring(err)))
  if pattern then
    assert.matches(pattern, err)
  end
  return ms
end

describe('policy sandbox', function()
  local level
  setup(function()
    level = log.level()
    log.set_level('error') -- the denies below are expected; keep the output readable
  end)
  teardown(function()
    log.set_level(level)
  end)

  it('allows a well-behaved policy (the harness can tell allow from deny)', in_task(function()
    local decision, err = decide_with('local x = string.upper("a") .. math.floor(1.5)')
    assert.is_nil(err)
    assert.same({ allow = true, reason = 'escaped' }, decision)
  end))

  describe('denies access outside the sandbox:', function()
    local cases = {
      { 'io', "io.open('/etc/passwd')", "global 'io'" },
      { 'io via _G', "_G.io.write('x')", "field 'io'" },
      { 'os', "os.execute('true')", "global 'os'" },
      { 'os.exit', 'os.exit(0)', "global 'os'" },
      { 'require', "require('io')", "global 'require'" },
      { 'package', "package.loaded.io.write('x')", "global 'package'" },
      { 'ffi', "local ffi = require('ffi') ffi.C.exit(0)", "global 'require'" },
      { 'ffi global', 'ffi.cdef("int x;")', "global 'ffi'" },
      { 'debug', 'debug.sethook()', "global 'debug'" },
      { 'jit', 'jit.on()', "global 'jit'" },
      { 'string.dump', 'string.dump(function() end)', "field 'dump'" },
      { 'string.dump via a string method', '("").dump(print)', "field 'dump'" },
      { 'the real string table', "getmetatable('').__index.dump(print)", 'index a boolean value' },
      { 'load', "load('return 1')", "global 'load'" },
      { 'loadstring', "loadstring('return 1')", "global 'loadstring'" },
      { 'dofile', "dofile('/etc/passwd')", "global 'dofile'" },
      { 'loadfile', "loadfile('/etc/passwd')", "global 'loadfile'" },
      { 'setfenv', 'setfenv(1, {})', "global 'setfenv'" },
      { 'getfenv', 'getfenv(1).x = 1', "global 'getfenv'" },
      { 'collectgarbage', "collectgarbage('stop')", "global 'collectgarbage'" },
      { 'newproxy', 'newproxy(true)', "global 'newproxy'" },
      { 'coroutine', 'coroutine.wrap(print)()', "global 'coroutine'" },
      { 'module', "module('x')", "global 'module'" },
    }
    for _, case in ipairs(cases) do
      it(case[1], in_task(function()
        assert_denied(case[2], 'EPOLICY', case[3])
      end))
    end
  end)

  describe('denies bytecode:', function()
    it('a string.dump result passed to load or loadstring', in_task(function()
      assert_denied('local f = load or loadstring f(string.dump(print))()', 'EPOLICY', "field 'dump'")
      assert_denied('local f = load or loadstring f(("").dump(print))()', 'EPOLICY', "field 'dump'")
    end))

    it('a literal "\\27LJ" chunk', in_task(function()
      assert_denied([[local f = loadstring or load f('\27LJ\2')()]], 'EPOLICY', "local 'f'")
    end))

    it('a policy file that is bytecode, from string.dump or "\\27LJ"', in_task(function()
      local h = host.new()
      local src = string.dump(function() return { name = 'x', version = 1 } end)
      assert.equal('\27LJ', src:sub(1, 3))
      local ok, err, code = h:load_string(src, '=bytecode')
      assert.is_nil(ok)
      assert.equal('EINVAL', code)
      assert.matches('bytecode is not allowed', err)
      ok, err, code = h:load_string('\27LJ\2\0junk', '=bytecode')
      assert.is_nil(ok)
      assert.equal('EINVAL', code)
      assert.matches('bytecode is not allowed', err)
      assert.is_nil(h:active())
      local decision, _, dcode = h:decide('on_auth', {})
      assert.is_false(decision.allow)
      assert.equal('ENOENT', dcode)
    end))
  end)

  describe('denies writing state that outlives a call:', function()
    local cases = {
      { 'a global', 'x = 1', "attempt to set global 'x'" },
      { 'a global through _G', '_G.allow = true', "attempt to set global 'allow'" },
      { 'a global with rawset', "rawset(_G, 'x', 1)", 'read%-only table' },
      { 'a library function', 'string.upper = nil', "read%-only table 'string'" },
      { 'a library table with rawset', "rawset(table, 'insert', print)", 'read%-only table' },
      { 'a global with table.insert', "table.insert(_G, 'x')",
        'table.insert: attempt to modify a read%-only table' },
      { 'a library table with table.remove', 'table.remove(string)', 'table.remove: attempt to modify' },
      { 'a library table with table.sort', 'table.sort(math)', 'table.sort: attempt to modify' },
      { 'the globals metatable', 'setmetatable(_G, {})', 'protected metatable' },
    }
    for _, case in ipairs(cases) do
      it(case[1], in_task(function()
        assert_denied(case[2], 'EPOLICY', case[3])
      end))
    end
  end)

  it('shows no heap address through tostring or string.format', in_task(function()
    local h = host.new({ name = 'sandbox-spec' })
    assert(h:load_string([[return { name = 'p', version = 1, on_auth = function()
      local seen = { tostring(print), tostring(pcall), tostring(string), tostring(_G), tostring({}),
        tostring(function() end), ('%s'):format(table), string.format('%s %s', print, {}) }
      return { allow = true, reason = table.concat(seen, ' | ') } end }]], '=p'))
    local d = h:decide('on_auth', {})
    assert.is_true(d.allow)
    assert.is_nil(d.reason:find('0x', 1, true), d.reason)
    assert.matches('^function: builtin | function: builtin | table: #%x+ | table: #%x+', d.reason)
    h:close()
  end))

  describe('stops runaway code quickly:', function()
    it('an endless loop', in_task(function()
      local ms = assert_denied('while true do end', 'ETIMEDOUT', 'exceeded')
      assert.is_true(ms < 500, ('took %.1f ms'):format(ms))
    end))

    it('an endless loop that outlasts the deadline before the budget', in_task(function()
      local ms = assert_denied('local n = 0 while true do n = n + 1 end', 'ETIMEDOUT',
        'deadline of 20 ms exceeded', { instruction_limit = 1e15, time_limit_ms = 20 })
      assert.is_true(ms >= 20 and ms < 500, ('took %.1f ms'):format(ms))
    end))

    it('an endless loop inside pcall (the budget cannot be caught)', in_task(function()
      assert_denied('while true do pcall(function() while true do end end) end', 'ETIMEDOUT')
    end))

    it('endless recursion', in_task(function()
      assert_denied('local function f() return f() end f()', 'ETIMEDOUT')
    end))

    it('a memory bomb', in_task(function()
      -- distinct strings: identical ones are interned once and would only grow the table
      local ms = assert_denied("local t = {} while true do t[#t + 1] = string.rep('x', 1e6) .. #t end",
        'ENOMEM', 'memory limit of 16777216 bytes reached')
      assert.is_true(ms < 500, ('took %.1f ms'):format(ms))
    end))

    it('a memory bomb of one interned string (stopped by the clock instead)', in_task(function()
      local _, _, code = decide_with("local t = {} while true do t[#t + 1] = string.rep('x', 1e6) end")
      assert.is_true(code == 'ENOMEM' or code == 'ETIMEDOUT', code)
    end))

    it('one huge allocation, even under pcall', in_task(function()
      assert_denied("local s = string.rep('x', 1e9)", 'ENOMEM')
      assert_denied("pcall(string.rep, 'x', 1e9)", 'ENOMEM')
    end))

    it('and the policy still answers afterwards', in_task(function()
      -- A deadline far above the instruction budget: the loop must trip the budget and the
      -- bomb the memory cap, even on a loaded machine or under ASan (not the wall clock).
      local h = host.new({ limits = { time_limit_ms = 5000 } })
      assert(h:load_string([[return { name = 'p', version = 1, on_auth = function(i)
        if i.loop then while true do end end
        if i.bomb then local t = {} for n = 1, 1e9 do t[n] = string.rep('y', 1e5) .. n end end
        return { allow = true } end }]], '=p'))
      for _ = 1, 3 do
        assert.equal('ETIMEDOUT', select(3, h:decide('on_auth', { loop = true })))
        assert.equal('ENOMEM', select(3, h:decide('on_auth', { bomb = true })))
        assert.same({ allow = true }, h:decide('on_auth', {}))
      end
      h:close()
    end))
  end)

  describe('denies invalid answers:', function()
    local cases = {
      { 'nothing', 'do return end', 'EPOLICY' },
      { 'a number', 'do return 1 end', 'EPOLICY' },
      { 'a string', "do return 'allow' end", 'EPOLICY' },
      { 'allow as a string', "do return { allow = 'true' } end", 'EINVAL' },
      { 'allow as a number', 'do return { allow = 1 } end', 'EINVAL' },
      { 'no allow field', "do return { reason = 'x' } end", 'EINVAL' },
      { 'an unknown field', 'do return { allow = true, alow = true } end', 'EINVAL' },
      { 'a function inside', 'do return { allow = true, reason = tostring } end', 'EINVAL' },
      { 'a cycle', 'do local t = { allow = true } t.t = t return t end', 'EINVAL' },
      { 'an error object', 'error({ allow = true })', 'EPOLICY' },
    }
    for _, case in ipairs(cases) do
      it(case[1], in_task(function()
        assert_denied(case[2], case[3])
      end))
    end
  end)

  describe('contains in its worker what the VM alone cannot stop:', function()
    -- the longest the loop went without turning while `fn` ran in this task
    local function max_stall(fn)
      local timer, last, worst = uv.new_timer(), uv.hrtime(), 0
      timer:start(1, 1, function()
        local now = uv.hrtime()
        worst = math.max(worst, (now - last) / 1e6)
        last = now
      end)
      local r = { fn() }
      timer:close()
      return worst, unpack(r, 1, 3)
    end

    for _, case in ipairs(hostile.decisions) do
      it(case.name, in_task(function()
        local h = host.new({ name = 'sandbox-spec', workers = 1 })
        assert(h:load_string(hostile.policy(case.body), '=hostile'))
        local t0 = uv.hrtime()
        local stall, d, err, code = max_stall(function()
          return h:decide('on_auth', {})
        end)
        local ms = (uv.hrtime() - t0) / 1e6
        assert.is_false(d.allow)
        assert.is_true(case.codes[code] ~= nil, ('%s: %s'):format(tostring(code), tostring(err)))
        assert.is_true(ms < 1000, ('denied after %.1f ms'):format(ms))
        assert.is_true(stall < 50, ('the loop stalled %.1f ms'):format(stall))
        -- the host goes on deciding (a crashed or killed worker is replaced)
        assert.same({ allow = true, reason = 'self-test' }, h:decide('on_auth', { selftest = true }))
        h:close()
      end))
    end
  end)

  it('refuses a policy file whose top level tries to escape', in_task(function()
    local h = host.new()
    for _, src in ipairs({
      "io.write('x') return {}",
      "x = 1 return {}",
      'while true do end',
      "local t = {} while true do t[#t + 1] = ('z'):rep(1e6) .. #t end",
    }) do
      local ok, err = h:load_string(src, '=top')
      assert.is_nil(ok, src)
      assert.is_string(err)
    end
    assert.is_nil(h:active())
  end))
end)
