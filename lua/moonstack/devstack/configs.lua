-- SPDX-License-Identifier: Apache-2.0
-- The dev stack's daemon configs, written into its state directory at each `moonstack dev up`
-- (they are ordinary config files: read them to see how the stack is wired, or start a daemon
-- by hand with `moonstack kms -c .moonstack-dev/kms/kms.lua`):
--   kms/kms.lua          a KMS with Lua policy auth (kms/policy.lua, from
--                        examples/policies/dev-stack.lua; or, with --kms-auth eth, a DstackKms
--                        contract on a chain), trusting the simulated platform sim/
--   gateway/gateway.lua  the proxy on 127.0.0.1, RegisterCvm over mutual RA-TLS, the
--                        WireGuard hub, the admin API
--   vmm/vmm.lua          the VMM: the process backend (each CVM in network and PID namespaces
--                        of its own, a Docker engine for docker-compose apps) or the qemu
--                        backend (QEMU guests reaching this host's loopback as 10.0.2.2)
-- Every admin listener takes the token in admin.token (0600).
local fs = require('moonstack.core.fs')
local dev_certs = require('moonstack.devstack.certs')

local M = {}

--- The base domain of app URLs: <app_id>-<port>.<BASE_DOMAIN> (*.localhost resolves to the
--- loopback in browsers).
M.BASE_DOMAIN = 'app.localhost'

local function q(s)
  return ('%q'):format(s)
end

local function write(path, text)
  return fs.write_atomic(path, text, tonumber('600', 8))
end

--- Write kms/policy.lua from the template `template` (text) with the gateway's app id.
function M.policy(paths, template, gateway_app_id)
  local text, n = template:gsub("local GATEWAY_APP_ID = '[^']*'",
    ("local GATEWAY_APP_ID = '%s'"):format(gateway_app_id), 1)
  if n ~= 1 then
    return nil, 'EINVAL: the policy template has no GATEWAY_APP_ID line'
  end
  return write(paths.kms .. '/policy.lua', text)
end

--- The KMS auth of `moonstack dev up`'s options o (kms_auth, eth_rpc_url, kms_contract,
--- app_id): { kind = 'policy' } (default) or { kind = 'eth', rpc_url, kms_contract, app_id
--- (hex, no 0x) }, or nil and the error naming the option.
function M.kms_auth(o)
  local kind = o.kms_auth or 'policy'
  if kind == 'policy' then
    if o.eth_rpc_url or o.kms_contract or o.app_id then
      return nil, '--eth-rpc-url, --kms-contract and --app-id go with --kms-auth eth'
    end
    return { kind = 'policy' }
  elseif kind ~= 'eth' then
    return nil, ("--kms-auth '%s' is not one of policy, eth"):format(kind)
  end
  local a = { kind = 'eth', rpc_url = o.eth_rpc_url, kms_contract = o.kms_contract }
  local ok, err = require('moonstack.kms.auth.eth').check(a)
  if not ok then
    return nil, (err:gsub('^auth%.rpc_url', '--eth-rpc-url'):gsub('^auth%.kms_contract', '--kms-contract'))
  end
  a.app_id = (o.app_id or ''):gsub('^0[xX]', ''):lower()
  if not a.app_id:match('^' .. ('%x'):rep(40) .. '$') then
    return nil, "--kms-auth eth needs --app-id: the app's DstackApp address (40 hex digits)"
  end
  return a
end

--- Write kms/kms.lua for ports `ports`; `auth` = M.kms_auth's table (default policy).
function M.kms(paths, ports, auth)
  local auth_line = ('{ kind = \'policy\', path = %s }'):format(q(paths.kms .. '/policy.lua'))
  if auth and auth.kind == 'eth' then
    auth_line = ('{ kind = \'eth\', rpc_url = %s, kms_contract = %s }'):format(q(auth.rpc_url),
      q(auth.kms_contract))
  end
  return write(paths.kms_config, ([[
-- Written by `moonstack dev up` (each start): the dev stack's KMS.
return {
  key_dir = %s,
  listen = { host = '127.0.0.1', port = %d },
  domain = 'localhost',
  alt_names = { '127.0.0.1', %s }, -- %s: the host's loopback as QEMU guests reach it
  auth = %s,
  attestation = { simulator_dir = %s, allow_simulator = true },
  image = { verify = false }, -- process CVMs have no registered boot measurements
  admin = { listen = { host = '127.0.0.1', port = %d }, token_file = %s },
  control = %s,
}
]]):format(q(paths.kms .. '/keys'), ports.kms, q(dev_certs.GUEST_HOST), dev_certs.GUEST_HOST,
    auth_line, q(paths.sim),
    ports.kms_admin, q(paths.admin_token), q(paths.kms_ctl)))
