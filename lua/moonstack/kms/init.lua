-- SPDX-License-Identifier: Apache-2.0
-- The KMS service (kms-vmm-gateway.md §3), in the service shape: start (open, or on first start
-- create — written only once the rest of the config is validated and the listeners are bound —
-- the root material; issue the RPC certificate from the root CA, CN = SAN = domain,
-- special usage kms:rpc, a fresh key at every start kept in memory; create the auth backend;
-- serve moonstack.kms.api over HTTPS, plus the admin listener when `admin` is configured),
-- stop, status, reload (SIGHUP: the auth backend, or a changed `auth` config) and rebind (adopt
-- a swapped copy of the KMS's code: moonstack.daemon.code). What survives a code swap is this
-- object: material, backend, listeners, metrics; the handlers are rebuilt from the new code.
local bit = require('bit')
local uv = require('luv')
local crypto = require('moonstack.crypto')
local http = require('moonstack.http.server')
local x509 = require('moonstack.x509')
local profiles = require('moonstack.x509.profiles')
local auth = require('moonstack.kms.auth')
local keys = require('moonstack.kms.keys')
local metrics = require('moonstack.kms.metrics')
local admin = require('moonstack.kms.admin')
local setup = require('moonstack.kms.setup')

local M = {}

--- The version reported in X-App-Version.
M.VERSION = '0.1.0'

auth.register('dev', require('moonstack.kms.dev_auth').new)

-- The root material of cfg.key_dir: onboarded first when `onboard` is set and the directory is
-- empty, generated in memory on the first start (material, true, sealer: start() writes it
-- once the config is validated and the listeners are bound), else loaded with its CA
-- certificates renewed when they expire within a year.
local function open_material(cfg, log, hooks)
  local sealer, err, code
  if cfg.seal then
    sealer, err, code = setup.sealer_from_config(cfg.seal)
    if not sealer then
      return nil, 'seal: ' .. tostring(err), code
    end
  end
  if cfg.onboard and not setup.has_keys(cfg.key_dir) then
    local ok
    ok, err, code = setup.onboard_from_config(cfg, sealer, log, hooks)
    if not ok then
      return nil, 'onboarding: ' .. tostring(err), code
    end
  end
  local material, created
  material, created, code = keys.open(cfg.key_dir, { sealer = sealer, defer_write = true,
    on_cleaned = function(names)
      log.warn('removed the temporaries of an interrupted write (an earlier start was killed)',
        { key_dir = cfg.key_dir, files = names })
    end })
  if not material then
    return nil, created, code
  end
  if created then
    return material, true, sealer -- written by start() once everything else is ready
  end
  local st = uv.fs_stat(cfg.key_dir)
  if st and bit.band(st.mode, 63) ~= 0 then
    log.warn(('the key directory is open to its group or others (mode %04o): run chmod 700 %s')
      :format(bit.band(st.mode, 4095), cfg.key_dir), { key_dir = cfg.key_dir })
  end
  local renewed
  renewed, err, code = keys.renew(material)
  if not renewed then
    return nil, err, code
  end
  if #renewed > 0 then
    log.warn('CA certificates renewed (they expired within 365 days; same keys)',
      { key_dir = cfg.key_dir, files = renewed })
  end
  return material, false
end

-- The RPC certificate (and its fresh key) for `domain` (and the further SANs `alt_names`),
-- attested by `evidence` when given.
local function issue_rpc_cert(material, domain, evidence, alt_names)
  local key = x509.generate_key()
  local att, err, code
  if evidence then
    att, err, code = evidence:attestation(require('moonstack.x509.ratls').report_data(key:spki()),
      'cert')
    if not att then
      return nil, 'tee: ' .. tostring(err), code
    end
  end
  local cert
  cert, err, code = profiles.kms_rpc_cert({ key = key, domain = domain, alt_names = alt_names,
    ca = { cert = material.root_cert, key = material.root_key }, attestation = att })
  if not cert then
    return nil, 'ECERT: cannot issue the RPC certificate: ' .. tostring(err), code
  end
  return cert, key
end

-- The admin credentials of cfg.admin (nil without an admin listener).
local function admin_credentials(cfg, log)
  if not cfg.admin then
    return true
  end
  local creds, err, code = admin.credentials(cfg.admin)
  if not creds then
    return nil, 'admin: ' .. tostring(err), code
  end
  if creds.insecure then
    log.warn('ADMIN LISTENER WITHOUT AUTHENTICATION (admin.insecure_no_auth): anyone who can '
      .. 'reach it may call the admin methods')
  end
  return creds
end

local Kms = {}
Kms.__index = Kms
M.Kms = Kms

--- Start the KMS from a validated config (moonstack.kms.config). Returns the Kms object
--- { cfg, material, created, auth, attest, rpc_cert, server, methods; port(), address(), reload(),
--- status(), stop() } or nil, msg, code (nothing left open). With `onboard` and no keys, the
--- keys come first (hooks.onboarding_ready(address) is told where onboarding mode listens).
function M.start(cfg, log, hooks)
  assert(type(cfg) == 'table' and cfg.key_dir, 'kms.start: a validated config required')
  log = log or require('moonstack.core.log').new('kms')
  local material, created, sealer = open_material(cfg, log, hooks)
  if not material then
    return nil, created, sealer
  end
  local err, code
  -- this KMS's own TEE: attests the RPC certificate, then self-authorization (below)
  local evidence
  if cfg.tee then
    evidence, err, code = setup.evidence_from_config(cfg.tee)
    if not evidence then
      return nil, 'tee: ' .. tostring(err), code
    end
  end
  local self = setmetatable({ cfg = cfg, material = material, created = created, log = log,
    metrics = metrics.new(), auth_decisions = require('moonstack.kms.decisions').new() }, Kms)
  local ok
  ok, err, code = self:_assemble(evidence)
  if evidence then
    evidence:close()
  end
  if ok then
    ok, err, code = self:_listen()
  end
  if ok and created then -- everything else is ready: only now do the keys reach the disk
    ok, err, code = keys.write(cfg.key_dir, material, { sealer = sealer })
    if ok then
      log.info('root material generated', { key_dir = cfg.key_dir, sealed = sealer and sealer.kind })
    end
  end
  if not ok then
    self:stop()
    return nil, err, code
  end
  if cfg.cluster then -- membership in etcd (never keys): replicas find the source there
    self.cluster_reg, err, code = require('moonstack.kms.cluster').register(self)
    if not self.cluster_reg then
      self:stop()
      return nil, 'cluster: ' .. tostring(err), code
    end
  end
  log.info('KMS ready', { address = self.server:address(), domain = self.domain,
    auth = self.auth.kind, k256_pubkey = crypto.hex(material.k256_pubkey),
    root_ca = self.rpc_cert:info().issuer })
  return self
end

-- The RPC certificate, the admin credentials, the auth backend, the caller checker and
-- self-authorization, from the config. True or nil, msg, code.
function Kms:_assemble(evidence)
  local cfg = self.cfg
  local err, code
  local onboarding = require('moonstack.kms.onboarding')
  self.domain = onboarding.read_domain(cfg.key_dir) or cfg.domain -- onboarding's choice first
  self.bootstrap_info = onboarding.read_info(cfg.key_dir)
  self.rpc_cert, self.rpc_key, code = issue_rpc_cert(self.material, self.domain, evidence,
    cfg.alt_names)
  if not self.rpc_cert then
    return nil, self.rpc_key, code
  end
  self.admin_creds, err, code = admin_credentials(cfg, self.log)
  if not self.admin_creds then
    return nil, err, code
  end
  if cfg.admin then
    self.login_limit = require('moonstack.http.login_limit').new(cfg.admin.failed_logins)
  end
  self.auth, err, code = auth.new(cfg.auth)
  if not self.auth then
    return nil, 'auth: ' .. tostring(err), code
  end
  if cfg.attestation then
    self.attest, err, code = setup.attest_from_config(cfg.attestation, cfg.image)
    if not self.attest then
      return nil, 'attestation: ' .. tostring(err), code
    end
    if cfg.attestation.allow_simulator then
      self.log.warn('simulated quotes are accepted (attestation.allow_simulator)')
    end
  end
  if cfg.self_authorization then -- validated: tee and attestation are set
    self.selfauth, err, code = require('moonstack.kms.selfauth').new({ evidence = evidence,
      attest = self.attest, auth = self.auth, log = self.log })
    if not self.selfauth then
      return nil, 'self-authorization: ' .. tostring(err), code
    end
    self.log.info('self-authorization on: trusted RPCs ask authorize_kms about this KMS first',
      { compose_hash = self.selfauth.compose_hash })
  end
  self:_bind()
  return true
end

-- Build the methods and the HTTP handlers from the KMS's code as it is now (at start, and
-- again after a code swap). The listeners call self.handler / self.admin_handler per request.
function Kms:_bind()
  local api = require('moonstack.kms.api')
  self.methods = api.methods(self)
  if self.selfauth then
    self.selfauth:guard(self.methods)
  end
  self.handler = api.handler(self)
  if self.cfg.admin then
    self.admin_handler = api.admin_handler(self, self.admin_creds)
  end
