-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.service: the config diff (pure) and a supervisor applying it to services.
-- The service classes here are test doubles of user code; each owns a real luv timer so
-- the specs can check that stopped services free their handles.
local uv = require('luv')
local loop = require('loop')
local service = require('moonstack.core.service')
local log = require('moonstack.core.log')

local calls -- every lifecycle call, as 'op name [detail]'

-- A service class whose instances own a repeating timer. `opts.fail` = set of operations
-- ('new', 'start', 'reconfig', 'stop') that fail when args.fail_<op> is true.
local function make_class(label, with_reconfig)
  local C = {}
  C.__index = C
  function C.new(args)
    if args.fail_new then
      return nil, 'EINVAL: bad args for ' .. label
    end
    calls[#calls + 1] = ('new %s %s'):format(args.id, label)
    return setmetatable({ args = args }, C)
  end
  function C:start()
    self.timer = uv.new_timer()
    self.timer:start(1000, 1000, function() end)
    if self.args.fail_start then
      calls[#calls + 1] = 'start-fail ' .. self.args.id
      error('EADDRINUSE: port taken', 0)
    end
    calls[#calls + 1] = 'start ' .. self.args.id
  end
  function C:stop()
    calls[#calls + 1] = 'stop ' .. self.args.id
    if self.timer then
      self.timer:close()
      self.timer = nil
    end
    if self.args.fail_stop then
      error('stop went wrong')
    end
  end
  if with_reconfig then
    function C:reconfig(args)
      if args.fail_reconfig then
        calls[#calls + 1] = 'reconfig-fail ' .. args.id
        return nil, 'config rejected'
      end
      calls[#calls + 1] = 'reconfig ' .. args.id
      self.args = args
      return true
    end
  end
  return C
end

local Plain = make_class('plain', false)
local Reconf = make_class('reconf', true)

local function ops(actions)
  local out = {}
  for i, a in ipairs(actions) do
    out[i] = a.op .. ' ' .. a.name
  end
  return out
end

describe('core.service', function()
  local baseline, level

  setup(function()
    level = log.level()
    log.set_level('error') -- the failure cases log errors; the routine info lines are noise
  end)

  teardown(function()
    log.set_level(level)
  end)

  before_each(function()
    calls = {}
    uv.run('nowait')
    baseline = loop.live_handles()
  end)

  after_each(function()
    uv.run('nowait')
    assert.are.equal(baseline, loop.live_handles(), 'libuv handles leaked')
  end)

  describe('diff', function()
    it('starts added, stops removed, reconfigures or restarts changed, keeps unchanged', function()
      local current = {
        keep = { class = Plain, args = { id = 'keep', nested = { 1, { a = 'x' } } } },
        gone = { class = Plain, args = { id = 'gone' } },
        tune = { class = Reconf, args = { id = 'tune', n = 1 } },
        bounce = { class = Plain, args = { id = 'bounce', n = 1 } },
        swap = { class = Plain, args = { id = 'swap' } },
      }
      local desired = {
        keep = { class = Plain, args = { id = 'keep', nested = { 1, { a = 'x' } } } },
        tune = { class = Reconf, args = { id = 'tune', n = 2 } },
        bounce = { class = Plain, args = { id = 'bounce', n = 2 } },
        swap = { class = Reconf, args = { id = 'swap' } },
        fresh = { class = Plain, args = { id = 'fresh' } },
      }
      local actions = service.diff(current, desired)
      assert.are.same({ 'stop gone', 'restart bounce', 'start fresh', 'restart swap', 'reconfig tune' },
        ops(actions))
      assert.are.equal(current.tune, actions[5].old)
      assert.are.same({ id = 'tune', n = 2 }, actions[5].args)
      assert.are.same({}, service.diff(desired, desired))
      assert.are.same({}, service.diff({}, {}))
    end)

    it('orders by `order` then name; stops in reverse', function()
      local current = {
        a = { class = Plain, args = {}, order = 1 },
        b = { class = Plain, args = {}, order = 0 },
        c = { class = Plain, args = {}, order = 2 },
      }
      local desired = {
        z = { class = Plain, order = -1 },
        y = { class = Plain, order = 5 },
        x = { class = Plain },
      }
      assert.are.same({ 'stop c', 'stop a', 'stop b', 'start z', 'start x', 'start y' },
        ops(service.diff(current, desired)))
    end)

    it('compares args deeply and treats missing args as empty', function()
      local a = { class = Plain, args = { list = { 1, 2, { k = true } } } }
      assert.are.same({}, service.diff({ s = a }, { s = { class = Plain, args = {
        list = { 1, 2, { k = true } } } } }))
      assert.are.same({ 'restart s' }, ops(service.diff({ s = a }, { s = { class = Plain, args = {
        list = { 1, 2, { k = false } } } } })))
      assert.are.same({ 'restart s' }, ops(service.diff({ s = a }, { s = { class = Plain, args = {
        list = { 1, 2, { k = true }, 4 } } } })))
      assert.are.same({}, service.diff({ s = { class = Plain } }, { s = { class = Plain, args = {} } }))
      assert.is_true(service.equal({ a = { b = 1 } }, { a = { b = 1 } }))
      assert.is_false(service.equal({ a = { b = 1 } }, { a = { b = 1, c = 2 } }))
    end)

    it('raises on a malformed desired state', function()
      assert.has_error(function() service.diff({}, { s = { args = {} } }) end,
        'service.diff: service s: class must be a table with a new() function')
      assert.has_error(function() service.diff({}, { s = { class = Plain, args = 'x' } }) end,
        'service.diff: service s: args must be a table')
      assert.has_error(function() service.diff({}, 'x') end,
        'service.diff: desired state must be a table')
    end)
  end)

  describe('supervisor', function()
    it('applies successive desired states and stops everything in reverse start order', function()
      local sup = service.supervisor()
      local ok, report = sup:apply({
        a = { class = Plain, args = { id = 'a' } },
        b = { class = Reconf, args = { id = 'b', n = 1 } },
        c = { class = Plain, args = { id = 'c', n = 1 } },
      })
      assert.is_true(ok)
      assert.are.same({}, report.failed)
      assert.are.same({ 'new a plain', 'start a', 'new b reconf', 'start b', 'new c plain', 'start c' },
        calls)
      assert.are.equal(baseline + 3, loop.live_handles())

      calls = {}
      local b_instance = sup:get('b')
      ok = sup:apply({
        b = { class = Reconf, args = { id = 'b', n = 2 } },
        c = { class = Plain, args = { id = 'c', n = 2 } },
        d = { class = Plain, args = { id = 'd' } },
      })
      assert.is_true(ok)
      assert.are.same({ 'stop a', 'reconfig b', 'stop c', 'new c plain', 'start c', 'new d plain',
        'start d' }, calls)
      assert.are.equal(b_instance, sup:get('b'))
      assert.are.same({ id = 'b', n = 2 }, sup:get('b').args)
      assert.is_nil(sup:get('a'))
      assert.are.equal(baseline + 3, loop.live_handles())

      local names = {}
      for i, e in ipairs(sup:list()) do
        names[i] = e.name
      end
      assert.are.same({ 'b', 'c', 'd' }, names)

      calls = {}
      assert.is_true(sup:apply(sup:state()))
      assert.are.same({}, calls)

      assert.is_true(sup:stop_all())
      assert.are.same({ 'stop d', 'stop c', 'stop b' }, calls)
      assert.are.same({}, sup:list())
      assert.are.equal(baseline, loop.live_handles())
    end)

    it('keeps the args it was given from later mutation by the caller', function()
      local sup = service.supervisor()
      local args = { id = 'm', list = { 1 } }
      assert.is_true(sup:apply({ m = { class = Plain, args = args } }))
      args.list[1] = 2
      calls = {}
      assert.is_true(sup:apply({ m = { class = Plain, args = args } }))
      assert.are.same({ 'stop m', 'new m plain', 'start m' }, calls)
      assert.is_true(sup:stop_all())
    end)

    it('a failing start is reported, cleaned up and does not stop the others', function()
      local sup = service.supervisor()
      local ok, msg, code, report = sup:apply({
        a = { class = Plain, args = { id = 'a' } },
        bad = { class = Plain, args = { id = 'bad', fail_start = true } },
        nonew = { class = Plain, args = { id = 'nonew', fail_new = true } },
        z = { class = Plain, args = { id = 'z' } },
      })
      assert.is_nil(ok)
      assert.are.equal('ESERVICE', code)
      assert.are.equal('ESERVICE: 2 service action(s) failed: bad (start): EADDRINUSE: port taken; ' ..
        'nonew (start): EINVAL: bad args for plain', msg)
      assert.are.same({ name = 'bad', op = 'start', message = 'EADDRINUSE: port taken',
        code = 'EADDRINUSE' }, report.failed[1])
      assert.are.same({ 'new a plain', 'start a', 'new bad plain', 'start-fail bad', 'stop bad',
        'new z plain', 'start z' }, calls)
      assert.is_not_nil(sup:get('a'))
      assert.is_not_nil(sup:get('z'))
      assert.is_nil(sup:get('bad'))
      -- the half-started instance was stopped: only a's and z's timers are alive
      assert.are.equal(baseline + 2, loop.live_handles())
      -- a later apply retries what failed
      calls = {}
      assert.is_true(sup:apply({
        a = { class = Plain, args = { id = 'a' } },
        bad = { class = Plain, args = { id = 'bad' } },
        z = { class = Plain, args = { id = 'z' } },
      }))
      assert.are.same({ 'new bad plain', 'start bad' }, calls)
      assert.is_true(sup:stop_all())
    end)

    it('a failed reconfig keeps the previous config, and is retried next time', function()
      local sup = service.supervisor()
      assert.is_true(sup:apply({ r = { class = Reconf, args = { id = 'r', n = 1 } } }))
      calls = {}
      local ok, msg, _, report = sup:apply({
        r = { class = Reconf, args = { id = 'r', n = 2, fail_reconfig = true } } })
      assert.is_nil(ok)
      assert.are.equal('ESERVICE: 1 service action(s) failed: r (reconfig): EINTERNAL: config rejected',
        msg)
      assert.is_true(report.failed[1].kept)
      assert.are.same({ id = 'r', n = 1 }, sup:state().r.args)
      calls = {}
      assert.is_true(sup:apply({ r = { class = Reconf, args = { id = 'r', n = 2 } } }))
      assert.are.same({ 'reconfig r' }, calls)
      assert.is_true(sup:stop_all())
    end)

    it('a failed restart brings the previous version back', function()
      local sup = service.supervisor()
      assert.is_true(sup:apply({ p = { class = Plain, args = { id = 'p', n = 1 } } }))
      calls = {}
      local ok, _, _, report = sup:apply({
        p = { class = Plain, args = { id = 'p', n = 2, fail_start = true } } })
      assert.is_nil(ok)
      assert.are.same({ 'stop p', 'new p plain', 'start-fail p', 'stop p', 'new p plain', 'start p' },
        calls)
      assert.is_true(report.failed[1].kept)
      assert.are.same({ id = 'p', n = 1 }, sup:state().p.args)
      assert.are.same({ id = 'p', n = 1 }, sup:get('p').args)
      assert.are.equal(baseline + 1, loop.live_handles())
      assert.is_true(sup:stop_all())
    end)

    it('stop_all goes on past a failing stop and reports it', function()
      local sup = service.supervisor()
      assert.is_true(sup:apply({
        a = { class = Plain, args = { id = 'a' } },
        b = { class = Plain, args = { id = 'b', fail_stop = true } },
        c = { class = Plain, args = { id = 'c' } },
      }))
      calls = {}
      local ok, msg, code = sup:stop_all()
      assert.is_nil(ok)
      assert.are.equal('ESERVICE', code)
      assert.matches('^ESERVICE: stop failed: b: EINTERNAL: .*stop went wrong$', msg)
      assert.are.same({ 'stop c', 'stop b', 'stop a' }, calls)
      assert.are.same({}, sup:list())
    end)

    it('refuses a new apply while one is in progress', function()
      local sup = service.supervisor()
      local inner
      local Nested = {
        new = function()
          return { start = function() inner = { sup:apply({}) } end, stop = function() end }
        end,
      }
      assert.is_true(sup:apply({ n = { class = Nested } }))
      assert.are.same({ nil, 'EBUSY: another apply or stop_all is in progress', 'EBUSY' }, inner)
      assert.is_true(sup:stop_all())
    end)
  end)
end)
