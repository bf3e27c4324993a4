-- SPDX-License-Identifier: Apache-2.0
-- The KMS service: opens (or on first start creates) the root material, issues the RPC
-- certificate from the root CA (CN = SAN = domain, special usage kms:rpc; fresh key at every
-- start, kept in memory), creates the auth backend and serves the pRPC methods
-- (moonstack.kms.rpc) over HTTPS, plus `GET /health` and `GET /metrics` (moonstack.kms.metrics).
-- run_daemon wraps it in moonstack.daemon (control socket, SIGTERM/SIGINT stop, SIGHUP
-- reloads the auth backend). With `admin` configured, a second listener serves the Admin
-- service behind the admin token (moonstack.kms.admin).
local uv = require('luv')
local crypto = require('moonstack.crypto')
local http = require('moonstack.http.server')
local prpc = require('moonstack.core.prpc')
local x509 = require('moonstack.x509')
local profiles = require('moonstack.x509.profiles')
local auth = require('moonstack.kms.auth')
local keys = require('moonstack.kms.keys')
local rpc = require('moonstack.kms.rpc')
local metrics = require('moonstack.kms.metrics')
local admin = require('moonstack.kms.admin')

local M = {}

--- The version reported in X-App-Version.
M.VERSION = '0.1.0'

auth.register('dev', require('moonstack.kms.dev_auth').new)

--- The caller checker (moonstack.kms.attest) of a validated `attestation` config table.
function M.attest_from_config(a, image)
  local fs = require('moonstack.core.fs')
  local opts = { pccs = a.pccs, cache_dir = a.cache_dir, timeout_ms = a.timeout_ms,
    allow_simulator = a.allow_simulator }
  if image then
    opts.image = require('moonstack.kms.image').new(image.measurements_dir
      or image.cache_dir .. '/boot-measurements', { verify = image.verify })
  end
  local err, code
  if a.collateral_file then
    opts.collateral, err, code = fs.read_file(a.collateral_file, 16 * 1024 * 1024)
    if not opts.collateral then
      return nil, err, code
    end
  end
  if a.simulator_dir then -- development: the simulated platform's own root and collateral
    local s
    s, err, code = require('moonstack.sim').open(a.simulator_dir)
    if not s then
      return nil, err, code
    end
    opts.collateral, err, code = s:collateral(os.time())
    opts.root_ca = opts.collateral and s:root_ca()
    s:close()
    if not opts.collateral then
      return nil, err, code
    end
  end
  if a.root_ca_file then
    opts.root_ca, err, code = fs.read_file(a.root_ca_file, 1024 * 1024)
    if not opts.root_ca then
      return nil, err, code
    end
  end
  return require('moonstack.kms.attest').new(opts)
end

--- The sealer (moonstack.kms.seal) of a validated `seal` config table, or nil, msg, code.
function M.sealer_from_config(c)
  if c.tee == 'agent' then
    return require('moonstack.kms.seal').agent(c.socket)
  end
  local tee, err, code = require('moonstack.sim').new({ dir = c.dir, cvm = c.cvm })
  if not tee then
    return nil, err, code
  end
  local sealer
  sealer, err, code = require('moonstack.kms.seal').sim(tee)
  tee:close()
  return sealer, err, code
end

--- The evidence source of the KMS's own TEE (a validated `tee` config table): an object with
--- attestation(report_data, form) (moonstack.agent.client, or moonstack.tdx.evidence over a
--- simulated CVM) and close(); or nil, msg, code.
function M.evidence_from_config(c)
  if c.kind == 'agent' then
    local g = require('moonstack.agent.client').new(c.socket)
    g.close = function() end
    return g
  end
  local tee, err, code = require('moonstack.sim').new({ dir = c.dir, cvm = c.cvm })
  if not tee then
    return nil, err, code
  end
  local ev = require('moonstack.tdx.evidence').new({ tee = tee, vm_config = '' })
  return { attestation = function(_, rd, form) return ev:attestation(rd, form) end,
    close = function() tee:close() end }
