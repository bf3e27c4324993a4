-- SPDX-License-Identifier: Apache-2.0
-- The guest agent's config file (`moonstack agent -c agent.lua`): a Lua chunk returning a
-- table, validated here (moonstack.core.config + moonstack.core.schema). Every key, with its
-- default:
--
--   shared_dir = '/dstack/.host-shared'   app-compose.json, .sys-config.json, .instance_info,
--                                          .encrypted-env, .user-config (read only)
--   state_dir  = '/var/lib/moonstack/agent'  boot state (.appkeys.json, .instance_info, the
--                                          decrypted env files), the app's work dir (app/)
--   log_dir    = <state_dir>/logs          captured app output (one file per service)
--   listen = {                             the API listeners (moonstack.agent.api); false = off
--     dstack = { unix = '/var/run/dstack.sock' },
--     tappd  = { unix = '/var/run/tappd.sock' },
--     public = { host = '0.0.0.0', port = 8090 },
--     guest  = false,                      the guest API the VMM calls (Shutdown, SysInfo...):
--                                          { unix = PATH } (mode 0600), { host =, port = } or
--                                          { serial = PORT } (served over a virtio-serial port)
--   }
--   host_api = nil                         where boot progress, boot errors and instance info
--                                          are reported (the VMM's host API, Notify):
--                                          { unix = PATH } (process backend) or { serial =
--                                          PORT } (a virtio-serial port: the qemu backend)
--   boot_progress_file = nil               stages the VM's init reached before the agent (one
--                                          per line: kernel up, share mounted...), reported
--                                          first
--   control = nil                          control socket path (moonstack repl)
--   key_provider = { kind = 'auto' }       where app keys come from:
--     'auto'       what app-compose asks (key_provider / kms_enabled / ...): kms, local
--                  (needs seed), or none (fresh random keys every boot)
--     'kms'        the KMS (GetAppKey over mutual RA-TLS, moonstack.kms.client), urls =
--                  { ... } over sys-config kms_urls; sys-config kms_ca pins the KMS root
--     'local'      seed = hex 32 bytes or seed_file = path (hex or 32 raw bytes), mr = hex
--                  (the provider's measurement, reported as key-provider local-sgx)
--     'none'       random keys
--     'keys_file'  file = path of an upstream appkeys.json (development, the simulator's)
--   tee = { name = 'tdx' | 'sim' | 'sim-remote' | 'auto', ... }
--                                          sim-remote: the host's simulated quote service over
--                                          remote = { serial = PORT } (a VM without TDX);
--                                          auto: tdx when this guest has it, else sim-remote
--                                          (and the choice logged);
--                                          the TEE backend (moonstack.core.tee): sim needs
--                                          dir and cvm (reset = true: every boot starts from
--                                          the CVM's launch values); other keys go to the
--                                          backend's constructor
--   runner = {
--     stop_grace_ms = 5000                 SIGTERM, then SIGKILL after this long
--     log_buffer_bytes = 1048576           in-memory log ring per service
--     log_files = true                     also append logs to <log_dir>/<service>.log
--     log_file_max_bytes = 8388608         then rotate to .1
--     wait_sockets_ms = 10000              wait for the API sockets before starting the app
--     path = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', home = nil
--     docker = 'docker', docker_probe_timeout_ms = 5000
--     env = {}                             NAME = 'value' every app process gets, under the app's
--                                          own env (the process backend names its API sockets
--                                          here: DSTACK_SIMULATOR_ENDPOINT, as the SDKs read)
--     echo = false                         also write the app's output lines to stdout (the
--                                          CVM's console, which the VMM keeps as serial.log)
--     docker_host = nil                    DOCKER_HOST of every docker/compose command (e.g.
--                                          'unix:///run/docker.sock'); the agent's own
--                                          DOCKER_HOST otherwise
--     compose = 'auto'                     'plugin' (`docker compose`), 'standalone' (compose v1,
--                                          runner.docker_compose), 'auto': the plugin when
--                                          `docker compose version` answers, else v1 (Debian 12)
--     docker_compose = 'docker-compose', compose_project = nil (default: the work dir's name)
--     dockerd = nil                        a Docker engine of the CVM's own, started before the
--                                          app and stopped after it (moonstack.agent.runner.
--                                          dockerd); sets DOCKER_HOST. { dir = <state_dir>/docker,
--                                          dockerd = 'dockerd', network = 'bridge' | 'none',
--                                          private_mounts = true, cgroup_parent, log_level =
--                                          'warn', shutdown_timeout_s = 5, args = {},
--                                          ready_timeout_ms = 30000, stop_timeout_ms = 30000,
--                                          images = { 'saved.tar' | { file = 'rootfs.tar',
--                                          tag = 'name:tag' } }, images_timeout_ms = 120000 }
--   }
--   storage_fs = nil                       the storage-fs event payload (default: app-compose
--                                          storage_fs, else zfs as upstream's default)
--   api = {}                               free-form options of moonstack.agent.api
--   gateway = {                            registration with the gateway (moonstack.agent.gateway,
--     enabled = 'auto',                    spec §6.6): 'auto' = app-compose gateway_enabled;
--     urls = nil,                          true / false force it; urls over sys-config
--     interface = 'dstack-wg0', listen_port = 9182,   gateway_urls
--     dir = <state_dir>/gateway,           gateway-cache.json, <interface>.conf (0600), the
--                                          WireGuard UAPI socket
--     register_interval_ms = 180000, handshake_stale_ms = 180000, check_interval_ms = 10000,
--     retry_min_ms = 30000, retry_max_ms = 120000, timeout_ms = 30000, cert_days = 10,
--     keepalive = 25, userspace = 'wireguard-go', skip_hostname = false,
--     netns = nil                          the network namespace of the interface (path or
--   }                                      name; default: the agent's own)
--   code_reload = (tee.name ~= 'tdx')      allow reload.code() / SIGUSR2 to swap the agent's
--                                          code (moonstack.daemon.code); each swap is first
--                                          measured into RTMR3 (runtime event moonstack-code,
--                                          payload the code's SHA-256). Off by default in a CVM
--   code_dir = nil                         where reload.code() reads the new code (a lua/
--                                          root); default: the runtime's --lua-dir
local config = require('moonstack.core.config')

local M = {}

local function listener(default)
  return {
    type = 'any', default = default,
    check = function(v)
      if v == false then
        return true
      end
      if type(v) ~= 'table' then
        return nil, 'expected false or a table { unix = PATH } or { host =, port = }'
      end
      for k in pairs(v) do
        if k ~= 'unix' and k ~= 'host' and k ~= 'port' and k ~= 'mode' and k ~= 'serial' then
          return nil, ('unknown key %s'):format(tostring(k))
        end
      end
      if v.serial ~= nil then
        if type(v.serial) ~= 'string' or not v.serial:match('^[%w._-]+$') then
          return nil, 'serial must name a virtio-serial port (letters, digits, . _ -)'
        end
        if v.unix ~= nil or v.host ~= nil or v.port ~= nil then
          return nil, 'give serial alone'
        end
        return true
      end
      if v.unix ~= nil then
        if type(v.unix) ~= 'string' or v.unix == '' then
          return nil, 'unix must be a non-empty path'
        end
        if v.host ~= nil or v.port ~= nil then
          return nil, 'give unix, or host and port'
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
    end,
  }
end

local function hex_string(bytes)
  return { type = 'string', optional = true, pattern = '^[0-9a-fA-F]*$',
    check = function(v)
      if bytes and #v ~= 2 * bytes then
        return nil, ('expected %d hex digits'):format(2 * bytes)
      end
      if #v % 2 ~= 0 then
        return nil, 'odd number of hex digits'
      end
      return true
    end }
end

--- The schema (moonstack.core.schema) of agent.lua.
M.schema = {
  type = 'table',
  fields = {
    shared_dir = { type = 'string', default = '/dstack/.host-shared', min = 1 },
    state_dir = { type = 'string', default = '/var/lib/moonstack/agent', min = 1 },
    log_dir = { type = 'string', optional = true, min = 1 },
    listen = {
      type = 'table',
      default = {},
      fields = {
        dstack = listener({ unix = '/var/run/dstack.sock' }),
        tappd = listener({ unix = '/var/run/tappd.sock' }),
        public = listener({ host = '0.0.0.0', port = 8090 }),
        guest = listener(false),
      },
    },
    host_api = {
      type = 'table', optional = true,
      fields = { unix = { type = 'string', optional = true, min = 1 },
        serial = { type = 'string', optional = true, pattern = '^[%w._-]+$' } },
      check = function(t)
        if (t.unix == nil) == (t.serial == nil) then
          return nil, 'give unix = PATH or serial = PORT NAME'
        end
        return true
      end,
    },
    boot_progress_file = { type = 'string', optional = true, min = 1 },
    control = { type = 'string', optional = true, min = 1 },
    key_provider = {
      type = 'table',
      default = { kind = 'auto' },
      fields = {
        kind = { type = 'string', default = 'auto',
          enum = { 'auto', 'kms', 'local', 'none', 'keys_file' } },
        file = { type = 'string', optional = true, min = 1 },
        seed = hex_string(32),
        seed_file = { type = 'string', optional = true, min = 1 },
        mr = hex_string(nil),
        urls = { type = 'table', optional = true, items = 'string' },
      },
      check = function(kp)
        if kp.kind == 'keys_file' and not kp.file then
          return nil, "kind 'keys_file' needs file = <appkeys.json>"
        end
        if kp.seed and kp.seed_file then
          return nil, 'give seed or seed_file, not both'
        end
        return true
      end,
    },
    tee = {
      type = 'table',
      unknown = 'allow',
      fields = {
        name = { type = 'string', enum = { 'tdx', 'sim', 'sim-remote', 'auto' } },
        remote = { type = 'table', optional = true, fields = {
          serial = { type = 'string', optional = true, pattern = '^[%w._-]+$' },
          unix = { type = 'string', optional = true, min = 1 } } },
        dir = { type = 'string', optional = true, min = 1 },
        cvm = { type = 'string', optional = true, min = 1 },
        reset = { type = 'boolean', optional = true },
        ccel_file = { type = 'string', optional = true, min = 1 },
        runtime_log_dir = { type = 'string', optional = true, min = 1 },
      },
      check = function(t)
        if t.name == 'sim' and not (t.dir and t.cvm) then
          return nil, "the sim backend needs dir (its state directory) and cvm (the CVM name)"
        end
        if t.name == 'sim-remote' and not t.remote then
          return nil, "the sim-remote backend needs remote = { serial = PORT } (the host's quote service)"
        end
        return true
      end,
    },
    runner = {
      type = 'table',
      default = {},
      fields = {
        stop_grace_ms = { type = 'integer', default = 5000, min = 0 },
        log_buffer_bytes = { type = 'integer', default = 1048576, min = 1024 },
        log_files = { type = 'boolean', default = true },
        log_file_max_bytes = { type = 'integer', default = 8388608, min = 4096 },
        wait_sockets_ms = { type = 'integer', default = 10000, min = 0 },
        path = { type = 'string', default = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
        home = { type = 'string', optional = true },
        docker = { type = 'string', default = 'docker', min = 1 },
        env = { type = 'table', default = {}, unknown = 'allow', fields = {}, check = function(t)
          for k, v in pairs(t) do
            if type(k) ~= 'string' or not k:match('^[%a_][%w_]*$') or type(v) ~= 'string' then
              return nil, ('%s: want NAME = "value" strings'):format(tostring(k))
            end
          end
          return true
        end },
        docker_probe_timeout_ms = { type = 'integer', default = 5000, min = 1 },
        echo = { type = 'boolean', default = false },
        docker_host = { type = 'string', optional = true, pattern = '^%a+://.' },
        compose = { type = 'string', default = 'auto', enum = { 'auto', 'plugin', 'standalone' } },
        docker_compose = { type = 'string', default = 'docker-compose', min = 1 },
        compose_project = { type = 'string', optional = true, pattern = '^[a-z0-9][a-z0-9_-]*$' },
        dockerd = {
          type = 'table', optional = true,
          fields = {
            dir = { type = 'string', optional = true, min = 1 },
            dockerd = { type = 'string', default = 'dockerd', min = 1 },
            network = { type = 'string', default = 'bridge', enum = { 'bridge', 'none' } },
            private_mounts = { type = 'boolean', default = true },
            cgroup_parent = { type = 'string', optional = true, pattern = '^[%w_.-]+$' },
            shutdown_timeout_s = { type = 'integer', default = 5, min = 0 },
            log_level = { type = 'string', default = 'warn',
              enum = { 'debug', 'info', 'warn', 'error', 'fatal' } },
            args = { type = 'table', optional = true, items = 'string' },
            ready_timeout_ms = { type = 'integer', default = 30000, min = 1 },
            stop_timeout_ms = { type = 'integer', default = 30000, min = 1 },
            images_timeout_ms = { type = 'integer', default = 120000, min = 1 },
            images = { type = 'table', optional = true, items = {
              type = 'any',
              check = function(v)
                if type(v) == 'string' and v ~= '' then
                  return true
                end
                if type(v) == 'table' and type(v.file) == 'string' and type(v.tag) == 'string' then
                  return true
                end
                return nil, 'expected a docker-save tarball path or { file = ROOTFS_TAR, tag = NAME }'
              end,
            } },
          },
        },
      },
    },
    storage_fs = { type = 'string', optional = true, pattern = '^[%w_-]+$' },
    api = { type = 'table', default = {}, unknown = 'allow', fields = {} },
    gateway = {
      type = 'table', default = {},
      fields = {
        enabled = { type = 'any', default = 'auto', check = function(v)
          if v == 'auto' or v == true or v == false then
            return true
          end
          return nil, "expected 'auto', true or false"
        end },
        urls = { type = 'table', optional = true, items = 'string' },
        interface = { type = 'string', default = 'dstack-wg0', pattern = '^[%w_.-]+$', max = 15 },
        listen_port = { type = 'integer', default = 9182, min = 0, max = 65535 },
        dir = { type = 'string', optional = true, min = 1 },
        register_interval_ms = { type = 'integer', default = 180000, min = 10 },
        handshake_stale_ms = { type = 'integer', default = 180000, min = 10 },
        check_interval_ms = { type = 'integer', default = 10000, min = 10 },
        retry_min_ms = { type = 'integer', default = 30000, min = 10 },
        retry_max_ms = { type = 'integer', default = 120000, min = 10 },
        timeout_ms = { type = 'integer', default = 30000, min = 100 },
        cert_days = { type = 'integer', default = 10, min = 1, max = 3650 },
        keepalive = { type = 'integer', default = 25, min = 0, max = 65535 },
        userspace = { type = 'string', default = 'wireguard-go', min = 1 },
        skip_hostname = { type = 'boolean', default = false },
        netns = { type = 'string', optional = true, min = 1 },
      },
    },
    code_reload = { type = 'boolean', optional = true },
    code_dir = { type = 'string', optional = true, min = 1 },
  },
}

--- Fill derived defaults (log_dir, code_reload) in a validated config.
function M.finish(cfg)
  cfg.log_dir = cfg.log_dir or (cfg.state_dir .. '/logs')
  if cfg.code_reload == nil then -- never by default on TDX hardware
    cfg.code_reload = cfg.tee.name ~= 'tdx'
  end
  return cfg
end

-- M.validate(tbl) and M.load(path) (agent.lua): over M.schema and M.finish.
return config.define(M)
