-- SPDX-License-Identifier: Apache-2.0
-- The in-process event bus: services publish what happens ('kms.decision', 'policy.reload',
-- 'agent.boot', ...) and the dashboard, the REPL or tests subscribe. Each bus numbers its
-- events (seq, increasing from 1), stamps them (time, Unix seconds with milliseconds) and keeps
-- the most recent ones in a bounded ring, so a websocket can send a snapshot (since()) and then
-- the deltas (subscribe()) with nothing lost in between. Subscribers run synchronously inside
-- publish(), in subscription order; one that raises is logged and the others still get the
-- event. Published data is copied (plain values and tables only) and must hold no secrets:
-- anything that can watch the bus sees it. The module functions use the process's default bus;
-- new() makes another one (tests, a service that wants its own).
local uv = require('luv')
local log = require('moonstack.core.log').new('events')

local M = {}

--- Events a bus keeps for since() unless new() says otherwise.
M.DEFAULT_CAPACITY = 1024

local MAX_DEPTH = 16

local Bus = {}
Bus.__index = Bus

local Subscription = {}
Subscription.__index = Subscription

-- A copy of `v` for the ring: strings, numbers, booleans and tables of them (keys strings or
-- numbers). Raises (misuse) on anything else or on nesting deeper than MAX_DEPTH (cycles).
local function copy(v, depth)
  local t = type(v)
  if t == 'string' or t == 'number' or t == 'boolean' or t == 'nil' then
    return v
  end
  if t ~= 'table' then
    error(('events.publish: data holds a %s'):format(t), 0)
  end
  if depth > MAX_DEPTH then
    error('events.publish: data is nested too deeply (a cycle?)', 0)
  end
  local out = {}
  for k, x in pairs(v) do
    local kt = type(k)
    if kt ~= 'string' and kt ~= 'number' then
      error(('events.publish: data has a %s key'):format(kt), 0)
    end
    out[k] = copy(x, depth + 1)
  end
  return out
end

-- Does `topic` match `pattern`? nil, '' and '*' match everything; a pattern ending in '.' is a
-- prefix ('vm.' matches 'vm.start', not 'vm'); anything else is an exact topic.
local function matches(pattern, topic)
  if pattern == nil or pattern == '' or pattern == '*' then
    return true
  end
  if pattern:sub(-1) == '.' then
    return topic:sub(1, #pattern) == pattern
  end
  return topic == pattern
end

local function check_pattern(fname, pattern)
  if pattern ~= nil and type(pattern) ~= 'string' then
    error(('events.%s: pattern must be a string or nil'):format(fname), 3)
  end
end

local function now()
  local sec, usec = uv.gettimeofday()
  return sec + math.floor(usec / 1000) / 1000
end

--- Publish `data` (a table, or nil) under `topic` (a non-empty string of letters, digits, '_',
--- '-' and '.', e.g. 'kms.decision'). Every matching subscriber gets the event
--- { seq, topic, time, data } before publish returns. Returns the event's seq.
function Bus:publish(topic, data)
  if type(topic) ~= 'string' or not topic:match('^[%w_%-][%w_%-%.]*$') then
    error('events.publish: topic must be a name such as "kms.decision"', 2)
  end
  if data ~= nil and type(data) ~= 'table' then
    error('events.publish: data must be a table or nil', 2)
  end
  local ok, copied = pcall(copy, data, 1)
  if not ok then
    error(copied, 2)
  end
  self.seq = self.seq + 1
  local ev = { seq = self.seq, topic = topic, time = now(), data = copied or {} }
  self.ring[self.head] = ev
  self.head = self.head % self.capacity + 1
  if self.count < self.capacity then
    self.count = self.count + 1
  end
  -- a snapshot: a subscriber may subscribe or close others while this event is delivered
  local subs = { unpack(self.subs) }
  for _, s in ipairs(subs) do
    if not s.closed and matches(s.pattern, topic) then
      local sok, err = xpcall(s.fn, debug.traceback, ev)
      if not sok then
        self.errors = self.errors + 1
        log.error('event subscriber failed', { topic = topic, seq = ev.seq, error = tostring(err) })
      end
    end
  end
  return ev.seq
end

--- Call `fn(event)` for every event published from now on whose topic matches `pattern`
--- (exact topic; a prefix ending in '.', such as 'vm.'; nil or '*' for all). `fn` runs inside
--- publish() and must not block (spawn a task for slow work) nor change the event. Returns
--- the subscription; its :close() stops delivery (idempotent, also from inside `fn`).
function Bus:subscribe(pattern, fn)
  check_pattern('subscribe', pattern)
  if type(fn) ~= 'function' then
    error('events.subscribe: fn must be a function', 2)
  end
  local s = setmetatable({ bus = self, pattern = pattern, fn = fn, closed = false }, Subscription)
  self.subs[#self.subs + 1] = s
  return s
end

--- Stop delivering events to this subscription. Idempotent.
function Subscription:close()
  if self.closed then
    return
  end
  self.closed = true
  local subs = self.bus.subs
  for i = #subs, 1, -1 do
    if subs[i] == self then
      table.remove(subs, i)
    end
  end
end

--- The kept events with seq greater than `seq` (0 or nil: all kept) whose topic matches
--- `pattern`, oldest first; and whether some events after `seq` are no longer kept (the ring
--- overflowed: a client should reload its whole view).
function Bus:since(seq, pattern)
  seq = seq or 0
  if type(seq) ~= 'number' then
    error('events.since: seq must be a number', 2)
  end
  check_pattern('since', pattern)
  local list = {}
  local first = self.seq - self.count + 1 -- the oldest kept seq
  local start = self.head - self.count -- its ring slot, before wrapping
  for i = 0, self.count - 1 do
    local ev = self.ring[(start + i - 1) % self.capacity + 1]
    if ev.seq > seq and matches(pattern, ev.topic) then
      list[#list + 1] = ev
    end
  end
  return list, seq + 1 < first
end

--- The seq of the last published event (0 before any).
function Bus:last_seq()
  return self.seq
end

--- Counters: { seq, kept, capacity, subscribers, errors (subscribers that raised) }.
function Bus:stats()
  return { seq = self.seq, kept = self.count, capacity = self.capacity, subscribers = #self.subs,
    errors = self.errors }
end

--- A new bus. opts.capacity: how many recent events since() can return (default
--- M.DEFAULT_CAPACITY).
function M.new(opts)
  opts = opts or {}
  local cap = opts.capacity or M.DEFAULT_CAPACITY
  if type(cap) ~= 'number' or cap < 1 or cap % 1 ~= 0 then
    error('events.new: capacity must be a positive integer', 2)
  end
  return setmetatable({ seq = 0, capacity = cap, ring = {}, head = 1, count = 0, subs = {},
    errors = 0 }, Bus)
end

local default = M.new()

--- The process's default bus (the one the module functions use).
function M.default()
  return default
end

--- publish() on the default bus.
function M.publish(topic, data)
  return default:publish(topic, data)
end

--- subscribe() on the default bus.
function M.subscribe(pattern, fn)
  return default:subscribe(pattern, fn)
end

--- since() on the default bus.
function M.since(seq, pattern)
  return default:since(seq, pattern)
end

--- last_seq() of the default bus.
function M.last_seq()
  return default:last_seq()
end

return M
