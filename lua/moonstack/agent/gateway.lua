-- SPDX-License-Identifier: Apache-2.0
-- The agent's gateway registration (spec kms-vmm-gateway.md §6.6 guest side, §1.3 step 8): a
-- CVM whose app-compose has gateway_enabled (or tproxy_enabled, or features tproxy-net)
-- registers with the gateway after its boot, as upstream's guest does:
--   1. the client certificate from the KMS's SignCert (CN dstack-guest-agent, clientAuth,
--      app-info extension; moonstack.agent.gateway_cache, reused while >= 10 min are left) and
--      the WireGuard key, both cached 0600 in <dir>/gateway-cache.json;
--   2. RegisterCvm at each gateway URL in turn (sys-config gateway_urls, or gateway.urls) over
--      mutual TLS, the gateway's certificate chained to the KMS root CA and, when
--      keys.gateway_app_id names one, carrying that app id (moonstack.gateway.client);
--   3. its own WireGuard interface (moonstack.wg): <interface> (dstack-wg0), listen port 9182,
--      Address client_ip/32, the servers sorted by public key as peers (AllowedIPs server
--      ip/32, Endpoint, PersistentKeepalive 25) with a route to each, and the same as a
--      wg-quick file <dir>/<interface>.conf (0600); wireguard-go's socket lives in <dir>.
-- Then, in the background: re-register every register_interval_ms, or when no handshake with
-- any server for handshake_stale_ms (checked every check_interval_ms); a failure is retried
-- after retry_min_ms, doubling up to retry_max_ms. A failure never stops the app: it is logged,
-- published on the event bus ('agent.gateway') and retried. The first attempt and the first
-- success are boot steps ('gateway').
--
--   local gw = gateway.start(ctx, cfg.gateway)  -- nil when not enabled for this app
--   gw:status(); gw:register_now() (inside a task); gw:stop()
local uv = require('luv')
local events = require('moonstack.core.events')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')
local wg = require('moonstack.wg')
local client = require('moonstack.gateway.client')
local cache_mod = require('moonstack.agent.gateway_cache')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- Defaults of the agent config's `gateway` table (moonstack.agent.config).
M.DEFAULTS = { enabled = 'auto', interface = 'dstack-wg0', listen_port = 9182,
  register_interval_ms = 180000, handshake_stale_ms = 180000, check_interval_ms = 10000,
  retry_min_ms = 30000, retry_max_ms = 120000, timeout_ms = 30000, cert_days = 10,
  keepalive = 25, userspace = 'wireguard-go' }

--- Whether app-compose asks for the gateway (gateway_enabled | tproxy_enabled | features
--- tproxy-net).
function M.wanted(app)
  if type(app) ~= 'table' then
    return false
  end
  if app.gateway_enabled == true or app.tproxy_enabled == true then
    return true
  end
  for _, f in ipairs(type(app.features) == 'table' and app.features or {}) do
    if f == 'tproxy-net' then
      return true
    end
  end
  return false
end

