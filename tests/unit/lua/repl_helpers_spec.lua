-- SPDX-License-Identifier: Apache-2.0
-- The REPL's pieces that need no socket (M11): completion of names (moonstack.control.complete),
-- lists of records as text tables (moonstack.control.grid), the interrupt check of a running
-- chunk (moonstack.control.eval + guard), and the KMS's ring of auth decisions
-- (moonstack.kms.decisions over an event bus of its own).
local complete = require('moonstack.control.complete')
local grid = require('moonstack.control.grid')
local eval = require('moonstack.control.eval')
local guard = require('moonstack.control.guard')
local events = require('moonstack.core.events')
local decisions = require('moonstack.kms.decisions')

describe('control.complete', function()
  local obj = setmetatable({ field = 1 }, { __index = { method = function() end, value = 2 } })
  local env = eval.new_env({ vm = { list = 1, info = 2, logs = 3 }, obj = obj }, { print = print })
  local layers = eval.layers(env)

  it('completes globals, fields and methods', function()
    assert.same({ 'vm.info', 'vm.list', 'vm.logs' }, complete.candidates('vm.', layers))
    assert.same({ 'vm.list', 'vm.logs' }, complete.candidates('x = vm.l', layers))
    assert.same({ 'vm' }, complete.candidates('v', layers))
    assert.same({ 'obj.field', 'obj.method', 'obj.value' }, complete.candidates('obj.', layers))
    assert.same({ 'obj:method' }, complete.candidates('obj:', layers))
    assert.same({ 'print' }, complete.candidates('pri', layers))
    assert.same({ 'while' }, complete.candidates('whi', layers))
    assert.same({}, complete.candidates('vm.list.', layers))
    assert.same({}, complete.candidates('nope.', layers))
  end)

  it('never runs code: __index functions are not called, a __complete table is read', function()
    local called = false
    local view = setmetatable({ own = 1 }, { __index = function() called = true end,
      __complete = { target = 1 } })
    local l = eval.layers(eval.new_env({ view = view }, {}))
    assert.same({ 'view.own', 'view.target' }, complete.candidates('view.', l))
    assert.is_false(called)
  end)
end)

describe('control.grid', function()
  it('renders a list of records as a table, first columns first', function()
    local text = grid.format({ { status = 'running', id = 'a', n = 1 },
      { id = 'bb', status = 'stopped', extra = { 1, 2 } } })
    assert.equal(table.concat({
      'id  status   extra     n',
      '--  -------  --------  -',
      'a   running            1',
      'bb  stopped  { 1, 2 }',
      '(2 rows)' }, '\n'), text)
  end)

  it('leaves anything else to pretty', function()
    assert.is_nil(grid.format({}))
    assert.is_nil(grid.format({ 1, 2 }))
    assert.is_nil(grid.format({ { 1 } }))
    assert.is_nil(grid.format({ a = { x = 1 } }))
    assert.equal('{ 1, 2 }\n"x"', grid.format_results({ { 1, 2 }, 'x', n = 2 }, 2))
  end)

  it('cuts long cells', function()
    local text = grid.format({ { id = ('x'):rep(100) } })
    assert.matches('\n' .. ('x'):rep(grid.CELL_MAX - 3) .. '%.%.%.\n', text)
  end)
end)

describe('control.eval interrupt', function()
  it('stops a running chunk when interrupted() says so, and removes its hook', function()
    local asked = 0
    local ok, err = eval.call(assert(eval.compile('while true do end')), { interrupted = function()
      asked = asked + 1
      return asked >= 3
    end })
    assert.is_false(ok)
    assert.matches('^EINTR: evaluation interrupted', err)
    assert.equal(0, guard.active())
    assert.is_nil(debug.gethook())
  end)

  it('leaves a chunk alone while interrupted() says no', function()
    local ok, values = eval.call(assert(eval.compile('local n = 0 for i = 1, 1e5 do n = n + i end return n')),
      { interrupted = function() return false end })
    assert.is_true(ok)
    assert.equal(5000050000, values[1])
  end)
end)

describe('kms.decisions', function()
  local function publish(bus, i, allowed)
    bus:publish('kms.decision', { backend = 'policy', scope = 'app', app_id = ('%040d'):format(i),
      allowed = allowed, reason = 'r' .. i, policy = 'p', policy_version = '7',
      policy_sha256 = ('ab'):rep(32) })
  end

  it('keeps the newest decisions, newest first, bounded', function()
    local bus = events.new()
    local ring = decisions.new({ capacity = 3, bus = bus })
    for i = 1, 5 do
      publish(bus, i, i % 2 == 0)
    end
    local list = ring:list(10)
    assert.equal(3, #list)
    assert.same({ 'r5', 'r4', 'r3' }, { list[1].reason, list[2].reason, list[3].reason })
    assert.equal('app', list[1].kind)
    assert.is_false(list[1].allowed)
    assert.equal('7', list[1].policy_version)
    assert.equal(('ab'):rep(32), list[1].policy_sha256)
    assert.is_number(list[1].time)
    assert.equal(1, #ring:list(1))
    assert.same({ kept = 3, capacity = 3, total = 5 }, ring:stats())
    ring:close()
    publish(bus, 6, true)
    assert.equal('r5', ring:list(1)[1].reason)
  end)

  it('returns copies', function()
    local bus = events.new()
    local ring = decisions.new({ bus = bus })
    publish(bus, 1, true)
    ring:list(1)[1].reason = 'changed'
    assert.equal('r1', ring:list(1)[1].reason)
    assert.same({}, decisions.new({ bus = bus }):list())
  end)
end)
