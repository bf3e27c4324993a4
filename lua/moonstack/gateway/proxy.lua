-- SPDX-License-Identifier: Apache-2.0
-- The gateway's data path, driven from Lua (DESIGN §6): the route snapshot is built here from
-- the registered instances (moonstack.gateway.state), the proxy config and the routing
-- policy's decisions, and published to the C proxy (moonstack.native.proxy, contract §1), which
-- runs every connection without Lua. Republished (debounced) after a registration, a recycle,
-- a handshake refresh, a port-policy change, a policy reload or a config reload. A connection
-- for a key the snapshot has no decision for asks on_route_miss: the policy decides in a task
-- and the answer goes back with p:decide (and into the next snapshot).
local uv = require('luv')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')
local sorted_keys = require('moonstack.core.tables').sorted_keys
local state_mod = require('moonstack.gateway.state')

local M = {}

--- Milliseconds a burst of changes is coalesced into one publish.
M.DEBOUNCE_MS = 20

-- The `ports` table of the snapshot for a port policy ({ [port] = { pp } }), or nil.
local function ports_of(policy)
  if not policy then
    return nil
  end
  local out = {}
  for _, p in ipairs(policy.ports or {}) do
    out[p.port] = { pp = p.pp == true }
  end
  return out
end

--- The keys to decide for `instances` (state:list()): '<instance_id>:<port>' and
--- '<app_id>:<port>' for each port of each instance's effective port policy, with their meta.
function M.route_keys(instances)
  local keys = {}
  for _, inst in ipairs(instances) do
    local policy = state_mod.effective_port_policy(inst)
    for _, p in ipairs(policy and policy.ports or {}) do
      keys[inst.instance_id .. ':' .. p.port] = { app_id = inst.app_id,
        instance_id = inst.instance_id, port = p.port }
      local ak = inst.app_id .. ':' .. p.port
      keys[ak] = keys[ak] or { app_id = inst.app_id, port = p.port }
    end
  end
  return keys
end

