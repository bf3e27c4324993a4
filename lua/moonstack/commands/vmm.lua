-- SPDX-License-Identifier: Apache-2.0
-- `moonstack vmm -c vmm.lua`: the VMM daemon (moonstack.vmm): CVM lifecycle over dstack's VMM
-- pRPC API (upstream's vmm-cli.py works against it unchanged), the supervisor, the host API,
-- and the control socket.
local daemon = require('moonstack.daemon')

local spec = daemon.command_spec('vmm',
  'run the VMM daemon (CVM lifecycle, pRPC API, supervisor, host API)',
  'moonstack.vmm.config', 'the VMM config file')

local function run(argv)
  return daemon.serve_command('moonstack vmm', spec, argv, require('moonstack.vmm.config').load,
    function()
      return { name = 'vmm', service = require('moonstack.vmm'),
        repl = require('moonstack.vmm.repl').env, stop_timeout_ms = 15000,
        code = { prefix = 'moonstack.vmm', allowed = true } }
    end)
end

return { name = 'vmm', summary = spec.summary, run = run }