end

--- Adopt the KMS's swapped code (moonstack.daemon.code): this module's methods for `kms`,
--- and handlers rebuilt from the new moonstack.kms.api. Requests in flight finish on the old.
function M.rebind(kms)
  setmetatable(kms, Kms)
  kms:_bind()
end

-- Open the RPC listener (and the admin listener). True or nil, msg, code.
function Kms:_listen()
  local cfg = self.cfg
  local srv = http.new({ name = 'kms-rpc', listen = { host = cfg.listen.host, port = cfg.listen.port },
    max_body = cfg.max_body, headers = { ['x-app-version'] = M.VERSION },
    -- the RPC certificate alone: clients trust the root it is issued by (a root sent along
    -- only costs every client a certificate decode)
    tls = { cert = self.rpc_cert:pem(), key = self.rpc_key:pkcs8_pem(),
      ca = self.material.tmp_ca_cert:pem(), client_cert = 'request' } })
  srv:route('*', '/*', function(req) return self.handler(req) end)
  local ok, err, code = srv:listen()
  if not ok then
    return nil, ('rpc listener: %s'):format(err), code
  end
  self.server = srv
  if not cfg.admin then
    return true
  end
  local asrv = http.new({ name = 'kms-admin', max_body = 64 * 1024,
    listen = { host = cfg.admin.listen.host, port = cfg.admin.listen.port },
    headers = { ['x-app-version'] = M.VERSION } })
  self.dashboard = require('moonstack.kms.dashboard').mount(self, asrv) -- before the catch-all
  asrv:route('*', '/*', function(req) return self.admin_handler(req) end)
  ok, err, code = asrv:listen()
  if not ok then
    return nil, ('admin listener: %s'):format(err), code
  end
  self.admin_server = asrv
  self.log.info('admin listener ready', { address = asrv:address() })
  return true
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

