-- SPDX-License-Identifier: Apache-2.0
-- The KMS's recent auth decisions (M11 contract, "KMS decisions"): a bounded ring fed by the
-- `kms.decision` events of the event bus (moonstack.kms.auth publishes one per decision), each
-- kept as { time, kind ('app'|'kms'), app_id, instance_id?, compose_hash?, allowed, reason,
-- policy_version, policy_sha256? }. list(n) gives the newest n, newest first: the REPL's
-- kms.decisions(n) and the dashboard's KMS part read the same ring (Kms:decisions(n)).
local events = require('moonstack.core.events')

local M = {}

--- Decisions kept by default.
M.CAPACITY = 200

local Ring = {}
Ring.__index = Ring

--- The record of a `kms.decision` event ({ time, data }).
function M.record(ev)
  local d = ev.data or {}
  return { time = ev.time, kind = d.scope, app_id = d.app_id, instance_id = d.instance_id,
    compose_hash = d.compose_hash, allowed = d.allowed == true, reason = d.reason,
    policy_version = d.policy_version, policy_sha256 = d.policy_sha256, policy = d.policy,
    backend = d.backend, seq = ev.seq }
end

--- A ring subscribed to the bus. opts = { capacity (M.CAPACITY), bus (the process's) }.
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ capacity = opts.capacity or M.CAPACITY, items = {}, head = 0,
    count = 0 }, Ring)
  self.sub = (opts.bus or events.default()):subscribe('kms.decision', function(ev)
    self:add(M.record(ev))
  end)
  return self
end

--- Add a record.
function Ring:add(rec)
  self.head = self.head % self.capacity + 1
  self.items[self.head] = rec
  self.count = math.min(self.count + 1, self.capacity)
end

--- The newest `n` records (default all kept), newest first.
function Ring:list(n)
  n = math.min(n or self.count, self.count)
  local out = {}
  for i = 0, n - 1 do
    out[#out + 1] = self.items[(self.head - i - 1) % self.capacity + 1]
  end
  return out
end

--- Stop listening to the bus. Idempotent.
function Ring:close()
  if self.sub then
    self.sub:close()
    self.sub = nil
  end
end

return M
