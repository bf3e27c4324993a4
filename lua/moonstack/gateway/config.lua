-- SPDX-License-Identifier: Apache-2.0
-- The gateway config file (`moonstack gateway -c gateway.lua`): a Lua chunk returning a table,
-- validated here. Only `proxy` is required: a config with just `proxy` and `debug` starts the
-- proxy alone (no WireGuard, no RPC), for local use. Every key, with its default (upstream
-- gateway.toml names in brackets, kms-vmm-gateway.md §6.1, §6.11):
--
--   proxy = {                          the SNI router [core.proxy]
--     listen = { host = '0.0.0.0', port = 443 }
--     base_domain = 'app.example.com'  apps are <id>[-port][s|g].<base_domain> (required)
--     certs = { { cert = PEM file, key = PEM file }, ... }   wildcard certificate(s) of
--                                      *.<base_domain> for TLS termination ({} : passthrough only)
--     timeouts = { connect = 5, handshake = 5, idle = 600, shutdown = 5, total = 18000,
--       cache_top_n = 30, handshake_stale = 1800, dns_resolve = 5, pp_header = 5 }  (seconds)
--     workers = nil                    data-path threads (default: the CPU count)
--     buffer_size = 65536, connect_top_n = 3, max_connections_per_app = 0 (unlimited),
--     inbound_pp_enabled = false, external_port = 443, agent_port = 8090,
--     app_address_ns_prefix = '_dstack-app-address', app_address_ns_compat = true,
--     app_address_dns_servers = {} ('ip:port', system resolver when empty), tcp_splice = true,
--     io_uring = true                  each event batch's sends to backends in one
--                                      io_uring_enter (falls back to send(2) without io_uring)
--     self_signed_cert = false         with no certs: make a self-signed *.<base_domain> at
--                                      start (local use; clients must not verify it)
--   }
--   debug = { insecure_localhost_backend = false }   the `localhost` id reaches 127.0.0.1
--   rpc = nil                          the gateway pRPC (RegisterCvm, Info, ...) over HTTPS:
--     { listen = { host = '0.0.0.0', port = 8000 }, cert = PEM file (chain), key = PEM file
--       (both absent: a self-signed certificate made at start, for development),
--       kms_ca = PEM file: the KMS root CA client certificates must chain to, max_body = 1 MiB }
--     (needs wg) [tls, tls.mutual]
--   admin = nil                        the Admin pRPC, /metrics [core.admin]:
--     { listen = { host = '127.0.0.1', port = 8011 }, auth_token (alias admin_token, token)?,
--       tokens = {...}?, token_file?, htpasswd_file? (bcrypt, Basic), insecure_no_auth = false,
--       failed_logins = { max = 5, window_s = 300, max_inflight = 2 }, login_token_file? (0600:
--       the dashboard's one-time login token) } (else the env
--     DSTACK_GATEWAY_ADMIN_TOKEN / ADMIN_API_TOKEN; no credential: the start fails)
--   wg = nil                           the WireGuard hub [core.wg]:
--     { private_key = base64 | private_key_file = path (0600), listen_port = 51820,
--       ip = '10.0.0.1/24', reserved_net = { '10.0.0.1/32' }, client_ip_range = '10.0.0.0/25',
--       interface = 'wg-ms0', endpoint = 'host:port' (what CVMs dial, required),
--       config_path = <data_dir>/wg.conf, netns = nil, run_dir = nil (absolute: the UAPI
--       socket's directory, in a private mount namespace),
--       userspace = 'wireguard-go', refresh_interval = 10 (s, handshake ages),
--       device = true (false: allocate and answer only; the operator drives the device) }
--     checked: reserved_net within ip's net, ip in reserved_net, client_ip_range within it
--   data_dir = nil                     state (registered instances, 0600 JSON); in memory only
--                                      when absent (required with rpc)
--   control = nil                      control socket path (moonstack repl), mode 0600
--   log = { level = nil, json = nil }  log level ('debug'...'error') and JSON lines
--   routing_policy = nil               file path, or { path, watch = true, debounce_ms = 200,
--                                      workers = 1, limits = {...}? }: on_route decisions
--   recycle = { enabled = true, interval = 300, timeout = 36000 }   (seconds) [core.recycle]
--   node = { status = 'up', id = 0, url = '', app_id = nil }   status 'down': RegisterCvm is
--                                      refused (Admin SetNodeStatus); app_id (hex): GetPeers
--                                      answers callers whose certificate names it
--   metrics = true                     GET /metrics on the admin listener
--   certbot = nil                      ACME certificates by DNS-01 (§6.9), moonstack.gateway.certbot:
--     { enabled = true, acme_url (the directory URL, required), ca = PEM file (trust for the ACME
--       server's TLS, e.g. pebble's; else the system roots), domains = { base domains } (default
--       { proxy.base_domain }; each gets one wildcard certificate *.D), renew_interval = 43200,
--       renew_before_expiration = 2592000, renew_timeout = 300, max_dns_wait = 60,
--       dns_txt_ttl = 60 (seconds), auto_set_caa = true, caa_issuer = 'letsencrypt.org' (the
--       CA's domain in the CAA records), dns_resolver = 'ip[:port]' (the DNS self-check's
--       server; default the first nameserver of /etc/resolv.conf), contact = email?,
--       store_dir = <data_dir>/certbot (account, certificates, evidence: 0600),
--       dns = { provider = 'cloudflare', api_token_file = path (0600) | env = 'VAR',
--               api_url = 'https://api.cloudflare.com/client/v4' }
--           | { provider = 'challtestsrv', url = 'http://127.0.0.1:8055' } }
--   attestation = nil                  where the certbot's evidence quotes come from:
--     { agent = '/var/run/dstack.sock' } (the guest agent of the CVM the gateway runs in) or
--     { sim = DIR, cvm = 'gateway' } (a simulated TDX platform: tests and development)
--   cluster = nil                      cluster state on etcd (moonstack.gateway.cluster):
--     { etcd = { endpoints = { 'http://127.0.0.1:2379', ... } (required), prefix = '/moonstack',
--       timeout_ms = 3000 (one etcd call, failover included), lease_ttl = 10 (s),
--       watch_interval_ms = 500, ca_file?, cert_file? + key_file? (etcd over TLS, client
--       certificate) }, node_id = N (required, >= 1; node.id follows it) }
--     needs wg; each node's wg.client_ip_range must be disjoint from the others' (checked
--     against etcd at start). Without it the node keeps its state locally.
local config = require('moonstack.core.config')
local cidr = require('moonstack.gateway.cidr')

local M = {}

local function listen_schema(host, port)
  return { type = 'table', default = {}, fields = {
    host = { type = 'string', default = host, min = 1 },
    port = { type = 'integer', default = port, min = 0, max = 65535 },
  } }
end

local function seconds(default)
  return { type = 'number', default = default, min = 0 }
end

local function net_check(s)
  local n, err = cidr.parse(s)
  if not n then
    return nil, (tostring(err):gsub('^EINVAL: ', ''))
  end
  return true
end

local NET = { type = 'string', check = net_check }

M.schema = {
  type = 'table',
  fields = {
    proxy = {
      type = 'table',
      fields = {
        listen = listen_schema('0.0.0.0', 443),
        base_domain = { type = 'string', min = 1, pattern = '^[%w][%w%.%-]*$' },
        certs = { type = 'table', default = {}, items = { type = 'table', fields = {
          cert = { type = 'string', min = 1 }, key = { type = 'string', min = 1 } } } },
        timeouts = { type = 'table', default = {}, fields = {
          connect = seconds(5), handshake = seconds(5), idle = seconds(600),
          shutdown = seconds(5), total = seconds(18000), cache_top_n = seconds(30),
          handshake_stale = seconds(1800), dns_resolve = seconds(5), pp_header = seconds(5),
        } },
        workers = { type = 'integer', optional = true, min = 1, max = 256 },
        buffer_size = { type = 'integer', default = 65536, min = 1024, max = 16 * 1024 * 1024 },
        connect_top_n = { type = 'integer', default = 3, min = 0, max = 64 },
        max_connections_per_app = { type = 'integer', default = 0, min = 0 },
        inbound_pp_enabled = { type = 'boolean', default = false },
        external_port = { type = 'integer', default = 443, min = 1, max = 65535 },
        agent_port = { type = 'integer', default = 8090, min = 1, max = 65535 },
        app_address_ns_prefix = { type = 'string', default = '_dstack-app-address',
          pattern = '^[%w_][%w_%-]*$' },
        app_address_ns_compat = { type = 'boolean', default = true },
        app_address_dns_servers = { type = 'table', default = {}, items = { type = 'string',
          pattern = '^[%w%.:%[%]]+$' } },
        tcp_splice = { type = 'boolean', default = true },
        io_uring = { type = 'boolean', default = true },
        self_signed_cert = { type = 'boolean', default = false },
      },
    },
    debug = { type = 'table', default = {}, fields = {
      insecure_localhost_backend = { type = 'boolean', default = false } } },
    rpc = {
      type = 'table',
      optional = true,
      fields = {
        listen = listen_schema('0.0.0.0', 8000),
        cert = { type = 'string', optional = true, min = 1 },
        key = { type = 'string', optional = true, min = 1 },
        kms_ca = { type = 'string', min = 1 },
        max_body = { type = 'integer', default = 1024 * 1024, min = 1024 },
      },
    },
    admin = {
      type = 'table',
      optional = true,
      fields = {
        listen = listen_schema('127.0.0.1', 8011),
        auth_token = { type = 'string', optional = true },
        admin_token = { type = 'string', optional = true },
        token = { type = 'string', optional = true },
        tokens = { type = 'table', optional = true, items = 'string' },
        token_file = { type = 'string', optional = true, min = 1 },
        htpasswd_file = { type = 'string', optional = true, min = 1 },
        login_token_file = { type = 'string', optional = true, min = 1 },
        insecure_no_auth = { type = 'boolean', default = false },
        failed_logins = { type = 'table', default = {}, fields = {
          max = { type = 'integer', default = 5, min = 1 },
          window_s = { type = 'integer', default = 300, min = 1 },
          max_inflight = { type = 'integer', default = 2, min = 1 },
        } },
      },
    },
    wg = {
      type = 'table',
      optional = true,
      fields = {
        private_key = { type = 'string', optional = true, pattern = '^[%w%+/]+=?=?$' },
        private_key_file = { type = 'string', optional = true, min = 1 },
        listen_port = { type = 'integer', default = 51820, min = 1, max = 65535 },
        ip = { type = 'string', default = '10.0.0.1/24', check = net_check },
        reserved_net = { type = 'table', default = { '10.0.0.1/32' }, items = NET },
        client_ip_range = { type = 'string', default = '10.0.0.0/25', check = net_check },
        interface = { type = 'string', default = 'wg-ms0', pattern = '^[%w_%-%.]+$', max = 15 },
        endpoint = { type = 'string', pattern = '^[^%s]+:%d+$' },
        config_path = { type = 'string', optional = true, min = 1 },
        netns = { type = 'string', optional = true, min = 1 },
        run_dir = { type = 'string', optional = true, min = 1 },
        userspace = { type = 'string', default = 'wireguard-go', min = 1 },
        refresh_interval = { type = 'number', default = 10, min = 0.05 },
        device = { type = 'boolean', default = true },
      },
    },
    data_dir = { type = 'string', optional = true, min = 1 },
    control = { type = 'string', optional = true, min = 1 },
    log = { type = 'table', default = {}, fields = {
      level = { type = 'string', optional = true, enum = { 'debug', 'info', 'warn', 'error' } },
      json = { type = 'boolean', optional = true } } },
    routing_policy = { type = 'any', optional = true },
    recycle = { type = 'table', default = {}, fields = {
      enabled = { type = 'boolean', default = true },
      interval = { type = 'number', default = 300, min = 0.05 },
      timeout = { type = 'number', default = 36000, min = 0 },
    } },
    node = { type = 'table', default = {}, fields = {
      status = { type = 'string', default = 'up', enum = { 'up', 'down' } },
      id = { type = 'integer', default = 0, min = 0, max = 4294967295 },
      url = { type = 'string', default = '' },
      app_id = { type = 'string', optional = true, pattern = '^%x+$' } } },
    metrics = { type = 'boolean', default = true },
    certbot = {
      type = 'table',
      optional = true,
      fields = {
        enabled = { type = 'boolean', default = true },
        acme_url = { type = 'string', pattern = '^https?://' },
        ca = { type = 'string', optional = true, min = 1 },
        domains = { type = 'table', optional = true, items = { type = 'string',
          pattern = '^[%w][%w%.%-]*$' } },
        renew_interval = { type = 'number', default = 43200, min = 0.05 },
        renew_before_expiration = { type = 'number', default = 2592000, min = 0 },
        renew_timeout = { type = 'number', default = 300, min = 1 },
        max_dns_wait = { type = 'number', default = 60, min = 0 },
        dns_txt_ttl = { type = 'integer', default = 60, min = 1 },
        auto_set_caa = { type = 'boolean', default = true },
        caa_issuer = { type = 'string', default = 'letsencrypt.org', pattern = '^[%w][%w%.%-]*$' },
        dns_resolver = { type = 'string', optional = true, pattern = '^[%d%.]+:?%d*$' },
        contact = { type = 'string', optional = true, pattern = '^[^%s:]+@[^%s]+$' },
        store_dir = { type = 'string', optional = true, min = 1 },
        dns = { type = 'table', fields = {
          provider = { type = 'string', enum = { 'cloudflare', 'challtestsrv' } },
          api_token_file = { type = 'string', optional = true, min = 1 },
          env = { type = 'string', optional = true, pattern = '^[%w_]+$' },
          api_url = { type = 'string', optional = true, pattern = '^https?://' },
          url = { type = 'string', optional = true, pattern = '^https?://' },
        } },
      },
    },
    attestation = { type = 'table', optional = true, fields = {
      agent = { type = 'string', optional = true, min = 1 },
      sim = { type = 'string', optional = true, min = 1 },
      cvm = { type = 'string', optional = true, pattern = '^[%w_%-]+$' },
    } },
    cluster = { type = 'table', optional = true, fields = {
      etcd = require('moonstack.etcd').config_schema(),
      node_id = { type = 'integer', min = 1, max = 4294967295 },
    } },
  },
}

local function fail(msg)
  return nil, 'EINVAL: config.' .. msg, 'EINVAL'
end

-- The checks of wg (kms-vmm-gateway.md §6.11): reserved ⊂ net, ip ∈ reserved, range ⊂ net.
local function check_wg(wg)
  if (wg.private_key == nil) == (wg.private_key_file == nil) then
    return fail('wg: give one of private_key or private_key_file')
  end
  local net = cidr.parse(wg.ip)
  local range = cidr.parse(wg.client_ip_range)
  local in_reserved = false
  for i, r in ipairs(wg.reserved_net) do
    local rn = cidr.parse(r)
    if not cidr.contains(net, rn) then
      return fail(('wg.reserved_net[%d]: %s is not within wg.ip\'s network %s'):format(i, r, wg.ip))
    end
    in_reserved = in_reserved or cidr.contains_ip(rn, net.addr)
  end
  if not in_reserved then
    return fail(('wg.ip: %s is not in wg.reserved_net'):format(wg.ip))
  end
  if not cidr.contains(net, range) then
    return fail(('wg.client_ip_range: %s is not within wg.ip\'s network %s'):format(
      wg.client_ip_range, wg.ip))
  end
  return true
end

-- routing_policy as a table { path, watch, debounce_ms, workers, limits }.
local function policy_table(p)
  if type(p) == 'string' then
    p = { path = p }
  end
  if type(p) ~= 'table' or type(p.path) ~= 'string' or p.path == '' then
    return fail('routing_policy: expected a file path or { path = ... }')
  end
  local known = { path = true, watch = true, debounce_ms = true, workers = true, limits = true }
  for k in pairs(p) do
    if not known[k] then
      return fail(('routing_policy.%s: unknown key'):format(tostring(k)))
    end
  end
  if p.workers ~= nil and (type(p.workers) ~= 'number' or p.workers % 1 ~= 0 or p.workers < 1) then
    return fail('routing_policy.workers: expected an integer >= 1')
  end
  if p.debounce_ms ~= nil and (type(p.debounce_ms) ~= 'number' or p.debounce_ms < 0) then
    return fail('routing_policy.debounce_ms: expected a number >= 0')
  end
  if p.watch ~= nil and type(p.watch) ~= 'boolean' then
    return fail('routing_policy.watch: expected a boolean')
  end
  return { path = p.path, watch = p.watch ~= false, debounce_ms = p.debounce_ms or 200,
    workers = p.workers or 1, limits = p.limits }
end

--- The checks across keys of a config the schema accepted (wg's networks, rpc needs wg and
--- data_dir, the admin token aliases, routing_policy's form). Returns cfg or nil, msg, code.
function M.finish(cfg)
  if cfg.wg then
    local ok, err, code = check_wg(cfg.wg)
    if not ok then
      return nil, err, code
    end
  end
  if cfg.rpc and not cfg.wg then
    return fail('rpc: RegisterCvm hands out WireGuard addresses: configure wg too')
  end
  if cfg.rpc and (cfg.rpc.cert == nil) ~= (cfg.rpc.key == nil) then
    return fail('rpc: give both cert and key, or neither (a self-signed certificate)')
  end
  if cfg.rpc and not cfg.data_dir then
    return fail('data_dir: required with rpc (registered instances are kept there)')
  end
  local cl = cfg.cluster
  if cl then
    if not cfg.wg then
      return fail('cluster: the cluster shares WireGuard peers: configure wg too')
    end
    if #cl.etcd.endpoints == 0 or #cl.etcd.endpoints > 16 then
      return fail('cluster.etcd.endpoints: expected 1 to 16 URLs')
    end
    if cfg.node.id == 0 then
      cfg.node.id = cl.node_id
    elseif cfg.node.id ~= cl.node_id then
      return fail(('node.id: %d differs from cluster.node_id %d'):format(cfg.node.id, cl.node_id))
    end
  end
  local a = cfg.admin
  if a then
    local given = {}
    for _, k in ipairs({ 'auth_token', 'admin_token', 'token' }) do
      if a[k] then
        given[#given + 1] = k
      end
    end
    if #given > 1 then
      return fail(('admin: %s are aliases: give one'):format(table.concat(given, ', ')))
    end
    a.token = a.auth_token or a.admin_token or a.token
    a.auth_token, a.admin_token = nil, nil
  end
  local cb = cfg.certbot
  if cb and not cb.enabled then
    cfg.certbot = nil
  elseif cb then
    cb.domains = cb.domains or { cfg.proxy.base_domain }
    if #cb.domains == 0 then
      return fail('certbot.domains: at least one base domain')
    end
    if not cfg.data_dir and not cb.store_dir then
      return fail('data_dir: required with certbot (the account and certificates are kept there)')
    end
    local d = cb.dns
    if d.provider == 'cloudflare' and not (d.api_token_file or d.env) then
      return fail('certbot.dns: cloudflare needs api_token_file or env')
    elseif d.provider == 'challtestsrv' and not d.url then
      return fail('certbot.dns.url: the challtestsrv management URL is required')
    end
  end
  local at = cfg.attestation
  if at and (at.agent == nil) == (at.sim == nil) then
    return fail('attestation: give one of agent (the guest agent socket) or sim (a directory)')
  end
  if cfg.routing_policy ~= nil then
    local p, err, code = policy_table(cfg.routing_policy)
    if not p then
      return nil, err, code
    end
    cfg.routing_policy = p
  end
  return cfg
end

-- M.validate(tbl) and M.load(path) (gateway.lua): over M.schema and M.finish.
return config.define(M)
