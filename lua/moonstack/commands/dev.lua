-- SPDX-License-Identifier: Apache-2.0
-- `moonstack dev up|down|status`: the whole stack on this machine (moonstack.devstack): a KMS,
-- a gateway, a VMM with its dashboard, and an example app deployed through them.
local args = require('moonstack.core.args')
local task = require('moonstack.core.task')

local PROG = 'moonstack dev'

local DIR_OPT = { '--dir', arg = 'DIR', help = 'the state directory (default $MOONSTACK_DEV_DIR, ' ..
  'else ./.moonstack-dev)' }

local up_spec = {
  usage = 'moonstack dev up [--dir DIR] [--backend auto|qemu|process] [--app DIR] [--name NAME] ' ..
    '[--app-port PORT] [--no-dashboard]',
  summary = 'start the local stack and deploy the example app; Ctrl-C stops it all',
  description = table.concat({
    'Starts a KMS (Lua policy auth, or --kms-auth eth: a DstackKms contract on a chain, see',
    'docs/kms-eth.md), a gateway (TLS proxy + WireGuard hub) and a VMM serving',
    'the dashboard, on the best backend this machine has (--backend auto): qemu when QEMU can',
    'boot a guest here (TDX, KVM a probe proved, else TCG) and its docker-flavour guest image',
    'builds (each CVM a QEMU guest reaching the KMS and the gateway on this host\'s loopback as',
    '10.0.2.2), else process (each CVM a process tree in namespaces of its own, with its own',
    'Docker engine); the `backend:` line says which and why. Builds (or reuses) the guest',
    'image and the app image, deploys the app',
    '(examples/apps/hello: a docker-compose app, env encrypted to the KMS, KMS keys, the',
    'gateway enabled) as a VM, and waits until it answers through the gateway. Prints the',
    'dashboard URL, the app URL with a curl line, the REPL command; writes them to',
    '<dir>/urls.json (keys dashboard, app, gateway_port, repl). Stays in the foreground:',
    'Ctrl-C (or `moonstack dev down`) stops everything and checks that nothing is left.',
    'A second run reuses keys, certificates, images and the VM: it is up in seconds.',
    'Needs root, /dev/net/tun, wireguard-go, wg, docker.io, docker-compose, busybox-static;',
    'qemu-system-x86 and debootstrap for the qemu backend.',
    '',
    'exit status: 0 stopped cleanly; 1 something failed (the message says what).',
  }, '\n'),
  options = {
    DIR_OPT,
    { '--backend', arg = 'NAME', help = "the VMM's backend: auto (default: qemu when it can boot " ..
      'a guest here, else process), qemu, process' },
    { '--app', arg = 'DIR', help = 'the app directory (docker-compose.yaml, app.env, ' ..
      'build-image.sh; default examples/apps/hello)' },
    { '--name', arg = 'NAME', help = "the VM name (default: the app directory's name)" },
    { '--app-port', arg = 'PORT', help = 'the app port the URL names (default 8080)' },
    { '--timeout', arg = 'SECONDS', help = 'how long the app may take to answer (default 300)' },
    { '--no-dashboard', help = 'no dashboard listener' },
    { '--kms-auth', arg = 'KIND', help = "the KMS's auth backend: policy (default: "
      .. 'examples/policies/dev-stack.lua) or eth (the DstackKms contract of --kms-contract on '
      .. "--eth-rpc-url; the app's DstackApp address as --app-id; a refused boot is retried by "
      .. 'the VMM every few seconds until the chain allows it or --timeout)' },
    { '--eth-rpc-url', arg = 'URL', help = 'with --kms-auth eth: the Ethereum JSON-RPC endpoint' },
    { '--kms-contract', arg = 'ADDR', help = 'with --kms-auth eth: the DstackKms contract address' },
    { '--app-id', arg = 'HEX', help = "with --kms-auth eth: the app id, its DstackApp contract's "
      .. 'address (moonstack kms eth register-app)' },
  },
}

local down_spec = {
  usage = 'moonstack dev down [--dir DIR]',
  summary = 'stop the local stack (its daemons, VMs, and anything left of them)',
  options = { DIR_OPT },
}

local status_spec = {
  usage = 'moonstack dev status [--dir DIR] [--json]',
  summary = "show whether the local stack runs, its daemons and its URLs",
  description = 'exit status: 0 it runs; 3 it does not.',
  options = { DIR_OPT, { '--json', help = 'one JSON object' } },
}

local HELP = table.concat({
  'usage: moonstack dev COMMAND [OPTIONS]',
  '',
  'The whole moonstack stack on this machine, for development and demos.',
  '',
  'commands:',
  '  up       ' .. up_spec.summary,
  '  down     ' .. down_spec.summary,
  '  status   ' .. status_spec.summary,
  '',
  "Run 'moonstack dev COMMAND --help' for details.",
  '',
}, '\n')

-- Run fn(opts) in a task, setting the exit code from its result.
local function in_task(spec, name, fn)
  return function(argv)
    local opts, code = args.parse_command(PROG .. ' ' .. name, spec, argv)
    if not opts then
      return code
    end
    task.spawn_named('dev-' .. name, function()
      local ok, rc = pcall(fn, opts)
      if not ok then
        io.stderr:write(PROG, ' ', name, ': ', tostring(rc), '\n')
        rc = 1
      end
      require('moonstack.native.runtime').set_exit_code(rc or 1)
    end)
    return nil
  end
end

local function run(argv)
  local devstack = require('moonstack.devstack')
  return args.dispatch(PROG, HELP, {
    up = in_task(up_spec, 'up', function(o)
      -- the stack's own progress lines say what happens; the runtime's info records are noise
      local log = require('moonstack.core.log')
      if log.level() == 'info' and not os.getenv('MOONSTACK_LOG_LEVEL') then
        log.set_level('warn')
      end
      local port = o.app_port and tonumber(o.app_port)
      if o.app_port and not (port and port >= 1 and port <= 65535) then
        io.stderr:write(PROG, " up: --app-port '", o.app_port, "' is not a port\n")
        return 2
      end
      local timeout = o.timeout and tonumber(o.timeout)
      if o.timeout and not (timeout and timeout > 0) then
        io.stderr:write(PROG, " up: --timeout '", o.timeout, "' is not a number of seconds\n")
        return 2
      end
      local be = o.backend or 'auto'
      if not require('moonstack.devstack.backend').CHOICES[be] then
        io.stderr:write(PROG, " up: --backend '", be, "' is not one of auto, qemu, process\n")
        return 2
      end
      local kms_auth, aerr = require('moonstack.devstack.configs').kms_auth(o)
      if not kms_auth then
        io.stderr:write(PROG, ' up: ', aerr, '\n')
        return 2
      end
      return devstack.up({ dir = o.dir, app = o.app, name = o.name, app_port = port,
        timeout_s = timeout, dashboard = not o.no_dashboard, backend = be, kms_auth = kms_auth })
    end),
    down = in_task(down_spec, 'down', function(o) return devstack.down({ dir = o.dir }) end),
    status = function(argv2)
      local o, code = args.parse_command(PROG .. ' status', status_spec, argv2)
      if not o then
        return code
      end
      return devstack.status({ dir = o.dir, json = o.json })
    end,
  }, argv)
end

return { name = 'dev', summary = 'the whole stack on this machine: dev up, dev down, dev status',
  run = run }
