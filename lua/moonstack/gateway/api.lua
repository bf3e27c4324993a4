-- SPDX-License-Identifier: Apache-2.0
-- The gateway pRPC service on the `rpc` listener (kms-vmm-gateway.md §6.1, §6.6; upstream
-- gateway_rpc.proto, field numbers kept; port_policy = 2 and Info.version = 4 are ours), at
-- /prpc/<Method> and /prpc/Tproxy.<Method>, plus GET /health:
--   RegisterCvm  over mutual TLS: the client certificate chains to the KMS root CA (checked by
--                the TLS layer against rpc.kms_ca: a certificate from another CA fails the
--                handshake) and carries the app-info extension (1.9) naming app_id,
--                instance_id and compose_hash; client_public_key (base64) must be 32 bytes;
--                port_policy { ports = { {port, pp} }, restrict_mode } is optional; refused
--                while the node is down. Answer: wg { client_ip, servers = { {pk, ip, endpoint} } },
--                agent { external_port, internal_port, domain, app_address_ns_prefix }, gateways.
--                In a cluster: answered only after etcd took the record (else EUNAVAILABLE),
--                and servers/gateways list every other node that is up.
--   Info, AcmeInfo (the certbot's evidence for its first domain; empty without a certbot),
--                GetPeers (a caller whose certificate names this gateway's own app id:
--                node.app_id; in a cluster, every node up in etcd).
-- Failures are pRPC 400 {"error": ...}; only this module maps codes to statuses.
local codec = require('moonstack.core.codec')
local prpc = require('moonstack.core.prpc')
local x509 = require('moonstack.x509')
local attestation = require('moonstack.tdx.attestation')

local M = {}

local PortSpec = { { 1, 'port', 'uint64' }, { 2, 'pp', 'bool' } }
local PortPolicy = { { 1, 'ports', 'message*', schema = PortSpec }, { 2, 'restrict_mode', 'bool' } }
local WireGuardPeer = { { 1, 'pk', 'string' }, { 2, 'ip', 'string' }, { 3, 'endpoint', 'string' } }
local GatewayNodeInfo = { { 1, 'id', 'uint64' }, { 2, 'uuid', 'bytes' }, { 3, 'url', 'string' },
  { 4, 'last_seen', 'uint64' }, { 5, 'wg_public_key', 'string' }, { 6, 'wg_ip', 'string' },
  { 7, 'wg_endpoint', 'string' } }
local PeerInfo = { { 1, 'id', 'uint64' }, { 2, 'url', 'string' } }
local QuotedPublicKey = { { 1, 'public_key', 'bytes' }, { 2, 'quote', 'string' },
  { 3, 'attestation', 'string' } }

--- The message schemas (moonstack.core.proto's form).
M.messages = {
  Empty = {},
  PortSpec = PortSpec,
  PortPolicy = PortPolicy,
  GatewayNodeInfo = GatewayNodeInfo,
  RegisterCvmRequest = { { 1, 'client_public_key', 'string' },
    { 2, 'port_policy', 'message', schema = PortPolicy } },
  RegisterCvmResponse = {
    { 1, 'wg', 'message', schema = { { 1, 'client_ip', 'string' },
      { 2, 'servers', 'message*', schema = WireGuardPeer } } },
    { 2, 'agent', 'message', schema = { { 1, 'external_port', 'uint64' },
      { 2, 'internal_port', 'uint64' }, { 3, 'domain', 'string' },
      { 4, 'app_address_ns_prefix', 'string' } } },
    { 3, 'gateways', 'message*', schema = GatewayNodeInfo },
  },
  InfoResponse = { { 1, 'base_domain', 'string' }, { 2, 'external_port', 'uint64' },
    { 3, 'app_address_ns_prefix', 'string' }, { 4, 'version', 'string' } },
  AcmeInfoResponse = { { 1, 'account_uri', 'string' }, { 2, 'hist_keys', 'bytes*' },
    { 3, 'quoted_hist_keys', 'message*', schema = QuotedPublicKey },
    { 4, 'account_quote', 'string' }, { 5, 'active_cert', 'string' },
    { 6, 'base_domain', 'string' }, { 7, 'account_attestation', 'string' } },
  GetPeersResponse = { { 1, 'my_id', 'uint64' }, { 2, 'my_url', 'string' },
    { 3, 'peers', 'message*', schema = PeerInfo } },
}
local msg = M.messages

--- The identity in a client certificate (DER): { app_id, instance_id, compose_hash } as
--- lowercase hex, from its app-info extension, or nil, msg, code (ENOATTEST, EPARSE, EATTEST).
function M.caller(peer_der)
  if not peer_der then
    return nil, 'ENOATTEST: a client certificate issued through the KMS is required', 'ENOATTEST'
  end
  local info, err, code = x509.parse(peer_der)
  if not info then
    return nil, err, code
  end
  local ext = info.ratls and info.ratls.app_info
  if not ext then
    return nil, 'ENOATTEST: the client certificate has no app-info extension (SignCert with '
      .. 'ext_app_info)', 'ENOATTEST'
  end
  local ai
  ai, err, code = attestation.app_info_decode(ext)
  if not ai then
    return nil, err, code
  end
  return { app_id = codec.hex(ai.app_id), instance_id = codec.hex(ai.instance_id),
    compose_hash = codec.hex(ai.compose_hash), cert_app_id = info.ratls.app_id
      and codec.hex(info.ratls.app_id) or nil }
end

--- A checked port policy from a request (nil stays nil), or nil, msg, 'EINVAL'.
function M.port_policy(p)
  if p == nil then
    return nil
  end
  local ports = {}
  for i, s in ipairs(p.ports or {}) do
    local port = s.port
    if type(port) ~= 'number' or port < 1 or port > 65535 or port % 1 ~= 0 then
      return nil, ('EINVAL: port_policy.ports[%d].port must be 1..65535'):format(i), 'EINVAL'
    end
    if #ports >= 1024 then
      return nil, 'EINVAL: port_policy lists more than 1024 ports', 'EINVAL'
    end
    ports[#ports + 1] = { port = port, pp = s.pp == true }
  end
  return { ports = ports, restrict_mode = p.restrict_mode == true }
end

-- The WireGuard servers (this node) and the gateway nodes of a RegisterCvm answer.
local function nodes(gw)
  local wg = gw.cfg.wg
  local pk = gw.hub and gw.hub:public_key() or ''
  local servers = { { pk = pk, ip = wg.ip, endpoint = wg.endpoint } }
  local node = { id = gw.cfg.node.id or 0, uuid = gw.uuid or '', url = gw.cfg.node.url or '',
    last_seen = os.time(), wg_public_key = pk, wg_ip = wg.ip, wg_endpoint = wg.endpoint }
  local gateways = { node }
  if gw.cluster then -- every other node that is up, from etcd
    local more, others = gw.cluster:peers()
    for i, sv in ipairs(more) do
      servers[#servers + 1] = sv
      gateways[#gateways + 1] = others[i]
    end
  end
  return servers, gateways
end

local build = {}

function build.RegisterCvm(gw)
  return { input = msg.RegisterCvmRequest, output = msg.RegisterCvmResponse,
    call = function(args, req)
      if gw.node_status == 'down' then
        return nil, 'EUNAVAILABLE: this gateway node is down (SetNodeStatus)'
      end
      local who, err, code = M.caller(req.peer_cert)
      if not who then
        gw:refused('no_identity', req.peer, err)
        return nil, err, code
      end
      local key = codec.unbase64(args.client_public_key or '')
      if not key or #key ~= 32 then
        gw:refused('bad_key', req.peer, 'client_public_key')
        return nil, 'EINVAL: client_public_key must be the base64 of 32 bytes'
      end
      local policy
      policy, err = M.port_policy(args.port_policy)
      if err then
        return nil, err
      end
      local before = gw.cluster and gw.state:record(who.instance_id) -- restored if etcd refuses
      local inst, new
      inst, new, code = gw.state:register({ instance_id = who.instance_id, app_id = who.app_id,
        compose_hash = who.compose_hash, public_key = codec.base64(key), port_policy = policy,
        node_id = gw.cluster and gw.cluster.node_id or nil })
      if not inst then
        gw:refused(tostring(code):lower(), req.peer, new)
        return nil, new, code
      end
      if gw.cluster then -- acknowledged only once etcd has it
        local ok, cerr, ccode = gw.cluster:put_instance(inst.instance_id)
        if not ok then
          if new then
            gw.state:remove(inst.instance_id)
          elseif before then
            gw.state:apply(before)
          end
          gw:refused('cluster', req.peer, cerr)
          return nil, cerr, ccode
        end
      end
      gw.metrics:registered()
      gw.log.info('CVM registered', { app_id = inst.app_id, instance_id = inst.instance_id,
        ip = inst.ip, new = new, peer = req.peer })
      local servers, gateways = nodes(gw)
      local p = gw.cfg.proxy
      return { wg = { client_ip = inst.ip, servers = servers },
        agent = { external_port = p.external_port, internal_port = p.agent_port,
          domain = p.base_domain, app_address_ns_prefix = p.app_address_ns_prefix },
        gateways = gateways }
    end }
end

function build.Info(gw)
  return { input = msg.Empty, output = msg.InfoResponse, call = function()
    local p = gw.cfg.proxy
    return { base_domain = p.base_domain, external_port = p.external_port,
      app_address_ns_prefix = p.app_address_ns_prefix, version = gw.VERSION }
  end }
end

function build.AcmeInfo(gw)
  return { input = msg.Empty, output = msg.AcmeInfoResponse, call = function()
    if gw.certbot then
      return require('moonstack.gateway.acme_info').info(gw.certbot.store,
        gw.certbot.cfg.domains[1])
    end
    return { account_uri = '', hist_keys = {}, quoted_hist_keys = {}, account_quote = '',
      active_cert = '', base_domain = gw.cfg.proxy.base_domain, account_attestation = '' }
  end }
end

function build.GetPeers(gw)
  return { input = msg.Empty, output = msg.GetPeersResponse, call = function(_, req)
    local own = gw.cfg.node.app_id
    local who = req.peer_cert and M.caller(req.peer_cert)
    local theirs = who and (who.app_id ~= '' and who.app_id or who.cert_app_id)
    if not own or theirs ~= own:lower() then
      return nil, 'EDENIED: GetPeers is for gateway nodes (a certificate of this gateway\'s app)'
    end
    local id, url = gw.cfg.node.id or 0, gw.cfg.node.url or ''
    local peers = { { id = id, url = url } }
    if gw.cluster then -- the other nodes known from etcd
      for _, n in ipairs(select(2, gw.cluster:peers())) do
        peers[#peers + 1] = { id = n.id, url = n.url }
      end
    end
    return { my_id = id, my_url = url, peers = peers }
  end }
end

--- The methods over a running gateway `gw` (moonstack.gateway).
function M.methods(gw)
  local t = {}
  for name, make in pairs(build) do
    t[name] = make(gw)
  end
  return t
end

--- The rpc listener's HTTP handler: the Gateway service at /prpc/<M> and /prpc/Tproxy.<M>,
--- GET /health.
function M.handler(gw)
  return prpc.handler({ { prefix = '/prpc/', service = 'Tproxy', methods = M.methods(gw) } },
    function(req)
      if req.method == 'GET' and req.path == '/health' then
        if gw.cluster then -- still serving; says whether the cluster state is reachable
          return 200, require('cjson.safe').encode({ status = 'ok',
            cluster = gw.cluster:status() }), { ['content-type'] = 'application/json' }
        end
        return 200, 'OK', { ['content-type'] = 'text/plain' }
      end
    end)
end

return M