-- Config keys a running KMS applies in place (the others need a restart).
local LIVE = { auth = true, control = true }

--- Reload (SIGHUP, or reload.config() in the REPL): with `changed` empty, the auth backend
--- reloads its policy; a changed `auth` config gets a new backend (the old one stays on
--- failure). Other changed keys need a restart: nothing changes then, and the answer says so.
--- Returns the backend's status, or nil, msg, code.
function Kms:reload(cfg, changed)
  local restart = {}
  for _, k in ipairs(changed or {}) do
    if not LIVE[k] then
      restart[#restart + 1] = k
    end
  end
  if #restart > 0 then
    return nil, ('ERESTART: %s changed: restart the KMS to apply'):format(
      table.concat(restart, ', ')), 'ERESTART'
  end
  if cfg and cfg.auth ~= self.cfg.auth and changed and #changed > 0 then
    local backend, err, code = auth.new(cfg.auth)
    if not backend then
      return nil, 'auth: ' .. tostring(err), code
    end
    local old = self.auth
    self.auth, self.cfg = backend, cfg
    if self.selfauth then
      self.selfauth.auth = backend
    end
    self:_bind()
    old:close()
    return backend:status()
  end
  return self.auth:reload()
end

--- A snapshot for the REPL: address, key_dir, k256 public key, auth status, the admin
--- listener's failed-login limiter (clients tracked, checks in flight).
function Kms:status()
  return { address = self:address(), key_dir = self.cfg.key_dir,
    k256_pubkey = crypto.hex(self.material.k256_pubkey), auth = self.auth and self.auth:status(),
    admin_logins = self.login_limit and self.login_limit:status(),
    cluster = self.cluster_reg and self.cluster_reg.member or nil }
end

--- The newest `n` auth decisions (default 20), newest first (moonstack.kms.decisions): the
--- REPL's kms.decisions(n) and the dashboard's list.
function Kms:decisions(n)
  return self.auth_decisions and self.auth_decisions:list(n) or {}
end

--- Stop listening and release the auth backend. Idempotent.
function Kms:stop()
  if self.cluster_reg then
    self.cluster_reg:close()
    self.cluster_reg = nil
  end
  if self.dashboard then
    self.dashboard.close()
    self.dashboard = nil
  end
  if self.auth_decisions then
    self.auth_decisions:close()
  end
  if self.admin_server then
    self.admin_server:close()
    self.admin_server = nil
  end
  if self.server then
    self.server:close()
    self.server = nil
  end
  if self.auth then
    self.auth:close()
    self.auth = nil
  end
end

--- The same as stop() (older name).
Kms.close = Kms.stop

return M
