-- SPDX-License-Identifier: Apache-2.0
-- The guest API in process (moonstack.agent.simulator + moonstack.agent.api) over real sockets
-- and the real HTTP client: every DstackGuest / Tappd / Worker method answers, protobuf over
-- the socket, the logs route over a real log store (text, bare, base64, timestamps, tail,
-- since), the public_* flags read live from the context, EmitEvent disabled, cache
-- invalidation, and no handle left open after stop.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local client = require('moonstack.http.client')
local fixtures = require('tests.helpers.fixtures')
local loop = require('tests.helpers.loop')
local proto = require('moonstack.core.proto')
local messages = require('moonstack.agent.api.messages')
local simulator = require('moonstack.agent.simulator')
local logs = require('moonstack.agent.runner.logs')
local codec = require('moonstack.core.codec')
local ratls = require('moonstack.x509.ratls')
local x509 = require('moonstack.x509')
local attestation = require('moonstack.tdx.attestation')
local eventlog = require('moonstack.tdx.eventlog')

local APP_ID = '5bb4ff9a3837357f19dc176407a5709c62eb6c56'

local function write(path, text)
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
end

-- Stop a simulator and let the loop turn until the HTTP layer has finished tearing down its
-- lws context: starting new listeners and clients before that aborts in libuv (the old
-- context's deferred destroy closes a new connection's fd under an active poll; see the report
-- of this milestone).
local function stop(s)
  loop.run_task(function() s:stop() end, 10000)
  loop.settle(100)
end

local function start(extra)
  local dir = fixtures.tmpdir('agentapi', true)
  write(dir .. '/compose.json', '{"manifest_version":2,"name":"binding","runner":"bash","bash_script":"true",'
    .. '"public_logs":true,"public_sysinfo":true,"kms_enabled":true}')
  local opts = { keys_file = fixtures.vector('dstack/simulator/appkeys.json'),
    compose_file = dir .. '/compose.json', socket_dir = dir, listen = { host = '127.0.0.1', port = 0 },
    app_id = crypto.unhex(APP_ID) }
  for k, v in pairs(extra or {}) do
    opts[k] = v
  end
  local s = assert(simulator.start(opts))
  return s, dir
end

-- call(s, sock, path, body, opts) in a task: response { status, headers, body }
local function call(dir, sock, path, body, headers)
  return loop.run_task(function()
    return assert(client.request({ unix = dir .. '/' .. sock, path = path, method = 'POST',
      body = body or '{}', headers = headers or { ['content-type'] = 'application/json' } }))
  end, 20000)
end

local function public(s, path)
  return loop.run_task(function()
    return assert(client.request({ url = ('http://127.0.0.1:%d%s'):format(s.api:external_port(), path) }))
  end, 20000)
end

