-- SPDX-License-Identifier: Apache-2.0
-- The gateway service (kms-vmm-gateway.md §6), in the service shape: start (the state from
-- data_dir, the routing policy, the WireGuard hub, the special-id listener, the data path with
-- its first snapshot, the certbot (ACME, when configured), the rpc listener with RegisterCvm
-- over mutual TLS, the admin listener with /metrics, the recycle timer), stop, status, reload
-- (SIGHUP: the routing policy and a fresh snapshot; `proxy.certs`, `debug`, `node.status` and
-- `recycle` apply in place, other changed keys need a restart) and rebind (adopt swapped code).
-- With only `proxy` and `debug` configured it runs the data path alone (no WireGuard, no RPC).
-- With `cluster` the state is shared on etcd (moonstack.gateway.cluster): loaded before the
-- listeners, watched after.
local uv = require('luv')
local fs = require('moonstack.core.fs')
local http = require('moonstack.http.server')
local logging = require('moonstack.core.log')
local state_mod = require('moonstack.gateway.state')
local proxy = require('moonstack.gateway.proxy')
local metrics = require('moonstack.gateway.metrics')
local task = require('moonstack.core.task')

local M = {}

--- The version reported in Info and X-App-Version.
M.VERSION = '0.1.0'

local Gateway = {}
Gateway.__index = Gateway
M.Gateway = Gateway

-- This node's uuid (16 random bytes kept in <data_dir>/node_uuid; fresh per start without one).
local function node_uuid(dir)
  local path = dir and dir .. '/node_uuid'
  local have = path and fs.read_file(path, 64)
  if have and #have == 16 then
    return have
  end
  local id = require('moonstack.crypto').random(16)
  if path then
    fs.write_atomic(path, id, 384)
  end
  return id
end

-- A self-signed certificate and key (PEMs) for `cn` and `sans` (development only).
local function self_signed(cn, sans)
  local x509 = require('moonstack.x509')
  local key = x509.generate_key()
  local cert, err, code = x509.issue({ subject = cn, sans = sans, key = key, days = 365,
    eku = { 'server_auth' } })
  if not cert then
    return nil, err, code
  end
  return { cert = cert:pem(), key = key:pkcs8_pem() }
end

--- Start the gateway from a validated config (moonstack.gateway.config), in a task. Returns
--- the Gateway object or nil, msg, code (everything opened so far is closed again).
function M.start(cfg, log)
  assert(type(cfg) == 'table' and cfg.proxy, 'gateway.start: a validated config required')
  log = log or logging.new('gateway')
  if cfg.log.level then
    logging.set_level(cfg.log.level)
  end
  if cfg.log.json ~= nil then
    logging.set_json(cfg.log.json)
  end
  local self = setmetatable({ cfg = cfg, log = log, VERSION = M.VERSION,
    node_status = cfg.node.status }, Gateway)
  local ok, err, code = self:_open()
  if not ok then
    self:stop()
    return nil, err, code
  end
  log.info('gateway ready', { proxy = self.proxy:port() and ('%s:%d'):format(
    cfg.proxy.listen.host, self.proxy:port()) or nil,
    rpc = self.rpc_server and self.rpc_server:address() or nil,
    admin = self.admin_server and self.admin_server:address() or nil,
    wg = self.hub and self.hub:public_key() or nil, instances = self.state:count() })
  return self
end

function Gateway:_open()
  local cfg = self.cfg
  local err, code
  if cfg.data_dir then
    local ok, merr, mcode = fs.mkdir_p(cfg.data_dir, 448)
    if not ok then
      return nil, 'data_dir: ' .. tostring(merr), mcode
    end
  end
  self.uuid = node_uuid(cfg.data_dir)
  self.state = state_mod.new({ wg = cfg.wg, data_dir = cfg.data_dir })
  local ok
  ok, err, code = self.state:load()
  if not ok then
    return nil, err, code
  end
  if cfg.cluster then -- the instances from etcd; a refusal (overlapping ranges) stops the start
    self.cluster, err, code = require('moonstack.gateway.cluster').new(self)
    if not self.cluster then
      return nil, err, code
    end
    ok, err, code = self.cluster:open()
    if not ok then
      return nil, err, code
    end
  end
  self.metrics = metrics.new(self)
  self.certs, err, code = proxy.load_certs(cfg.proxy.certs)
  if not self.certs then
    return nil, err, code
  end
  if #self.certs == 0 and cfg.proxy.self_signed_cert then
    local d = cfg.proxy.base_domain
    self.certs[1], err, code = self_signed('*.' .. d, { '*.' .. d, d })
    if not self.certs[1] then
      return nil, 'proxy.self_signed_cert: ' .. tostring(err), code
    end
    self.log.warn('the proxy terminates TLS with a self-signed certificate (proxy.self_signed_cert)')
  end
  if cfg.routing_policy then
    self.routing, err, code = require('moonstack.gateway.routing').start(cfg.routing_policy,
      self.log, function() self:republish() end)
    if not self.routing then
      return nil, err, code
    end
  end
  if cfg.wg then
    self.hub, err, code = require('moonstack.gateway.wg').open({ cfg = cfg.wg, state = self.state,
      log = self.log, data_dir = cfg.data_dir })
    if not self.hub then
      return nil, err, code
    end
  end
  self.special_server, err, code = require('moonstack.gateway.special').start(self)
  if not self.special_server then
    return nil, err, code
  end
  self.special = self.special_server.special
  self.proxy, err, code = proxy.start(self)
  if not self.proxy then
    return nil, err, code
  end
  self.state:on_change(function() self:republish() end)
  if cfg.certbot then
    self.certbot, err, code = require('moonstack.gateway.certbot').start(self,
      self.cluster and self.cluster:cert_store() or nil)
    if not self.certbot then
      return nil, err, code
    end
  end
  self:_bind()
  ok, err, code = self:_listen()
  if not ok then
    return nil, err, code
  end
  self:_recycle_timer()
  if self.cluster then
    self.cluster:run()
  end
  return true
