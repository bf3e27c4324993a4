-- SPDX-License-Identifier: Apache-2.0
-- The VMM config file (`moonstack vmm -c vmm.lua`): a Lua chunk returning a table, validated
-- here. Every key, with its default (upstream vmm.toml names in brackets, kms-vmm-gateway.md
-- §4.3); relative paths are taken from the directory the VMM runs in, as upstream's:
--
--   listen  = { unix = 'vmm.sock' }     the API: { unix = PATH } (mode 0600) or { host =
--                                       '127.0.0.1', port = 8080 } [address, port]
--   run_dir = '<HOME>/.dstack-vmm/vm'   VM work directories [run_path]
--   image_dir = '<HOME>/.dstack-vmm/image'   guest images, <name>/metadata.json [image.path]
--   backend = 'process'                 how a CVM runs: 'process' (a supervised local process
--                                       tree: moonstack agent on the sim TEE) | 'qemu' (M9)
--   port_mapping = { enabled = false, address = '127.0.0.1',
--                    ranges = { { protocol = 'tcp', from = 1, to = 20000 } } } [cvm.port_mapping]
--   kms_urls = {}, gateway_urls = {}    copied into each CVM's sys-config [cvm]
--   kms_url = kms_urls[1]               where GetAppEnvEncryptPubKey is proxied [kms_url]
--   kms_ca = nil                        PEM file of the KMS root CA (else that call's TLS is
--                                       unverified: the answer is signed by the KMS k256 key)
--   pccs_url = '', docker_registry = '' copied into sys-config [cvm]
--   auth = { enabled = false, tokens = {}, token_file = nil, htpasswd_file = nil }   [auth]:
--                                       Bearer / X-Admin-Token / ?token= (GET) / bcrypt Basic;
--                                       enabled without any credential: the VMM does not start
--   auto_restart = { enabled = true, interval = 20, max_retries = 5, initial_backoff = 5,
--                    max_backoff = 300, reset_window = 300 }   seconds [cvm.auto_restart]
--   log = { max_bytes = 4194304, max_backups = 3, check_interval = 5 }   rotation of each
--                                       VM's serial/stdout/stderr logs [cvm.log]
--   control = nil                       control socket path (moonstack repl), mode 0600
--   event_buffer_size = 20              guest events kept per VM
--   node_name = ''                      shown by GetMeta users
--   cluster = nil                       this host and its VMs on etcd (moonstack.vmm.cluster),
--                                       for one dashboard over the fleet: { etcd = { endpoints =
--                                       { 'http://h:2379', ... }, prefix = '/moonstack',
--                                       timeout_ms = 3000, lease_ttl = 10, ca_file?,
--                                       cert_file? + key_file? }, host_id = node_name
--                                       or the host name, url = 'http://<dashboard address>' }
--   gateway = { base_domain = 'localhost', port = 8082, agent_port = 8090 }   [gateway]
--   max_allocable_vcpu = 20, max_allocable_memory_in_mb = 100000, max_cvm_number = 1000
--   shutdown_timeout = 10               ShutdownVm: seconds the guest has before a hard stop
--   stop_vms_on_exit = false            stopping the VMM leaves the VMs running (a restarted
--                                       VMM adopts them); true stops them first
--   metrics = true, max_body = 10485760
--   dashboard = nil                     the dashboard hub (moonstack.vmm.dashboard), its own
--                                       listener: { listen = { host = '127.0.0.1', port },
--     login_token_file = PATH?          the one-time browser login token (0600)
--     auth = { tokens?, token_file?, htpasswd_file? }?   else the VMM's auth
--     kms = { url, token_file }?        the KMS admin base URL and its admin token file
--     gateway = { url, token_file }?    the gateway admin base URL and its admin token file
--     verify = { collateral = FILE? | pccs_url = URL?, root_ca = FILE?, policy = FILE? (JSON),
--                cache_dir? }           the quote verifier (default: pccs_url, else Intel PCS)
--     poll_ms = 500 }                   how often the KMS and gateway parts are read
--   process = {                         the process backend (moonstack.vmm.backend.process)
--     sim_dir = '<run_dir>/../sim',     the simulated TDX platform every CVM attests on (a KMS
--                                       trusting these CVMs names it: attestation.simulator_dir)
--     network = 'auto',                 'auto': a CVM with port mappings gets a network namespace
--                                       of its own when the VMM may create one (root), the others
--                                       share the host's (they reach a KMS on loopback);
--                                       'netns': always its own; 'host': never (port mappings
--                                       refused)
--     pid_namespace = 'auto',           'auto' | true | false: the tree in a PID namespace of its
--                                       own (root), so nothing of it outlives a stop
--     cgroup = 'auto',                  'auto' | false: memory and CPU limits in a cgroup
--                                       (v1 or v2) when writable, else RLIMIT_AS from memory
--     agent_args = {},                  extra runtime options before `agent` (e.g. --log-level)
--     docker_images = {},               image tarballs (`docker save`) every docker-compose CVM's
--                                       engine loads before its app: no registry is reachable
--     dockerd = 'dockerd',              the Docker daemon a docker-compose CVM runs as its own
--                                       engine (data root, socket and cgroup under its work
--                                       dir; its containers are seen by no other CVM)
--     udp_forwards = {},                'ip:port' UDP services on the host's loopback forwarded
--                                       into each CVM's network namespace at the same address:
--                                       the gateway's WireGuard endpoint ('127.0.0.1:51820'),
--                                       which a CVM registered with the gateway dials
--   }
--   qemu = {                            the qemu backend (moonstack.vmm.backend.qemu): a CVM is a
--                                       QEMU guest booted from a `--kind qemu` image
--     binary = 'qemu-system-x86_64',
--     accel = 'auto',                   'auto': tdx on a TDX host, kvm only where a probe proves a
--                                       guest runs under it (a present /dev/kvm may hang), else
--                                       tcg; or force one of 'tdx' | 'kvm' | 'tcg'
--     probe_timeout_ms = 4000,          how long the kvm probe may take
--     docker_images = {},               image tarballs put in each docker-flavour guest's share
--                                       (loaded at boot: no registry is reachable)
--     powerdown_timeout = <shutdown_timeout>   seconds after QMP system_powerdown before quit
--     host_access = false,              false: user networking with restrict=on (the guest
--                                       reaches nothing but its port mappings); true:
--                                       restrict=off, so the guest reaches this host's loopback
--                                       as 10.0.2.2, and every kms_urls / gateway_urls entry
--                                       whose host is localhost or 127.x is given to the guest
--                                       with 10.0.2.2 instead (a KMS and a gateway on this
--                                       host's loopback, as `moonstack dev up` runs them; their
--                                       TLS certificates must name 10.0.2.2). The guest can
--                                       then also reach every network this host reaches
--   }                                   (guests without TDX attest on process.sim_dir through the
--                                       VMM's simulated quote service)
local config = require('moonstack.core.config')

local M = {}

local HOME = os.getenv('HOME') or '.'

local function listen_check(v)
  if type(v) ~= 'table' then
    return nil, 'expected { unix = PATH } or { host = ..., port = ... }'
  end
  for k in pairs(v) do
    if k ~= 'unix' and k ~= 'host' and k ~= 'port' and k ~= 'mode' then
      return nil, ('unknown key %s'):format(tostring(k))
    end
  end
  if v.unix ~= nil then
    if type(v.unix) ~= 'string' or v.unix == '' or v.host ~= nil or v.port ~= nil then
      return nil, 'give unix = PATH, or host and port'
    end
    return true
  end
  if type(v.port) ~= 'number' or v.port % 1 ~= 0 or v.port < 0 or v.port > 65535 then
    return nil, 'port must be an integer 0..65535'
  end
  if v.host ~= nil and type(v.host) ~= 'string' then
    return nil, 'host must be a string'
  end
  return true
end

local function seconds(default)
  return { type = 'number', default = default, min = 0 }
end

local RANGE = {
  type = 'table',
  fields = {
    protocol = { type = 'string', enum = { 'tcp', 'udp' } },
    from = { type = 'integer', min = 1, max = 65535 },
    to = { type = 'integer', min = 1, max = 65535 },
  },
  check = function(r)
    if r.from > r.to then
      return nil, ('from %d is above to %d'):format(r.from, r.to)
    end
    return true
  end,
}

-- A remote part of the dashboard: the daemon's admin base URL and the file of its admin token.
local PART = { type = 'table', optional = true, fields = {
  url = { type = 'string', pattern = '^https?://' },
  token_file = { type = 'string', optional = true, min = 1 },
} }

-- The dashboard (moonstack.vmm.dashboard).
local DASHBOARD = {
  type = 'table', optional = true,
  fields = {
    listen = { type = 'table', fields = {
      host = { type = 'string', default = '127.0.0.1', min = 1 },
      port = { type = 'integer', min = 0, max = 65535 },
    } },
    login_token_file = { type = 'string', optional = true, min = 1 },
    auth = { type = 'table', optional = true, fields = {
      tokens = { type = 'table', default = {}, items = 'string' },
      token_file = { type = 'string', optional = true, min = 1 },
      htpasswd_file = { type = 'string', optional = true, min = 1 },
    } },
    kms = PART,
    gateway = PART,
    verify = { type = 'table', default = {}, fields = {
      collateral = { type = 'string', optional = true, min = 1 },
      pccs_url = { type = 'string', optional = true, pattern = '^https?://' },
      root_ca = { type = 'string', optional = true, min = 1 },
      policy = { type = 'string', optional = true, min = 1 },
      cache_dir = { type = 'string', optional = true, min = 1 },
    } },
    poll_ms = { type = 'integer', default = 500, min = 50, max = 60000 },
  },
}

--- The schema (moonstack.core.schema) of vmm.lua.
M.schema = {
  type = 'table',
  fields = {
    listen = { type = 'any', default = { unix = 'vmm.sock' }, check = listen_check },
    run_dir = { type = 'string', default = HOME .. '/.dstack-vmm/vm', min = 1 },
    image_dir = { type = 'string', default = HOME .. '/.dstack-vmm/image', min = 1 },
    backend = { type = 'string', default = 'process', enum = { 'process', 'qemu' } },
    port_mapping = {
      type = 'table', default = {},
      fields = {
        enabled = { type = 'boolean', default = false },
        address = { type = 'string', default = '127.0.0.1', min = 1 },
        ranges = { type = 'table', default = { { protocol = 'tcp', from = 1, to = 20000 } },
          items = RANGE },
      },
    },
    kms_urls = { type = 'table', default = {}, items = 'string' },
    gateway_urls = { type = 'table', default = {}, items = 'string' },
    kms_url = { type = 'string', optional = true, pattern = '^https?://' },
    kms_ca = { type = 'string', optional = true, min = 1 },
    pccs_url = { type = 'string', default = '' },
    docker_registry = { type = 'string', default = '' },
    auth = {
      type = 'table', default = {},
      fields = {
        enabled = { type = 'boolean', default = false },
        tokens = { type = 'table', default = {}, items = 'string' },
        token_file = { type = 'string', optional = true, min = 1 },
        htpasswd_file = { type = 'string', optional = true, min = 1 },
        failed_logins = { type = 'table', default = {}, fields = {
          max = { type = 'integer', default = 5, min = 1 },
          window_s = { type = 'integer', default = 300, min = 1 },
          max_inflight = { type = 'integer', default = 2, min = 1 },
        } },
      },
    },
    auto_restart = {
      type = 'table', default = {},
      fields = {
        enabled = { type = 'boolean', default = true },
        interval = seconds(20),
        max_retries = { type = 'integer', default = 5, min = 0 },
        initial_backoff = seconds(5),
        max_backoff = seconds(300),
        reset_window = seconds(300),
      },
      check = function(a)
        if a.enabled and (a.interval <= 0 or a.initial_backoff <= 0) then
          return nil, 'interval and initial_backoff must be above zero when enabled'
        end
        if a.initial_backoff > a.max_backoff then
          return nil, 'initial_backoff must not exceed max_backoff'
        end
        return true
      end,
    },
    log = {
      type = 'table', default = {},
      fields = {
        max_bytes = { type = 'integer', default = 4 * 1024 * 1024, min = 0 },
        max_backups = { type = 'integer', default = 3, min = 0, max = 100 },
        check_interval = { type = 'number', default = 5, min = 0.05 },
      },
    },
    control = { type = 'string', optional = true, min = 1 },
    event_buffer_size = { type = 'integer', default = 20, min = 1, max = 10000 },
    node_name = { type = 'string', default = '' },
    cluster = { type = 'table', optional = true, fields = {
      etcd = require('moonstack.etcd').config_schema(),
      host_id = { type = 'string', optional = true, pattern = '^[%w][%w%.%-_]*$', max = 128 },
      url = { type = 'string', optional = true, pattern = '^https?://[^%s]+$' },
    } },
    gateway = {
      type = 'table', default = {},
      fields = {
        base_domain = { type = 'string', default = 'localhost' },
        port = { type = 'integer', default = 8082, min = 0, max = 65535 },
        agent_port = { type = 'integer', default = 8090, min = 0, max = 65535 },
      },
    },
    max_allocable_vcpu = { type = 'integer', default = 20, min = 1 },
    max_allocable_memory_in_mb = { type = 'integer', default = 100000, min = 1 },
    max_cvm_number = { type = 'integer', default = 1000, min = 1 },
    shutdown_timeout = seconds(10),
    stop_vms_on_exit = { type = 'boolean', default = false },
    metrics = { type = 'boolean', default = true },
    max_body = { type = 'integer', default = 10 * 1024 * 1024, min = 1024 },
    dashboard = DASHBOARD,
    process = {
      type = 'table', default = {},
      fields = {
        sim_dir = { type = 'string', optional = true, min = 1 },
        network = { type = 'string', default = 'auto', enum = { 'auto', 'netns', 'host' } },
        pid_namespace = { type = 'any', default = 'auto', enum = { 'auto', true, false } },
        cgroup = { type = 'any', default = 'auto', enum = { 'auto', false } },
        agent_args = { type = 'table', default = {}, items = 'string' },
        docker_images = { type = 'table', default = {}, items = 'string' },
        dockerd = { type = 'string', default = 'dockerd', min = 1 },
        udp_forwards = { type = 'table', default = {}, items = { type = 'string',
          pattern = '^127%.%d+%.%d+%.%d+:%d+$' } },
      },
    },
    qemu = {
      type = 'table', default = {},
      fields = {
        binary = { type = 'string', default = 'qemu-system-x86_64', min = 1 },
        accel = { type = 'string', default = 'auto', enum = { 'auto', 'tdx', 'kvm', 'tcg' } },
        probe_timeout_ms = { type = 'integer', default = 4000, min = 100 },
        docker_images = { type = 'table', default = {}, items = 'string' },
        powerdown_timeout = { type = 'integer', optional = true, min = 1 },
        host_access = { type = 'boolean', default = false },
      },
    },
  },
}

--- The derived defaults and the checks across keys of a config the schema accepted. Returns
--- cfg or nil, 'EINVAL: ...', 'EINVAL'.
function M.finish(cfg)
  cfg.run_dir = cfg.run_dir:gsub('(.)/+$', '%1')
  local parent = cfg.run_dir:match('^(.*)/[^/]+$') or '.'
  cfg.process.sim_dir = cfg.process.sim_dir or ((parent == '' and '' or parent) .. '/sim')
  cfg.kms_url = cfg.kms_url or cfg.kms_urls[1]
  if cfg.cluster and #cfg.cluster.etcd.endpoints == 0 then
    return nil, 'EINVAL: config.cluster.etcd.endpoints: expected at least one URL', 'EINVAL'
  end
  if cfg.auth.enabled and #cfg.auth.tokens == 0 and not (cfg.auth.token_file or cfg.auth.htpasswd_file)
      and not os.getenv('DSTACK_VMM_AUTH_TOKEN') then
    return nil, 'EINVAL: config.auth is enabled without a credential (auth.tokens, auth.token_file, '
      .. 'auth.htpasswd_file or DSTACK_VMM_AUTH_TOKEN)', 'EINVAL'
  end
  return cfg
end

-- M.validate(tbl) and M.load(path) (vmm.lua): over M.schema and M.finish.
return config.define(M)
