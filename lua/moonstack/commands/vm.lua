-- SPDX-License-Identifier: Apache-2.0
-- `moonstack vm ...`: the VMM from the command line, the verbs of upstream's vmm-cli.py (ls,
-- info, images, deploy, start, stop, rm, logs, update) over the VMM API (moonstack.vmm.client;
-- the work itself: moonstack.vmm.operator), so an operator needs nothing but the binary.
-- `--url` takes http(s)://host:port or unix:PATH (default $DSTACK_VMM_URL, else unix:vmm.sock);
-- credentials come from the environment only (DSTACK_VMM_TOKEN, or DSTACK_VMM_USER +
-- DSTACK_VMM_PASSWORD), never from the command line.
local args = require('moonstack.core.args')
local task = require('moonstack.core.task')

local PROG = 'moonstack vm'

local COMMON = {
  { '--url', arg = 'URL', help = 'the VMM: http(s)://host:port or unix:PATH (default '
    .. '$DSTACK_VMM_URL, else unix:vmm.sock)' },
}

local function spec(usage, summary, options, positional)
  local opts = {}
  for _, o in ipairs(options or {}) do
    opts[#opts + 1] = o
  end
  for _, o in ipairs(COMMON) do
    opts[#opts + 1] = o
  end
  return { usage = usage, summary = summary, options = opts, positional = positional }
end

local ID = { { 'ID', required = true } }
local SPECS = {
  ls = spec('moonstack vm ls [-v] [--json]', 'list the VMs',
    { { '-v', '--verbose', help = 'more columns' }, { '--json', help = 'the VmInfo list as JSON' } }),
  info = spec('moonstack vm info ID [--json]', 'one VM in detail', { { '--json', help = 'as JSON' } }, ID),
  images = spec('moonstack vm images [--json]', 'the guest images', { { '--json', help = 'as JSON' } }),
  deploy = spec('moonstack vm deploy --name NAME --image IMAGE --compose APP-COMPOSE.json [OPTIONS]',
    'create a VM and follow its boot', {
      { '--name', arg = 'NAME', required = true, help = 'the VM name' },
      { '--image', arg = 'IMAGE', required = true, help = 'the guest image (moonstack vm images)' },
      { '--compose', arg = 'FILE', required = true, help = 'the app-compose.json (sent verbatim)' },
      { '--vcpu', arg = 'N', default = '1', help = 'vCPUs (1)' },
      { '--memory', arg = 'SIZE', default = '1G', help = 'memory: 512M, 1G... (1G)' },
      { '--disk', arg = 'GB', default = '0', help = 'data disk in GB (0)' },
      { '--port', arg = 'tcp:[ADDR:]HOST:VM', multiple = true, help = 'a port mapping (repeatable)' },
      { '--env-file', arg = 'FILE', help = 'KEY=VALUE env, encrypted to the KMS env key of the app' },
      { '--kms-url', arg = 'URL', help = 'ask this KMS for the env key (default: through the VMM)' },
      { '--kms-pubkey', arg = 'HEX', help = 'the KMS k256 key the env key must be signed by' },
      { '--app-id', arg = 'HEX', help = 'the app id (default: of the compose)' },
      { '--user-config', arg = 'FILE', help = 'the .user-config' },
      { '--kms-urls', arg = 'URL', multiple = true, help = 'per-VM KMS URL (repeatable)' },
      { '--gateway-urls', arg = 'URL', multiple = true, help = 'per-VM gateway URL (repeatable)' },
      { '--stopped', help = 'create without starting' },
      { '--no-wait', help = 'do not follow the boot' },
      { '--timeout', arg = 'SECONDS', default = '120', help = 'how long to follow the boot (120)' },
    }),
  start = spec('moonstack vm start ID [--no-wait]', 'start a VM',
    { { '--no-wait', help = 'do not follow the boot' },
      { '--timeout', arg = 'SECONDS', default = '120', help = 'how long to follow the boot' } }, ID),
  stop = spec('moonstack vm stop ID [-f]', 'stop a VM (gracefully; -f: at once)',
    { { '-f', '--force', help = 'hard stop (StopVm) instead of asking the guest (ShutdownVm)' } }, ID),
  rm = spec('moonstack vm rm ID', 'remove a VM and its work directory', {}, ID),
  logs = spec('moonstack vm logs ID [-f] [-n LINES] [--ch serial|stdout|stderr]', "a VM's log", {
    { '-f', '--follow', help = 'follow the log' },
    { '-n', '--lines', arg = 'N', default = '20', help = 'lines of the end (20)' },
    { '--ch', arg = 'CHANNEL', default = 'serial', help = 'serial (the console), stdout or stderr' },
  }, ID),
  update = spec('moonstack vm update ID [OPTIONS]', 'change a VM (UpdateVm)', {
    { '--compose', arg = 'FILE', help = 'a new app-compose.json' },
    { '--env-file', arg = 'FILE', help = 'new env (encrypted as for deploy)' },
    { '--kms-url', arg = 'URL', help = 'ask this KMS for the env key' },
    { '--kms-pubkey', arg = 'HEX', help = 'the KMS k256 key the env key must be signed by' },
    { '--user-config', arg = 'FILE', help = 'a new .user-config' },
    { '--port', arg = 'tcp:[ADDR:]HOST:VM', multiple = true, help = 'replace the port mappings' },
    { '--no-ports', help = 'remove every port mapping' },
    { '--vcpu', arg = 'N', help = 'vCPUs (the VM must be stopped)' },
    { '--memory', arg = 'SIZE', help = 'memory (the VM must be stopped)' },
    { '--image', arg = 'IMAGE', help = 'image (the VM must be stopped)' },
  }, ID),
}

local HELP_ORDER = { 'ls', 'info', 'images', 'deploy', 'start', 'stop', 'rm', 'logs', 'update' }

local function help()
  local lines = { 'usage: moonstack vm [--url URL] COMMAND [ARGS...]', '',
    'The VMM from the command line (its pRPC API, as vmm-cli.py uses it).', '', 'commands:' }
  for _, name in ipairs(HELP_ORDER) do
    lines[#lines + 1] = ('  %-8s %s'):format(name, SPECS[name].summary)
  end
  lines[#lines + 1] = ''
  lines[#lines + 1] = 'Credentials: DSTACK_VMM_TOKEN, or DSTACK_VMM_USER and DSTACK_VMM_PASSWORD.'
  lines[#lines + 1] = "Run 'moonstack vm COMMAND --help' for details."
  return table.concat(lines, '\n') .. '\n'
end

-- Run verb `name` with its parsed options in a task; the exit code is what `fn` returns.
local function runner(name, fn)
  return function(argv)
    local prog = PROG .. ' ' .. name
    local opts, code = args.parse_command(prog, SPECS[name], argv)
    if not opts then
      return code
    end
    local url = opts.url or os.getenv('DSTACK_VMM_URL') or require('moonstack.vmm.client').DEFAULT_URL
    local client, err = require('moonstack.vmm.client').new(url, { token = os.getenv('DSTACK_VMM_TOKEN'),
      user = os.getenv('DSTACK_VMM_USER'), password = os.getenv('DSTACK_VMM_PASSWORD') })
    if not client then
      return args.fail(prog, err)
    end
    task.spawn_named('vm-' .. name, function()
      local ok, rc, ferr = pcall(fn, client, opts, prog)
      if not ok or rc == nil then
        io.stderr:write(prog, ': ', tostring((not ok) and rc or ferr):gsub('^E[A-Z0-9_]+: ', ''), '\n')
        rc = 1
      end
      require('moonstack.native.runtime').set_exit_code(rc)
    end)
    return nil
  end
end

local verbs = require('moonstack.commands.vm.verbs')

local function run(argv)
  -- `moonstack vm --url URL VERB ...` as well as `moonstack vm VERB ... --url URL`
  local url = argv[1] and argv[1]:match('^%-%-url=(.+)$')
  if argv[1] == '--url' and argv[2] then
    url = argv[2]
    argv = { select(3, unpack(argv)) }
  elseif url then
    argv = { select(2, unpack(argv)) }
  end
  if url and argv[1] then
    table.insert(argv, '--url')
    table.insert(argv, url)
  end
  local subs = {}
  for name in pairs(SPECS) do
    subs[name] = runner(name, verbs[name])
  end
  subs.remove = subs.rm
  subs.lsvm = subs.ls
  if argv[1] == nil or argv[1] == '-h' or argv[1] == '--help' then
    io.stdout:write(help())
    return argv[1] == nil and 2 or 0
  end
  return args.dispatch(PROG, help(), subs, argv)
end

return { name = 'vm', summary = 'manage the VMs of a VMM (ls, info, deploy, start, stop, rm, logs...)',
  run = run }
