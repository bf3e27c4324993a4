-- SPDX-License-Identifier: Apache-2.0
-- How other services talk to the gateway (the gateway service's client module; spec
-- kms-vmm-gateway.md §0.1 pRPC, §6.6): `POST <url>/prpc/<Method>?json` over HTTPS.
--
--   client.register_cvm({ url, identity = { cert = PEM chain (leaf first), key = PEM },
--     ca = KMS root PEM, gateway_app_id = hex | 'any' | '' | nil, public_key = WG base64,
--     port_policy = { ports = { { port, pp } }, restrict_mode }?, skip_hostname = false,
--     timeout_ms = 30000 })
--     -> { wg = { client_ip, servers = { { pk, ip (no prefix), endpoint } } },
--          agent = { external_port, internal_port, domain, app_address_ns_prefix },
--          gateways = {...} }  or nil, msg, code
--   client.info({ url, ca?, skip_hostname?, timeout_ms? }) -> { base_domain, external_port,
--     app_address_ns_prefix, version } or nil, msg, code
--
-- RegisterCvm is mutual TLS: the caller presents its KMS-issued client certificate (SignCert:
-- CN dstack-guest-agent, clientAuth, app-info extension) and accepts the gateway only when the
-- gateway's certificate chains to the KMS root CA and, when `gateway_app_id` names one (not
-- empty, not 'any'), carries that app id (extension 1.3). Everything in the answer is checked
-- before it is returned: it goes into a WireGuard config. Codes: EDENIED (the gateway's 400
-- with its reason), EPROTO (a malformed answer), ETLS/ECONNREFUSED/ETIMEDOUT... (transport).
-- Calls block the calling task.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local prpc = require('moonstack.http.prpc_client')
local x509 = require('moonstack.x509')
local wgconf = require('moonstack.wg.config')

local M = {}

local MAX_SERVERS = 64

local function bad(what)
  return errors.fail('EPROTO', 'RegisterCvm answer: ' .. what)
end

-- The address of `s` ('10.0.0.1' or '10.0.0.1/24'), without its prefix, or nil.
local function ipv4(s)
  local ip = type(s) == 'string' and (s:match('^([%d%.]+)/%d+$') or s)
  return ip and wgconf.check_ipv4(ip) and ip or nil
end

local key_ok = wgconf.check_key
local endpoint_ok = wgconf.check_endpoint

local function int_or_zero(v)
  return (type(v) == 'number' and v >= 0 and v % 1 == 0) and v or 0
end