end

--- Whether `dir` holds any of the root material files.
function M.has_keys(dir)
  for _, name in ipairs(keys.FILES) do
    if uv.fs_stat(dir .. '/' .. name) then
      return true
    end
  end
  return false
end

--- Fill cfg.key_dir as kms.lua `onboard` says (in a task): replicate from source_url, or
--- bootstrap auto_bootstrap_domain, or serve onboarding mode (moonstack.kms.onboarding) until
--- Finish. This KMS's evidence comes from cfg.tee, callers are checked with cfg.attestation and
--- cfg.auth. hooks.onboarding_ready(address) is told where onboarding mode listens. Returns
--- true or nil, msg, code.
function M.onboard_from_config(cfg, sealer, log, hooks)
  local o = cfg.onboard
  local ctx = { key_dir = cfg.key_dir, sealer = sealer, log = log, timeout_ms = o.timeout_ms,
    site_name = cfg.site_name, has_keys = function() return M.has_keys(cfg.key_dir) end }
  local err, code
  if cfg.attestation then
    ctx.attest, err, code = M.attest_from_config(cfg.attestation, cfg.image)
    if not ctx.attest then
      return nil, err, code
    end
  end
  ctx.auth, err, code = auth.new(cfg.auth)
  if not ctx.auth then
    return nil, err, code
  end
  local function done(...)
    if ctx.evidence then
      ctx.evidence:close()
    end
    ctx.auth:close()
    return ...
  end
  if cfg.tee then
    ctx.evidence, err, code = M.evidence_from_config(cfg.tee)
    if not ctx.evidence then
      return done(nil, err, code)
    end
    if ctx.attest and cfg.self_authorization then
      ctx.selfauth, err, code = require('moonstack.kms.selfauth').new({ evidence = ctx.evidence,
        attest = ctx.attest, auth = ctx.auth, log = log })
      if not ctx.selfauth then
        return done(nil, err, code)
      end
    end
  end
  local onboarding = require('moonstack.kms.onboarding')
  if o.source_url then
    local m
    m, err, code = require('moonstack.kms.replicate').replicate({ source_url = o.source_url,
      key_dir = cfg.key_dir, evidence = ctx.evidence, attest = ctx.attest, auth = ctx.auth,
      sealer = sealer, timeout_ms = o.timeout_ms, log = log })
    return done(m and true, err, code)
  end
  if o.auto_bootstrap_domain then
    local r
    r, err, code = onboarding.bootstrap(ctx, o.auto_bootstrap_domain)
    if r then
      log.info('bootstrapped (auto_bootstrap_domain)', { domain = o.auto_bootstrap_domain,
        attested = r.attestation ~= '' })
    end
    return done(r and true, err, code)
  end
  return done(onboarding.serve(ctx, o.listen, hooks and hooks.onboarding_ready))
end

local Kms = {}
Kms.__index = Kms

