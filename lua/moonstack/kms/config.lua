-- SPDX-License-Identifier: Apache-2.0
-- The KMS config file (`moonstack kms -c kms.lua`): a Lua chunk returning a table, validated
-- here (moonstack.core.config + moonstack.core.schema). Every key, with its default (upstream
-- kms.toml names in brackets, kms-vmm-gateway.md §3.10):
--
--   key_dir = '/etc/kms/certs'        root material (moonstack.kms.keys) [core.cert_dir]
--   listen  = { host = '0.0.0.0', port = 8000 }   the pRPC HTTPS listener [rpc]
--   domain  = 'localhost'             CN and SAN of the RPC certificate (issued by the root CA
--                                     at every start, kept in memory)
--   alt_names = {}                    further SANs of the RPC certificate (DNS names or IPs:
--                                     '10.0.2.2' for QEMU guests on user networking reaching a
--                                     KMS on their host's loopback)
--   control = nil                     control socket path (moonstack repl), mode 0600
--   auth    = { kind = 'webhook', url = 'http://auth-api:8000' }   the auth backend
--             (moonstack.kms.auth): 'dev' (allow all; gateway_app_id = 'any'), 'webhook'
--             (url, timeout_ms), 'policy' (path = the policy file, watch = true, debounce_ms =
--             200, limits = { memory_limit, instruction_limit, time_limit_ms = 50, ... }?,
--             workers = 2: policy worker processes deciding in parallel, 1..32, each killed
--             and replaced when a policy overruns its deadline or crashes it), 'eth'
--             (rpc_url = Ethereum JSON-RPC URL, kms_contract = DstackKms address, timeout_ms
--             = 10000 per call, chain_id?, confirmations = 0: isAppAllowed / isKmsAllowed by
--             eth_call); other keys go to the backend [core.auth_api]
--   max_body = 10485760               request body limit (bytes)
--   metrics = true                    serve GET /metrics (Prometheus text) [core.metrics]
--   attestation = nil                 how callers' quotes are verified (GetAppKey; without it
--                                     GetAppKey answers "unavailable"): collateral_file = path
--                                     (dcap-qvl JSON) or pccs = URL (+ cache_dir, timeout_ms);
--                                     root_ca_file = a simulator root (PEM/DER) and
--                                     allow_simulator = true to accept simulated quotes; or,
--                                     for development, simulator_dir = an existing moonstack
--                                     simulator platform (its root and collateral, made at
--                                     start; none there: the start fails — moonstack sim init)
--                                     with allow_simulator = true
--   seal = nil                        seal the private root keys at rest (moonstack.kms.seal)
--                                     with a key bound to the KMS's CVM: { tee = 'agent',
--                                     socket = '/var/run/dstack.sock' } (its guest agent's
--                                     GetKey: a TDX CVM) or { tee = 'sim', dir = simulator
--                                     state dir, cvm = the KMS's CVM name }
--   admin = nil                       the admin listener (moonstack.kms.admin) [core.admin]:
--                                     { listen = { host = '127.0.0.1', port = 8001 }, token =
--                                     secret?, token_file = path? } (else the env
--                                     DSTACK_KMS_ADMIN_TOKEN / ADMIN_API_TOKEN), htpasswd_file =
--                                     path? (bcrypt users, Basic auth, checked off the loop),
--                                     insecure_no_auth = false, failed_logins = { max = 5,
--                                     window_s = 300, max_inflight = 2 } (per client address:
--                                     beyond, 429 without a check); no credential: start fails;
--                                     login_token_file = path? (0600: the dashboard's one-time
--                                     login token, moonstack.ui.login)
--   tee = nil                         the KMS's own TEE, to attest its RPC certificate (.1.8,
--                                     [core] attest_rpc_cert; onboarding peers check it):
--                                     { kind = 'agent', socket = '/var/run/dstack.sock' } (its
--                                     CVM's guest agent: TDX) or { kind = 'sim', dir =
--                                     simulator state dir, cvm = name }
--   self_authorization = (tee and attestation set)   before each trusted RPC, ask the auth
--                                     backend's authorize_kms about this KMS's own attestation
--                                     (moonstack.kms.selfauth) [core] enforce_self_authorization
--   code_reload = (not in a CVM)      allow reload.code() / SIGUSR2 to swap the KMS's code
--                                     (moonstack.daemon.code); off by default with tee.kind =
--                                     'agent'; when on with a tee, each swap is recorded in
--                                     RTMR3 first (event moonstack-code, payload its SHA-256)
--   code_dir = nil                    where reload.code() reads the new code (a lua/ root);
--                                     default: the runtime's --lua-dir
--   onboard = nil                     when key_dir holds none of the root files: replicate them
--                                     from a running KMS ({ source_url = 'https://kms-a:8000' },
--                                     needs tee and attestation), bootstrap them
--                                     ({ auto_bootstrap_domain = 'kms.example.com' }), or serve
--                                     onboarding mode until Finish ({} : the Onboard pRPC service
--                                     and a page on listen = { host = '0.0.0.0', port = 8000 },
--                                     plain HTTP) [core.onboard]; timeout_ms = 10000
--                                     source_from_cluster = true: replicate from the live
--                                     onboarding source registered in etcd (needs cluster)
--   cluster = nil                     membership on etcd (moonstack.kms.cluster; never keys):
--                                     { etcd = { endpoints = { 'http://h:2379', ... }, prefix =
--                                     '/moonstack', timeout_ms = 3000, lease_ttl = 10,
--                                     ca_file?, cert_file? + key_file? (etcd over TLS) },
--                                     url = 'https://<listen address>' (what replicas dial),
--                                     node_id = nil (default: from the url), role = 'source' |
--                                     'replica' (default: replica when onboarding from a source) }
--   site_name = ''                    returned by Onboard.GetAttestationInfo
--   image = { cache_dir = '/usr/share/dstack/images', verify = true, measurements_dir =
--            <cache_dir>/boot-measurements }   [core.image] the OS-image gate
--                                     (moonstack.kms.image): a BootInfo naming an OS image must
--                                     show boot measurements registered for it in
--                                     <measurements_dir>/<os_image_hash>.json
local config = require('moonstack.core.config')

