-- SPDX-License-Identifier: Apache-2.0
-- `moonstack kms eth ...`: the on-chain side of the `eth` KMS auth backend from the command
-- line (spec §3.9): deploy moonstack's DstackKms and DstackApp contracts, register an app,
-- add or remove compose hashes, devices, OS images and KMS measurements, set the gateway app
-- id, and show what the KMS contract holds. Transactions are signed here (moonstack.eth.tx);
-- the private key comes from --key-file (mode 0600 or stricter) or the environment variable
-- MOONSTACK_ETH_PRIVATE_KEY, never from the command line.
local args = require('moonstack.core.args')
local task = require('moonstack.core.task')
local crypto = require('moonstack.crypto')
local abi = require('moonstack.eth.abi')
local rpc_mod = require('moonstack.eth.rpc')
local tx = require('moonstack.eth.tx')

local PROG = 'moonstack kms eth'
local KEY_ENV = 'MOONSTACK_ETH_PRIVATE_KEY'

local COMMON = {
  { '--rpc-url', arg = 'URL', help = 'the Ethereum JSON-RPC endpoint (default $ETH_RPC_URL, else '
    .. 'http://127.0.0.1:8545)' },
  { '--key-file', arg = 'FILE', help = 'the signing key: a file (mode 0600) holding the private '
    .. 'key in hex (default: $' .. KEY_ENV .. ')' },
  { '--timeout', arg = 'SECONDS', help = 'per request and for a transaction to be mined (default 60)' },
  { '--json', help = 'print the result as one JSON object' },
}

local KMS_OPT = { '--kms', arg = 'ADDR', help = 'the DstackKms contract address', required = true }
local APP_OPT = { '--app', arg = 'ADDR', help = 'the DstackApp contract address (the app id)',
  required = true }

-- name -> { summary, usage tail, options, positional, action } (action: see below)
local VERBS = {}
local ORDER = {}

