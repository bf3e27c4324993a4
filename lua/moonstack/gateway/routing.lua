-- SPDX-License-Identifier: Apache-2.0
-- The gateway's routing policy (DESIGN §5.2, moonstack.policy): an operator file
-- `{ name, version, on_route, tests? }` run in policy worker processes. on_route(meta) gets
-- meta = { app_id, instance_id?, port, mode?, sni?, client? } and returns { allow, reason?,
-- to_port?, pp? } (a different backend port; PROXY header on/off). Decisions are made when the
-- route snapshot is built (every registered instance and app × its policy ports) and for the
-- first connection of a key the snapshot lacks (the data path's on_route_miss), then cached
-- per key until the policy changes; never per connection in steady state. Reload (SIGHUP, the
-- file watch, gw.reload_policy()) swaps the policy only when the new file loads and passes its
-- tests: a broken file is refused and the old policy keeps deciding. Any failure of a decision
-- (error, timeout, crash, bad answer) is a deny.
local pfile = require('moonstack.policy.file')
local tables = require('moonstack.core.tables')

local M = {}

local Routing = {}
Routing.__index = Routing

--- Start the routing policy (in a task). cfg = config.routing_policy ({ path, watch,
--- debounce_ms, workers, limits }); on_change() is called after the active policy changed.
--- Returns it or nil, msg, code (the file does not load: the start fails).
function M.start(cfg, log, on_change)
  local self = setmetatable({ cfg = cfg, log = log, cache = {}, reloads = 0, failures = 0,
    on_change = on_change }, Routing)
  local file, loaded, code = pfile.open({ path = cfg.path, name = 'gateway-route',
    limits = cfg.limits, required = { 'on_route' }, workers = cfg.workers, watch = cfg.watch,
    debounce_ms = cfg.debounce_ms, log = log, label = 'gateway',
    on_reload = function(ok) self:_after_reload(ok) end })
  if not file then
    return nil, 'routing_policy: ' .. tostring(loaded), code
  end
  self.file, self.host, self.sha = file, file.host, loaded.sha256
  return self
end

-- After a load attempt of the file watch: count it, and drop the cached decisions if the policy
-- changed (a load that found the policy already active, loaded by gw.reload_policy() first, is
-- neither).
function Routing:_after_reload(ok)
  if not ok then
    self.failures = self.failures + 1
    return
  end
  local a = self.host:active()
  if a and a.sha256 ~= self.sha then
    self.sha = a.sha256
    self.reloads = self.reloads + 1
    self.cache = {}
    if self.on_change then
      self.on_change()
    end
  end
end

--- Reload the file now (in a task). Returns the active policy's summary, or nil, msg, code
--- (the previous policy stays).
function Routing:reload()
  local s, err, code = self.file:reload()
  if not s then
    self.failures = self.failures + 1
    return nil, err, code
  end
  if s.sha256 ~= self.sha then
    self.sha = s.sha256
    self.cache = {}
    if self.on_change then
      self.on_change()
    end
  end
  self.reloads = self.reloads + 1
  return s
end

--- The route entry for a decision: { allow, to_port?, pp? } (a to_port outside 1..65535 is a
--- deny: the policy answered nonsense).
function M.route_of(d)
  local r = { allow = d.allow == true }
  if d.to_port ~= nil then
    if d.to_port < 1 or d.to_port > 65535 or d.to_port % 1 ~= 0 then
      return { allow = false }
    end
    r.to_port = d.to_port
  end
  if d.pp ~= nil then
    r.pp = d.pp
  end
  return r
end

--- The decision for `key` ('<id>:<port>') and `meta` (cached; asked in a task). Returns the
--- route entry.
function Routing:decide(key, meta)
  local hit = self.cache[key]
  if hit then
    return hit
  end
  local input = {}
  for _, k in ipairs({ 'app_id', 'instance_id', 'port', 'mode', 'sni', 'client' }) do
    input[k] = meta[k]
  end
  local d, err = self.host:decide('on_route', input)
  local r = M.route_of(d)
  if err then
    -- a failed decision denies this connection only: the next one asks again
    self.log.warn('routing policy failed: deny', { key = key, error = err })
    return r
  end
  self.cache[key] = r
  return r
end

--- The cached route entry of `key`, or nil.
function Routing:cached(key)
  return self.cache[key]
end

--- { path, name, version, sha256, reloads, failures, decisions, allowed, denied, cached }
function Routing:status()
  local a = self.host:active() or {}
  local n = tables.count(self.cache)
  local st = self.host.stats
  return { path = self.cfg.path, name = a.name, version = a.version, sha256 = a.sha256,
    reloads = self.reloads, failures = self.failures, decisions = st.decisions,
    allowed = st.allowed, denied = st.denied, cached = n,
    watching = self.file:watching() }
end

--- Stop watching and kill the policy workers.
function Routing:close()
  self.file:close()
end

return M