--- Start the KMS from a validated config (moonstack.kms.config). Returns the Kms object
--- { cfg, material, created, auth, rpc_cert, server, methods; port(), address(), reload(),
--- status(), close() } or nil, msg, code (nothing left open). With `onboard` and no keys, the
--- keys come first (onboard_from_config; hooks passed on).
function M.start(cfg, log, hooks)
  assert(type(cfg) == 'table' and cfg.key_dir, 'kms.server.start: a validated config required')
  log = log or require('moonstack.core.log').new('kms')
  local sealer, serr, scode
  if cfg.seal then
    sealer, serr, scode = M.sealer_from_config(cfg.seal)
    if not sealer then
      return nil, 'seal: ' .. tostring(serr), scode
    end
  end
  if cfg.onboard and not M.has_keys(cfg.key_dir) then
    local ok, oerr, ocode = M.onboard_from_config(cfg, sealer, log, hooks)
    if not ok then
      return nil, 'onboarding: ' .. tostring(oerr), ocode
    end
  end
  local material, created, code = keys.open(cfg.key_dir, { sealer = sealer })
  if not material then
    return nil, created, code
  end
  if created then
    log.info('root material generated', { key_dir = cfg.key_dir, sealed = sealer and sealer.kind })
  else
    local renewed, rerr, rcode = keys.renew(material)
    if not renewed then
      return nil, rerr, rcode
    end
    if #renewed > 0 then
      log.warn('CA certificates renewed (they expired within 365 days; same keys)',
        { key_dir = cfg.key_dir, files = renewed })
    end
  end
  -- this KMS's own TEE: attests the RPC certificate, then self-authorization (below)
  local evidence, rpc_att
  if cfg.tee then
    evidence, serr, scode = M.evidence_from_config(cfg.tee)
    if not evidence then
      return nil, 'tee: ' .. tostring(serr), scode
    end
  end
  local function fail(msg, fcode, backend)
    if evidence then
      evidence:close()
    end
    if backend then
      backend:close()
    end
    return nil, msg, fcode
  end
  local rpc_key = x509.generate_key()
  if evidence then
    rpc_att, serr, scode = evidence:attestation(require('moonstack.x509.ratls').report_data(
      rpc_key:spki()), 'cert')
    if not rpc_att then
      return fail('tee: ' .. tostring(serr), scode)
    end
  end
  local onboarding = require('moonstack.kms.onboarding')
  local domain = onboarding.read_domain(cfg.key_dir) or cfg.domain -- onboarding's choice first
  local rpc_cert, cerr, ccode = profiles.kms_rpc_cert({ key = rpc_key, domain = domain,
    ca = { cert = material.root_cert, key = material.root_key }, attestation = rpc_att })
  if not rpc_cert then
    return fail('ECERT: cannot issue the RPC certificate: ' .. tostring(cerr), ccode)
  end
  local admin_creds, terr, tcode
  if cfg.admin then
    admin_creds, terr, tcode = admin.credentials(cfg.admin)
    if not admin_creds then
      return fail('admin: ' .. tostring(terr), tcode)
    end
    if admin_creds.insecure then
      log.warn('ADMIN LISTENER WITHOUT AUTHENTICATION (admin.insecure_no_auth): anyone who can '
        .. 'reach it may call the admin methods')
    end
  end
  local backend, aerr, acode = auth.new(cfg.auth)
  if not backend then
    return fail('auth: ' .. tostring(aerr), acode)
  end
  local attest
  if cfg.attestation then
    attest, aerr, acode = M.attest_from_config(cfg.attestation, cfg.image)
    if not attest then
      return fail('attestation: ' .. tostring(aerr), acode, backend)
    end
    if cfg.attestation.allow_simulator then
      log.warn('simulated quotes are accepted (attestation.allow_simulator)')
    end
  end
  local self = setmetatable({ cfg = cfg, material = material, created = created, auth = backend,
    attest = attest, rpc_cert = rpc_cert, log = log, domain = domain,
    bootstrap_info = onboarding.read_info(cfg.key_dir) }, Kms)
  self.methods = rpc.methods(self)
  if cfg.self_authorization then -- validated: tee and attestation are set
    local eerr, ecode
    self.selfauth, eerr, ecode = require('moonstack.kms.selfauth').new({ evidence = evidence,
      attest = attest, auth = backend, log = log })
    if not self.selfauth then
      return fail('self-authorization: ' .. tostring(eerr), ecode, backend)
    end
    self.selfauth:guard(self.methods)
    log.info('self-authorization on: trusted RPCs ask authorize_kms about this KMS first',
      { compose_hash = self.selfauth.compose_hash })
  end
  if evidence then
    evidence:close()
  end
  local srv = http.new({ name = 'kms-rpc', listen = { host = cfg.listen.host, port = cfg.listen.port },
    max_body = cfg.max_body, headers = { ['x-app-version'] = M.VERSION },
    -- the RPC certificate alone: clients trust the root it is issued by (a root sent along
    -- only costs every client a certificate decode)
    tls = { cert = rpc_cert:pem(), key = rpc_key:pkcs8_pem(),
      ca = material.tmp_ca_cert:pem(), client_cert = 'request' } })
  self.metrics = metrics.new()
  local handler = self.metrics:wrap(prpc.handler({
    { prefix = '/prpc/', service = 'KMS', methods = self.methods } },
    function(req)
      if req.method ~= 'GET' then
        return nil
      end
      if req.path == '/health' then
        return 200, 'OK', { ['content-type'] = 'text/plain' }
      end
      if req.path == '/metrics' and cfg.metrics then
        return 200, self.metrics:render(), { ['content-type'] = 'text/plain; version=0.0.4' }
      end
    end))
  srv:route('*', '/*', function(req) return handler(req) end)
  local ok, lerr, lcode = srv:listen()
  if not ok then
    backend:close()
    return nil, ('rpc listener: %s'):format(lerr), lcode
  end
  self.server = srv
  if admin_creds then
    local asrv = http.new({ name = 'kms-admin', max_body = 64 * 1024,
      listen = { host = cfg.admin.listen.host, port = cfg.admin.listen.port },
      headers = { ['x-app-version'] = M.VERSION } })
    local ah = prpc.handler({ { prefix = '/prpc/', service = 'Admin', methods = admin.methods(self) } })
    asrv:route('*', '/*', function(req)
      if not admin.authorized(req, admin_creds) then
        log.warn('admin request refused: bad or missing token', { path = req.path })
        return 401, '{"error":"unauthorized"}', { ['content-type'] = 'application/json',
          ['www-authenticate'] = 'Bearer realm="dstack-kms admin"' }
      end
      return ah(req)
    end)
    ok, lerr, lcode = asrv:listen()
    if not ok then
      self:close()
      return nil, ('admin listener: %s'):format(lerr), lcode
    end
    self.admin_server = asrv
    log.info('admin listener ready', { address = asrv:address() })
  end
  log.info('KMS ready', { address = srv:address(), domain = domain, auth = backend.kind,
    k256_pubkey = crypto.hex(material.k256_pubkey), root_ca = rpc_cert:info().issuer })
  return self
