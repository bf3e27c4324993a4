-- SPDX-License-Identifier: Apache-2.0
-- `moonstack verifier -c verifier.lua`: the quote + event-log verification service, with
-- dstack-verifier's HTTP API (POST /verify, GET /health; moonstack.verifier.service), run as
-- a daemon (moonstack.daemon): control socket, SIGTERM/SIGINT stop, SIGHUP re-reads the
-- config's policy, collateral and root files (the previous ones stay on failure).
local args = require('moonstack.core.args')
local daemon = require('moonstack.daemon')
local service = require('moonstack.verifier.service')

local PROG = 'moonstack verifier'

local spec = {
  usage = 'moonstack verifier -c FILE',
  summary = 'run the verifier service (dstack-verifier API: POST /verify)',
  description = table.concat({
    'FILE is a Lua config (see examples/configs/verifier.lua): listen = { host, port } or',
    '{ unix }, collateral = { file } or { pccs, cache_dir }, policy (file or table), root_ca',
    '(a simulator root, accepted only with a policy that allows simulated quotes), control',
    '(the REPL socket), at (a fixed verification time, for tests and audits).',
  }, '\n'),
  options = {
    { '-c', '--config', arg = 'FILE', help = 'the config file', required = true },
  },
}

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  local cfg, err = service.load_config(opts.config)
  if not cfg then
    io.stderr:write(PROG, ': ', err, '\n')
    return 1
  end
  local svc
  daemon.run({
    name = 'verifier',
    control = cfg.control,
    env = { config = cfg, service = function() return svc end },
    start = function(d)
      local s, serr = service.new(cfg)
      if not s then
        return nil, serr
      end
      local ok, lerr = s:start()
      if not ok then
        return nil, lerr
      end
      svc = s
      d.log.info('verifier listening', { address = s:address() })
      return true
    end,
    stop = function()
      if svc then
        svc:stop()
      end
    end,
    reload = function(d)
      local new, rerr = service.load_config(opts.config)
      if not new then
        error(rerr, 0)
      end
      local ok, lerr = svc:reload(new)
      if not ok then
        error(lerr, 0)
      end
      d.log.info('policy and collateral reloaded')
    end,
  })
  return nil
end

return { name = 'verifier', summary = spec.summary, run = run }
