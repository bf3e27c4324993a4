-- SPDX-License-Identifier: Apache-2.0
-- `moonstack atls serve | fetch | proxy`: attested TLS bound to the session, Atlas's protocol
-- (moonstack.atls). serve: the TLS front of a CVM (quotes over SHA-512(nonce || exporter),
-- the certificate event, relay to the upstream); fetch: attest a server under a policy and
-- fetch a URL on the same connection; proxy: the WebSocket -> TCP bridge for browser clients.
local args = require('moonstack.core.args')
local fs = require('moonstack.core.fs')
local runtime = require('moonstack.native.runtime')
local task = require('moonstack.core.task')

local PROG = 'moonstack atls'

local serve_spec = {
  usage = 'moonstack atls serve --listen HOST:PORT --upstream HOST:PORT [--cert FILE --key FILE] '
    .. '[--agent SOCKET | --simulator DIR] [--name DNS]',
  summary = 'the attested TLS front of a CVM (Atlas /tdx_quote, relay to the upstream)',
  description = table.concat({
    'Terminates TLS on --listen. POST /tdx_quote {"nonce_hex"} is answered with {"quote":',
    '{quote, event_log, report_data, vm_config}} whose report_data = SHA-512(nonce ||',
    'the TLS exporter "EXPORTER-Channel-Binding", 32 bytes, of that connection); anything',
    'else switches the connection to a byte relay to --upstream (HTTP or raw TCP).',
    'At start SHA-256(certificate) is recorded as the RTMR3 event "New TLS Certificate".',
    'Quotes come from the guest agent (--agent, default /var/run/dstack.sock) or a simulated',
    'TDX platform (--simulator DIR, development). Without --cert/--key a P-256 key and a',
    'self-signed certificate for --name (default localhost) are made at start (in memory).',
  }, '\n'),
  options = {
    { '--listen', arg = 'HOST:PORT', help = 'where to accept TLS' },
    { '--upstream', arg = 'HOST:PORT', help = 'the application behind the front' },
    { '--cert', arg = 'FILE', help = 'certificate chain (PEM, leaf first)' },
    { '--key', arg = 'FILE', help = 'its private key (PEM)' },
    { '--name', arg = 'DNS', help = 'the name of a generated certificate', default = 'localhost' },
    { '--agent', arg = 'SOCKET', help = 'the guest agent socket (dstack.sock)' },
    { '--simulator', arg = 'DIR', help = 'a simulated TDX platform (development, tests)' },
  },
}

local fetch_spec = {
  usage = 'moonstack atls fetch URL --policy FILE [--ca FILE] [--simulator DIR] [--pccs URL] '
    .. '[--collateral FILE] [--connect HOST:PORT] [--method M] [--data TEXT] [--report]',
  summary = 'attest a server (Atlas protocol, a policy) and fetch URL on the same connection',
  description = table.concat({
    'Handshake with the server of URL (https://HOST[:PORT]/PATH; certificate checked against',
    '--ca or the system roots), POST /tdx_quote with a fresh nonce, verify the quote and its',
    'event log under --policy (Atlas JSON, grace_period included, or a moonstack policy),',
    'check report_data = SHA-512(nonce || exporter of this session) and that the event log',
    'binds the served certificate; then request PATH and print the body.',
    '--simulator DIR trusts that simulated platform (root CA, collateral; allow_simulator).',
    'Exit status: 0 fetched, 1 refused (the reason on stderr), 2 usage or I/O error.',
  }, '\n'),
  positional = { { 'URL', help = 'https://HOST[:PORT]/PATH', required = true } },
  options = {
    { '--policy', arg = 'FILE', help = 'the verification policy (required)' },
    { '--ca', arg = 'FILE', help = "PEM roots for the server's certificate" },
    { '--simulator', arg = 'DIR', help = 'trust the simulated TDX platform in DIR' },
    { '--pccs', arg = 'URL', help = "collateral source (else the policy's pccs_url)" },
    { '--collateral', arg = 'FILE', help = 'collateral JSON (fixed)' },
    { '--connect', arg = 'HOST:PORT', help = 'connect here instead of the URL host' },
    { '--method', arg = 'M', help = 'HTTP method', default = 'GET' },
    { '--data', arg = 'TEXT', help = 'request body' },
    { '--report', help = 'print the attestation summary to stderr' },
  },
}

local HELP = table.concat({
  'usage: moonstack atls COMMAND [ARGS...]',
  '',
  "Attested TLS bound to the session (Atlas's protocol).",
  '',
  'commands:',
  '  serve    ' .. serve_spec.summary,
  '  fetch    ' .. fetch_spec.summary,
  '  proxy    ' .. require('moonstack.commands.atls_proxy').summary,
  '',
  "Run 'moonstack atls COMMAND --help' for details.",
  '',
}, '\n')

local function say(prog, ...)
  io.stderr:write(prog, ': ', ...)
  io.stderr:write('\n')
end

local function hostport(s)
  local host, port = (s or ''):match('^%[?([^%]]+)%]?:(%d+)$')
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil
  end
  return { host = host, port = port }
end