local M = {}

-- The schema of a listener { host, port } with these defaults.
local function listen_schema(host, port)
  return {
    type = 'table',
    default = {},
    fields = {
      host = { type = 'string', default = host, min = 1 },
      port = { type = 'integer', default = port, min = 0, max = 65535 },
    },
  }
end

-- The schema of a table naming the KMS's own TEE by its key `which` (tee.kind, seal.tee): its
-- CVM's guest agent (socket) or a simulated CVM (dir, cvm).
local function tee_schema(which)
  return {
    type = 'table',
    optional = true,
    fields = {
      [which] = { type = 'string', enum = { 'agent', 'sim' } },
      socket = { type = 'string', default = '/var/run/dstack.sock', min = 1 }, -- agent
      dir = { type = 'string', optional = true, min = 1 }, -- sim
      cvm = { type = 'string', optional = true, min = 1 }, -- sim
    },
    check = function(c)
      if c[which] == 'sim' and not (c.dir and c.cvm) then
        return nil, ("%s = 'sim' needs dir and cvm (the simulated CVM)"):format(which)
      end
      return true
    end,
  }
end

--- The schema (moonstack.core.schema) of kms.lua.
M.schema = {
  type = 'table',
  fields = {
    key_dir = { type = 'string', default = '/etc/kms/certs', min = 1 },
    listen = listen_schema('0.0.0.0', 8000),
    domain = { type = 'string', default = 'localhost', min = 1 },
    alt_names = { type = 'table', default = {}, items = { type = 'string', min = 1 } },
    control = { type = 'string', optional = true, min = 1 },
    auth = {
      type = 'table',
      default = { kind = 'webhook', url = 'http://auth-api:8000' },
      unknown = 'allow',
      fields = { kind = { type = 'string', min = 1,
        check = function(k) return require('moonstack.kms.auth').known(k) end } },
      check = function(a)
        if a.kind == 'eth' then
          return require('moonstack.kms.auth.eth').check(a)
        end
        return true
      end,
    },
    max_body = { type = 'integer', default = 10 * 1024 * 1024, min = 1024 },
    metrics = { type = 'boolean', default = true },
    admin = {
      type = 'table',
      optional = true,
      fields = {
        listen = listen_schema('127.0.0.1', 8001),
        token = { type = 'string', optional = true },
        token_file = { type = 'string', optional = true, min = 1 },
        htpasswd_file = { type = 'string', optional = true, min = 1 },
        login_token_file = { type = 'string', optional = true, min = 1 },
        insecure_no_auth = { type = 'boolean', default = false },
        failed_logins = {
          type = 'table',
          default = {},
          fields = {
            max = { type = 'integer', default = 5, min = 1 },
            window_s = { type = 'integer', default = 300, min = 1 },
            max_inflight = { type = 'integer', default = 2, min = 1 },
          },
        },
      },
    },
    tee = tee_schema('kind'),
    self_authorization = { type = 'boolean', optional = true },
    code_reload = { type = 'boolean', optional = true },
    code_dir = { type = 'string', optional = true, min = 1 },
    site_name = { type = 'string', default = '' },
    onboard = {
      type = 'table',
      optional = true,
      fields = {
        source_url = { type = 'string', optional = true, pattern = '^https://' },
        source_from_cluster = { type = 'boolean', default = false },
        auto_bootstrap_domain = { type = 'string', optional = true, pattern = '^[%w][%w%.%-]*$' },
        listen = listen_schema('0.0.0.0', 8000),
        timeout_ms = { type = 'integer', default = 10000, min = 1 },
      },
    },
    image = {
      type = 'table',
      default = {},
      fields = {
        cache_dir = { type = 'string', default = '/usr/share/dstack/images', min = 1 },
        verify = { type = 'boolean', default = true },
        measurements_dir = { type = 'string', optional = true, min = 1 },
      },
    },
    seal = tee_schema('tee'),
    cluster = { type = 'table', optional = true, fields = {
      etcd = require('moonstack.etcd').config_schema(),
      url = { type = 'string', optional = true, pattern = '^https://[^%s]+$' },
      node_id = { type = 'integer', optional = true, min = 0 },
      role = { type = 'string', optional = true, enum = { 'source', 'replica' } },
    } },
    attestation = {
      type = 'table',
      optional = true,
      fields = {
        collateral_file = { type = 'string', optional = true, min = 1 },
        pccs = { type = 'string', optional = true, pattern = '^https?://' },
        cache_dir = { type = 'string', optional = true, min = 1 },
        timeout_ms = { type = 'integer', optional = true, min = 1 },
        root_ca_file = { type = 'string', optional = true, min = 1 },
        simulator_dir = { type = 'string', optional = true, min = 1 },
        allow_simulator = { type = 'boolean', default = false },
      },
      check = function(a)
        local sources = (a.collateral_file and 1 or 0) + (a.pccs and 1 or 0) + (a.simulator_dir and 1 or 0)
        if sources ~= 1 then
          return nil, 'give one of collateral_file, pccs or simulator_dir'
        end
        if a.simulator_dir and (a.root_ca_file or not a.allow_simulator) then
          return nil, 'simulator_dir takes the simulator\'s collateral and root itself, and needs '
            .. 'allow_simulator = true'
        end
        if a.allow_simulator and not (a.root_ca_file or a.simulator_dir) then
          return nil, 'allow_simulator needs root_ca_file (the simulator root) or simulator_dir'
        end
        return true
      end,
    },
  },
}

