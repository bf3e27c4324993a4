-- SPDX-License-Identifier: Apache-2.0
-- `moonstack vmm -c vmm.lua`: the VMM daemon (moonstack.vmm): CVM lifecycle over dstack's VMM
-- pRPC API (upstream's vmm-cli.py works against it unchanged), the supervisor, the host API,
-- and the control socket.
local args = require('moonstack.core.args')

local PROG = 'moonstack vmm'

local spec = {
  usage = 'moonstack vmm -c FILE',
  summary = 'run the VMM daemon (CVM lifecycle, pRPC API, supervisor, host API)',
  description = 'FILE is a Lua config (examples: share/moonstack/examples/configs). '
    .. 'Its keys:\n\n' .. require('moonstack.core.config').doc('moonstack.vmm.config'),
  options = { { '-c', '--config', arg = 'FILE', help = 'the VMM config file', required = true } },
}

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  local config = require('moonstack.vmm.config')
  local cfg, err = config.load(opts.config)
  if not cfg then
    return args.fail(PROG, err)
  end
  require('moonstack.daemon').serve({ name = 'vmm', service = require('moonstack.vmm'), cfg = cfg,
    config_path = opts.config, load_config = config.load, control = cfg.control,
    repl = require('moonstack.vmm.repl').env, stop_timeout_ms = 15000,
    code = { prefix = 'moonstack.vmm', allowed = true } })
  return nil
end

return { name = 'vmm', summary = spec.summary, run = run }