end

-- Build the handlers from the gateway's code as it is now (at start and after a code swap).
function Gateway:_bind()
  if self.cfg.rpc then
    self.handler = require('moonstack.gateway.api').handler(self)
  end
  if self.cfg.admin then
    self.admin_handler = require('moonstack.gateway.admin').handler(self, self.admin_creds)
  end
end

--- Adopt the gateway's swapped code (moonstack.daemon.code).
function M.rebind(gw)
  setmetatable(gw, Gateway)
  gw:_bind()
end

-- Open the rpc and admin listeners. True or nil, msg, code.
function Gateway:_listen()
  local cfg = self.cfg
  if cfg.rpc then
    local r = cfg.rpc
    local files = {}
    for _, k in ipairs({ 'cert', 'key', 'kms_ca' }) do
      if r[k] then
        local text, err, code = fs.read_file(r[k], 1024 * 1024)
        if not text then
          return nil, ('rpc.%s: %s'):format(k, tostring(err)), code
        end
        files[k] = text
      end
    end
    if not files.cert then
      local id, err, code = self_signed('dstack-gateway', { 'localhost', '127.0.0.1' })
      if not id then
        return nil, 'rpc: ' .. tostring(err), code
      end
      files.cert, files.key = id.cert, id.key
      self.log.warn('the rpc listener uses a self-signed certificate (no rpc.cert): CVMs that '
        .. 'check the gateway against the KMS root will refuse it')
    end
    local srv = http.new({ name = 'gateway-rpc', max_body = r.max_body,
      listen = { host = r.listen.host, port = r.listen.port },
      headers = { ['x-app-version'] = M.VERSION },
      -- a client certificate is optional at the TLS layer (Info, health), but one that does not
      -- chain to the KMS root fails the handshake; RegisterCvm requires one
      tls = { cert = files.cert, key = files.key, ca = files.kms_ca, client_cert = 'request' } })
    srv:route('*', '/*', function(req) return self.handler(req) end)
    local ok, err, code = srv:listen()
    if not ok then
      return nil, 'rpc listener: ' .. tostring(err), code
    end
    self.rpc_server = srv
  end
  if cfg.admin then
    local creds, err, code = require('moonstack.gateway.admin').credentials(cfg.admin)
    if not creds then
      return nil, 'admin: ' .. tostring(err), code
    end
    if creds.insecure then
      self.log.warn('ADMIN LISTENER WITHOUT AUTHENTICATION (admin.insecure_no_auth)')
    end
    self.admin_creds = creds
    self.login_limit = require('moonstack.http.login_limit').new(cfg.admin.failed_logins)
    self:_bind()
    local srv = http.new({ name = 'gateway-admin', max_body = 64 * 1024,
      listen = { host = cfg.admin.listen.host, port = cfg.admin.listen.port },
      headers = { ['x-app-version'] = M.VERSION } })
    self.dashboard = require('moonstack.gateway.dashboard').mount(self, srv) -- before the catch-all
    srv:route('*', '/*', function(req) return self.admin_handler(req) end)
    local ok
    ok, err, code = srv:listen()
    if not ok then
      return nil, 'admin listener: ' .. tostring(err), code
    end
    self.admin_server = srv
  end
  return true
end

function Gateway:_recycle_timer()
  local r = self.cfg.recycle
  if self.recycle_timer then
    self.recycle_timer:close()
    self.recycle_timer = nil
  end
  if not (r.enabled and self.cfg.wg) then
    return
  end
  local ms = math.max(50, math.floor(r.interval * 1000))
  self.recycle_timer = uv.new_timer()
  self.recycle_timer:start(ms, ms, function()
    local gone = self.state:recycle(self.cfg.recycle.timeout,
      self.cluster and self.cluster.node_id or nil)
    if self.cluster and #gone > 0 then
      task.spawn_named('gateway:recycle-etcd', function()
        for _, inst in ipairs(gone) do
          self.cluster:delete_instance(inst.instance_id)
        end
      end)
    end
    for _, inst in ipairs(gone) do
      self.log.info('instance recycled (no handshake within recycle.timeout)',
        { instance_id = inst.instance_id, app_id = inst.app_id, ip = inst.ip })
    end
  end)