describe('the guest API in process', function()
  local s, dir
  before_each(function()
    s, dir = start()
  end)
  after_each(function()
    stop(s)
  end)

  it('answers every DstackGuest method', function()
    for _, m in ipairs({
      { 'GetTlsKey', '{"subject":"x","usage_ra_tls":true}', 'certificate_chain' },
      { 'GetKey', '{"path":"a"}', 'signature_chain' }, { 'GetQuote', '{"report_data":"01"}', 'quote' },
      { 'Attest', '{"report_data":"01"}', 'attestation' }, { 'Info', '{}', 'tcb_info' },
      { 'Sign', '{"algorithm":"ed25519","data":"00"}', 'public_key' }, { 'Version', '{}', 'rev' },
      { 'GpuInfo', '{}', 'attestation' }, { 'EmitEvent', '{"event":"e","payload":"00"}', nil },
    }) do
      local r = call(dir, 'dstack.sock', '/' .. m[1], m[2])
      assert.are.equal(200, r.status, m[1] .. ': ' .. r.body)
      local v = assert(cjson.decode(r.body))
      if m[3] then
        assert.is_not_nil(v[m[3]], m[1])
      end
    end
    local info = cjson.decode(call(dir, 'dstack.sock', '/Info').body)
    assert.are.equal(APP_ID, info.app_id)
    assert.matches('BEGIN CERTIFICATE', info.app_cert)
    assert.are.equal('binding', info.app_name)
  end)

  it('issues RA-TLS certificates moonstack.x509.ratls accepts', function()
    local r = call(dir, 'dstack.sock', '/GetTlsKey', '{"subject":"ra","alt_names":["ra.example"],'
      .. '"usage_ra_tls":true,"usage_server_auth":true,"with_app_info":true}')
    local chain = cjson.decode(r.body).certificate_chain
    local info = assert(ratls.inspect(chain[1]))
    assert.are.equal('attestation', info.evidence.kind)
    assert.are.equal('app:custom', info.special_usage)
    assert.are.equal(crypto.unhex(APP_ID), info.app_info:sub(4, 23)) -- msgpack: array, bin8 20
    assert.is_true(x509.verify(chain[1], { roots = chain[2], purpose = 'server', hostname = 'ra.example' }))
    -- the embedded attestation decodes and replays to its quote's RTMR3
    local att = assert(attestation.decode(info.evidence.attestation))
    local replayed = assert(eventlog.replay(assert(attestation.events(att))))
    assert.are.equal(crypto.hex(att.quote:sub(521, 568)), replayed[4]) -- TD report RTMR3
  end)

  it('answers every Tappd method and protobuf requests', function()
    for _, m in ipairs({ { 'DeriveKey', '{"path":"p","subject":"s"}' }, { 'DeriveK256Key', '{"path":"p"}' },
        { 'TdxQuote', '{"report_data":"01","hash_algorithm":"sha3-384"}' },
        { 'RawQuote', '{"report_data":"' .. ('00'):rep(64) .. '"}' }, { 'Info', '{}' },
        { 'Version', '{}' } }) do
      local r = call(dir, 'tappd.sock', '/prpc/Tappd.' .. m[1], m[2])
      assert.are.equal(200, r.status, m[1] .. ': ' .. r.body)
    end
    local r = call(dir, 'dstack.sock', '/GetQuote', proto.to_proto(messages.RawQuoteArgs,
      { report_data = 'pb' }), { ['content-type'] = 'application/x-protobuf' })
    assert.are.equal(200, r.status)
    local q = assert(proto.from_proto(messages.GetQuoteResponse, r.body))
    assert.are.equal('pb' .. ('\0'):rep(62), q.report_data)
    assert.are.equal(q.report_data, q.quote:sub(569, 632))
  end)

  it('serves logs from the context\'s store as the flags allow', function()
    local store = assert(logs.new())
    store:append('web', 'stdout', 'one\n\27[31mred\27[0m\n')
    store:append('web', 'stderr', 'oops\n')
    s.ctx.logs = store
    local r = public(s, '/logs/web?text&bare')
    assert.are.equal(200, r.status)
    assert.are.equal('one\nred\noops\n', r.body)
    r = public(s, '/logs/web?text&bare&ansi&tail=2')
    assert.are.equal('\27[31mred\27[0m\noops\n', r.body)
    r = public(s, '/logs/web?tail=1')
    assert.are.equal('{"channel":"stderr","message":"' .. codec.base64('oops\n') .. '"}\n', r.body)
    r = public(s, '/logs/web?text&bare&timestamps&tail=1')
    assert.matches('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ oops\n$', r.body)
    r = public(s, '/logs/web?text&since=' .. (os.time() + 100))
    assert.are.equal('', r.body)
    r = public(s, '/logs/nope')
    assert.matches('^{"error":', r.body)
    r = public(s, '/logs/web?since=yesterday')
    assert.matches('invalid since', r.body)
    assert.matches('/logs/web', public(s, '/').body)
    s.ctx.public.logs = false
    assert.are.equal(404, public(s, '/logs/web').status)
    assert.is_nil(public(s, '/').body:find('/logs/web', 1, true))
    store:close()
  end)

  it('renders the dashboard from ui/agent with every value as text', function()
    s.ctx.app_name = '<script>alert(1)</script>'
    s.api:invalidate()
    s.ctx.logs = { list = function()
      return { { name = '/we"b<i>', status = 'up & <b>running</b>' } }
    end }
    local r = public(s, '/')
    assert.are.equal(200, r.status)
    assert.are.equal('text/html; charset=utf-8', r.headers['content-type'])
    local body = r.body
    assert.is_nil(body:find('<script>', 1, true))
    assert.is_nil(body:find('<i>', 1, true))
    assert.is_nil(body:find('<b>', 1, true))
    assert.truthy(body:find('<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>', 1, true))
    assert.truthy(body:find('<li>we&quot;b&lt;i&gt; (up &amp; &lt;b&gt;running&lt;/b&gt;)', 1, true))
    assert.truthy(body:find('href="/logs/we%22b%3Ci%3E?text', 1, true))
    assert.truthy(body:find('<th>App ID</th><td>' .. APP_ID .. '</td>', 1, true))
    assert.truthy(body:find('<h2>System</h2>', 1, true)) -- public_sysinfo
    assert.truthy(body:find('<h2>TCB info</h2>', 1, true))
    assert.truthy(body:find('<link rel="stylesheet" href="/assets/agent.css">', 1, true))
    r = public(s, '/assets/agent.css')
    assert.are.equal(200, r.status)
    assert.are.equal('text/css; charset=utf-8', r.headers['content-type'])
    s.ctx.public.sysinfo, s.ctx.public.tcbinfo = false, false
    body = public(s, '/').body
    assert.is_nil(body:find('<h2>System</h2>', 1, true))
    assert.is_nil(body:find('TCB info', 1, true))
  end)

  it('hides tcb_info from Worker.Info unless public_tcbinfo', function()
    local r = public(s, '/prpc/Worker.Info')
    assert.matches('rtmr3', cjson.decode(r.body).tcb_info)
    s.ctx.public.tcbinfo = false
    r = public(s, '/prpc/Worker.Info')
    assert.are.equal('', cjson.decode(r.body).tcb_info)
    assert.are.equal('', cjson.decode(r.body).vm_config)
  end)

  it('forgets cached answers on invalidate()', function()
    local before = call(dir, 'dstack.sock', '/GetKey', '{"path":"c"}').body
    s.ctx.keys.k256_key = crypto.sha256('another app key')
    assert.are.equal(before, call(dir, 'dstack.sock', '/GetKey', '{"path":"c"}').body)
    s.api:invalidate()
    assert.are_not.equal(before, call(dir, 'dstack.sock', '/GetKey', '{"path":"c"}').body)
  end)
end)

describe('the guest API options', function()
  it('refuses EmitEvent when disabled (dstack 0.6 behaviour)', function()
    local s, dir = start({ emit_event = false })
    local r = call(dir, 'dstack.sock', '/EmitEvent', '{"event":"x","payload":""}')
    assert.are.equal(400, r.status)
    assert.matches('EmitEvent is disabled', r.body)
    stop(s)
  end)

  it('leaves no socket and no handle behind', function()
    local before = loop.live_handles()
    local s, dir = start()
    call(dir, 'dstack.sock', '/GetQuote', '{}')
    stop(s)
    loop.run_until(function() return loop.live_handles() <= before end, 3000)
    assert.are.equal(before, loop.live_handles())
    assert.is_nil(io.open(dir .. '/dstack.sock'))
    assert.is_nil(io.open(dir .. '/tappd.sock'))
  end)
end)
