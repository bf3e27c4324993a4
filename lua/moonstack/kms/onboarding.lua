-- SPDX-License-Identifier: Apache-2.0
-- Onboarding mode (kms-vmm-gateway.md §3.6, §3.11, [core.onboard]): while the key directory is
-- empty, a plain-HTTP listener serves the pRPC service `Onboard` and a small page at `/`:
--   Bootstrap{domain} -> {ca_pubkey (SPKI DER), k256_pubkey (33 B), attestation}: fresh root
--     material, and this KMS's attestation over report_data =
--     Keccak256("dstack-kms-genereted-keys-v1:" || hex(ca_pubkey) || ";" || hex(k256_pubkey) ||
--     ";") zero-padded to 64 (the misspelling is the wire contract), kept in
--     bootstrap-info.json for GetMeta's bootstrap_info;
--   Onboard{source_url, domain} -> {k256_pubkey}: the root keys replicated from a running KMS
--     (moonstack.kms.replicate);
--   GetAttestationInfo -> what an operator registers on chain (device id, aggregated MR, OS
--     image, TEE variant, site name, the auth backend's contract and RPC URL);
--   Finish (also GET /finish) -> the listener closes and the KMS starts on the new keys.
-- Both write the RPC domain to rpc-domain. auto_bootstrap_domain bootstraps without a listener.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')
local keys = require('moonstack.kms.keys')
local task = require('moonstack.core.task')
local uv = require('luv')

local M = {}

--- The message schemas of the Onboard service.
M.messages = {
  Empty = {},
  BootstrapRequest = { { 1, 'domain', 'string' } },
  BootstrapResponse = { { 1, 'ca_pubkey', 'bytes' }, { 2, 'k256_pubkey', 'bytes' },
    { 3, 'attestation', 'bytes' } },
  OnboardRequest = { { 1, 'source_url', 'string' }, { 2, 'domain', 'string' } },
  OnboardResponse = { { 1, 'k256_pubkey', 'bytes' } },
  AttestationInfoResponse = { { 1, 'device_id', 'bytes' }, { 2, 'mr_aggregated', 'bytes' },
    { 3, 'os_image_hash', 'bytes' }, { 4, 'tee_variant', 'string' }, { 5, 'site_name', 'string' },
    { 6, 'eth_rpc_url', 'string' }, { 7, 'kms_contract_address', 'string' }, { 8, 'ppid', 'bytes' } },
}

M.INFO_FILE = 'bootstrap-info.json'
M.DOMAIN_FILE = 'rpc-domain'

--- The report_data of a Bootstrap attestation over the root CA's SPKI and the k256 public key.
function M.report_data(ca_pubkey, k256_pubkey)
  return crypto.keccak256('dstack-kms-genereted-keys-v1:' .. crypto.hex(ca_pubkey) .. ';'
    .. crypto.hex(k256_pubkey) .. ';') .. ('\0'):rep(32)
end

--- The bootstrap info of `dir` ({ ca_pubkey, k256_pubkey, attestation } bytes), or nil when the
--- KMS was not bootstrapped here.
function M.read_info(dir)
  local text = fs.read_file(dir .. '/' .. M.INFO_FILE, 1024 * 1024)
  local t = text and cjson.decode(text)
  if type(t) ~= 'table' then
    return nil
  end
  local out = {}
  for _, f in ipairs({ 'ca_pubkey', 'k256_pubkey', 'attestation' }) do
    out[f] = type(t[f]) == 'string' and crypto.unhex(t[f]) or nil
    if not out[f] then
      return nil
    end
  end
  return out
end

--- The RPC domain onboarding chose for `dir`, or nil.
function M.read_domain(dir)
  local d = fs.read_file(dir .. '/' .. M.DOMAIN_FILE, 4096)
  d = d and d:gsub('%s+$', '')
  return d ~= '' and d or nil
end

local function check_domain(domain)
  if type(domain) ~= 'string' or not domain:match('^[%w][%w%.%-]*$') or #domain > 253 then
    return nil, 'EINVAL: domain must be a DNS name (letters, digits, dots, dashes)'
  end
  return true
end

--- Bootstrap: fresh root material in ctx.key_dir (refused if any key file exists), its
--- attestation from ctx.evidence (none without a TEE), bootstrap-info.json and rpc-domain.
--- ctx = { key_dir, sealer?, evidence?, selfauth? (checked first: a KMS image its backend does
--- not allow does not bootstrap) }. Returns the BootstrapResponse or nil, msg, code.
function M.bootstrap(ctx, domain)
  local ok, err = check_domain(domain)
  if not ok then
    return nil, err, 'EINVAL'
  end
  local code
  if ctx.selfauth then
    ok, err, code = ctx.selfauth:check()
    if not ok then
      return nil, err, code
    end
  end
  local m
  m, err, code = keys.create(ctx.key_dir, { sealer = ctx.sealer })
  if not m then
    return nil, err, code
  end
  local resp = { ca_pubkey = m.root_key:spki(), k256_pubkey = m.k256_pubkey, attestation = '' }
  if ctx.evidence then
    local att, aerr, acode = ctx.evidence:attestation(M.report_data(resp.ca_pubkey, resp.k256_pubkey),
      'full')
    if not att then
      return nil, 'cannot attest the new keys: ' .. tostring(aerr), acode
    end
    resp.attestation = att
  end
  local info = cjson.encode({ ca_pubkey = crypto.hex(resp.ca_pubkey),
    k256_pubkey = crypto.hex(resp.k256_pubkey), attestation = crypto.hex(resp.attestation) })
  for name, data in pairs({ [M.INFO_FILE] = info, [M.DOMAIN_FILE] = domain }) do
    ok, err, code = fs.write_atomic(ctx.key_dir .. '/' .. name, data, 384)
    if not ok then
      return nil, err, code
    end
  end
  return resp
end

--- The Onboard service methods over ctx = { key_dir, sealer?, evidence?, selfauth?, attest?,
--- auth, vm_config?, timeout_ms?, site_name?, log, has_keys = function() -> bool,
--- finish = function() (run in its own task once Finish has answered) }.
function M.methods(ctx)
  local msg = M.messages
  local t = {}
  t.Bootstrap = { input = msg.BootstrapRequest, output = msg.BootstrapResponse, call = function(a)
    local r, err, code = M.bootstrap(ctx, a.domain)
    ctx.log.info('onboarding: Bootstrap', { domain = a.domain, error = err })
    return r, err, code
  end }
  t.Onboard = { input = msg.OnboardRequest, output = msg.OnboardResponse, call = function(a)
    if not (ctx.evidence and ctx.attest) then
      return nil, 'EUNAVAILABLE: Onboard needs this KMS\'s tee and attestation settings'
    end
    local ok, err = check_domain(a.domain)
    if ok and not (type(a.source_url) == 'string' and a.source_url:match('^https://')) then
      ok, err = nil, 'EINVAL: source_url must be an https:// URL'
    end
    if not ok then
      return nil, err
    end
    local m, code
    m, err, code = require('moonstack.kms.replicate').replicate({ source_url = a.source_url,
      key_dir = ctx.key_dir, evidence = ctx.evidence, attest = ctx.attest, auth = ctx.auth,
      vm_config = ctx.vm_config, sealer = ctx.sealer, timeout_ms = ctx.timeout_ms, log = ctx.log })
    ctx.log.info('onboarding: Onboard', { source = a.source_url, error = err })
    if not m then
      return nil, err, code
    end
    fs.write_atomic(ctx.key_dir .. '/' .. M.DOMAIN_FILE, a.domain, 384)
    return { k256_pubkey = m.k256_pubkey }
  end }
  t.GetAttestationInfo = { input = msg.Empty, output = msg.AttestationInfoResponse, call = function()
    if not ctx.selfauth then
      return nil, 'EUNAVAILABLE: GetAttestationInfo needs this KMS\'s tee and attestation settings'
    end
    local boot, details, code = ctx.selfauth:boot_info()
    if not boot then
      return nil, details, code
    end
    local info = ctx.auth:info() or {}
    return { device_id = crypto.unhex(boot.deviceId or '') or '',
      mr_aggregated = crypto.unhex(boot.mrAggregated or '') or '',
      os_image_hash = crypto.unhex(boot.osImageHash or '') or '', tee_variant = boot.teeVariant or '',
      site_name = ctx.site_name or '', eth_rpc_url = info.eth_rpc_url or '',
      kms_contract_address = info.kms_contract_address or '',
      ppid = details.ppid or '' }
  end }
  t.Finish = { input = msg.Empty, output = msg.Empty, call = function()
    if not ctx.has_keys() then
      return nil, 'EINVAL: no root keys yet: call Bootstrap or Onboard first'
    end
    ctx.log.info('onboarding: Finish')
    task.spawn(ctx.finish) -- after this answer is on its way
    return {}
  end }
  return t
end

--- Serve onboarding mode on `listen` ({ host, port }) until Finish (in a task): the listener
--- closes, and serve() returns true; or nil, msg, code if it cannot listen. ctx as for
--- methods() (finish is set here). on_ready(address), when given, is called once listening.
function M.serve(ctx, listen, on_ready)
  local http = require('moonstack.http.server')
  local prpc = require('moonstack.core.prpc')
  local srv = http.new({ name = 'kms-onboard', listen = { host = listen.host, port = listen.port },
    max_body = 64 * 1024 })
  local finished -- resumes serve() below
  ctx.finish = function()
    finished()
  end
  local methods = M.methods(ctx)
  local page = require('moonstack.http.static').new('kms/onboarding', { headers = {
    ['content-security-policy'] = "default-src 'none'; script-src 'self'; style-src 'self'; "
      .. "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" } })
  local handler = prpc.handler({ { prefix = '/prpc/', service = 'Onboard', methods = methods } },
    function(req)
      if req.method ~= 'GET' and req.method ~= 'HEAD' then
        return nil
      end
      if req.path == '/finish' and req.method == 'GET' then
        local r, err = methods.Finish.call({})
        if not r then
          return 400, cjson.encode({ error = err }), { ['content-type'] = 'application/json' }
        end
        return 200, '{}', { ['content-type'] = 'application/json' }
      end
      if req.path == '/health' then
        return 200, 'onboarding', { ['content-type'] = 'text/plain' }
      end
      return page:serve(req, req.path:sub(2)) -- ui/kms/onboarding: the page, its JS and CSS
    end)
  srv:route('*', '/*', function(req) return handler(req) end)
  local ok, err, code = srv:listen()
  if not ok then
    return nil, 'onboarding listener: ' .. tostring(err), code
  end
  ctx.log.warn('no root keys: onboarding mode — Bootstrap or Onboard, then Finish', {
    address = srv:address(), key_dir = ctx.key_dir })
  if on_ready then
    on_ready(srv:address())
  end
  task.await(function(resume)
    finished = resume
  end)
  task.sleep(50) -- Finish's answer goes out first
  srv:close()
  -- lws frees a closed listener once its connections are gone (a browser's keep-alive one
  -- lasts up to 10 s) plus up to a second; the KMS may want this very port (upstream serves
  -- onboarding and RPC on one): wait until it can be bound again
  local port = listen.port
  for i = 1, port ~= 0 and 300 or 0 do
    if i == 20 then
      ctx.log.info('onboarding: waiting for the onboarding listener to free its port', { port = port })
    end
    local probe = uv.new_tcp()
    -- libuv reports EADDRINUSE at listen(), not bind()
    local free = probe:bind(listen.host, port) and probe:listen(1, function() end)
    probe:close()
    if free then
      break
    end
    task.sleep(50)
  end
  return true
end

return M