end

--- Count and log a refused registration (reason: a short lowercase word).
function Gateway:refused(reason, peer, err)
  self.metrics:refused(reason)
  self.log.warn('RegisterCvm refused', { reason = reason, peer = peer, error = err })
end

--- Publish a fresh snapshot soon (debounced).
function Gateway:republish()
  if self.proxy then
    self.proxy:publish_soon()
  end
end

--- Serve `c` ({ cert = chain PEM, key = PEM }) for base domain `domain` (the certbot's): a new
--- snapshot now; connections in flight keep the certificate they started with. A certificate
--- the data path refuses leaves the previous one in place. True or nil, msg.
function Gateway:set_acme_cert(domain, c)
  self.acme_certs = self.acme_certs or {}
  local old = self.acme_certs[domain]
  self.acme_certs[domain] = c
  if self.proxy then
    local ok, err = self.proxy:publish()
    if not ok then
      self.acme_certs[domain] = old
      self.proxy:publish()
      return nil, err
    end
  end
  return true
end

--- The bound port of the rpc / admin / proxy listener (nil when not enabled).
function Gateway:rpc_port()
  return self.rpc_server and self.rpc_server:port()
end

function Gateway:admin_port()
  return self.admin_server and self.admin_server:port()
end

function Gateway:proxy_port()
  return self.proxy and self.proxy:port()
end

-- Config keys a running gateway applies in place.
local LIVE = { routing_policy = true, control = true, debug = true, node = true, recycle = true,
  log = true, metrics = true }

--- Reload (SIGHUP): the routing policy file is read again and a fresh snapshot published;
--- changed keys in LIVE (and proxy.certs) apply, others answer ERESTART and change nothing.
function Gateway:reload(cfg, changed)
  local restart = {}
  for _, k in ipairs(changed or {}) do
    if not LIVE[k] and k ~= 'proxy' then
      restart[#restart + 1] = k
    end
  end
  local certs
  if cfg and cfg.proxy and cfg ~= self.cfg then
    local old_p, new_p = self.cfg.proxy, cfg.proxy
    for k, v in pairs(new_p) do
      if k ~= 'certs' and not require('moonstack.core.tables').equal(v, old_p[k]) then
        restart[#restart + 1] = 'proxy.' .. k
      end
    end
    if #restart == 0 then
      local err, code
      certs, err, code = proxy.load_certs(new_p.certs)
      if not certs then
        return nil, err, code
      end
    end
  end
  if #restart > 0 then
    table.sort(restart)
    return nil, ('ERESTART: %s changed: restart the gateway to apply'):format(
      table.concat(restart, ', ')), 'ERESTART'
  end
  if cfg and cfg ~= self.cfg then
    local policy_changed = not require('moonstack.core.tables').equal(cfg.routing_policy,
      self.cfg.routing_policy)
    if policy_changed and (cfg.routing_policy == nil) ~= (self.cfg.routing_policy == nil) then
      return nil, 'ERESTART: routing_policy added or removed: restart the gateway', 'ERESTART'
    end
    self.cfg, self.certs = cfg, certs or self.certs
    self.node_status = cfg.node.status
    self:_recycle_timer()
    if self.cluster then
      task.spawn_named('gateway:etcd-node', function() self.cluster:put_node() end)
    end
  end
  if self.routing then
    local s, err, code = self.routing:reload()
    if not s then
      return nil, 'routing_policy: ' .. tostring(err), code
    end
  end
  self.proxy:publish()
  return self:status()
end

--- A snapshot for the REPL.
function Gateway:status()
  return { proxy_port = self:proxy_port(), rpc = self.rpc_server and self.rpc_server:address(),
    admin = self.admin_server and self.admin_server:address(), instances = self.state:count(),
    node_status = self.node_status, snapshot_version = self.proxy and self.proxy.version,
    data_path = self.proxy and self.proxy.native ~= nil, wg = self.hub and self.hub:status(),
    routing = self.routing and self.routing:status(),
    certbot = self.certbot and self.certbot:status(),
    cluster = self.cluster and self.cluster:status() or nil }
end

--- Stop everything. Idempotent.
function Gateway:stop()
  if self.dashboard then
    self.dashboard.close()
    self.dashboard = nil
  end
  if self.recycle_timer then
    self.recycle_timer:close()
    self.recycle_timer = nil
  end
  if self.certbot then
    self.certbot:close()
    self.certbot = nil
  end
  for _, k in ipairs({ 'admin_server', 'rpc_server', 'special_server' }) do
    if self[k] then
      self[k]:close()
      self[k] = nil
    end
  end
  for _, k in ipairs({ 'cluster', 'proxy', 'hub', 'routing' }) do
    if self[k] then
      self[k]:close()
      self[k] = nil
    end
  end
end

Gateway.close = Gateway.stop

return M
