-- SPDX-License-Identifier: Apache-2.0
-- `moonstack kms`: the key management service. `moonstack kms -c kms.lua` runs the daemon
-- (moonstack.kms); `moonstack kms derive` prints one app's keys offline from a key
-- directory, for operators (kms-vmm-gateway.md §3.3); `moonstack kms eth ...` administers
-- the contracts of the eth auth backend (moonstack.commands.kms.eth).
local cjson = require('cjson')
local args = require('moonstack.core.args')
local daemon = require('moonstack.daemon')
local crypto = require('moonstack.crypto')

local PROG = 'moonstack kms'

local derive_spec = {
  usage = 'moonstack kms derive (--key-dir DIR | -c FILE) --app-id HEX [--instance-id HEX] [--json]',
  summary = "print an app's keys derived from the KMS root material, offline",
  description = table.concat({
    'Loads the root material of DIR (root-ca.key/.crt, root-k256.key, tmp-ca.key/.crt; it is',
    'never created here) and prints the app CA key and certificate, the disk key, the env key',
    'pair and the app k256 key with its dstack-kms-issued signature, exactly as the KMS',
    "releases them. With -c, the key directory and its sealing come from the KMS's config",
    '(a sealed directory opens only where the KMS runs: the same CVM or guest agent).',
    'The output holds secrets: keep it off shared terminals and logs.',
  }, '\n'),
  options = {
    { '--key-dir', arg = 'DIR', help = 'the KMS key directory (unsealed)' },
    { '-c', '--config', arg = 'FILE', help = "the KMS config: its key_dir and seal settings" },
    { '--app-id', arg = 'HEX', help = 'the app id (20 bytes)', required = true },
    { '--instance-id', arg = 'HEX', help = 'the instance id (20 bytes; only the disk key uses it)' },
    { '--json', help = 'print one JSON object' },
  },
}

local daemon_spec = daemon.command_spec('kms', 'run the KMS daemon (pRPC over HTTPS, control socket)',
  'moonstack.kms.config', 'the KMS config file')

local HELP = table.concat({
  'usage: moonstack kms -c FILE | moonstack kms COMMAND [ARGS...]',
  '',
  'The key management service: root keys, the dstack derivation tree, RA-TLS gated release.',
  '',
  '  -c FILE               ' .. daemon_spec.summary,
  'commands:',
  '  derive                ' .. derive_spec.summary,
  '  eth                   ' .. require('moonstack.commands.kms.eth').summary,
  '',
  "Run 'moonstack kms derive --help' or 'moonstack kms eth --help' for details.",
  '',
}, '\n')

local fail = args.fail

-- The fields printed by derive, in order.
local FIELDS = { 'app_id', 'instance_id', 'app_ca_key', 'app_ca_cert', 'disk_crypt_key',
  'env_crypt_key', 'env_crypt_pubkey', 'k256_key', 'k256_pubkey', 'k256_signature',
  'kms_k256_pubkey', 'root_ca_cert' }

-- Print the keys of `material` (or its load error) for derive; returns the exit code.
local function print_keys(prog, opts, app_id, instance_id, material, err)
  if not material then
    io.stderr:write(prog, ': ', err, '\n')
    return 1
  end
  local k, derr = require('moonstack.kms.derive').app_keys(material, app_id, instance_id)
  if not k then
    io.stderr:write(prog, ': ', derr, '\n')
    return 1
  end
  local out = { app_id = crypto.hex(app_id), instance_id = crypto.hex(instance_id),
    app_ca_key = k.app_ca_key:pkcs8_pem(), app_ca_cert = k.app_ca_cert:pem(),
    root_ca_cert = material.root_cert:pem(), kms_k256_pubkey = crypto.hex(material.k256_pubkey) }
  for _, f in ipairs({ 'disk_crypt_key', 'env_crypt_key', 'env_crypt_pubkey', 'k256_key',
    'k256_pubkey', 'k256_signature' }) do
    out[f] = crypto.hex(k[f])
  end
  if opts.json then
    local parts = {}
    for _, f in ipairs(FIELDS) do
      parts[#parts + 1] = ('  %s: %s'):format(cjson.encode(f), cjson.encode(out[f]))
    end
    io.stdout:write('{\n', table.concat(parts, ',\n'), '\n}\n')
  else
    for _, f in ipairs(FIELDS) do
      local v = out[f]
      if v:find('\n', 1, true) then
        io.stdout:write(f, ':\n', v, v:sub(-1) == '\n' and '' or '\n')
      else
        io.stdout:write(('%-17s %s\n'):format(f, v))
      end
    end
  end
  return 0
end

local function derive(argv)
  local prog = PROG .. ' derive'
  local opts, code = args.parse_command(prog, derive_spec, argv)
  if not opts then
    return code
  end
  local app_id = crypto.unhex(opts.app_id:gsub('^0x', ''), 20)
  if not app_id then
    return fail(prog, '--app-id must be 20 bytes of hex')
  end
  local instance_id = ''
  if opts.instance_id then
    instance_id = crypto.unhex(opts.instance_id:gsub('^0x', ''), 20)
    if not instance_id then
      return fail(prog, '--instance-id must be 20 bytes of hex')
    end
  end
  if (opts.key_dir == nil) == (opts.config == nil) then
    return fail(prog, 'give --key-dir or -c (one of them)')
  end
  if opts.key_dir then
    return print_keys(prog, opts, app_id, instance_id, require('moonstack.kms.keys').load(opts.key_dir))
  end
  local cfg, cerr = require('moonstack.kms.config').load(opts.config)
  if not cfg then
    return fail(prog, cerr)
  end
  -- the agent sealer asks the guest agent: in a task, the exit code set when it is done
  require('moonstack.core.task').spawn_named('kms-derive', function()
    local sealer, serr
    if cfg.seal then
      sealer, serr = require('moonstack.kms.setup').sealer_from_config(cfg.seal)
      if not sealer then
        io.stderr:write(prog, ': seal: ', tostring(serr), '\n')
        require('moonstack.native.runtime').set_exit_code(1)
        return
      end
    end
    require('moonstack.native.runtime').set_exit_code(print_keys(prog, opts, app_id, instance_id,
      require('moonstack.kms.keys').load(cfg.key_dir, { sealer = sealer })))
  end)
  return nil
end

local function run_daemon(argv)
  return daemon.serve_command(PROG, daemon_spec, argv, require('moonstack.kms.config').load,
    function(cfg)
      return { name = 'kms', service = require('moonstack.kms'),
        repl = require('moonstack.kms.repl').env, code = { prefix = 'moonstack.kms',
          dir = cfg.code_dir,
          allowed = cfg.code_reload or 'code reload is off (kms.lua code_reload; off in a CVM)',
          before_swap = require('moonstack.kms.setup').code_recorder(cfg.tee) } }
    end)
end

local function run(argv)
  local first = argv[1]
  if first == nil or first == '-h' or first == '--help' or first:sub(1, 1) ~= '-' then
    return args.dispatch(PROG, HELP, { derive = derive,
      eth = function(rest) return require('moonstack.commands.kms.eth').run(rest) end }, argv)
  end
  return run_daemon(argv)
end

return { name = 'kms', summary = 'the key management service (daemon, offline derive)', run = run }
