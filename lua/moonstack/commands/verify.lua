-- SPDX-License-Identifier: Apache-2.0
-- `moonstack verify --quote FILE ...`: DCAP-verify a TDX/SGX quote against collateral (a file
-- or a PCCS), then check a policy and an event log (moonstack.verifier). Exit 0 verified and
-- policy ok, 1 verified but policy violated, 2 not verified (signature, chain, CRL, expired
-- collateral, TCB, malformed input, a simulated quote the policy does not allow) or a usage
-- error. The verdict comes from verifier:check_quote; the output is its verification record
-- (moonstack.verifier.summary).
local args = require('moonstack.core.args')
local eventlog = require('moonstack.tdx.eventlog')
local json = require('moonstack.core.json')
local policy_mod = require('moonstack.verifier.rules')
local quote = require('moonstack.tdx.quote')
local runtime = require('moonstack.native.runtime')
local task = require('moonstack.core.task')
local verifier = require('moonstack.verifier')

local PROG = 'moonstack verify'
-- The latest --at: 9999-12-31T23:59:59Z, the last instant certificates can name (RFC 5280
-- GeneralizedTime); past it the verification time is out of the verifier's range.
local MAX_AT = 253402300799

local spec = {
  usage = 'moonstack verify --quote FILE [--collateral FILE | --pccs URL | --simulator DIR] '
    .. '[--root-ca FILE] [--event-log FILE] [--policy FILE] [--at UNIX_SECONDS] [--json]',
  summary = 'verify a TDX/SGX quote (DCAP), its event log and a policy',
  description = table.concat({
    'The quote file holds binary or hex text (0x optional, whitespace allowed). Collateral',
    'comes from --collateral (the QuoteCollateralV3 JSON of dcap-qvl), or is fetched from',
    "--pccs (or the policy's pccs_url) with an optional on-disk cache (--cache-dir, or the",
    "default cache when the policy sets cache_collateral). The policy (JSON as Atlas writes it,",
    'or a Lua file) defaults to platform checks only: TCB status UpToDate.',
    '',
    'Simulated quotes: only the Intel SGX Root CA is trusted unless --root-ca names the',
    'simulator root; a quote chaining to it is accepted only if the policy also sets',
    'allow_simulator = true (otherwise: not verified, exit 2). --simulator DIR (a simulated',
    "platform's state directory: moonstack sim init, agent.lua tee.dir, <socket-dir>/",
    '.moonstack-agent/sim) takes that root and fresh collateral from the platform itself and',
    'implies allow_simulator; the quote is still reported as simulated.',
    '',
    'Exit status: 0 verified and policy ok; 1 verified but the policy is violated; 2 not',
    'verified (with the reason), or a usage error.',
  }, '\n'),
  options = {
    { '--quote', arg = 'FILE', help = 'the quote (binary or hex text; "-" for standard input)',
      required = true },
    { '--collateral', arg = 'FILE', help = 'collateral JSON (QuoteCollateralV3)' },
    { '--pccs', arg = 'URL', help = 'PCCS / Intel PCS v4 base URL to fetch collateral from' },
    { '--cache-dir', arg = 'DIR', help = 'cache fetched collateral in DIR (0600 files)' },
    { '--root-ca', arg = 'FILE', help = 'trust this simulator root CA (PEM or DER)' },
    { '--simulator', arg = 'DIR', help = "a simulated platform: its root CA and collateral, "
      .. 'allow_simulator implied' },
    { '--event-log', arg = 'FILE', help = 'TdxEvent JSON (array, or an object with event_log), '
      .. 'or a CCEL binary' },
    { '--vm-config', arg = 'FILE', help = 'vm_config JSON, for app_info.os_image_hash' },
    { '--policy', arg = 'FILE', help = 'policy file (JSON or Lua)' },
    { '--at', arg = 'UNIX_SECONDS', help = 'verification time (default: now)' },
    { '--json', help = 'print the result as one JSON object' },
  },
}

local function read(path)
  local f, err = io.open(path, 'rb')
  if not f then
    return nil, tostring(err)
  end
  local data = f:read('*a')
  f:close()
  return data
end

-- The event log of a file: TdxEvent JSON, or a CCEL (binary TCG log).
local function read_event_log(path)
  local data, err = read(path)
  if not data then
    return nil, 'EIO: ' .. err, 'EIO'
  end
  if data:match('^%s*[%[{]') then
    return eventlog.from_json(data)
  end
  return eventlog.from_ccel(data)
end

local function default_cache_dir()
  local base = os.getenv('XDG_CACHE_HOME')
  if not base or base == '' then
    base = (os.getenv('HOME') or '/tmp') .. '/.cache'
  end
  return base .. '/moonstack/collateral'
end

