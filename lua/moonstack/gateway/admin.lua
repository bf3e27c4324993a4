-- SPDX-License-Identifier: Apache-2.0
-- The gateway's Admin service (kms-vmm-gateway.md §6.8) on the `admin` listener, at /prpc/<M>,
-- /<M> and with the legacy prefix Admin., plus GET /metrics. Every request needs upstream's
-- credentials (moonstack.http.auth): `Authorization: Bearer <t>`, `X-Admin-Token: <t>`, a
-- bcrypt htpasswd user over Basic, or `?token=<t>` on a GET; the token from the config
-- (admin.auth_token, alias admin_token), admin.token_file, or the env DSTACK_GATEWAY_ADMIN_TOKEN
-- / ADMIN_API_TOKEN. Methods: Status, GetInfo{id}, GetMeta{registered, online}, SetNodeStatus
-- {id, status = up|down}, GetInstanceHandshakes, Set/Clear/GetInstancePortPolicy, RenewCert
-- (the certbot's domains, forced), SetCaa (their CAA records), Exit.
local auth = require('moonstack.http.auth')
local prpc = require('moonstack.core.prpc')
local gw_api = require('moonstack.gateway.api')
local state_mod = require('moonstack.gateway.state')

local M = {}

M.ENV = { 'DSTACK_GATEWAY_ADMIN_TOKEN', 'ADMIN_API_TOKEN' }

local MISSING = 'EINVAL: the admin listener is enabled but no credential is configured '
  .. '(admin.auth_token, admin.token_file, admin.htpasswd_file, DSTACK_GATEWAY_ADMIN_TOKEN or '
  .. 'ADMIN_API_TOKEN)'

--- The credentials of a validated `admin` config (fails closed: nil, msg, code without any).
function M.credentials(cfg, getenv)
  return auth.credentials({ token = cfg.token, tokens = cfg.tokens, token_file = cfg.token_file,
    env = M.ENV, what = 'admin', htpasswd_file = cfg.htpasswd_file,
    insecure = cfg.insecure_no_auth, missing = MISSING }, getenv)
end

local HostInfo = { { 1, 'instance_id', 'string' }, { 2, 'ip', 'string' }, { 3, 'app_id', 'string' },
  { 4, 'base_domain', 'string' }, { 5, 'port', 'uint64' }, { 6, 'latest_handshake', 'uint64' },
  { 7, 'num_connections', 'uint64' } }
local Handshake = { { 1, 'instance_id', 'string' }, { 2, 'public_key', 'string' },
  { 3, 'latest_handshake', 'uint64' } }
local PortPolicy = gw_api.messages.PortPolicy
local ClusterStatus = { { 1, 'etcd', 'string' }, { 2, 'since', 'uint64' }, { 3, 'node_id', 'uint64' },
  { 4, 'endpoint', 'string' }, { 5, 'error', 'string' } }

--- The message schemas of the Admin service.
M.messages = {
  Empty = {},
  ExitRequest = { { 1, 'force', 'bool' } },
  StatusResponse = { { 1, 'id', 'uint64' }, { 2, 'url', 'string' }, { 3, 'bootnode_url', 'string' },
    { 4, 'num_connections', 'uint64' }, { 5, 'hosts', 'message*', schema = HostInfo },
    { 6, 'nodes', 'message*', schema = gw_api.messages.GatewayNodeInfo }, { 7, 'uuid', 'bytes' },
    { 100, 'cluster', 'message', schema = ClusterStatus } },
  GetInfoRequest = { { 1, 'id', 'string' } },
  GetInfoResponse = { { 1, 'found', 'bool' }, { 2, 'info', 'message', schema = HostInfo } },
  GetMetaResponse = { { 1, 'registered', 'uint64' }, { 2, 'online', 'uint64' } },
  SetNodeStatusRequest = { { 1, 'id', 'uint64' }, { 2, 'status', 'string' } },
  HandshakesResponse = { { 1, 'handshakes', 'message*', schema = Handshake } },
  InstanceId = { { 1, 'instance_id', 'string' } },
  RenewCertResponse = { { 1, 'renewed', 'bool' } },
  SetInstancePortPolicyRequest = { { 1, 'instance_id', 'string' },
    { 2, 'port_policy', 'message', schema = PortPolicy } },
  InstancePortPolicyResponse = { { 1, 'instance_id', 'string' },
    { 2, 'reported', 'message', schema = PortPolicy },
    { 3, 'admin_override', 'message', schema = PortPolicy },
    { 4, 'effective', 'message', schema = PortPolicy } },
}
local msg = M.messages

-- HostInfo of an instance.
local function host_info(gw, inst, conns)
  local c = conns[inst.instance_id]
  return { instance_id = inst.instance_id, ip = inst.ip, app_id = inst.app_id,
    base_domain = gw.cfg.proxy.base_domain, port = gw.cfg.proxy.external_port,
    latest_handshake = inst.last_handshake or 0, num_connections = c and c.active or 0 }
end

-- The per-instance connection counters of the data path ({} without one).
local function instance_conns(gw)
  local c = gw.proxy and gw.proxy:counters()
  return c and c.instances or {}, c and c.active or 0
end

--- The Admin methods over a running gateway `gw`.
function M.methods(gw)
  local t = {}
  t.Status = { input = msg.Empty, output = msg.StatusResponse, call = function()
    local conns, active = instance_conns(gw)
    local hosts = {}
    for _, inst in ipairs(gw.state:list()) do
      hosts[#hosts + 1] = host_info(gw, inst, conns)
    end
    local node = gw.cfg.node
    local nodes, cluster = {}, nil
    if gw.cluster then -- the other nodes and whether etcd answers
      nodes = select(2, gw.cluster:peers())
      cluster = gw.cluster:status()
    end
    return { id = node.id, url = node.url, bootnode_url = '', num_connections = active,
      hosts = hosts, nodes = nodes, uuid = gw.uuid or '', cluster = cluster }
  end }
  t.GetInfo = { input = msg.GetInfoRequest, output = msg.GetInfoResponse, call = function(args)
    local inst = gw.state:get(args.id or '')
    if not inst then
      return { found = false }
    end
    return { found = true, info = host_info(gw, inst, (instance_conns(gw))) }
  end }
  t.GetMeta = { input = msg.Empty, output = msg.GetMetaResponse, call = function()
    local stale, now = gw.cfg.proxy.timeouts.handshake_stale, os.time()
    local n, online = 0, 0
    for _, inst in ipairs(gw.state:list()) do
      n = n + 1
      if (inst.last_handshake or 0) > 0 and now - inst.last_handshake < stale then
        online = online + 1
      end
    end
    return { registered = n, online = online }
  end }
  t.SetNodeStatus = { input = msg.SetNodeStatusRequest, output = msg.Empty, call = function(args)
    if args.status ~= 'up' and args.status ~= 'down' then
      return nil, 'EINVAL: status must be "up" or "down"'
    end
    if (args.id or 0) ~= (gw.cfg.node.id or 0) then
      return nil, ('ENOENT: no node %d (this is node %d)'):format(args.id or 0, gw.cfg.node.id or 0)
    end
    gw.node_status = args.status
    gw.log.info('node status set', { status = args.status })
    if gw.cluster then -- the other nodes stop (or start) listing this one to CVMs
      gw.cluster:put_node()
    end
    return {}
  end }
  t.GetInstanceHandshakes = { input = msg.Empty, output = msg.HandshakesResponse, call = function()
    local out = {}
    for _, inst in ipairs(gw.state:list()) do
      out[#out + 1] = { instance_id = inst.instance_id, public_key = inst.public_key,
        latest_handshake = inst.last_handshake or 0 }
    end
    return { handshakes = out }
  end }
  t.SetInstancePortPolicy = { input = msg.SetInstancePortPolicyRequest, output = msg.Empty,
    call = function(args)
      local p, err = gw_api.port_policy(args.port_policy or { ports = {} })
      if not p then
        return nil, err
      end
      local ok, serr = gw.state:set_admin_port_policy(args.instance_id or '', p)
      if not ok then
        return nil, serr
      end
      if gw.cluster then
        ok, serr = gw.cluster:put_instance(args.instance_id)
        if not ok then
          return nil, serr
        end
      end
      return {}
    end }
  t.ClearInstancePortPolicy = { input = msg.InstanceId, output = msg.Empty, call = function(args)
    local ok, err = gw.state:set_admin_port_policy(args.instance_id or '', nil)
    if not ok then
      return nil, err
    end
    if gw.cluster then
      ok, err = gw.cluster:put_instance(args.instance_id)
      if not ok then
        return nil, err
      end
    end
    return {}
  end }
  t.GetInstancePortPolicy = { input = msg.InstanceId, output = msg.InstancePortPolicyResponse,
    call = function(args)
      local inst = gw.state:get(args.instance_id or '')
      if not inst then
        return nil, ('ENOENT: no instance %s'):format(tostring(args.instance_id))
      end
      return { instance_id = inst.instance_id, reported = inst.port_policy,
        admin_override = inst.admin_port_policy, effective = state_mod.effective_port_policy(inst) }
    end }
  -- RenewCert: renew every certbot domain now (force); renewed = every domain renewed
  t.RenewCert = { input = msg.Empty, output = msg.RenewCertResponse, call = function()
    if not gw.certbot then
      return nil, 'ENOTSUP: RenewCert: the certbot is not configured'
    end
    local out = gw.certbot:check(true)
    local all = true
    for d, r in pairs(out) do
      if r ~= 'renewed' then
        all = false
        gw.log.warn('RenewCert: not renewed', { domain = d, result = r })
      end
    end
    return { renewed = all }
  end }
  -- SetCaa: the CAA records of every certbot domain bound to the account (§6.9)
  t.SetCaa = { input = msg.Empty, output = msg.Empty, call = function()
    if not gw.certbot then
      return nil, 'ENOTSUP: SetCaa: the certbot is not configured'
    end
    local ok, err = gw.certbot:set_caa()
    if not ok then
      return nil, err
    end
    return {}
  end }
  t.Exit = { input = msg.ExitRequest, output = msg.Empty, call = function()
    gw.log.warn('Exit requested over the admin API')
    if gw.on_exit then
      local timer = require('luv').new_timer()
      timer:start(50, 0, function()
        timer:close()
        gw.on_exit()
      end)
    end
    return {}
  end }
  return t
end

--- The admin listener's HTTP handler: 401/429 without credentials, then GET /metrics and the
--- Admin service.
function M.handler(gw, creds)
  local methods = M.methods(gw)
  local h = prpc.handler({ { prefix = '/prpc/', service = 'Admin', methods = methods },
    { prefix = '/', service = 'Admin', methods = methods, shared_prefix = true } })
  return function(req)
    local ok, status, headers, why = auth.judge(req, creds, gw.login_limit,
      { realm = 'dstack-gateway admin', query_token = true })
    if not ok then
      gw.log.warn('admin request refused', { path = req.path, peer = req.peer, status = status,
        reason = why })
      headers['content-type'] = 'application/json'
      return status, '{"error":"unauthorized"}', headers
    end
    if req.method == 'GET' and req.path == '/metrics' and gw.cfg.metrics then
      return 200, gw.metrics:render(), { ['content-type'] = 'text/plain; version=0.0.4' }
    end
    return h(req)
  end
end

return M
