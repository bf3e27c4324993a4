-- SPDX-License-Identifier: Apache-2.0
-- `moonstack compose`: app-compose.json tools.
--   hash FILE [--normalize]   the compose hash: SHA-256 of the bytes as stored (what the guest
--                             measures, spec §1.2); --normalize: of the SDK's sorted-key
--                             compact JSON instead (getComposeHash's convention)
--   app-id FILE [--normalize] the app id derived from it (its first 20 bytes, hex)
--   new DOCKER-COMPOSE ...    an app-compose.json as upstream's `vmm-cli.py compose` makes it
--                             (moonstack.cvm.app_compose.new)
--   lint FILE [--json]        upstream's security practices as rules (moonstack.compose.lint)
-- Exit status: 0 ok (lint: no error finding), 1 lint found an error, 2 usage or parse error.
local args = require('moonstack.core.args')
local fs = require('moonstack.core.fs')
local json = require('moonstack.core.json')
local crypto = require('moonstack.crypto')
local app_compose = require('moonstack.cvm.app_compose')
local lint = require('moonstack.compose.lint')

local MAX_FILE = 50 * 1024 * 1024 -- the guest's cap on app-compose.json

local FILE = { { 'FILE', help = 'the app-compose.json', required = true } }
local NORMALIZE = { '--normalize', help = "hash the SDK's normalized form (sorted keys, compact)" }

local SPECS = {
  hash = { usage = 'moonstack compose hash FILE [--normalize]',
    summary = 'the compose hash: SHA-256 of the file as stored (as the guest measures it)',
    positional = FILE, options = { NORMALIZE } },
  ['app-id'] = { usage = 'moonstack compose app-id FILE [--normalize]',
    summary = 'the app id of a compose: the first 20 bytes of its hash, hex',
    positional = FILE, options = { NORMALIZE } },
  new = { usage = 'moonstack compose new DOCKER-COMPOSE --name NAME [OPTIONS]',
    summary = 'write an app-compose.json for a docker-compose file (as vmm-cli.py compose)',
    positional = { { 'DOCKER-COMPOSE', help = 'the docker-compose.yaml', required = true } },
    options = {
      { '--name', arg = 'NAME', required = true, help = 'the app name' },
      { '-o', '--output', arg = 'FILE', default = 'app-compose.json',
        help = 'where to write it (app-compose.json)' },
      { '--prelaunch-script', arg = 'FILE', help = 'the pre-launch script' },
      { '--kms', help = 'kms_enabled: keys from the KMS' },
      { '--gateway', help = 'gateway_enabled: register with the gateway' },
      { '--local-key-provider', help = 'local_key_provider_enabled' },
      { '--key-provider', arg = 'none|kms|local|tpm', help = 'key_provider (overrides the above)' },
      { '--key-provider-id', arg = 'HEX', help = 'key_provider_id: pin the key provider' },
      { '--public-logs', help = 'public_logs' },
      { '--public-sysinfo', help = 'public_sysinfo' },
      { '--no-public-tcbinfo', help = 'write public_tcbinfo false (else left out: true)' },
      { '--env-file', arg = 'FILE', help = 'KEY=VALUE file: its keys become allowed_envs' },
      { '--no-instance-id', help = 'no_instance_id' },
      { '--secure-time', help = 'secure_time' },
      { '--swap', arg = 'MiB', help = 'swap_size in MiB (0: none)' },
      { '--event-log-version', arg = '1|2', help = 'event_log_version (2 is written, 1 left out)' },
    } },
  lint = { usage = 'moonstack compose lint FILE [--json]',
    summary = 'check an app-compose.json or a docker-compose file against the security practices',
    description = 'Each finding has a rule id, a severity (error, warning, info), the field, what\n'
      .. 'is wrong and the fix. A rule is waived by a comment in the docker-compose text:\n'
      .. '`# moonstack-lint: ignore RULE-ID reason`. Exit status: 0 no error finding, 1 at\n'
      .. 'least one, 2 usage error or a file that does not parse.',
    positional = { { 'FILE', help = 'app-compose.json or docker-compose.yaml', required = true } },
    options = { { '--json', help = 'the findings as JSON' } } },
}

local function help()
  local lines = { 'usage: moonstack compose COMMAND [ARGS...]', '',
    'app-compose.json: its hash and app id, making one, and the security lint.', '', 'commands:' }
  for _, name in ipairs({ 'hash', 'app-id', 'new', 'lint' }) do
    lines[#lines + 1] = ('  %-8s %s'):format(name, SPECS[name].summary)
  end
  lines[#lines + 1] = ''
  lines[#lines + 1] = "Run 'moonstack compose COMMAND --help' for details."
  return table.concat(lines, '\n') .. '\n'
end

local function read(prog, path)
  local data, err = fs.read_file(path, MAX_FILE)
  if not data then
    err = tostring(err):gsub('^E[A-Z0-9_]+: ', '')
    return nil, args.fail(prog, err:find(path, 1, true) and err or ('%s: %s'):format(path, err))
  end
  return data
end

-- The compose hash (bytes) of FILE, as stored or normalized; or nil, exit code.
local function compose_hash(prog, opts)
  local data, code = read(prog, opts.args[1])
  if not data then
    return nil, code
  end
  if opts.normalize then
    local canon, err = json.canonical(data)
    if not canon then
      return nil, args.fail(prog, ('%s: %s'):format(opts.args[1], err))
    end
    data = canon
  end
  return app_compose.compose_hash(data)
end

local function hash_cmd(name, out)
  return function(argv)
    local prog = 'moonstack compose ' .. name
    local opts, code = args.parse_command(prog, SPECS[name], argv)
    if not opts then
      return code
    end
    local h, hcode = compose_hash(prog, opts)
    if not h then
      return hcode
    end
    io.stdout:write(out(h), '\n')
    return 0
  end
end

local function new(argv)
  local prog = 'moonstack compose new'
  local opts, code = args.parse_command(prog, SPECS.new, argv)
  if not opts then
    return code
  end
  local dc, rc = read(prog, opts.args[1])
  if not dc then
    return rc
  end
  local o = { name = opts.name, runner = 'docker-compose', docker_compose_file = dc,
    kms_enabled = opts.kms == true, gateway_enabled = opts.gateway == true,
    local_key_provider_enabled = opts.local_key_provider == true,
    key_provider_id = opts.key_provider_id or '', public_logs = opts.public_logs == true,
    public_sysinfo = opts.public_sysinfo == true, public_tcbinfo = false,
    omit = { public_tcbinfo = not opts.no_public_tcbinfo or nil },
    no_instance_id = opts.no_instance_id == true, secure_time = opts.secure_time == true,
    key_provider = opts.key_provider, allowed_envs = json.array() }
  if o.key_provider and not ({ none = 1, kms = 1, [ 'local' ] = 1, tpm = 1 })[o.key_provider] then
    return args.fail(prog, '--key-provider: none, kms, local or tpm')
  end
  o.key_provider_id = o.key_provider_id:gsub('^0x', ''):lower()
  if o.key_provider_id ~= '' and not crypto.unhex(o.key_provider_id) then
    return args.fail(prog, '--key-provider-id: not hex')
  end
  if opts.env_file then
    local text, ecode = read(prog, opts.env_file)
    if not text then
      return ecode
    end
    local env, err = require('moonstack.vmm.operator').parse_env_file(text)
    if not env then
      return args.fail(prog, ('%s: %s'):format(opts.env_file, tostring(err):gsub('^EINVAL: ', '')))
    end
    if #env > 0 and not o.kms_enabled and o.key_provider ~= 'kms' then
      return args.fail(prog, '--env-file needs --kms (the KMS gives the CVM the key to decrypt it)')
    end
    for _, kv in ipairs(env) do
      o.allowed_envs[#o.allowed_envs + 1] = kv.key
    end
  end
  if opts.prelaunch_script then
    local s, scode = read(prog, opts.prelaunch_script)
    if not s then
      return scode
    end
    o.pre_launch_script = s
  end
  if opts.swap then
    local mib = tonumber(opts.swap)
    if not mib or mib < 0 or mib % 1 ~= 0 then
      return args.fail(prog, '--swap: a whole number of MiB')
    end
    o.swap_size = mib > 0 and mib * 1024 * 1024 or nil
  end
  if opts.event_log_version then
    if opts.event_log_version ~= '1' and opts.event_log_version ~= '2' then
      return args.fail(prog, '--event-log-version: 1 or 2')
    end
    o.event_log_version = opts.event_log_version == '2' and 2 or nil
  end
  local text, err = app_compose.new(o)
  if not text then
    return args.fail(prog, tostring(err):gsub('^EINVAL: ', ''))
  end
  local ok, werr = fs.write_atomic(opts.output, text, tonumber('644', 8))
  if not ok then
    return args.fail(prog, ('%s: %s'):format(opts.output, tostring(werr)))
  end
  local h = crypto.hex(app_compose.compose_hash(text))
  io.stdout:write(('App compose file created at: %s\nCompose hash: %s\nApp id: %s\n'):format(
    opts.output, h, h:sub(1, 40)))
  return 0
end

local function lint_cmd(argv)
  local prog = 'moonstack compose lint'
  local opts, code = args.parse_command(prog, SPECS.lint, argv)
  if not opts then
    return code
  end
  local file = opts.args[1]
  local data, rc = read(prog, file)
  if not data then
    return rc
  end
  local res, err = lint.lint(data)
  if not res then
    return args.fail(prog, ('%s: %s'):format(file, tostring(err):gsub('^E[A-Z]+: ', '')))
  end
  if opts.json then
    local list = json.array()
    for i, f in ipairs(res.findings) do
      list[i] = f
    end
    io.stdout:write(json.encode({ file = file, kind = res.kind, findings = list,
      counts = res.counts, ok = res.counts.error == 0 }), '\n')
  else
    io.stdout:write(lint.format(res, file))
  end
  return res.counts.error > 0 and 1 or 0
end

local function run(argv)
  if argv[1] == nil or argv[1] == '-h' or argv[1] == '--help' then
    io.stdout:write(help())
    return argv[1] == nil and 2 or 0
  end
  return args.dispatch('moonstack compose', help(), {
    hash = hash_cmd('hash', crypto.hex),
    ['app-id'] = hash_cmd('app-id', function(h) return crypto.hex(h):sub(1, 40) end),
    new = new,
    lint = lint_cmd,
  }, argv)
end

return { name = 'compose', summary = 'app-compose.json: hash, app-id, new, lint (security practices)',
  run = run }
