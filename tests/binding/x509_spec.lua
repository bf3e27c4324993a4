-- SPDX-License-Identifier: Apache-2.0
-- moonstack.native.x509 and moonstack.x509: the binding contract (misuse raises, expected
-- failures return nil, "CODE: msg", CODE), key and certificate round trips, and the openssl CLI
-- as an independent check in both directions (it reads our certificates, CSRs and keys; we read
-- its). The dstack simulator's KMS CA (made by rcgen) is parsed and used as an issuer.
local uv = require('luv')
local cjson = require('cjson')
local native = require('moonstack.native.x509')
local x509 = require('moonstack.x509')

local function tohex(s)
  return (s:gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end

local function fromhex(h)
  return (h:gsub('%x%x', function(b) return string.char(tonumber(b, 16)) end))
end

local function slurp(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

local function spit(path, data)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
end

-- Run a shell command; returns its stdout and whether it exited 0.
local function sh(cmd)
  local p = assert(io.popen(cmd .. ' 2>&1; echo "exit:$?"'))
  local out = p:read('*a')
  p:close()
  local body, code = out:match('^(.*)exit:(%d+)%s*$')
  return body, code == '0'
end

-- SHA-256 (hex) by the openssl CLI.
local function sha256(data)
  local path = (os.getenv('MOONSTACK_TEST_TMP') or '/tmp') .. '/x509-sha256-input'
  spit(path, data)
  local out = sh('openssl dgst -sha256 -r ' .. path)
  os.remove(path)
  return out:match('^(%x+)')
end

local vectors = require('fixtures').vectors_dir()

describe('moonstack.x509', function()
  local dir

  setup(function()
    local base = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    os.execute(('mkdir -p %q'):format(base))
    dir = assert(uv.fs_mkdtemp(base .. '/x509-XXXXXX'))
  end)

  teardown(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  describe('native contract', function()
    it('raises on misuse, naming the function', function()
      assert.has_error(function() native.key_from_scalar('short') end)
      assert.has_error(function() native.cert_create({ cn = 'x', bogus = 1 }, native.key_generate()) end,
        "cert_create: unknown option 'bogus'")
      assert.has_error(function() native.cert_create({ cn = 'x' }, 'not a key') end,
        'cert_create: argument #2 must be a key (moonstack.x509.Key)')
      assert.has_error(function() native.cert_create({ key_usage = { 'fly' } }, native.key_generate()) end,
        "cert_create: unknown key_usage 'fly'")
      assert.has_error(function() native.cert_create({ ratls = { quotes = 'x' } }, native.key_generate()) end,
        "cert_create: unknown option 'quotes'")
      assert.has_error(function() native.cert_create({ extensions = { { oid = '1.2.3' } } },
        native.key_generate()) end, 'cert_create: extensions[1] needs oid and value strings')
      local k = native.key_generate()
      k:close()
      k:close() -- idempotent
      assert.has_error(function() k:spki() end, 'key:spki: the key is closed')
      assert.equal('moonstack.x509.Key (closed)', tostring(k))
      assert.has_error(function() native.verify('x', nil, {}, { purpose = 'fly' }) end,
        "verify: purpose must be 'server', 'client' or 'any'")
      assert.has_error(function() x509.issue({ subject = 'x' }) end)
      assert.has_error(function() x509.issue({ key = native.key_generate(), subjekt = 'x' }) end,
        'x509.issue: unknown option subjekt')
    end)

    it('returns nil, "CODE: message", CODE on expected failures', function()
      local r, err, code = native.key_load('not a key')
      assert.is_nil(r)
      assert.equal('EKEY', code)
      assert.matches('^EKEY: ', err)
      r, err, code = native.key_from_scalar(('\0'):rep(32))
      assert.is_nil(r)
      assert.equal('EKEY', code, err)
      r, err, code = native.cert_info('not a certificate at all')
      assert.is_nil(r)
      assert.equal('EPARSE', code, err)
      r, err, code = native.octets_unwrap('\4\2a')
      assert.is_nil(r)
      assert.equal('EPARSE', code, err)
      local key = native.key_generate()
      r, err, code = native.cert_create({ cn = 'x', not_before = 2000, not_after = 1000 }, key)
      assert.is_nil(r)
      assert.equal('EINVAL', code, err)
      r, err, code = native.cert_create({ cn = 'x', extensions = { { oid = 'x.y', value = '' } } }, key)
      assert.is_nil(r)
      assert.equal('EINVAL', code, err)
      r, err, code = native.pem_decode('nothing')
      assert.is_nil(r)
      assert.equal('EPARSE', code, err)
    end)

    it('exposes the RA-TLS OIDs and the rcgen defaults', function()
      assert.same({
        quote = '1.3.6.1.4.1.62397.1.1', event_log = '1.3.6.1.4.1.62397.1.2',
        app_id = '1.3.6.1.4.1.62397.1.3', special_usage = '1.3.6.1.4.1.62397.1.4',
        attestation = '1.3.6.1.4.1.62397.1.8', app_info = '1.3.6.1.4.1.62397.1.9',
      }, x509.oids)
      assert.equal(157766400, x509.DEFAULT_NOT_BEFORE) -- 1975-01-01T00:00:00Z
      assert.equal(os.time({ year = 1975, month = 1, day = 1, hour = 0 }) - os.time({ year = 1970,
        month = 1, day = 1, hour = 0 }), x509.DEFAULT_NOT_BEFORE)
      assert.equal(3650, x509.DEFAULT_DAYS)
    end)
  end)

  describe('keys', function()
    it('round-trips through PKCS#8 PEM/DER, SPKI and the raw scalar', function()
      local k = x509.generate_key()
      assert.equal('moonstack.x509.Key (EC, private)', tostring(k))
      local pem, der, spki = k:pkcs8_pem(), k:pkcs8_der(), k:spki()
      assert.matches('^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\n', pem)
      assert.equal(138, #der)
      assert.equal(91, #spki)
      for _, form in ipairs({ pem, der }) do
        local back = assert(x509.load_key(form))
        assert.is_true(back:is_private())
        assert.equal(spki, back:spki())
      end
      local pub = assert(x509.load_key(k:public_pem()))
      assert.is_false(pub:is_private())
      assert.equal(spki, pub:spki())
      local _, err, code = pub:pkcs8_pem()
      assert.equal('EKEY', code, err)
      local again = assert(x509.key_from_scalar(k:scalar()))
      assert.equal(der, again:pkcs8_der())
      assert.equal(k:public_point(), spki:sub(-65))
    end)

    it('reads keys openssl made, and openssl reads ours', function()
      local path = dir .. '/ossl.key'
      assert(select(2, sh(('openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s')
        :format(path))))
      local k = assert(x509.load_key(slurp(path)))
      local their_spki = sh(('openssl pkey -in %s -pubout -outform DER | od -An -tx1 -v'):format(path))
      assert.equal(their_spki:gsub('%s', ''), tohex(k:spki()))
      -- a SEC1 "EC PRIVATE KEY" too
      assert(select(2, sh(('openssl ec -in %s -out %s.sec1'):format(path, path))))
      assert.equal(k:spki(), assert(x509.load_key(slurp(path .. '.sec1'))):spki())
      -- ours, read by openssl
      local mine = x509.generate_key()
      spit(dir .. '/mine.key', mine:pkcs8_pem())
      local out = sh(('openssl pkey -in %s/mine.key -pubout -outform DER | od -An -tx1 -v'):format(dir))
      assert.equal(out:gsub('%s', ''), tohex(mine:spki()))
    end)
  end)

  describe('certificates', function()
    local ca_key, ca, mid_key, mid, key, leaf
    local attestation = 'fake attestation \0\1\2'

    setup(function()
      ca_key, mid_key, key = x509.generate_key(), x509.generate_key(), x509.generate_key()
      ca = assert(x509.issue({ subject = { cn = 'Spec Root', o = 'Moonstack' }, key = ca_key,
        ca = { pathlen = 1 }, days = 2 }))
      mid = assert(x509.issue({ subject = { cn = 'Spec Intermediate', o = 'Moonstack' },
        key = mid_key:pkcs8_pem(),
        ca = { pathlen = 0 }, issuer = { cert = ca:pem(), key = ca_key }, days = 2 }))
      leaf = assert(x509.issue({ subject = 'app.example.com', sans = { 'app.example.com', '10.0.0.7', '::1' },
        key = key, issuer = { cert = mid, key = mid_key }, eku = { 'server_auth', 'client_auth' },
        not_before = os.time() - 60, days = 1, serial = '\1\2\3\4',
        ratls = { attestation = attestation, app_id = ('\171'):rep(20), special_usage = 'app:custom',
          app_info = '\152' },
        extensions = { { oid = '1.2.3.4.5', value = '\48\3\2\1\7', der = true, critical = false } } }))
    end)

    it('parses back every field it was given', function()
      local i = leaf:info()
      assert.equal('app.example.com', i.cn)
      assert.is_nil(i.org)
      assert.equal('CN=app.example.com', i.subject)
      assert.equal('CN=Spec Intermediate,O=Moonstack', i.issuer)
      assert.equal('Spec Intermediate', i.issuer_cn)
      assert.equal('01020304', i.serial)
      assert.same({ 'app.example.com' }, i.dns)
      assert.same({ '10.0.0.7', '::1' }, i.ips)
      assert.same({ type = 'ip', value = '10.0.0.7' }, i.sans[2])
      assert.is_false(i.ca)
      assert.is_nil(i.pathlen)
      assert.same({ digital_signature = true }, i.key_usage)
      assert.same({ server_auth = true, client_auth = true,
        oids = { '1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2' } },
        i.eku)
      assert.equal(attestation, i.ratls.attestation)
      assert.equal(('\171'):rep(20), i.ratls.app_id)
      assert.equal('app:custom', i.ratls.special_usage)
      assert.equal('\152', i.ratls.app_info)
      assert.is_nil(i.ratls.quote)
      assert.equal(attestation, leaf:ratls('attestation'))
      assert.equal('\48\3\2\1\7', leaf:ext('1.2.3.4.5'))
      -- the RA-TLS extension values are OCTET STRINGs around the content, not critical
      local v, critical = leaf:ext(x509.oids.attestation)
      assert.equal(x509.octets_wrap(attestation), v)
      assert.equal('\4' .. string.char(#attestation) .. attestation, v)
      assert.is_false(critical)
      assert.equal(key:spki(), i.spki)
      assert.equal(mid:info().ski, i.aki)
      assert.equal(sha256(i.spki):sub(1, 40), i.ski) -- rcgen's key identifier
      assert.equal(sha256(leaf.der), i.fingerprint)
      assert.equal('ecdsa-with-SHA256', i.signature_algorithm)
      assert.is_true(math.abs(i.not_after - (os.time() + 86400)) < 120)
      local m = mid:info()
      assert.is_true(m.ca)
      assert.equal(0, m.pathlen)
      assert.same({ digital_signature = true, key_cert_sign = true, crl_sign = true }, m.key_usage)
    end)

    it('is read the same way by openssl x509 -text', function()
      spit(dir .. '/leaf.pem', leaf:pem())
      local text = assert(sh('openssl x509 -noout -text -in ' .. dir .. '/leaf.pem'))
      assert.matches('Subject: CN = app.example.com', text, 1, true)
      assert.matches('Issuer: O = Moonstack, CN = Spec Intermediate', text, 1, true)
      assert.matches('DNS:app.example.com, IP Address:10.0.0.7, IP Address:0:0:0:0:0:0:0:1', text, 1, true)
      assert.matches('X509v3 Key Usage: critical\n%s+Digital Signature\n', text)
      assert.matches('TLS Web Server Authentication, TLS Web Client Authentication', text, 1, true)
      assert.matches('Serial Number: 16909060 (0x1020304)', text, 1, true)
      for _, name in ipairs({ 'attestation', 'app_id', 'special_usage', 'app_info' }) do
        assert.matches('\n%s+' .. x509.oids[name]:gsub('%.', '%%.') .. ': \n', text)
      end
      assert.is_nil(text:find(x509.oids.quote .. ':', 1, true))
      assert.is_nil(text:find('critical\n%s+%.'))
      spit(dir .. '/mid.pem', mid:pem())
      text = assert(sh('openssl x509 -noout -text -in ' .. dir .. '/mid.pem'))
      assert.matches('X509v3 Basic Constraints: critical\n%s+CA:TRUE, pathlen:0\n', text)
      assert.matches('Certificate Sign, CRL Sign', text, 1, true)
      -- the attestation extension's DER, as openssl asn1parse sees it
      local parsed = sh('openssl asn1parse -in ' .. dir .. '/leaf.pem')
      assert.matches(':1%.3%.6%.1%.4%.1%.62397%.1%.8\n[^\n]+OCTET STRING%s+%[HEX DUMP%]:'
        .. ('0414' .. tohex(attestation)):upper() .. '\n', parsed)
    end)

    it('verifies its chain, and openssl verify agrees', function()
      assert.is_true(x509.verify(leaf, { chain = { mid }, roots = { ca }, purpose = 'server',
        hostname = 'app.example.com' }))
      assert.is_true(x509.verify(leaf:pem(), { chain = mid:pem(), roots = ca:pem() .. mid:pem() }))
      local ok, err, code = x509.verify(leaf, { roots = { ca } })
      assert.is_nil(ok)
      assert.equal('EVERIFY', code)
      assert.matches('unable to get local issuer certificate', err)
      ok, err, code = x509.verify(leaf, { chain = { mid }, roots = { ca }, time = os.time() + 3 * 86400 })
      assert.is_nil(ok)
      assert.equal('EVERIFY', code)
      assert.matches('expired', err)
      spit(dir .. '/ca.pem', ca:pem())
      spit(dir .. '/mid.pem', mid:pem())
      spit(dir .. '/leaf.pem', leaf:pem())
      local out, good = sh(('openssl verify -CAfile %s/ca.pem -untrusted %s/mid.pem'
        .. ' -purpose sslserver %s/leaf.pem')
        :format(dir, dir, dir))
      assert.is_true(good, out)
      out, good = sh(('openssl verify -CAfile %s/ca.pem %s/leaf.pem'):format(dir, dir))
      assert.is_false(good, out)
    end)

    it('makes CSRs openssl accepts, and issues certificates from CSRs', function()
      local k = x509.generate_key()
      local csr = assert(x509.csr({ subject = { cn = 'node', o = 'Org' },
        sans = { 'node.local', '192.168.1.2' },
        key = k, eku = { 'client_auth' }, ratls = { attestation = 'att' } }))
      spit(dir .. '/node.csr', csr:pem())
      local out, ok = sh('openssl req -verify -noout -text -in ' .. dir .. '/node.csr')
      assert.is_true(ok, out)
      assert.matches('verify OK', out, 1, true)
      assert.matches('DNS:node.local, IP Address:192.168.1.2', out, 1, true)
      local ci = csr:info()
      assert.is_true(ci.signature_ok)
      assert.equal('att', ci.ratls.attestation)
      assert.equal(k:spki(), ci.spki)
      local cert = assert(x509.issue({ csr = csr:pem(), issuer = { cert = ca, key = ca_key }, days = 1,
        eku = { 'client_auth' } }))
      local i = cert:info()
      assert.equal('node', i.cn)
      assert.equal('Org', i.org)
      assert.same({ 'node.local' }, i.dns)
      assert.same({ '192.168.1.2' }, i.ips)
      assert.equal(k:spki(), i.spki)
      assert.is_true(x509.verify(cert, { roots = { ca }, purpose = 'client' }))
      -- a CSR openssl made
      spit(dir .. '/node.key', k:pkcs8_pem())
      assert(select(2, sh(('openssl req -new -key %s/node.key -subj /CN=ossl'
        .. ' -addext subjectAltName=DNS:o.example'
        .. ' -out %s/o.csr'):format(dir, dir))))
      local oi = assert(x509.parse_csr(slurp(dir .. '/o.csr')))
      assert.equal('ossl', oi.cn)
      assert.same({ 'o.example' }, oi.dns)
      assert.is_true(oi.signature_ok)
    end)

    it('parses certificates openssl made, custom extensions included', function()
      local script = ('cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1'
        .. ' -subj "/O=Ossl/CN=made by openssl" -keyout o.key -out o.pem'
        .. ' -addext "1.3.6.1.4.1.62397.1.4=DER:04:0a:61:70:70:3a:63:75:73:74:6f:6d"'
        .. ' -addext "subjectAltName=DNS:a.example,IP:10.9.8.7"'):format(dir)
      assert(select(2, sh(script)))
      local c = assert(x509.cert(slurp(dir .. '/o.pem')))
      local i = c:info()
      assert.equal('made by openssl', i.cn)
      assert.equal('Ossl', i.org)
      assert.equal('app:custom', i.ratls.special_usage)
      assert.same({ 'a.example' }, i.dns)
      assert.same({ '10.9.8.7' }, i.ips)
      assert.is_true(i.self_issued)
      assert.equal(assert(x509.load_key(slurp(dir .. '/o.key'))):spki(), i.spki)
      -- a certificate signed with openssl's key by us verifies under its CA
      local k = x509.generate_key()
      local child = assert(x509.issue({ subject = 'child', key = k, days = 1,
        issuer = { cert = c, key = slurp(dir .. '/o.key') } }))
      assert.is_true(x509.verify(child, { roots = { c } }))
    end)

    it('refuses an issuer key that does not match the issuer certificate', function()
      local r, err, code = x509.issue({ subject = 'x', key = key, issuer = { cert = ca, key = mid_key } })
      assert.is_nil(r)
      assert.equal('EKEY', code, err)
    end)
  end)

  describe("the dstack simulator's KMS CA (rcgen)", function()
    local appkeys

    setup(function()
      local f = io.open(vectors .. '/dstack/simulator/appkeys.json', 'rb')
      if f then
        appkeys = cjson.decode(f:read('*a'))
        f:close()
      end
    end)

    it('parses like rcgen wrote it, and its key is the None provider key', function()
      if not appkeys then
        return pending('vectors not found at ' .. vectors)
      end
      local ca = assert(x509.cert(appkeys.ca_cert))
      local i = ca:info()
      assert.equal('Dstack KMS CA', i.cn)
      assert.equal('Dstack', i.org)
      assert.equal(x509.DEFAULT_NOT_BEFORE, i.not_before)
      assert.is_true(i.ca)
      assert.equal(1, i.pathlen)
      assert.same({ digital_signature = true, key_cert_sign = true, crl_sign = true }, i.key_usage)
      assert.equal(sha256(i.spki):sub(1, 40), i.ski) -- our SKI rule is rcgen's
      local pem = appkeys.key_provider.None.key
      local key = assert(x509.load_key(pem))
      assert.equal(i.spki, key:spki())
      -- the PKCS#8 we write is byte-identical to rcgen's (the 138-byte form dstack hashes)
      local der = native.pem_decode(pem)[1].der
      assert.equal(138, #der)
      assert.equal(der, key:pkcs8_der())
      assert.equal(pem, key:pkcs8_pem())
      -- it can issue: a leaf signed with it verifies under the simulator's certificate
      local leaf = assert(x509.issue({ subject = 'demo-cert', key = x509.generate_key(),
        eku = { 'client_auth' },
        issuer = { cert = appkeys.ca_cert, key = pem }, ratls = { special_usage = 'app:custom' } }))
      assert.is_true(x509.verify(leaf, { roots = { appkeys.ca_cert }, purpose = 'client' }))
      assert.equal(i.ski, leaf:info().aki)
    end)
  end)

  it('hashes report_data as SHA-512(tag ":" data)', function()
    local rd = x509.report_data('app-data', 'hello')
    assert.equal(64, #rd)
    spit(dir .. '/rd', 'app-data:hello')
    local out = sh('openssl dgst -sha512 -r ' .. dir .. '/rd')
    assert.equal(out:match('^(%x+)'), tohex(rd))
    assert.equal(fromhex(out:match('^(%x+)')), rd)
  end)
end)
