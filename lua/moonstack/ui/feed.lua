-- SPDX-License-Identifier: Apache-2.0
-- One daemon's part of the dashboard ('vmm', 'kms' or 'gateway') over the event bus
-- (moonstack.core.events): a snapshot of its state (a function the service gives), and the
-- events of the bus that belong to the part (a filter, and a map that may rename or reshape
-- them). read(since) answers `GET /dashboard/feed?since=SEQ`: the part's events after SEQ, or
-- a snapshot when SEQ is 0, when some events after SEQ are no longer kept (the ring overflowed)
-- or when SEQ is ahead of the bus (the daemon restarted); subscribe(fn) gives the live events
-- to a websocket. Sequence numbers are the bus's.
local events = require('moonstack.core.events')
local json = require('moonstack.core.json')

local M = {}

--- Events a read() returns at most (older ones are left out and a snapshot sent instead).
M.MAX_EVENTS = 500

local Feed = {}
Feed.__index = Feed

--- A feed. opts = { part (name), snapshot = fn() -> table, filter = fn(ev) -> bool (default:
--- every event), map = fn(ev) -> ev' (default: as is; nil drops it), bus (default the
--- process's) }.
function M.new(opts)
  assert(type(opts) == 'table' and type(opts.part) == 'string' and type(opts.snapshot) == 'function',
    'feed.new: part and snapshot required')
  return setmetatable({ part = opts.part, snap = opts.snapshot, filter = opts.filter,
    map = opts.map, bus = opts.bus or events.default() }, Feed)
end

-- The wire form of a bus event for this part ({seq, time, topic, data}), or nil.
function Feed:_event(ev)
  if self.filter and not self.filter(ev) then
    return nil
  end
  local out = { seq = ev.seq, time = ev.time, topic = ev.topic, data = ev.data }
  if self.map then
    out = self.map(out)
  end
  return out
end

--- The part's snapshot now (a table; errors of the service's function are raised).
function Feed:snapshot()
  return self.snap()
end

--- The answer to `GET /dashboard/feed?since=SEQ`: { part, seq, snapshot?, events }.
function Feed:read(since)
  since = math.max(0, math.floor(tonumber(since) or 0))
  local last = self.bus:last_seq()
  local list, dropped = self.bus:since(since)
  local out = { part = self.part, seq = last, events = json.array() }
  if since == 0 or dropped or since > last then
    out.snapshot = self:snapshot()
    return out
  end
  for _, ev in ipairs(list) do
    local e = self:_event(ev)
    if e then
      out.events[#out.events + 1] = e
    end
  end
  if #out.events > M.MAX_EVENTS then
    out.events = json.array()
    out.snapshot = self:snapshot()
  end
  return out
end

--- Call fn(event) (wire form) for each of the part's events from now on. Returns the
--- subscription (its :close() stops it).
function Feed:subscribe(fn)
  return self.bus:subscribe(nil, function(ev)
    local e = self:_event(ev)
    if e then
      fn(e)
    end
  end)
end

--- The bus's last seq.
function Feed:seq()
  return self.bus:last_seq()
end

return M
