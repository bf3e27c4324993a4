-- SPDX-License-Identifier: Apache-2.0
-- `moonstack verifier -c verifier.lua`: the quote + event-log verification service, with
-- dstack-verifier's HTTP API (POST /verify, GET /health; moonstack.verifier.service), run as
-- a daemon (moonstack.daemon.serve): control socket, SIGTERM/SIGINT stop, SIGHUP re-reads the
-- config's policy, collateral and root files (the previous ones stay on failure).
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
  return daemon.serve_command(PROG, spec, argv, service.load_config, function()
    return { name = 'verifier', service = service,
      repl = function(svc)
        return { config = svc.cfg }, { config = 'the running config' }
      end }
  end)
end

return { name = 'verifier', summary = spec.summary, run = run }
