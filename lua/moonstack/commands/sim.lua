-- SPDX-License-Identifier: Apache-2.0
-- `moonstack sim init DIR`: create a simulated TDX platform (moonstack.sim) in DIR, or check
-- the one already there, and print its root CA. A development KMS (`attestation =
-- { simulator_dir = DIR }`) trusts an existing platform only, so the platform comes first:
-- made here, or by the first CVM that runs on it (agent.lua tee.dir with create).
local args = require('moonstack.core.args')

local PROG = 'moonstack sim'

local init_spec = {
  usage = 'moonstack sim init DIR [--root-ca FILE]',
  summary = 'create a simulated TDX platform in DIR (or check the one there)',
  description = table.concat({
    'Creates the simulated platform (its root CA, PCK chain, attestation key; directory 0700,',
    'files 0600) when DIR holds none, else opens and checks the one there. Prints whether it',
    'was created, the root CA subject and its SHA-256 fingerprint. --root-ca FILE also writes',
    "the root CA (PEM) there, for verifiers (moonstack verify --root-ca, kms.lua root_ca_file).",
  }, '\n'),
  positional = { { 'DIR', help = 'the simulator state directory', required = true } },
  options = { { '--root-ca', arg = 'FILE', help = 'write the root CA certificate (PEM) to FILE' } },
}

local HELP = table.concat({
  'usage: moonstack sim COMMAND [ARGS...]',
  '',
  'The software TDX for development and CI (moonstack.sim).',
  '',
  'commands:',
  '  init DIR              ' .. init_spec.summary,
  '',
  "Run 'moonstack sim init --help' for details.",
  '',
}, '\n')

local function init(argv)
  local prog = PROG .. ' init'
  local opts, code = args.parse_command(prog, init_spec, argv)
  if not opts then
    return code
  end
  local sim = require('moonstack.sim')
  local dir = opts.args[1]
  local existed = sim.exists(dir)
  local s, err = sim.open(dir)
  if not s then
    io.stderr:write(prog, ': ', dir, ': ', tostring(err), '\n')
    return 1
  end
  local pem, der = s:root_ca()
  err = der
  s:close()
  if not pem then
    io.stderr:write(prog, ': ', dir, ': ', tostring(err), '\n')
    return 1
  end
  local cert = require('moonstack.x509').cert(pem)
  if opts.root_ca then
    local ok, werr = require('moonstack.core.fs').write_atomic(opts.root_ca, pem, 420) -- 0644
    if not ok then
      io.stderr:write(prog, ': --root-ca ', opts.root_ca, ': ', tostring(werr), '\n')
      return 1
    end
  end
  io.stdout:write(('%-12s %s\n'):format('platform', dir),
    ('%-12s %s\n'):format('state', existed and 'existing (checked)' or 'created'),
    ('%-12s %s\n'):format('root_ca', cert and cert:info().cn or '?'),
    ('%-12s %s\n'):format('sha256', require('moonstack.crypto').hex(
      require('moonstack.crypto').sha256(der))))
  return 0
end

local function run(argv)
  return args.dispatch(PROG, HELP, { init = init }, argv)
end

return { name = 'sim', summary = 'the simulated TDX platform (development)', run = run }
