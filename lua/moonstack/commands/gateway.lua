-- SPDX-License-Identifier: Apache-2.0
-- `moonstack gateway -c gateway.lua`: the gateway daemon (moonstack.gateway): the SNI proxy,
-- RegisterCvm over mutual RA-TLS, the WireGuard hub, the Admin API, routing policy, and the
-- control socket.
local args = require('moonstack.core.args')

local PROG = 'moonstack gateway'

local spec = {
  usage = 'moonstack gateway -c FILE',
  summary = 'run the gateway daemon (SNI proxy, RegisterCvm, WireGuard hub, admin API)',
  description = 'FILE is a Lua config (examples: share/moonstack/examples/configs). '
    .. 'Its keys:\n\n' .. require('moonstack.core.config').doc('moonstack.gateway.config'),
  options = { { '-c', '--config', arg = 'FILE', help = 'the gateway config file', required = true } },
}

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  local config = require('moonstack.gateway.config')
  local cfg, err = config.load(opts.config)
  if not cfg then
    return args.fail(PROG, err)
  end
  require('moonstack.daemon').serve({ name = 'gateway', service = require('moonstack.gateway'),
    cfg = cfg, config_path = opts.config, load_config = config.load, control = cfg.control,
    repl = require('moonstack.gateway.repl').env,
    code = { prefix = 'moonstack.gateway', allowed = true } })
  return nil
end

return { name = 'gateway', summary = spec.summary, run = run }