end

--- Write gateway/gateway.lua: ports, certs ({ proxy = certs.proxy(), rpc = certs.gateway_rpc() }),
--- the WireGuard interface name `wg_if`.
function M.gateway(paths, ports, certs, wg_if)
  return write(paths.gateway_config, ([[
-- Written by `moonstack dev up` (each start): the dev stack's gateway.
return {
  proxy = { listen = { host = '127.0.0.1', port = %d }, base_domain = %s,
    certs = { { cert = %s, key = %s } }, workers = 2, external_port = %d },
  rpc = { listen = { host = '127.0.0.1', port = %d }, kms_ca = %s, cert = %s, key = %s },
  admin = { listen = { host = '127.0.0.1', port = %d }, token_file = %s },
  wg = { private_key_file = %s, interface = %s, listen_port = %d,
    endpoint = '127.0.0.1:%d', ip = '10.213.0.1/24', reserved_net = { '10.213.0.1/32' },
    client_ip_range = '10.213.0.0/25', refresh_interval = 2 },
  data_dir = %s,
  control = %s,
  recycle = { enabled = true, interval = 60, timeout = 3600 },
}
]]):format(ports.gateway_proxy, q(M.BASE_DOMAIN), q(certs.proxy.cert), q(certs.proxy.key),
    ports.gateway_proxy, ports.gateway_rpc, q(certs.rpc.kms_ca), q(certs.rpc.cert),
    q(certs.rpc.key), ports.gateway_admin, q(paths.admin_token), q(paths.gateway .. '/wg.key'),
    q(wg_if), ports.wireguard, ports.wireguard, q(paths.gateway .. '/data'), q(paths.gateway_ctl)))
end

--- Write vmm/vmm.lua: ports, the KMS root CA path, the Docker image tarballs every
--- docker-compose CVM loads, `dashboard` (a table of the dashboard listener's settings, or
--- nil when this VMM has none) and `be` = { name = 'process' | 'qemu', accel?, retry_denied? } (the backend
--- moonstack.devstack.backend chose; qemu: the accelerator its probe found, so the VMM does
--- not probe again, and host_access: the guest reaches this host's loopback as 10.0.2.2;
--- retry_denied: restart a refused CVM within 10 s, up to 100 times — the eth auth backend).
function M.vmm(paths, ports, kms_ca, docker_images, dashboard, be)
  be = be or { name = 'process' }
  local images = {}
  for _, p in ipairs(docker_images) do
    images[#images + 1] = q(p)
  end
  local dash = ''
  if dashboard then
    dash = ([[
  dashboard = { listen = { host = '127.0.0.1', port = %d }, login_token_file = %s,
    auth = { token_file = %s },
    kms = { url = 'http://127.0.0.1:%d', token_file = %s },
    gateway = { url = 'http://127.0.0.1:%d', token_file = %s } },
]]):format(ports.dashboard, q(paths.login_token), q(paths.admin_token), ports.kms_admin,
      q(paths.admin_token), ports.gateway_admin, q(paths.admin_token))
  end
  local qemu = ''
  if be.retry_denied then -- eth auth: a boot the chain denies is retried soon, for a while
    qemu = '  auto_restart = { interval = 2, initial_backoff = 2, max_backoff = 10, max_retries = 100 },\n'
  end
  if be.name == 'qemu' then
    qemu = qemu .. ([[
  qemu = { accel = %s, host_access = true, docker_images = { %s } },
]]):format(q(be.accel or 'auto'), table.concat(images, ', '))
  end
  return write(paths.vmm_config, ([[
-- Written by `moonstack dev up` (each start): the dev stack's VMM.
return {
  listen = { unix = %s },
  run_dir = %s,
  image_dir = %s,
  backend = %s,
  kms_urls = { 'https://localhost:%d' },
  kms_ca = %s,
  gateway_urls = { 'https://localhost:%d' },
  gateway = { base_domain = %s, port = %d },
  port_mapping = { enabled = false },
  process = { sim_dir = %s, network = 'netns', udp_forwards = { '127.0.0.1:%d' },
    docker_images = { %s } },
%s  stop_vms_on_exit = true,
  shutdown_timeout = %d,
%s  control = %s,
}
]]):format(q(paths.vmm_sock), q(paths.vmm .. '/run'), q(paths.vmm .. '/images'), q(be.name),
    ports.kms, q(kms_ca), ports.gateway_rpc, q(M.BASE_DOMAIN), ports.gateway_proxy, q(paths.sim),
    ports.wireguard, table.concat(images, ', '), qemu, be.name == 'qemu' and 20 or 10, dash,
    q(paths.vmm_ctl)))
end

return M