--- The gateway URLs: gateway.urls, else sys-config gateway_urls (alias tproxy_urls).
function M.urls(gcfg, sys_config)
  local sc = type(sys_config) == 'table' and sys_config or {}
  local list = gcfg.urls or sc.gateway_urls or sc.tproxy_urls
  local out = {}
  for _, u in ipairs(type(list) == 'table' and list or {}) do
    if type(u) == 'string' and u:match('^https?://') then
      out[#out + 1] = u
    end
  end
  return out
end

--- The port policy the CVM reports at registration: app-compose's port_policy, else its default
--- (no port listed, restrict_mode false: every port, no PROXY header). Always sent: a gateway
--- that knows no policy for an instance denies every port of it.
function M.port_policy(app)
  local p = type(app) == 'table' and app.port_policy
  if type(p) == 'table' then
    return p
  end
  return { restrict_mode = false }
end

local Gateway = {}
Gateway.__index = Gateway

function Gateway:__tostring()
  return ('agent gateway<%s, %s>'):format(self.cfg.interface, self.state)
end

-- Publish the registration state (event bus) and keep it for status().
function Gateway:_set(state, fields)
  self.state = state
  local ev = { state = state }
  for k, v in pairs(fields or {}) do
    ev[k] = v
  end
  events.publish('agent.gateway', ev)
end

-- host:port with a name resolved to an IPv4 address (inside a task): 'a.b.c.d:port' or nil, msg.
local function resolve(endpoint)
  local host, port = endpoint:match('^%[(.+)%]:(%d+)$')
  if not host then
    host, port = endpoint:match('^(.+):(%d+)$')
  end
  if host:match('^%d+%.%d+%.%d+%.%d+$') then
    return endpoint
  end
  if host:find(':', 1, true) then
    return ('[%s]:%s'):format(host, port)
  end
  local res, err = task.await(function(resume)
    uv.getaddrinfo(host, nil, { socktype = 'dgram', family = 'inet' }, function(e, list)
      resume(not e and list or nil, e)
    end)
  end, { timeout = 10000 })
  if not res or not res[1] then
    return errors.fail('ENOTFOUND', ('cannot resolve %s: %s'):format(host, tostring(err)))
  end
  return res[1].addr .. ':' .. port
end

-- Whether `host` names a loopback address (localhost, 127.x, ::1).
local function loopback(host)
  host = host:lower()
  return host == 'localhost' or host == '::1' or host:match('^127%.%d+%.%d+%.%d+$') ~= nil
end

--- The WireGuard endpoint to dial for a server's advertised `endpoint` ('host:port'), the
--- registration having gone through gateway URL `url`: a loopback endpoint names the gateway's
--- own host, which this CVM reached at `url`'s host, so that host with the endpoint's port
--- (a QEMU guest on user networking reaches its host's loopback as 10.0.2.2); any other
--- endpoint, or a loopback `url`, as given.
function M.endpoint_for(endpoint, url)
  local host, port = endpoint:match('^%[(.+)%]:(%d+)$')
  if not host then
    host, port = endpoint:match('^(.+):(%d+)$')
  end
  local via = type(url) == 'string' and (url:match('^%a[%w+.-]*://%[([^%]]+)%]')
    or url:match('^%a[%w+.-]*://([^/:]+)'))
  if not host or not via or not loopback(host) or loopback(via) then
    return endpoint
  end
  return (via:find(':', 1, true) and ('[%s]:%s') or '%s:%s'):format(via, port)
end

-- The peers of a registration through `url`: servers sorted by public key (endpoints resolved
-- when live).
local function peers_of(reg, keepalive, live, url)
  local servers = {}
  for i, s in ipairs(reg.wg.servers) do
    servers[i] = s
  end
  table.sort(servers, function(a, b) return a.pk < b.pk end)
  local peers, routes = {}, {}
  for i, s in ipairs(servers) do
    local endpoint = s.endpoint and M.endpoint_for(s.endpoint, url)
    if live and endpoint then
      local err, code
      endpoint, err, code = resolve(endpoint)
      if not endpoint then
        return nil, err, code
      end
    end
    peers[i] = { public_key = s.pk, allowed_ips = { s.ip .. '/32' }, endpoint = endpoint,
      persistent_keepalive = keepalive }
    routes[i] = s.ip .. '/32'
  end
  return peers, routes
end

-- Bring the interface to the registration's config (inside a task): true or nil, msg, code.
function Gateway:_apply(reg, key)
  local cfg = self.cfg
  local address = reg.wg.client_ip .. '/32'
  local file_peers = peers_of(reg, cfg.keepalive, false, self.url)
  local ok, err, code = fs.write_atomic(self.conf_path, wg.render_config({ private_key = key,
    listen_port = cfg.listen_port, address = address, peers = file_peers }), 384)
  if not ok then
    return nil, err, code
  end
  local peers, routes
  peers, routes, code = peers_of(reg, cfg.keepalive, true, self.url)
  if not peers then
    return nil, routes, code
  end
  local shape = address .. ' ' .. table.concat(routes, ',')
  if self.dev and (self.dev_shape ~= shape or self.dev_key ~= key or not self.dev:alive()) then
    self.dev:close()
    self.dev = nil
  end
  if not self.dev then
    local dev
    dev, err, code = wg.open({ ifname = cfg.interface, private_key = key,
      listen_port = cfg.listen_port, address = address, routes = routes, run_dir = self.dir,
      userspace = cfg.userspace, netns = cfg.netns }, log)
    if not dev then
      return nil, err, code
    end
    self.dev, self.dev_shape, self.dev_key = dev, shape, key
  end
  return self.dev:set_peers(peers)
end

--- One registration across the gateway URLs (inside a task): true or nil, msg, code.
function Gateway:register_now()
  local ctx, cfg = self.ctx, self.cfg
  local cache = cache_mod.load(self.cache_path)
  local key = cache_mod.wg_key(cache)
  local ident, err, code = cache_mod.client_cert(cache, ctx, cfg)
  local ok, serr = cache_mod.save(self.cache_path, cache)
  if not ok then
    log.warn('cannot write the gateway cache', { error = serr })
  end
  if not ident then
    return nil, err, code
  end
  local ca = ctx.keys and ctx.keys.ca_cert_pem
  if type(ca) ~= 'string' or ca == '' then
    return errors.fail('ENOTSUP', 'no KMS root CA to check the gateway against')
  end
  local failures, reg = {}, nil
  for _, url in ipairs(self.urls) do
    reg, err, code = client.register_cvm({ url = url, identity = ident, ca = ca,
      gateway_app_id = ctx.keys.gateway_app_id, public_key = wg.public_key_of(key),
      port_policy = M.port_policy(ctx.app_compose), skip_hostname = cfg.skip_hostname,
      timeout_ms = cfg.timeout_ms })
    if reg then
      self.url = url
      break
    end
    failures[#failures + 1] = err
  end
  if not reg then
    return nil, table.concat(failures, '; '), code
  end
  ok, err, code = self:_apply(reg, key)
  if not ok then
    return nil, 'WireGuard: ' .. tostring(err), code
  end
  self.registration, self.registered_at = reg, uv.now()
  self.registrations = self.registrations + 1
  cache.registration = { client_ip = reg.wg.client_ip, servers = reg.wg.servers, agent = reg.agent,
    url = self.url, at = os.time() }
  cache_mod.save(self.cache_path, cache)
  return true
end

-- The newest handshake with any server (unix seconds, 0: none) — inside a task.
function Gateway:_latest_handshake()
  if not self.dev then
    return 0
  end
  local hs = self.dev:handshakes()
  local latest = 0
  for _, t in pairs(hs or {}) do
    latest = math.max(latest, t)
  end
  return latest
end

-- Whether it is time to register again (inside a task).
function Gateway:_due()
  local cfg = self.cfg
  local since = uv.now() - self.registered_at
  if since >= cfg.register_interval_ms then
    return 'interval'
  end
  if since < cfg.handshake_stale_ms then
    return nil
  end
  local latest = self:_latest_handshake()
  if latest == 0 or (os.time() - latest) * 1000 >= cfg.handshake_stale_ms then
    return 'no handshake'
  end
  return nil
end

function Gateway:_run()
  local cfg = self.cfg
  local retry = cfg.retry_min_ms
  self.ctx:step('gateway', { state = 'registering', urls = #self.urls })
  while not self.stopped do
    self:_set('registering', { reason = self.reason })
    local ok, err, code = self:register_now()
    if ok then
      retry = cfg.retry_min_ms
      self.last_error = nil
      local reg = self.registration
      log.info('registered with the gateway', { url = self.url, client_ip = reg.wg.client_ip,
        servers = #reg.wg.servers, interface = cfg.interface, reason = self.reason })
      self:_set('registered', { url = self.url, client_ip = reg.wg.client_ip })
      if self.registrations == 1 then
        self.ctx:step('gateway', { state = 'registered', client_ip = reg.wg.client_ip })
      end
      self.reason = nil
      while not self.stopped and not self.reason do
        task.sleep(cfg.check_interval_ms)
        if not self.stopped then
          self.reason = self:_due()
        end
      end
    else
      self.last_error = err
      log.warn('gateway registration failed: retrying', { error = err, code = code,
        retry_ms = retry })
      self:_set('failed', { error = err, code = code, retry_ms = retry })
      if code == 'ENOTSUP' then
        break -- nothing to retry with (no KMS keys)
      end
      task.sleep(retry)
      retry = math.min(retry * 2, cfg.retry_max_ms)
      self.reason = 'retry'
    end
  end
end

--- Start the registration for context `ctx` (its keys, app-compose and sys-config known) with
--- the agent config's gateway table. Returns the Gateway, or nil and why it is off.
function M.start(ctx, gcfg, state_dir)
  local cfg = {}
  for k, v in pairs(M.DEFAULTS) do
    cfg[k] = v
  end
  for k, v in pairs(gcfg or {}) do
    cfg[k] = v
  end
  if cfg.enabled == false or (cfg.enabled == 'auto' and not M.wanted(ctx.app_compose)) then
    return nil, 'gateway not enabled for this app'
  end
  local urls = M.urls(cfg, ctx.sys_config)
  if #urls == 0 then
    log.warn('gateway_enabled but no gateway URL (sys-config gateway_urls): not registering')
    return nil, 'no gateway URL'
  end
  local dir = cfg.dir or ((state_dir or '/run/dstack') .. '/gateway')
  local ok, err = fs.mkdir_p(dir, 448)
  if not ok then
    log.error('gateway: cannot create its directory', { error = err })
    return nil, err
  end
  local self = setmetatable({ ctx = ctx, cfg = cfg, urls = urls, dir = dir,
    cache_path = dir .. '/gateway-cache.json', conf_path = dir .. '/' .. cfg.interface .. '.conf',
    state = 'starting', registrations = 0, registered_at = 0 }, Gateway)
  self.task = task.spawn_named('agent:gateway', function()
    local rok, rerr = pcall(self._run, self)
    if not rok and not errors.is(rerr, 'ECANCELED') then
      log.error('the gateway registration loop failed', { error = tostring(rerr) })
    end
  end)
  return self
end

--- A JSON-ready snapshot (no key material).
function Gateway:status()
  local reg = self.registration
  return { state = self.state, url = self.url, interface = self.cfg.interface,
    client_ip = reg and reg.wg.client_ip, servers = reg and #reg.wg.servers or 0,
    registrations = self.registrations, error = self.last_error,
    device = self.dev and self.dev:alive() or false }
end

--- Stop re-registering and take the interface down. Idempotent.
function Gateway:stop()
  if self.stopped then
    return
  end
  self.stopped = true
  if self.task and self.task ~= task.current() then
    self.task:cancel('stopped')
  end
  if self.dev then
    self.dev:close()
    self.dev = nil
  end
  self:_set('stopped')
end

return M