local function verb(name, def)
  VERBS[name] = def
  ORDER[#ORDER + 1] = name
end

local function hex32(v, what)
  local b = crypto.unhex((v or ''):gsub('^0[xX]', ''), 32)
  if not b then
    error(('%s must be 32 bytes of hex (64 digits, 0x optional)'):format(what), 0)
  end
  return '0x' .. crypto.hex(b)
end

local function address(v, what)
  local b = crypto.unhex((v or ''):gsub('^0[xX]', ''), 20)
  if not b then
    error(('%s must be an address (40 hex digits, 0x optional)'):format(what), 0)
  end
  return '0x' .. crypto.hex(b)
end

-- A verb sending one call to a contract: sig with one argument converted by `conv`.
local function setter(target, sig, argname, conv, summary, event)
  return { summary = summary, options = { target == 'kms' and KMS_OPT or APP_OPT },
    positional = { { argname, help = argname == 'ID' and 'the gateway app id (a string)'
      or argname:lower():gsub('_', ' ') .. ': 32 bytes of hex (0x optional)', required = true } },
    run = function(ctx, opts)
      local value = conv(opts.args[1], argname)
      local to = address(opts[target], '--' .. target)
      local receipt = ctx.send(to, assert(abi.encode_call(sig, { value })))
      return { contract = tx.checksum(to), call = sig:match('^[%w_]+'), value = value, event = event,
        tx = receipt.transactionHash, block = tonumber(receipt.blockNumber:sub(3), 16) }
    end }
end

local function str(v)
  return v
end

verb('deploy', { summary = 'deploy DstackKms (and a DstackApp template as its appImplementation)',
  options = { { '--owner', arg = 'ADDR', help = 'the owner of the contracts (default: the signer)' } },
  run = function(ctx, opts)
    local owner = opts.owner and address(opts.owner, '--owner') or ctx.from
    local art = require('moonstack.eth.artifacts')
    local zero = '0x' .. ('00'):rep(32)
    local ctor_app = assert(abi.encode({ 'address', 'bool', 'bool', 'bool', 'bytes32', 'bytes32' },
      { owner, true, false, false, zero, zero }))
    local r1 = ctx.send(nil, crypto.unhex(art.DstackApp) .. ctor_app)
    local template = r1.contractAddress
    local r2 = ctx.send(nil, crypto.unhex(art.DstackKms) .. assert(abi.encode({ 'address', 'address' },
      { owner, template })))
    return { kms_contract = tx.checksum(r2.contractAddress), app_implementation = tx.checksum(template),
      owner = tx.checksum(owner), chain_id = ctx.chain_id, tx = r2.transactionHash }
  end })

verb('register-app', { summary = 'deploy a DstackApp for an app and register it (deployAndRegisterApp), '
  .. 'or register an existing app contract (--app)',
  options = { KMS_OPT,
    { '--app', arg = 'ADDR', help = 'register this existing app contract instead of deploying one' },
    { '--owner', arg = 'ADDR', help = 'the app contract owner (default: the signer)' },
    { '--compose-hash', arg = 'HEX', help = 'a first allowed compose hash (32 bytes)' },
    { '--device-id', arg = 'HEX', help = 'a first allowed device id (32 bytes)' },
    { '--allow-any-device', help = 'allow the app on any device' },
    { '--require-tcb-up-to-date', help = 'deny boots whose TCB status is not UpToDate' } },
  run = function(ctx, opts)
    local kms = address(opts.kms, '--kms')
    if opts.app then
      local app = address(opts.app, '--app')
      local r = ctx.send(kms, assert(abi.encode_call('registerApp(address)', { app })))
      return { app_id = tx.checksum(app), kms_contract = tx.checksum(kms), tx = r.transactionHash }
    end
    local zero = '0x' .. ('00'):rep(32)
    local ch = opts.compose_hash and hex32(opts.compose_hash, '--compose-hash') or zero
    local dev = opts.device_id and hex32(opts.device_id, '--device-id') or zero
    local owner = opts.owner and address(opts.owner, '--owner') or ctx.from
    local sig = 'deployAndRegisterApp(address,bool,bool,bool,bytes32,bytes32)'
    local r = ctx.send(kms, assert(abi.encode_call(sig,
      { owner, false, opts.require_tcb_up_to_date, opts.allow_any_device, dev, ch })))
    local topic = '0x' .. crypto.hex(crypto.keccak256('AppDeployedViaFactory(address,address)'))
    for _, log in ipairs(r.logs or {}) do
      if type(log.topics) == 'table' and log.topics[1] == topic and type(log.topics[2]) == 'string' then
        return { app_id = tx.checksum('0x' .. log.topics[2]:sub(-40)), kms_contract = tx.checksum(kms),
          owner = tx.checksum(owner), tx = r.transactionHash }
      end
    end
    error('the transaction was mined but emitted no AppDeployedViaFactory event', 0)
  end })

verb('add-compose-hash', setter('app', 'addComposeHash(bytes32)', 'HASH', hex32,
  'allow a compose hash for an app'))
verb('remove-compose-hash', setter('app', 'removeComposeHash(bytes32)', 'HASH', hex32,
  'disallow a compose hash'))
verb('add-device', setter('app', 'addDevice(bytes32)', 'DEVICE_ID', hex32, 'allow an app on a device'))
verb('remove-device', setter('app', 'removeDevice(bytes32)', 'DEVICE_ID', hex32,
  'disallow an app on a device'))
verb('add-kms-device', setter('kms', 'addKmsDevice(bytes32)', 'DEVICE_ID', hex32,
  'allow KMS instances on a device'))
verb('remove-kms-device', setter('kms', 'removeKmsDevice(bytes32)', 'DEVICE_ID', hex32,
  'disallow KMS instances on a device'))
verb('add-os-image', setter('kms', 'addOsImageHash(bytes32)', 'HASH', hex32,
  'allow an OS image (its os_image_hash)'))
verb('remove-os-image', setter('kms', 'removeOsImageHash(bytes32)', 'HASH', hex32, 'disallow an OS image'))
verb('add-kms-mr', setter('kms', 'addKmsAggregatedMr(bytes32)', 'MR', hex32,
  'allow a KMS aggregated measurement (mrAggregated)'))
verb('remove-kms-mr', setter('kms', 'removeKmsAggregatedMr(bytes32)', 'MR', hex32,
  'disallow a KMS aggregated measurement'))
verb('set-gateway-app-id', setter('kms', 'setGatewayAppId(string)', 'ID', str,
  'set the gateway app id handed to allowed apps'))

verb('show', { summary = 'show what the KMS contract holds (no key needed)', readonly = true,
  options = { KMS_OPT }, run = function(ctx, opts)
    local kms = address(opts.kms, '--kms')
    local function get(sig, t)
      local out = assert(ctx.rpc:eth_call(kms, assert(abi.encode_call(sig, {}))))
      return assert(abi.decode({ t }, out))[1]
    end
    return { kms_contract = tx.checksum(kms), chain_id = ctx.chain_id,
      owner = tx.checksum(get('owner()', 'address')),
      gateway_app_id = get('gatewayAppId()', 'string'),
      app_implementation = tx.checksum(get('appImplementation()', 'address')) }
  end })

local function spec_of(name)
  local d = VERBS[name]
  local options = {}
  for _, o in ipairs(d.options or {}) do
    options[#options + 1] = o
  end
  for _, o in ipairs(COMMON) do
    if not (d.readonly and o[1] == '--key-file') then
      options[#options + 1] = o
    end
  end
  return { usage = ('%s %s [OPTIONS]%s'):format(PROG, name, d.positional and ' ' .. d.positional[1][1] or ''),
    summary = d.summary, options = options, positional = d.positional,
    description = d.readonly and nil or ('Signs with the key of --key-file (mode 0600) or $%s; '
      .. 'waits until the transaction is mined and fails if it reverted.'):format(KEY_ENV) }
end

-- The signing key: --key-file (0600 or stricter) or the environment; nil and why.
local function load_key(opts)
  local text
  if opts.key_file then
    local uv = require('luv')
    local st = uv.fs_stat(opts.key_file)
    if not st then
      return nil, ('--key-file %s: no such file'):format(opts.key_file)
    end
    if st.mode % 64 ~= 0 then
      return nil, ('--key-file %s: mode %o lets others read it; chmod 600 it'):format(opts.key_file,
        st.mode % 512)
    end
    local f = io.open(opts.key_file, 'rb')
    text = f and f:read('*a')
    if f then
      f:close()
    end
  else
    text = os.getenv(KEY_ENV)
    if not text or text == '' then
      return nil, ('no signing key: give --key-file FILE (mode 0600) or set $%s'):format(KEY_ENV)
    end
  end
  local key = crypto.unhex(((text or ''):gsub('%s', ''):gsub('^0[xX]', '')), 32)
  if not key then
    return nil, 'the private key must be 32 bytes of hex'
  end
  return key
end

local function print_result(opts, res)
  if opts.json then
    io.stdout:write(require('cjson').encode(res), '\n')
    return
  end
  for _, k in ipairs(require('moonstack.core.tables').sorted_keys(res)) do
    io.stdout:write(('%-19s %s\n'):format(k, tostring(res[k])))
  end
end

local function run_verb(name, argv)
  local prog = PROG .. ' ' .. name
  local opts, code = args.parse_command(prog, spec_of(name), argv)
  if not opts then
    return code
  end
  local timeout = tonumber(opts.timeout or '60')
  if not timeout or timeout <= 0 then
    return args.fail(prog, '--timeout must be a positive number of seconds')
  end
  local url = opts.rpc_url or os.getenv('ETH_RPC_URL') or 'http://127.0.0.1:8545'
  local rpc, rerr = rpc_mod.new(url, { timeout_ms = timeout * 1000 })
  if not rpc then
    return args.fail(prog, rerr:gsub('^EINVAL: rpc_url', '--rpc-url'))
  end
  local key, kerr
  if not VERBS[name].readonly then
    key, kerr = load_key(opts)
    if not key then
      return args.fail(prog, kerr)
    end
  end
  local runtime = require('moonstack.native.runtime')
  task.spawn_named('kms-eth', function()
    local ok, res = pcall(function()
      local ctx = { rpc = rpc, from = key and assert(tx.address(key)) }
      local cid, cerr = rpc:chain_id()
      if not cid then
        error(cerr, 0)
      end
      ctx.chain_id = cid
      ctx.send = function(to, data)
        local r, err = tx.send(rpc, key, { to = to, data = data, timeout_ms = timeout * 1000 })
        if not r then
          error(err, 0)
        end
        return r
      end
      return VERBS[name].run(ctx, opts)
    end)
    if not ok then
      io.stderr:write(prog, ': ', (tostring(res):gsub('^[^%s:]+%.lua:%d+: ', '')), '\n')
      runtime.set_exit_code(1)
      return
    end
    print_result(opts, res)
    runtime.set_exit_code(0)
  end)
  return nil
end

--- The help of `moonstack kms eth`.
local function help()
  local lines = { 'usage: moonstack kms eth COMMAND [OPTIONS] [ARG]', '',
    "The on-chain side of the KMS's `eth` auth backend (DstackKms / DstackApp contracts).", '',
    'commands:' }
  for _, n in ipairs(ORDER) do
    lines[#lines + 1] = ('  %-20s %s'):format(n, VERBS[n].summary)
  end
  lines[#lines + 1] = ''
  lines[#lines + 1] = ("Run '%s COMMAND --help' for details. The signing key: --key-file FILE (0600) or $%s.")
    :format(PROG, KEY_ENV)
  lines[#lines + 1] = ''
  return table.concat(lines, '\n')
end

local M = {}

--- `moonstack kms eth ARGV...`: returns an exit code, or nil when a task sets it later.
function M.run(argv)
  local subs = {}
  for name in pairs(VERBS) do
    subs[name] = function(rest)
      return run_verb(name, rest)
    end
  end
  return args.dispatch(PROG, help(), subs, argv)
end

--- The one-line summary for `moonstack kms --help`.
M.summary = 'deploy and administer the DstackKms / DstackApp contracts (eth auth)'

return M