--- The checks across keys and the derived defaults (code_reload, self_authorization) of a
--- config the schema accepted. Returns cfg or nil, 'EINVAL: ...', 'EINVAL'.
function M.finish(cfg)
  local ob = cfg and cfg.onboard
  if ob and ob.source_from_cluster and (ob.source_url or ob.auto_bootstrap_domain
      or not cfg.cluster) then
    return nil, 'EINVAL: config.onboard.source_from_cluster needs cluster and excludes '
      .. 'source_url and auto_bootstrap_domain', 'EINVAL'
  end
  if cfg and cfg.cluster and #cfg.cluster.etcd.endpoints == 0 then
    return nil, 'EINVAL: config.cluster.etcd.endpoints: expected at least one URL', 'EINVAL'
  end
  if ob and (ob.source_url or ob.source_from_cluster) and not (cfg.tee and cfg.attestation) then
    return nil, 'EINVAL: config.onboard needs tee (this KMS\'s attestation) and attestation '
      .. '(to verify the source KMS)', 'EINVAL'
  end
  if cfg and cfg.onboard and cfg.onboard.source_url and cfg.onboard.auto_bootstrap_domain then
    return nil, 'EINVAL: config.onboard: source_url (replicate) or auto_bootstrap_domain '
      .. '(bootstrap), not both', 'EINVAL'
  end
  if cfg then
    if cfg.code_reload == nil then -- off by default where the KMS runs in a CVM
      cfg.code_reload = not (cfg.tee and cfg.tee.kind == 'agent')
    end
    if cfg.self_authorization == nil then
      cfg.self_authorization = cfg.tee ~= nil and cfg.attestation ~= nil
    elseif cfg.self_authorization and not (cfg.tee and cfg.attestation) then
      return nil, 'EINVAL: config.self_authorization needs tee (this KMS\'s attestation) and '
        .. 'attestation (to verify it)', 'EINVAL'
    end
  end
  return cfg
end

-- M.validate(tbl) and M.load(path) (kms.lua): over M.schema and M.finish.
return config.define(M)