-- The certificate and key PEM: from files, or made now for `name`.
local function identity(opts)
  if opts.cert or opts.key then
    if not (opts.cert and opts.key) then
      return nil, '--cert and --key go together'
    end
    local cert, err = fs.read_file(opts.cert, 1024 * 1024)
    if not cert then
      return nil, '--cert: ' .. tostring(err)
    end
    local key
    key, err = fs.read_file(opts.key, 64 * 1024)
    if not key then
      return nil, '--key: ' .. tostring(err)
    end
    return cert, key
  end
  local x509 = require('moonstack.x509')
  local key = x509.generate_key()
  local cert, err = x509.issue({ subject = opts.name, sans = { opts.name }, key = key, days = 365,
    eku = { 'server_auth' }, not_before = os.time() - 3600 })
  if not cert then
    return nil, 'generating a certificate: ' .. tostring(err)
  end
  return cert:pem(), key:pkcs8_pem()
end

local function serve(argv)
  local prog = PROG .. ' serve'
  local opts, code = args.parse_command(prog, serve_spec, argv)
  if not opts then
    return code
  end
  local listen, upstream = hostport(opts.listen), hostport(opts.upstream)
  if not listen or not upstream then
    say(prog, '--listen and --upstream HOST:PORT are required')
    return 2
  end
  if opts.agent and opts.simulator then
    say(prog, '--agent and --simulator exclude each other')
    return 2
  end
  local cert, key = identity(opts)
  if not cert then
    say(prog, key)
    return 2
  end
  local source, err = require('moonstack.gateway.acme_info').source(opts.simulator and
    { sim = opts.simulator, cvm = 'atls' } or { agent = opts.agent or '/var/run/dstack.sock' })
  if not source then
    say(prog, tostring(err))
    return 2
  end
  task.spawn_named('atls-serve', function()
    local srv, serr = require('moonstack.atls.server').start({ listen = listen,
      upstream = upstream, cert = cert, key = key, source = source })
    if not srv then
      say(prog, tostring(serr))
      runtime.set_exit_code(1)
      return runtime.stop and runtime.stop()
    end
    io.stdout:write(('atls: serving on %s:%d, upstream %s:%d, certificate sha256 %s\n'):format(
      listen.host, srv.port, upstream.host, upstream.port, srv.cert_hash))
    io.stdout:flush()
  end)
  return nil
end

local function fetch(argv)
  local prog = PROG .. ' fetch'
  local opts, code = args.parse_command(prog, fetch_spec, argv)
  if not opts then
    return code
  end
  local host, port, path = opts.args[1]:match('^https://([^/:]+):?(%d*)(/?.*)$')
  if not host or not opts.policy then
    say(prog, 'URL must be https://HOST[:PORT]/PATH and --policy FILE is required')
    return 2
  end
  port = tonumber(port) or 443
  path = path ~= '' and path or '/'
  local policy, err = require('moonstack.verifier.rules').load(opts.policy)
  if not policy then
    say(prog, '--policy: ', tostring(err))
    return 2
  end
  local vopts = {}
  if opts.simulator then
    local ok, terr = require('moonstack.sim').trust(vopts, opts.simulator)
    if not ok then
      say(prog, '--simulator: ', tostring(terr))
      return 2
    end
    policy.allow_simulator = true
  elseif opts.collateral then
    vopts.collateral, err = fs.read_file(opts.collateral, 16 * 1024 * 1024)
    if not vopts.collateral then
      say(prog, '--collateral: ', tostring(err))
      return 2
    end
  elseif opts.pccs then
    vopts.pccs = opts.pccs
  end
  local ca
  if opts.ca then
    ca, err = fs.read_file(opts.ca, 1024 * 1024)
    if not ca then
      say(prog, '--ca: ', tostring(err))
      return 2
    end
  end
  local at = opts.connect and hostport(opts.connect) or { host = host, port = port }
  task.spawn_named('atls-fetch', function()
    local atls = require('moonstack.atls.client')
    local a, cerr, ccode = atls.connect({ host = at.host, port = at.port, server_name = host,
      ca = ca, policy = policy, verifier = vopts })
    if not a then
      say(prog, 'REFUSED: ', tostring(cerr))
      runtime.set_exit_code((ccode == 'ECONNREFUSED' or ccode == 'EHOSTUNREACH') and 2 or 1)
      return
    end
    if opts.report then
      local r = a.report
      say(prog, ('attested: status %s, simulated %s, report_data bound to this session, '
        .. 'certificate event matches'):format(tostring(r.status), tostring(r.simulated)))
    end
    local resp, rerr = a:request({ method = opts.method, path = path, body = opts.data })
    a:close()
    if not resp then
      say(prog, tostring(rerr))
      runtime.set_exit_code(2)
      return
    end
    io.stdout:write(resp.body)
    io.stdout:flush()
    runtime.set_exit_code(resp.status < 400 and 0 or 1)
  end)
  return nil
end

local function run(argv)
  return args.dispatch(PROG, HELP, { serve = serve, fetch = fetch,
    proxy = require('moonstack.commands.atls_proxy').run }, argv)
end

return { name = 'atls', summary = "attested TLS bound to the session (Atlas's protocol)",
  run = run }