-- Trust the simulated platform in `dir`: its root CA and its collateral (valid at `at`, else
-- now) into `vopts`, and a policy that allows simulated quotes. Returns an error message or nil.
local function simulator_trust(vopts, dir, at)
  local ok, err = require('moonstack.sim').trust(vopts, dir, at)
  if not ok then
    return ('%s: %s'):format(dir, err)
  end
  local p = {}
  for k, v in pairs(vopts.policy or verifier.DEFAULT_POLICY) do
    p[k] = v
  end
  p.allow_simulator = true
  vopts.policy = p
  return nil
end

local function print_text(out, s)
  local function w(k, v)
    if v ~= nil and v ~= json.null then
      out:write(('%-16s %s\n'):format(k, tostring(v)))
    end
  end
  w('verified', s.verified and 'yes' or 'no')
  for _, k in ipairs({ 'status', 'tee_type', 'quote_version', 'simulated', 'fmspc', 'tcb_date',
    'mrtd', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3', 'mr_enclave', 'mr_signer', 'report_data' }) do
    w(k, s[k])
  end
  w('advisory_ids', #s.advisory_ids > 0 and table.concat(s.advisory_ids, ', ') or '(none)')
  if s.event_log.given then
    w('event_log', s.event_log.verified and 'verified' or 'rejected')
  end
  if s.app_info then
    for _, k in ipairs({ 'app_id', 'compose_hash', 'instance_id', 'os_image_hash' }) do
      w('app.' .. k, s.app_info[k])
    end
  end
  if s.verified then
    w('policy', s.policy.ok and 'ok' or 'violated')
  end
  for _, v in ipairs(s.policy.violations) do
    out:write(('  - %s: %s\n'):format(v.field, v.reason))
  end
end

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  local function usage(msg)
    io.stderr:write(PROG, ': ', msg, '\n')
    return 2
  end
  if opts.collateral and opts.pccs then
    return usage('give --collateral or --pccs, not both')
  end
  if opts.simulator and (opts.collateral or opts.pccs or opts.root_ca) then
    return usage("--simulator takes the platform's root CA and collateral: give none of "
      .. '--collateral, --pccs, --root-ca with it')
  end
  local at
  if opts.at then
    at = tonumber(opts.at)
    if not at or at < 0 or at ~= math.floor(at) or not opts.at:match('^%d+$') or at > MAX_AT then
      return usage(("--at must be unix seconds up to %d (9999-12-31), got '%s'"):format(MAX_AT,
        opts.at))
    end
  end
  local policy, err
  if opts.policy then
    policy, err = policy_mod.load(opts.policy)
    if not policy then
      return usage(err)
    end
  end
  local qbytes, qerr, qcode
  if opts.quote == '-' then
    qbytes, qerr, qcode = quote.decode_input(io.stdin:read('*a') or '')
  else
    qbytes, qerr, qcode = quote.read_file(opts.quote)
  end
  local vopts = { policy = policy, pccs = opts.pccs, cache_dir = opts.cache_dir }
  if opts.collateral then
    vopts.collateral, err = read(opts.collateral)
    if not vopts.collateral then
      return usage('--collateral: ' .. err)
    end
  end
  if not vopts.cache_dir and policy and policy.cache_collateral then
    vopts.cache_dir = default_cache_dir()
  end
  if opts.root_ca then
    vopts.root_ca, err = read(opts.root_ca)
    if not vopts.root_ca then
      return usage('--root-ca: ' .. err)
    end
  end
  if opts.simulator then
    err = simulator_trust(vopts, opts.simulator, at)
    if err then
      return usage('--simulator ' .. err)
    end
  end
  local events, vm_config
  if opts.event_log then
    events, err = read_event_log(opts.event_log)
    if not events then
      return usage(('--event-log %s: %s'):format(opts.event_log, err))
    end
  end
  if opts.vm_config then
    vm_config, err = read(opts.vm_config)
    if not vm_config then
      return usage('--vm-config: ' .. err)
    end
  end
  local v, verr = verifier.new(vopts)
  if not v then
    return usage(verr)
  end

  local function finish(result)
    local s = verifier.summary(result)
    if opts.json then
      io.stdout:write(json.encode(s), '\n')
    else
      print_text(io.stdout, s)
    end
    if result.error then
      io.stderr:write(('%s: %s: not verified: %s\n'):format(PROG, opts.quote, result.error))
    end
    return result.exit_code
  end

  if not qbytes then
    return finish({ verified = false, exit_code = 2, error = qerr, code = qcode,
      policy = { ok = false, violations = json.array() }, event_log = { given = false } })
  end
  task.spawn_named('verify', function()
    -- the verdict of the API; the CLI prints its verification record (not a relying party's
    -- extra requirements: an event log is optional here)
    local ok, res, _, _, detail = pcall(v.check_quote, v, qbytes, events,
      { now = at, vm_config = vm_config })
    if not ok then
      io.stderr:write(PROG, ': internal error: ', tostring(res), '\n')
      runtime.set_exit_code(2)
      return
    end
    runtime.set_exit_code(finish((res or detail).verification))
  end)
  return nil
end

return { name = 'verify', summary = spec.summary, run = run }
