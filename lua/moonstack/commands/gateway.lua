-- SPDX-License-Identifier: Apache-2.0
-- `moonstack gateway -c gateway.lua`: the gateway daemon (moonstack.gateway): the SNI proxy,
-- RegisterCvm over mutual RA-TLS, the WireGuard hub, the Admin API, routing policy, and the
-- control socket.
local daemon = require('moonstack.daemon')

local spec = daemon.command_spec('gateway',
  'run the gateway daemon (SNI proxy, RegisterCvm, WireGuard hub, admin API)',
  'moonstack.gateway.config', 'the gateway config file')

local function run(argv)
  return daemon.serve_command('moonstack gateway', spec, argv,
    require('moonstack.gateway.config').load, function()
      return { name = 'gateway', service = require('moonstack.gateway'),
        repl = require('moonstack.gateway.repl').env,
        code = { prefix = 'moonstack.gateway', allowed = true } }
    end)
end

return { name = 'gateway', summary = spec.summary, run = run }