end

--- The bound TCP port of the RPC listener.
function Kms:port()
  return self.server and self.server:port()
end

--- The bound TCP port of the admin listener (nil when not enabled).
function Kms:admin_port()
  return self.admin_server and self.admin_server:port()
end

--- "host:port" of the RPC listener.
function Kms:address()
  return self.server and self.server:address()
end

--- Reload the auth backend (its policy file). Returns its status or nil, msg, code.
function Kms:reload()
  return self.auth:reload()
end

--- A snapshot for the REPL: address, key_dir, k256 public key, auth status.
function Kms:status()
  return { address = self:address(), key_dir = self.cfg.key_dir,
    k256_pubkey = crypto.hex(self.material.k256_pubkey), auth = self.auth:status() }
end

--- Stop listening and release the auth backend. Idempotent.
function Kms:close()
  if self.admin_server then
    self.admin_server:close()
    self.admin_server = nil
  end
  if self.server then
    self.server:close()
    self.server = nil
  end
  self.auth:close()
end

--- `moonstack kms -c FILE`: load the config and run the KMS as a daemon; the REPL sees it as
--- `kms`. Returns an exit code for config errors, else nil (the loop keeps running).
function M.run_daemon(path)
  local cfg, err = require('moonstack.kms.config').load(path)
  if not cfg then
    io.stderr:write('moonstack kms: ', tostring(err), '\n')
    return 2
  end
  local state = {}
  require('moonstack.daemon').run({
    name = 'kms',
    control = cfg.control,
    env = { kms = state },
    start = function(d)
      local k, serr = M.start(cfg, d.log)
      if not k then
        return nil, serr
      end
      state.kms = k
      return true
    end,
    reload = function()
      if state.kms then
        assert(state.kms:reload())
      end
    end,
    stop = function()
      if state.kms then
        state.kms:close()
      end
    end,
  })
  return nil
end

return M
