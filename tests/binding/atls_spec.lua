-- SPDX-License-Identifier: Apache-2.0
-- moonstack.atls: the binding computation (report_data = SHA-512(nonce || exporter), with a
-- value computed outside moonstack), the RFC 9266 exporter of the native TLS engine (both ends
-- agree, it differs per session and per label, and it equals what `openssl s_client
-- -keymatexport` derives on the same session), the strict /tdx_quote request and answer
-- parsers, the certificate event, Atlas's policy JSON (grace_period) through the verifier's
-- parser, and the proxy's allowlist.
local uv = require('luv')
local loop = require('loop')
local binding = require('moonstack.atls.binding')
local conn_mod = require('moonstack.atls.conn')
local crypto = require('moonstack.crypto')
local json = require('moonstack.core.json')
local proxy = require('moonstack.atls.proxy')
local rules = require('moonstack.verifier.rules')
local tls = require('moonstack.native.tls')
local x509 = require('moonstack.x509')

local function identity()
  local key = x509.generate_key()
  local cert = assert(x509.issue({ subject = 'localhost', sans = { 'localhost' }, key = key }))
  return cert, key
end

-- Pump two engines in memory until both handshakes finish.
local function handshake(server, client)
  for _ = 1, 20 do
    local c_ok = client:handshake()
    server:feed(client:take())
    local s_ok = server:handshake()
    client:feed(server:take())
    if c_ok and s_ok and client:handshake() then
      return true
    end
  end
  return false
end

