-- SPDX-License-Identifier: Apache-2.0
-- `moonstack agent`: the guest agent. `-c agent.lua` runs the boot sequence
-- (moonstack.agent.boot.run) and serves the guest API over the context it builds;
-- `--simulator` serves the API over a simulated CVM (moonstack.agent.simulator) from an
-- appkeys.json and an app-compose.json, no config file. Both run as a daemon
-- (moonstack.daemon): control socket for `moonstack repl`, SIGTERM/SIGINT stop.
local args = require('moonstack.core.args')
local daemon = require('moonstack.daemon')
local crypto = require('moonstack.crypto')

local PROG = 'moonstack agent'

local spec = {
  usage = 'moonstack agent -c FILE | moonstack agent --simulator --keys APPKEYS.json '
    .. '--compose APP-COMPOSE.json --socket-dir DIR [--listen HOST:PORT] [--state-dir DIR]',
  summary = 'run the guest agent (dstack.sock, tappd.sock, the public listener)',
  description = table.concat({
    'With -c, FILE is a Lua config (its keys are below): the boot sequence runs',
    'from the shared folder and the API serves the resulting app.',
    '',
    'With --simulator, no config is needed: DIR/dstack.sock and DIR/tappd.sock serve an app',
    'running in a simulated TDX (fresh signed quotes, a real RTMR3, the boot events measured),',
    'with the keys of an upstream appkeys.json. The state (the simulated platform, the instance',
    'seed, the runtime event log) lives in --state-dir (default DIR/.moonstack-agent). Use',
    '--app-id to report the app id the keys were issued for (e.g. the upstream simulator\'s',
    '5bb4ff9a3837357f19dc176407a5709c62eb6c56), or the signature chain will not verify.',
    '',
    'The keys of the config file (examples: share/moonstack/examples/configs):',
    '',
    require('moonstack.core.config').doc('moonstack.agent.config'),
  }, '\n'),
  options = {
    { '-c', '--config', arg = 'FILE', help = 'the agent config file' },
    { '--simulator', help = 'simulator mode (no config file)' },
    { '--keys', arg = 'FILE', help = 'appkeys.json (simulator)' },
    { '--compose', arg = 'FILE', help = 'app-compose.json (simulator)' },
    { '--socket-dir', arg = 'DIR', help = 'where dstack.sock and tappd.sock are created (simulator)' },
    { '--listen', arg = 'HOST:PORT', help = 'also serve the public listener there (simulator)' },
    { '--state-dir', arg = 'DIR', help = 'simulator state (default DIR/.moonstack-agent)' },
    { '--sys-config', arg = 'FILE', help = 'sys-config.json for vm_config (simulator)' },
    { '--app-id', arg = 'HEX', help = 'the app id (20 bytes; default compose_hash[:20]) (simulator)' },
    { '--ccel', arg = 'FILE', help = 'a CCEL whose replay gives RTMR0..2 (simulator)' },
    { '--control', arg = 'PATH', help = 'control socket (simulator default DIR/agent.ctl)' },
    { '--socket-mode', arg = 'OCTAL',
      help = 'API unix socket mode, default 0666 (simulator; agent.lua: api.socket_mode)' },
  },
}

local function fail(msg)
  return args.fail(PROG, msg)
end

-- "host:port" / "[v6]:port" / ":port" / "port" -> { host, port } or nil, msg.
local function parse_listen(s)
  local host, port = s:match('^%[(.+)%]:(%d+)$')
  if not host then
    host, port = s:match('^([^:]*):(%d+)$')
  end
  if not host then
    port = s:match('^(%d+)$')
    host = ''
  end
  port = tonumber(port)
  if not port or port > 65535 then
    return nil, ("invalid --listen '%s' (want HOST:PORT)"):format(s)
  end
  return { host = host ~= '' and host or '0.0.0.0', port = port }
end

-- Run the agent service (moonstack.agent) as a daemon over `cfg`; the REPL sees it as `agent`.
local function serve(cfg, control, code, config_path)
  local agent = require('moonstack.agent')
  daemon.serve({ name = 'agent', service = agent, cfg = cfg, control = control,
    config_path = config_path, load_config = config_path and require('moonstack.agent.config').load,
    repl = require('moonstack.agent.repl').env,
    code = { prefix = 'moonstack.agent', dir = code.dir,
      allowed = code.allowed or 'code reload is off (agent.lua code_reload; off on TDX)',
      before_swap = function(a, staged) return a:record_code(staged) end } })
  return nil
end

local function run_simulator(opts)
  for _, k in ipairs({ 'keys', 'compose', 'socket_dir' }) do
    if not opts[k] then
      return fail(('--simulator needs --%s'):format(k:gsub('_', '-')))
    end
  end
  local dir = opts.socket_dir:gsub('(.)/+$', '%1')
  local listen = false
  if opts.listen then
    local err
    listen, err = parse_listen(opts.listen)
    if not listen then
      return fail(err)
    end
  end
  local app_id
  if opts.app_id then
    app_id = crypto.unhex(opts.app_id, 20)
    if not app_id then
      return fail('--app-id must be 20 bytes of hex')
    end
  end
  local mode
  if opts.socket_mode then
    mode = opts.socket_mode:match('^0?[0-7][0-7][0-7]$') and tonumber(opts.socket_mode, 8)
    if not mode then
      return fail('--socket-mode must be an octal mode such as 0660')
    end
  end
  return serve({ simulator = { keys_file = opts.keys, compose_file = opts.compose,
    socket_dir = dir, state_dir = opts.state_dir, listen = listen, sys_config_file = opts.sys_config,
    app_id = app_id, ccel_file = opts.ccel, socket_mode = mode } },
    opts.control or (dir .. '/agent.ctl'), { allowed = true })
end

local function run_config(opts)
  local cfg, err = require('moonstack.agent.config').load(opts.config)
  if not cfg then
    return fail(err)
  end
  return serve(cfg, cfg.control, { allowed = cfg.code_reload, dir = cfg.code_dir }, opts.config)
end

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  if opts.simulator then
    if opts.config then
      return fail('give -c FILE or --simulator, not both')
    end
    return run_simulator(opts)
  end
  if not opts.config then
    return fail('give -c FILE, or --simulator (see --help)')
  end
  return run_config(opts)
end

return { name = 'agent', summary = spec.summary, run = run }
