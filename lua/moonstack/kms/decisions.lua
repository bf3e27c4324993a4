-- SPDX-License-Identifier: Apache-2.0
-- The KMS's recent auth decisions: a bounded ring fed by the `kms.decision` events of the
-- event bus (moonstack.kms.auth publishes one per app or KMS check), newest first. The REPL's
-- kms.decisions(n) and the dashboard's KMS part read it through Kms:decisions(n). A record:
--   { time (Unix seconds, ms), kind ('app'|'kms'), app_id, instance_id?, compose_hash?,
--     allowed, reason, policy_version?, policy_sha256?, policy? (its name), backend, seq }
-- Decisions hold identifiers and outcomes only (no secret), as the event does.
local events = require('moonstack.core.events')

local M = {}

--- Decisions a ring keeps unless new() says otherwise.
M.CAPACITY = 256
--- Decisions list() returns when n is not given.
M.DEFAULT_N = 20

local Ring = {}
Ring.__index = Ring

--- The record of a `kms.decision` event (the REPL's, the dashboard's).
function M.record(ev)
  local d = ev.data or {}
  return { time = ev.time, kind = d.scope, app_id = d.app_id, instance_id = d.instance_id,
    compose_hash = d.compose_hash, allowed = d.allowed == true, reason = d.reason,
    policy_version = d.policy_version, policy_sha256 = d.policy_sha256, policy = d.policy,
    backend = d.backend, seq = ev.seq }
end

--- Keep `ev` (a `kms.decision` event { seq, time, data }).
function Ring:push(ev)
  self.head = self.head % self.capacity + 1
  self.items[self.head] = M.record(ev)
  self.count = math.min(self.count + 1, self.capacity)
  self.total = self.total + 1
end

--- The newest `n` decisions (default DEFAULT_N, at most the capacity), newest first. Each is
--- a copy: the caller may keep or change it.
function Ring:list(n)
  n = tonumber(n) or M.DEFAULT_N
  n = math.max(0, math.min(math.floor(n), self.count))
  local out = {}
  for i = 0, n - 1 do
    local r = self.items[(self.head - 1 - i) % self.capacity + 1]
    local copy = {}
    for k, v in pairs(r) do
      copy[k] = v
    end
    out[#out + 1] = copy
  end
  return out
end

--- { kept, capacity, total (decisions seen since the ring was made) }.
function Ring:stats()
  return { kept = self.count, capacity = self.capacity, total = self.total }
end

--- Stop listening to the bus. Idempotent.
function Ring:close()
  if self.sub then
    self.sub:close()
    self.sub = nil
  end
end

--- A ring of the decisions published from now on. opts: capacity (default CAPACITY), bus
--- (an event bus, default the process's: moonstack.core.events).
function M.new(opts)
  opts = opts or {}
  local cap = opts.capacity or M.CAPACITY
  if type(cap) ~= 'number' or cap < 1 or cap % 1 ~= 0 then
    error('kms.decisions.new: capacity must be a positive integer', 2)
  end
  local self = setmetatable({ capacity = cap, items = {}, head = 0, count = 0, total = 0 }, Ring)
  local bus = opts.bus or events.default()
  self.sub = bus:subscribe('kms.decision', function(ev) self:push(ev) end)
  return self
end

return M