describe('atls.binding', function()
  it('report_data is SHA-512(nonce || exporter) (value from Python hashlib)', function()
    local rd = binding.report_data(('\1'):rep(32), ('\2'):rep(32))
    assert.equal('fc921a960a9867283a6958fbef4e5d89123dd3d28773ef73339d0a41b2796b37'
      .. 'bc3fdb8ee4bf1112bcd22c4cb883909d0c3d1e68184629c272f0545b55444d00', crypto.hex(rd))
    assert.equal(64, #rd)
  end)

  it("uses Atlas's constants", function()
    assert.equal('EXPORTER-Channel-Binding', binding.EXPORTER_LABEL)
    assert.equal(32, binding.EXPORTER_LEN)
    assert.equal('/tdx_quote', binding.QUOTE_PATH)
    assert.equal('New TLS Certificate', binding.CERT_EVENT)
  end)

  it('parses /tdx_quote requests strictly', function()
    local nonce = ('\171'):rep(32)
    assert.equal(nonce, binding.parse_request(binding.request_body(nonce)))
    assert.equal('{"nonce_hex":"' .. ('ab'):rep(32) .. '"}', binding.request_body(nonce))
    for _, bad in ipairs({ '', '[]', '{}', '{"nonce_hex":1}', '{"nonce_hex":"abcd"}',
      '{"nonce_hex":"' .. ('zz'):rep(32) .. '"}', '{"nonce_hex":"' .. ('ab'):rep(33) .. '"}',
      '{"nonce_hex":"' .. ('ab'):rep(32) .. '","pad":"' .. ('x'):rep(5000) .. '"}' }) do
      local v, err, code = binding.parse_request(bad)
      assert.is_nil(v, bad)
      assert.equal('EINVAL', code)
      assert.matches('^EINVAL: ', err)
    end
  end)

  it('parses answers and refuses other shapes', function()
    local q = ('\4'):rep(100)
    local a = assert(binding.parse_response(binding.response_body(json.encode({
      quote = crypto.hex(q), event_log = '[]', report_data = ('00'):rep(64), vm_config = '{}' }))))
    assert.equal(q, a.quote)
    assert.equal('[]', a.event_log)
    assert.equal(('\0'):rep(64), a.report_data)
    for _, bad in ipairs({ 'x', '{}', '{"quote":"ab"}', '{"quote":{"quote":"zz","event_log":"[]"}}',
      '{"quote":{"quote":"' .. crypto.hex(q) .. '"}}', '{"quote":{"quote":"abcd","event_log":"[]"}}' }) do
      local v, err, code = binding.parse_response(bad)
      assert.is_nil(v, bad)
      assert.equal('EQUOTE', code, err)
    end
  end)

  it('takes the last certificate event, hex-decoding its payload', function()
    local h1, h2 = ('a'):rep(64), ('b'):rep(64)
    local events = {
      { event = 'New TLS Certificate', event_payload = crypto.hex(h1) },
      { event = 'compose-hash', event_payload = 'cd' },
      { event = 'New TLS Certificate', event_payload = crypto.hex(h2) },
    }
    assert.equal(h2, binding.logged_cert_hash(events))
    assert.is_nil(binding.logged_cert_hash({ { event = 'compose-hash', event_payload = '' } }))
    assert.equal('', binding.logged_cert_hash({ { event = 'New TLS Certificate', event_payload = 'zz' } }))
    local cert = identity()
    assert.equal(crypto.hex(crypto.sha256(cert.der)), binding.cert_event_payload(cert.der))
  end)
end)

describe('native tls engine', function()
  local cert, key = identity()
  local sctx = assert(tls.context({ mode = 'server', cert = cert:pem(), key = key:pkcs8_pem() }))
  local cctx = assert(tls.context({ mode = 'client', ca = cert:pem() }))

  it('gives both ends the same exporter, different per session and per label', function()
    local s1, c1 = sctx:engine(), cctx:engine('localhost')
    local s2, c2 = sctx:engine(), cctx:engine('localhost')
    assert.is_nil(select(1, s1:exporter(binding.EXPORTER_LABEL, 32)))
    assert.is_true(handshake(s1, c1))
    assert.is_true(handshake(s2, c2))
    local e1 = assert(s1:exporter(binding.EXPORTER_LABEL, 32))
    assert.equal(32, #e1)
    assert.equal(e1, c1:exporter(binding.EXPORTER_LABEL, 32))
    assert.equal(s2:exporter(binding.EXPORTER_LABEL, 32), c2:exporter(binding.EXPORTER_LABEL, 32))
    assert.not_equal(e1, s2:exporter(binding.EXPORTER_LABEL, 32))
    assert.not_equal(e1, s1:exporter('EXPORTER-other', 32))
    assert.equal(cert.der, c1:peer_cert())
    assert.equal(cert.der, s1:own_cert())
    assert.equal('TLSv1.3', c1:version())
    -- application data both ways
    assert.is_true(c1:write('ping'))
    s1:feed(c1:take())
    assert.equal('ping', s1:read())
    assert.equal('', s1:read())
  end)

  it('refuses a server certificate it does not trust, or for another name', function()
    local other = identity()
    local ctx = assert(tls.context({ mode = 'client', ca = other:pem() }))
    local s, c = sctx:engine(), ctx:engine('localhost')
    local ok, err
    for _ = 1, 10 do
      ok, err = c:handshake()
      s:feed(c:take())
      s:handshake()
      c:feed(s:take())
      if ok == nil then
        break
      end
    end
    assert.is_nil(ok)
    assert.matches('^ETLS: tls handshake: certificate verify failed', err)
    s, c = sctx:engine(), cctx:engine('example.com')
    for _ = 1, 10 do
      ok, err = c:handshake()
      s:feed(c:take())
      s:handshake()
      c:feed(s:take())
      if ok == nil then
        break
      end
    end
    assert.is_nil(ok)
    assert.matches('certificate verify failed: hostname mismatch', err)
  end)

  it('derives the exporter openssl s_client derives on the same session', function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(uv.fs_mkdir(dir, 448))
    local f = assert(io.open(dir .. '/ca.pem', 'w'))
    f:write(cert:pem())
    f:close()
    local tcp = uv.new_tcp()
    assert(tcp:bind('127.0.0.1', 0))
    local port = tcp:getsockname().port
    local server_ekm
    assert(tcp:listen(4, function()
      local client = uv.new_tcp()
      tcp:accept(client)
      local c = conn_mod.wrap(client, sctx:engine())
      require('moonstack.core.task').spawn(function()
        assert(c:handshake(5000))
        server_ekm = c:exporter(binding.EXPORTER_LABEL, 32)
      end)
    end))
    local out = {}
    local stdin, stdout = uv.new_pipe(false), uv.new_pipe(false)
    local proc = uv.spawn('openssl', { args = { 's_client', '-connect', '127.0.0.1:' .. port,
      '-servername', 'localhost', '-CAfile', dir .. '/ca.pem', '-keymatexport',
      binding.EXPORTER_LABEL, '-keymatexportlen', '32' }, stdio = { stdin, stdout, nil } },
      function() end)
    stdout:read_start(function(_, data)
      if data then
        out[#out + 1] = data
      end
    end)
    assert.is_true(loop.run_until(function()
      return server_ekm ~= nil and table.concat(out):find('Keying material: %x+') ~= nil
    end, 10000))
    proc:kill('sigterm')
    stdin:close()
    stdout:close()
    tcp:close()
    os.remove(dir .. '/ca.pem')
    os.remove(dir)
    local theirs = table.concat(out):match('Keying material: (%x+)')
    assert.equal(crypto.hex(server_ekm):upper(), theirs:upper())
  end)
end)

describe("Atlas's policy JSON through the verifier's parser", function()
  it('keeps grace_period with OutOfDate allowed', function()
    local p = assert(rules.load_string('{"type":"dstack_tdx","disable_runtime_verification":true,'
      .. '"allowed_tcb_status":["UpToDate","OutOfDate"],"grace_period":3600}', 'p.json'))
    assert.equal(3600, p.grace_period)
    assert.same({ 'UpToDate', 'OutOfDate' }, p.allowed_tcb_status)
  end)

  it('refuses grace_period without OutOfDate, negative periods and unknown fields', function()
    for _, text in ipairs({
      '{"disable_runtime_verification":true,"allowed_tcb_status":["UpToDate"],"grace_period":60}',
      '{"disable_runtime_verification":true,"allowed_tcb_status":["OutOfDate"],"grace_period":-1}',
      '{"disable_runtime_verification":true,"grace_perod":60}',
    }) do
      local p, err, code = rules.load_string(text, 'p.json')
      assert.is_nil(p, text)
      assert.equal('EINVAL', code)
      assert.matches('p.json: .*grace_per', err)
    end
  end)

  it('requires the runtime fields unless runtime verification is disabled (as Atlas does)', function()
    local p, err = rules.load_string('{"type":"dstack_tdx"}', 'p.json')
    assert.is_nil(p)
    assert.matches('expected_bootchain', err)
  end)
end)

describe('atls.proxy allowlist', function()
  it('matches host:port exactly', function()
    local set, n = assert(proxy.parse_allowlist(' a.example:443, 127.0.0.1:8443 '))
    assert.equal(2, n)
    assert.is_true(set['a.example:443'])
    assert.is_true(set['127.0.0.1:8443'])
    assert.is_nil(set['a.example:444'])
    assert.is_nil(set['a.example'])
  end)

  it('refuses empty lists, wildcards, entries without a port and bad ports', function()
    for _, bad in ipairs({ '', '  ', '*:443', '*.example:443', 'a.example', 'a.example:0',
      'a.example:65536', 'a.example:443,', ',a.example:443', 'a.example:443,*' }) do
      local set, err, code = proxy.parse_allowlist(bad)
      assert.is_nil(set, bad)
      assert.equal('EINVAL', code)
      assert.matches('^EINVAL: ', err)
    end
    assert.is_nil(proxy.parse_allowlist(nil))
  end)

  it("authorizes only allowlisted targets, within each client's connection rate", function()
    local p = proxy.new({ ['h:1'] = true }, { rate = 1, burst = 2 })
    assert.is_false(p:authorize({ args = { target = 'h:2' }, peer = '10.0.0.1' }))
    assert.is_false(p:authorize({ args = {}, peer = '10.0.0.1' }))
    assert.is_true(p:authorize({ args = { target = 'h:1' }, peer = '10.0.0.1' }))
    assert.is_true(p:authorize({ args = { target = 'h:1' }, peer = '10.0.0.1' }))
    assert.is_false(p:authorize({ args = { target = 'h:1' }, peer = '10.0.0.1' })) -- burst spent
    assert.is_true(p:authorize({ args = { target = 'h:1' }, peer = '10.0.0.2' })) -- its own bucket
    assert.equal(2, p.counters.refused_target)
    assert.equal(1, p.counters.refused_rate)
    assert.matches('atls_proxy_refused_target_total 2', p:metrics())
    assert.equal('h:1', p:_target('target=h%3A1'))
    assert.is_nil(p:_target('target=h:2'))
    assert.is_nil(p:_target(''))
  end)
end)