local function str_or_empty(v, max)
  return (type(v) == 'string' and #v <= max and not v:find('[%c]')) and v or ''
end

--- Check a RegisterCvm answer (decoded JSON) and return it normalized (server ips without
--- their prefix), or nil, msg, 'EPROTO'.
function M.check_registration(obj)
  local wg = type(obj) == 'table' and obj.wg
  if type(wg) ~= 'table' then
    return bad('no wg')
  end
  local client_ip = ipv4(wg.client_ip)
  if not client_ip or client_ip ~= wg.client_ip:match('^[%d%.]+') then
    return bad('wg.client_ip is not an IPv4 address')
  end
  local servers = {}
  if type(wg.servers) ~= 'table' or #wg.servers == 0 or #wg.servers > MAX_SERVERS then
    return bad(('wg.servers: expected 1..%d servers'):format(MAX_SERVERS))
  end
  for i, s in ipairs(wg.servers) do
    if type(s) ~= 'table' or not key_ok(s.pk) then
      return bad(('wg.servers[%d].pk is not a WireGuard key'):format(i))
    end
    local ip = ipv4(s.ip)
    if not ip then
      return bad(('wg.servers[%d].ip is not an IPv4 address'):format(i))
    end
    if not endpoint_ok(s.endpoint) then
      return bad(('wg.servers[%d].endpoint is not host:port'):format(i))
    end
    servers[i] = { pk = s.pk, ip = ip, endpoint = s.endpoint }
  end
  local agent = type(obj.agent) == 'table' and obj.agent or {}
  return {
    wg = { client_ip = client_ip, servers = servers },
    agent = { external_port = int_or_zero(agent.external_port),
      internal_port = int_or_zero(agent.internal_port), domain = str_or_empty(agent.domain, 253),
      app_address_ns_prefix = str_or_empty(agent.app_address_ns_prefix, 253) },
    gateways = type(obj.gateways) == 'table' and obj.gateways or {},
  }
end

--- A `tls.verify` hook accepting a gateway whose certificate chained to the configured CA and,
--- when `app_id` is a hex id, names that app id (RA-TLS extension 1.3). `why` (a table), when
--- given, gets the reason of a refusal in why.reason.
function M.verify_gateway(app_id, why)
  local want = type(app_id) == 'string' and app_id:lower():gsub('^0x', '') or ''
  if want == 'any' then
    want = ''
  end
  local check = function(peer)
    if not peer.der then
      return false, 'the gateway presented no certificate'
    end
    if not peer.preverify then
      return false, 'gateway certificate does not chain to the KMS root CA: '
        .. tostring(peer.error or 'untrusted')
    end
    if want == '' then
      return true
    end
    local cert = x509.cert(peer.der)
    local got = cert and cert:ratls('app_id')
    if not got then
      return false, 'gateway certificate has no app id extension'
    end
    if not crypto.equal(crypto.hex(got), want) then
      return false, ('gateway app id %s is not the expected %s'):format(crypto.hex(got), want)
    end
    return true
  end
  return function(peer)
    local ok, reason = check(peer)
    if not ok and why then
      why.reason = reason
    end
    return ok, reason
  end
end

--- RegisterCvm (inside a task). See the module comment for opts and the answer.
function M.register_cvm(opts)
  if type(opts) ~= 'table' or type(opts.url) ~= 'string' or type(opts.ca) ~= 'string'
      or type(opts.identity) ~= 'table' or not key_ok(opts.public_key) then
    error('gateway.client.register_cvm: needs { url, ca, identity = { cert, key }, public_key }', 2)
  end
  local why = {}
  local tls = { cert = opts.identity.cert, key = opts.identity.key, ca = opts.ca,
    verify = M.verify_gateway(opts.gateway_app_id, why), skip_hostname = opts.skip_hostname or nil }
  local req = { client_public_key = opts.public_key }
  if opts.port_policy then
    req.port_policy = opts.port_policy
  end
  local resp, err, code = prpc.call(opts.url, 'RegisterCvm', cjson.encode(req),
    { tls = tls, timeout_ms = opts.timeout_ms })
  if not resp then
    return nil, ('RegisterCvm at %s: %s%s'):format(opts.url, tostring(err),
      why.reason and (' (' .. why.reason .. ')') or ''), code
  end
  return M.check_registration(resp)
end

--- Info (inside a task): the gateway's public facts.
function M.info(opts)
  if type(opts) ~= 'table' or type(opts.url) ~= 'string' then
    error('gateway.client.info: needs { url }', 2)
  end
  local tls = opts.ca and { ca = opts.ca, skip_hostname = opts.skip_hostname or nil }
    or { insecure = true }
  local resp, err, code = prpc.call(opts.url, 'Info', '{}', { tls = tls, timeout_ms = opts.timeout_ms })
  if not resp then
    return nil, ('Info at %s: %s'):format(opts.url, tostring(err)), code
  end
  return { base_domain = str_or_empty(resp.base_domain, 253),
    external_port = int_or_zero(resp.external_port),
    app_address_ns_prefix = str_or_empty(resp.app_address_ns_prefix, 253),
    version = str_or_empty(resp.version, 100) }
end

--- The gateway's dashboard feed after `since` (inside a task; moonstack.ui.remote):
--- conn = { url = its admin base URL, token = its admin token, tls?, timeout_ms? }. Returns
--- { part, seq, snapshot?, events } or nil, msg, code.
function M.dashboard_feed(conn, since)
  return require('moonstack.ui.remote').feed(conn, since)
end

--- POST the dashboard action `op` (JSON text `body`) to the gateway's admin listener (inside a
--- task). Returns status, decoded answer, or nil, msg, code.
function M.dashboard_action(conn, op, body)
  return require('moonstack.ui.remote').action(conn, op, body)
end

return M
