-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.events: sequence numbers and timestamps, exact and prefix subscriptions,
-- close (also from inside a delivery), a subscriber that raises is logged and the others still
-- get the event, the bounded ring behind since() (snapshot then deltas, overflow reported),
-- published data copied, misuse raising, and the default bus.
local events = require('moonstack.core.events')
local log = require('moonstack.core.log')

local function topics(list)
  local out = {}
  for _, ev in ipairs(list) do
    out[#out + 1] = ev.topic
  end
  return out
end

describe('moonstack.core.events', function()
  local bus
  before_each(function()
    bus = events.new({ capacity = 4 })
  end)

  it('numbers and stamps every event', function()
    local before = os.time()
    assert.equal(0, bus:last_seq())
    assert.equal(1, bus:publish('vm.start', { id = 'a' }))
    assert.equal(2, bus:publish('vm.stop'))
    local list = bus:since(0)
    assert.equal(2, #list)
    assert.same({ seq = 1, topic = 'vm.start', data = { id = 'a' } },
      { seq = list[1].seq, topic = list[1].topic, data = list[1].data })
    assert.same({}, list[2].data)
    assert.is_true(list[1].time >= before and list[1].time <= os.time() + 1)
    assert.is_true(list[2].time >= list[1].time)
    assert.equal(2, bus:last_seq())
  end)

  it('delivers by exact topic or prefix, in subscription order', function()
    local got = {}
    bus:subscribe('vm.', function(ev) got[#got + 1] = 'prefix:' .. ev.topic end)
    bus:subscribe('vm.start', function(ev) got[#got + 1] = 'exact:' .. ev.topic end)
    bus:subscribe(nil, function(ev) got[#got + 1] = 'all:' .. ev.topic end)
    bus:subscribe('*', function(ev) got[#got + 1] = 'star:' .. ev.topic end)
    bus:publish('vm.start')
    bus:publish('vm')
    bus:publish('vmx.start')
    bus:publish('kms.decision')
    assert.same({ 'prefix:vm.start', 'exact:vm.start', 'all:vm.start', 'star:vm.start',
      'all:vm', 'star:vm', 'all:vmx.start', 'star:vmx.start', 'all:kms.decision',
      'star:kms.decision' }, got)
  end)

  it('stops delivering after close, also when closed during a delivery', function()
    local n, m = 0, 0
    local sub
    sub = bus:subscribe('x', function()
      n = n + 1
      sub:close()
    end)
    local other = bus:subscribe('x', function() m = m + 1 end)
    bus:publish('x')
    bus:publish('x')
    assert.equal(1, n)
    assert.equal(2, m)
    other:close()
    other:close() -- idempotent
    bus:publish('x')
    assert.equal(2, m)
    assert.equal(0, bus:stats().subscribers)
  end)

  it('logs a subscriber that raises and still delivers to the others', function()
    local records, orig = {}, log.emit
    log.emit = function(level, component, msg, fields)
      records[#records + 1] = { level = level, component = component, msg = msg, fields = fields }
    end
    local got = 0
    bus:subscribe('t', function() error('subscriber bug') end)
    bus:subscribe('t', function() got = got + 1 end)
    local ok, err = pcall(bus.publish, bus, 't', { k = 1 })
    log.emit = orig
    assert(ok, err)
    assert.equal(1, got)
    assert.equal(1, #records)
    assert.equal('error', records[1].level)
    assert.equal('events', records[1].component)
    assert.equal('t', records[1].fields.topic)
    assert.matches('subscriber bug', records[1].fields.error)
    assert.equal(1, bus:stats().errors)
  end)

  it('keeps the last events for since(): a snapshot, then deltas, with overflow reported', function()
    for i = 1, 3 do
      bus:publish(i % 2 == 1 and 'vm.odd' or 'kms.even', { i = i })
    end
    local list, lost = bus:since(0)
    assert.same({ 'vm.odd', 'kms.even', 'vm.odd' }, topics(list))
    assert.is_false(lost)
    list = bus:since(0, 'vm.')
    assert.same({ 1, 3 }, { list[1].seq, list[2].seq })
    -- a dashboard: snapshot up to now, then subscribe; nothing lost, nothing twice
    local snapshot = bus:since(1)
    local last = snapshot[#snapshot].seq
    local deltas = {}
    bus:subscribe(nil, function(ev) deltas[#deltas + 1] = ev.seq end)
    for i = 4, 7 do
      bus:publish('vm.more', { i = i })
    end
    assert.equal(3, last)
    assert.same({ 4, 5, 6, 7 }, deltas)
    -- capacity 4: seqs 4..7 kept
    list, lost = bus:since(0)
    assert.same({ 4, 5, 6, 7 }, { list[1].seq, list[2].seq, list[3].seq, list[4].seq })
    assert.is_true(lost)
    list, lost = bus:since(3)
    assert.equal(4, #list)
    assert.is_false(lost)
    assert.is_true(select(2, bus:since(2)))
    list, lost = bus:since(7)
    assert.same({}, list)
    assert.is_false(lost)
    assert.same({ seq = 7, kept = 4, capacity = 4, subscribers = 1, errors = 0 }, bus:stats())
    for i = 8, 30 do
      bus:publish('t', { i = i })
    end
    list = bus:since(0)
    assert.same({ 27, 28, 29, 30 }, { list[1].seq, list[2].seq, list[3].seq, list[4].seq })
    assert.same({ 27, 28, 29, 30 }, { list[1].data.i, list[2].data.i, list[3].data.i, list[4].data.i })
  end)

  it('copies published data', function()
    local data = { a = { b = 1 }, list = { 'x', 'y' } }
    bus:publish('t', data)
    data.a.b = 2
    data.list[1] = 'changed'
    local ev = bus:since(0)[1]
    assert.same({ a = { b = 1 }, list = { 'x', 'y' } }, ev.data)
  end)

  it('raises on misuse', function()
    assert.has_error(function() bus:publish('', {}) end)
    assert.has_error(function() bus:publish(nil) end)
    assert.has_error(function() bus:publish('bad topic', {}) end)
    assert.has_error(function() bus:publish('t', 'not a table') end)
    assert.has_error(function() bus:publish('t', { f = print }) end)
    assert.has_error(function() bus:publish('t', { [true] = 1 }) end)
    local cyc = {}
    cyc.self = cyc
    assert.has_error(function() bus:publish('t', cyc) end)
    assert.has_error(function() bus:subscribe('t', 'not a function') end)
    assert.has_error(function() bus:subscribe(42, function() end) end)
    assert.has_error(function() bus:since('x') end)
    assert.has_error(function() events.new({ capacity = 0 }) end)
    assert.has_error(function() events.new({ capacity = 1.5 }) end)
    assert.equal(0, bus:last_seq()) -- nothing was published
  end)

  it('has a default bus behind the module functions', function()
    local seen
    local sub = events.subscribe('spec.', function(ev) seen = ev end)
    local seq = events.publish('spec.default', { x = 1 })
    sub:close()
    assert.equal(seq, seen.seq)
    assert.equal(seq, events.last_seq())
    assert.equal(events.default(), events.default())
    local list = events.since(seq - 1, 'spec.default')
    assert.equal(1, #list)
    assert.same({ x = 1 }, list[1].data)
  end)
end)