--- The snapshot for the native proxy (contract §1) from gw = { cfg, state, certs = { {cert,
--- key} PEMs }, acme_certs = { [domain] = {cert, key} }?, special = { host, port }? } and
--- `routes` ({ [key] = {allow, to_port?, pp?} }).
function M.snapshot(gw, routes, version)
  local p = gw.cfg.proxy
  local domains, acme = {}, gw.acme_certs or {}
  -- the certbot's certificates (moonstack.gateway.certbot) per base domain, then proxy.certs
  -- for the base domain unless the certbot serves it
  for _, d in ipairs(sorted_keys(acme)) do
    domains[#domains + 1] = { domain = d, cert = acme[d].cert, key = acme[d].key }
  end
  if not acme[p.base_domain] then
    for _, c in ipairs(gw.certs or {}) do
      domains[#domains + 1] = { domain = p.base_domain, cert = c.cert, key = c.key }
    end
    -- no certificate (yet): the base domain still routes its passthrough (`s`) names; a name to
    -- terminate is refused `no-cert`
    if #(gw.certs or {}) == 0 then
      domains[#domains + 1] = { domain = p.base_domain }
    end
  end
  local instances, apps = {}, {}
  for _, inst in ipairs(gw.state:list()) do
    local policy = state_mod.effective_port_policy(inst)
    instances[inst.instance_id] = { app_id = inst.app_id, ip = inst.ip,
      last_handshake = inst.last_handshake or 0, ports = ports_of(policy),
      restrict = policy and policy.restrict_mode == true or false }
    apps[inst.app_id] = apps[inst.app_id] or {}
  end
  return {
    version = version,
    base_domains = domains,
    insecure_localhost = gw.cfg.debug.insecure_localhost_backend,
    special = gw.special,
    instances = instances,
    apps = apps,
    routes = routes or {},
    handshake_stale = p.timeouts.handshake_stale,
    cache_top_n = p.timeouts.cache_top_n,
    custom_domains = { prefix = p.app_address_ns_prefix, compat = p.app_address_ns_compat,
      servers = p.app_address_dns_servers, timeout = p.timeouts.dns_resolve },
  }
end

--- The proxy.new() options of a validated proxy config.
function M.options(p)
  local t = p.timeouts
  return { listen = { { host = p.listen.host, port = p.listen.port } }, workers = p.workers,
    timeouts = { connect = t.connect, handshake = t.handshake, idle = t.idle, shutdown = t.shutdown,
      total = t.total, pp_header = t.pp_header },
    buffer_size = p.buffer_size, inbound_pp = p.inbound_pp_enabled,
    max_connections_per_app = p.max_connections_per_app, connect_top_n = p.connect_top_n,
    splice = p.tcp_splice, io_uring = p.io_uring }
end

--- The certificates of proxy.certs read from their files: { {cert, key} PEMs } or nil, msg,
--- code naming the field.
function M.load_certs(certs)
  local out = {}
  for i, c in ipairs(certs) do
    local cert, err, code = fs.read_file(c.cert, 1024 * 1024)
    if not cert then
      return nil, ('proxy.certs[%d].cert: %s'):format(i, err), code
    end
    local key
    key, err, code = fs.read_file(c.key, 1024 * 1024)
    if not key then
      return nil, ('proxy.certs[%d].key: %s'):format(i, err), code
    end
    out[i] = { cert = cert, key = key }
  end
  return out
end

local Proxy = {}
Proxy.__index = Proxy

--- Start the data path for gateway `gw` ({ cfg, state, certs, special, routing?, log }):
--- bind the listeners (the native proxy; when it is not built into this binary the control
--- plane runs alone and says so) and publish the first snapshot. In a task. Returns the
--- publisher or nil, msg, code.
function M.start(gw, native)
  local self = setmetatable({ gw = gw, log = gw.log, version = 0, publishes = 0,
    publish_failures = 0 }, Proxy)
  if native == nil then
    local ok, mod = pcall(require, 'moonstack.native.proxy')
    native = ok and mod or false
  end
  if native then
    local p, err, code = native.new(M.options(gw.cfg.proxy))
    if not p then
      return nil, ('proxy listener %s:%d: %s'):format(gw.cfg.proxy.listen.host,
        gw.cfg.proxy.listen.port, tostring(err)), code
    end
    self.native = p
    if gw.routing then
      p:on_route_miss(function(key, meta) self:_miss(key, meta) end)
    end
  else
    gw.log.warn('this binary has no data path (moonstack.native.proxy): the control plane runs '
      .. 'without proxying')
  end
  local ok, err = self:publish()
  if not ok then
    -- a certificate that does not load, say: the gateway does not start without a data path
    if self.native then
      self.native:close()
    end
    return nil, 'proxy: ' .. tostring(err), 'ECONFIG'
  end
  return self
end

-- A connection needs a decision for `key`: ask the policy in a task, answer the native.
function Proxy:_miss(key, meta)
  task.spawn_named('gateway:route-miss', function()
    local r = self.gw.routing:decide(key, meta)
    if self.native then
      self.native:decide(key, r)
    end
  end)
end

--- The bound port of the proxy listener (nil without a data path).
function Proxy:port()
  return self.native and self.native:port(1)
end

--- Build and publish a snapshot now (in a task: policy decisions may be asked). Returns the
--- version published.
function Proxy:publish()
  local gw = self.gw
  local routes = {}
  if gw.routing then
    for key, meta in pairs(M.route_keys(gw.state:list())) do
      routes[key] = gw.routing:decide(key, meta)
    end
    -- decisions made for the first connection of a key (on_route_miss) stay in the snapshot
    -- until the policy changes: steady state never asks Lua
    for key, r in pairs(gw.routing.cache) do
      routes[key] = routes[key] or r
    end
  end
  self.version = self.version + 1
  local snap = M.snapshot(gw, routes, self.version)
  self.last = snap
  if self.native then
    local ok, v, msg = pcall(self.native.publish, self.native, snap)
    local err = not ok and v or (v == nil and msg) or nil
    if err then
      self.publish_failures = self.publish_failures + 1
      self.log.error('snapshot refused by the data path', { error = tostring(err),
        version = self.version })
      return nil, err
    end
  end
  self.publishes = self.publishes + 1
  return self.version
end

--- publish() soon: changes within DEBOUNCE_MS (and during a publish) make one snapshot.
function Proxy:publish_soon()
  if self.pending then
    return
  end
  self.pending = true
  local timer = uv.new_timer()
  timer:start(M.DEBOUNCE_MS, 0, function()
    timer:close()
    task.spawn_named('gateway:publish', function()
      while self.publishing do
        task.sleep(5)
      end
      self.pending = false
      self.publishing = true
      local ok, err = pcall(self.publish, self)
      self.publishing = false
      if not ok then
        self.log.error('snapshot build failed', { error = tostring(err) })
      end
    end)
  end)
end

--- The data path's counters (contract §1 p:counters()), or nil without one.
function Proxy:counters()
  return self.native and self.native:counters() or nil
end

--- The active connections (at most `max`), {} without a data path.
function Proxy:conns(max)
  return self.native and self.native:conns(max) or {}
end

--- Stop the listeners (connections drain up to the shutdown timeout). Idempotent.
function Proxy:close()
  if self.native then
    self.native:close()
    self.native = nil
  end
end

return M
