-- SPDX-License-Identifier: Apache-2.0
-- `moonstack ct-monitor --gateway BASE[:PORT]` (kms-vmm-gateway.md §6.10): fetch the gateway's
-- transparency evidence (https://gateway.BASE[:PORT]/.dstack/acme-info), verify each quoted
-- certificate key's quote (in process with moonstack.verifier — a simulated platform trusted
-- only with --simulator DIR — or POST to a verifier service's /verify with --verifier-url),
-- require report_data == SHA-512("zt-cert:" || SPKI), then check that the certificate the
-- gateway serves carries a verified key; optionally, every certificate a CT-log source lists
-- for BASE (--ct-log URL: a crt.sh-compatible API; crt.sh itself by default is not assumed
-- reachable, so there is no default). Exit 0 all verified, 1 a mismatch (named), 2 usage or
-- the evidence cannot be fetched. Without --once it checks every --interval seconds.
local acme_info = require('moonstack.gateway.acme_info')
local args = require('moonstack.core.args')
local client = require('moonstack.http.client')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')
local json = require('moonstack.core.json')
local runtime = require('moonstack.native.runtime')
local task = require('moonstack.core.task')
local verifier = require('moonstack.verifier')
local x509 = require('moonstack.x509')

local PROG = 'moonstack ct-monitor'

local spec = {
  usage = 'moonstack ct-monitor --gateway BASE[:PORT] [--verifier-url URL] [--simulator DIR] '
    .. '[--ca FILE] [--address IP] [--ct-log URL] [--once] [--interval SECONDS]',
  summary = "check a gateway's ACME transparency evidence (quotes over its certificate keys)",
  description = table.concat({
    'Fetches https://gateway.BASE[:PORT]/.dstack/acme-info (env GATEWAY for --gateway), verifies',
    'every quoted key: the quote verifies and its report_data is SHA-512("zt-cert:" || SPKI);',
    'the account quote likewise over SHA-512("acme-account:" || account URI). Then the',
    'certificate the gateway serves (TLS to gateway.BASE) must carry a verified key, and with',
    '--ct-log every certificate that CT source lists for BASE too.',
    '',
    'Verification: in process (moonstack.verifier; Intel roots; --simulator DIR trusts that',
    'simulated platform, as moonstack verify does), or --verifier-url URL (env VERIFIER_URL):',
    'POST {quote, event_log, vm_config} to URL/verify, is_valid and details.report_data checked.',
    '',
    'Exit status: 0 everything verified; 1 a key, quote or served certificate does not verify',
    '(each named on stderr); 2 usage error or the evidence could not be fetched.',
  }, '\n'),
  options = {
    { '--gateway', arg = 'BASE[:PORT]', help = 'the base domain (and port) of the gateway' },
    { '--verifier-url', arg = 'URL', help = 'a verifier service (dstack-verifier API)' },
    { '--simulator', arg = 'DIR', help = 'trust the simulated TDX platform in DIR (tests)' },
    { '--ca', arg = 'FILE', help = "PEM roots for the gateway's TLS (default: the system's)" },
    { '--address', arg = 'IP', help = 'connect to IP instead of resolving gateway.BASE' },
    { '--ct-log', arg = 'URL', help = 'a crt.sh-compatible CT search API (optional)' },
    { '--once', help = 'check once and exit' },
    { '--interval', arg = 'SECONDS', help = 'seconds between checks (default 60)', default = '60' },
  },
}

local function say(...)
  io.stderr:write(PROG, ': ', ...)
  io.stderr:write('\n')
end

-- The request options reaching https://gateway.BASE:PORT/path (TLS named gateway.BASE).
local function target(o, path, verify)
  local name = 'gateway.' .. o.base
  local url = ('https://%s:%d%s'):format(o.address or name, o.port, path)
  return { url = url, host = o.address and name or nil, method = 'GET', timeout_ms = 15000,
    max_response = 8 * 1024 * 1024, tls = { ca = o.ca, verify = verify } }
end

-- Verify one GetQuoteResponse JSON text over the expected report_data. True or nil, reason.
local function verify_quote(o, quote_json, rd)
  local q = json.decode(quote_json or '')
  if type(q) ~= 'table' or type(q.quote) ~= 'string' then
    return nil, 'no quote'
  end
  local qbytes = crypto.unhex(q.quote)
  if not qbytes then
    return nil, 'the quote is not hex'
  end
  local event_log = type(q.event_log) == 'string' and q.event_log or '[]'
  local vm_config = type(q.vm_config) == 'string' and q.vm_config or ''
  if o.verifier_url then
    local r, err = client.post_json(o.verifier_url:gsub('/$', '') .. '/verify',
      { quote = q.quote, event_log = event_log, vm_config = vm_config }, { timeout_ms = 30000 })
    if not r then
      return nil, 'verifier: ' .. tostring(err)
    end
    if r.is_valid ~= true then
      return nil, 'the verifier says not valid: ' .. tostring(r.reason)
    end
    local got = type(r.details) == 'table' and r.details.report_data
    if type(got) ~= 'string' or got:lower() ~= crypto.hex(rd) then
      return nil, 'report_data does not match the key'
    end
    return true
  end
  local res, err = o.verifier:check_quote(qbytes, event_log, { report_data = rd,
    vm_config = vm_config ~= '' and vm_config or nil })
  if not res then
    return nil, tostring(err)
  end
  return true
end

-- One check. Returns the number of problems, or nil, msg (the evidence not fetched).
local function check(o)
  local served
  local resp, err = client.request(target(o, '/.dstack/acme-info', function(peer)
    served = peer.der
    return peer.preverify, peer.error
  end))
  if not resp then
    return nil, 'fetching acme-info: ' .. tostring(err)
  end
  local info = resp.status == 200 and json.decode(resp.body)
  if type(info) ~= 'table' or type(info.quoted_hist_keys) ~= 'table' then
    return nil, ('acme-info: HTTP %d, not the evidence'):format(resp.status)
  end
  local bad, verified, n = 0, {}, 0
  for i, k in ipairs(info.quoted_hist_keys) do
    local pk = type(k) == 'table' and type(k.public_key) == 'string' and crypto.unhex(k.public_key)
    if not pk then
      say(('key %d: no public key'):format(i))
      bad = bad + 1
    else
      local ok, why = verify_quote(o, k.quote, acme_info.cert_report_data(pk))
      if ok then
        verified[pk] = true
        n = n + 1
      else
        say(('key %d (%s...): NOT VERIFIED: %s'):format(i, crypto.hex(crypto.sha256(pk)):sub(1, 16), why))
        bad = bad + 1
      end
    end
  end
  if type(info.account_uri) == 'string' and info.account_uri ~= '' then
    local ok, why = verify_quote(o, info.account_quote,
      acme_info.account_report_data(info.account_uri))
    if not ok then
      say('account ', info.account_uri, ': NOT VERIFIED: ', why)
      bad = bad + 1
    end
  end
  local leaf = served and x509.cert(served)
  if not leaf then
    say('the served certificate could not be read')
    bad = bad + 1
  elseif not verified[leaf:spki()] then
    local inf = leaf:info()
    say(('the served certificate (serial %s) carries a key without verified evidence'):format(
      tostring(inf.serial)))
    bad = bad + 1
  end
  if o.ct_log then
    bad = bad + o.ct_check(verified)
  end
  io.stdout:write(('%s: %d key(s) verified, served certificate %s, %d problem(s)\n'):format(
    o.base, n, leaf and verified[leaf:spki()] and 'verified' or 'NOT verified', bad))
  io.stdout:flush()
  return bad
end

-- The CT-log source (crt.sh's API shape): every certificate listed for the base domain after
-- the last id seen must carry a verified key. Returns the problems found.
local function ct_checker(o)
  local last = 0
  return function(verified)
    local base = o.ct_log:gsub('/$', '')
    local resp, err = client.request({ url = base .. '/', query = { q = o.base, output = 'json' },
      timeout_ms = 30000, max_response = 16 * 1024 * 1024 })
    local list = resp and resp.status == 200 and json.decode(resp.body)
    if type(list) ~= 'table' then
      say('ct-log: ', tostring(err or (resp and ('HTTP ' .. resp.status))))
      return 1
    end
    local bad, newest = 0, last
    for _, e in ipairs(list) do
      local id = type(e) == 'table' and tonumber(e.id)
      if id and id > last then
        newest = math.max(newest, id)
        local r = client.request({ url = base .. '/', query = { d = tostring(id) }, timeout_ms = 30000 })
        local c = r and r.status == 200 and x509.cert(r.body)
        if not c or not verified[c:spki()] then
          say(('ct-log entry %d: a certificate without verified evidence'):format(id))
          bad = bad + 1
        end
      end
    end
    last = newest
    return bad
  end
end

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  local gateway = opts.gateway or os.getenv('GATEWAY')
  if not gateway then
    say('--gateway BASE[:PORT] is required (or env GATEWAY)')
    return 2
  end
  local base, port = gateway:match('^([%w][%w%.%-]*):(%d+)$')
  base = base or gateway:match('^[%w][%w%.%-]*$')
  local interval = tonumber(opts.interval)
  if not base or (port and (tonumber(port) < 1 or tonumber(port) > 65535)) or not interval or
      interval <= 0 then
    say('--gateway must be BASE[:PORT] and --interval a positive number')
    return 2
  end
  local o = { base = base, port = tonumber(port) or 443, address = opts.address,
    verifier_url = opts.verifier_url or os.getenv('VERIFIER_URL'), ct_log = opts.ct_log }
  if opts.ca then
    local err
    o.ca, err = fs.read_file(opts.ca, 1024 * 1024)
    if not o.ca then
      say('--ca: ', tostring(err))
      return 2
    end
  end
  if not o.verifier_url then
    local vopts = {}
    if opts.simulator then
      local ok, err = require('moonstack.sim').trust(vopts, opts.simulator)
      if not ok then
        say('--simulator: ', tostring(err))
        return 2
      end
      local p = {}
      for k, v in pairs(verifier.DEFAULT_POLICY) do
        p[k] = v
      end
      p.allow_simulator = true
      vopts.policy = p
    end
    local v, err = verifier.new(vopts)
    if not v then
      say(tostring(err))
      return 2
    end
    o.verifier = v
  end
  if o.ct_log then
    o.ct_check = ct_checker(o)
  end
  task.spawn_named('ct-monitor', function()
    while true do
      local bad, err = check(o)
      if not bad then
        say(err)
        if opts.once then
          runtime.set_exit_code(2)
          return
        end
      elseif opts.once then
        runtime.set_exit_code(bad == 0 and 0 or 1)
        return
      end
      task.sleep(math.floor(interval * 1000))
    end
  end)
  return nil
end

return { name = 'ct-monitor', summary = spec.summary, run = run }
