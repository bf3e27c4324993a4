-- SPDX-License-Identifier: Apache-2.0
-- SignCert over real TLS: a simulated CVM (moonstack.sim, app-id/compose-hash/instance-id
-- events) makes a SCALE CertSigningRequestV2 (moonstack.kms.csr) for a fresh P-256 key with
-- its attestation bound to that key, signs it with the openssl CLI (ASN.1 DER, as upstream's
-- ring) and gets [leaf, app CA, root CA], checked with openssl verify and moonstack.x509 (app
-- id = the attested one, special usage app:custom, EKUs, SANs, attestation and app-info
-- extensions as asked). Refused with a clear reason: bad confirm string, a non-P-256 key,
-- truncated SCALE, a bad signature, an attestation not bound to the CSR key, api_version 3;
-- V1 CSRs (quote + event log) accepted.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local client = require('moonstack.http.client')
local loop = require('tests.helpers.loop')
local x509 = require('moonstack.x509')
local ratls = require('moonstack.x509.ratls')
local evidence = require('moonstack.tdx.evidence')
local config = require('moonstack.kms.config')
local server = require('moonstack.kms')
local scale = require('moonstack.core.scale')
local csr_codec = require('moonstack.kms.csr')
local derive = require('moonstack.kms.derive')
local attestation = require('moonstack.tdx.attestation')
local eventlog = require('moonstack.tdx.eventlog')
local tdx_quote = require('moonstack.tdx.quote')
local kms_fixture = require('kms_fixture')

local hex = crypto.hex
local APP, INSTANCE, COMPOSE = kms_fixture.APP, kms_fixture.INSTANCE, kms_fixture.COMPOSE

local fx
local base, material, tee, files, kms, ev

local function write(path, data)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. ' 2>&1'))
  local out = p:read('*a')
  local ok = p:close()
  return ok, out
end

-- DER ECDSA-SHA256 signature of `data` by `key` (x509 Key), made by the openssl CLI.
local function openssl_sign(key, data)
  write(base .. '/csr.key', key:pkcs8_pem())
  write(base .. '/csr.bin', data)
  local ok, out = sh(('openssl dgst -sha256 -sign %s/csr.key -out %s/csr.sig %s/csr.bin')
    :format(base, base, base))
  assert(ok, out)
  return read(base .. '/csr.sig')
end

-- A CSR for a fresh key: returns the key and the SignCert JSON body. `o` overrides:
-- confirm, spki, config fields, rd (report_data), csr (bytes after encoding), signature.
local function make(o)
  o = o or {}
  local key = x509.generate_key()
  local spki = o.spki or key:spki()
  local att = assert(ev:attestation(o.rd or ratls.report_data(spki), 'cert'))
  local cfg = { org_name = 'Acme', subject = 'app.example', subject_alt_names = { 'app.example',
    '10.0.0.1' }, usage_server_auth = true, usage_client_auth = false, ext_quote = true,
    ext_app_info = true }
  for k, v in pairs(o.config or {}) do
    cfg[k] = v
  end
  local csr = csr_codec.encode_v2({ confirm = o.confirm, pubkey = spki, config = cfg, attestation = att })
  if o.truncate then
    csr = csr:sub(1, o.truncate)
  end
  local sig = o.signature or openssl_sign(key, csr)
  return key, cjson.encode({ api_version = o.api_version or 2, csr = hex(csr), signature = hex(sig),
    vm_config = '' })
end

local function sign_cert(body)
  return assert(loop.run_task(function()
    return client.request({ url = ('https://127.0.0.1:%d/prpc/SignCert?json'):format(kms:port()),
      method = 'POST', host = 'localhost', body = body, tls = { ca = material.root_cert:pem() } })
  end, 15000))
end

local function expect_error(r, fragment)
  assert.equal(400, r.status, r.body)
  local e = assert(cjson.decode(r.body)).error
  assert.truthy(e:find(fragment, 1, true), ('%q not in %q'):format(fragment, e))
end

describe('kms SignCert', function()
  setup(function()
    fx = kms_fixture.setup('kms_signcert_spec', { events = {
      { 'app-id', APP }, { 'compose-hash', COMPOSE }, { 'instance-id', INSTANCE },
      { 'boot-mr-done', '' }, { 'app-started', 'after boot' } } })
    base, material, tee, files = fx.base, fx.material, fx.tee, fx.files
    ev = evidence.new({ tee = tee, vm_config = '' })
    local cfg = assert(config.validate({ key_dir = base .. '/keys',
      listen = { host = '127.0.0.1', port = 0 }, auth = { kind = 'dev' },
      attestation = { collateral_file = files.collateral, root_ca_file = files.root,
        allow_simulator = true } }))
    kms = assert(server.start(cfg))
  end)

  teardown(function()
    kms_fixture.teardown(fx, { kms })
  end)

  it('round-trips CertSigningRequestV2 through the SCALE codec', function()
    local c = { org_name = nil, subject = 's', subject_alt_names = { 'a', ('b'):rep(70) },
      usage_server_auth = false, usage_client_auth = true, ext_quote = false, ext_app_info = true,
      not_before = 1700000000, not_after = 2 ^ 40 + 5 }
    local bytes = csr_codec.encode_v2({ pubkey = 'K', config = c, attestation = 'ATT' })
    -- confirm: compact(17) = 0x44
    -- compact(70) = 70 << 2 | 1 = 0x0119 (two bytes LE); then the four bools, two Some(u64)
    local want = '\68please sign cert:\4K\0\4s\8\4a\25\1' .. ('b'):rep(70) .. '\0\1\0\1'
      .. '\1\0\241\83\101\0\0\0\0' .. '\1\5\0\0\0\0\1\0\0' .. 'ATT'
    assert.equal(hex(want), hex(bytes))
    local d = assert(csr_codec.decode_v2(bytes))
    assert.equal(csr_codec.CONFIRM, d.confirm)
    assert.equal('K', d.pubkey)
    assert.equal('ATT', d.attestation)
    assert.same(c, d.config)
    assert.equal('\3\0\0\0\64', scale.compact(2 ^ 30))
    local _, err, code = csr_codec.decode_v2(bytes:sub(1, 30))
    assert.equal('ESCALE', code)
    assert.truthy(err:find('truncated', 1, true), err)
  end)

  it('issues [leaf, app CA, root CA] for an attested CSR', function()
    local key, body = make()
    local r = sign_cert(body)
    assert.equal(200, r.status, r.body)
    local chain = assert(cjson.decode(r.body)).certificate_chain
    assert.equal(3, #chain)
    assert.equal(material.root_cert:pem(), chain[3])
    local app = assert(derive.app_keys(material, APP, ''))
    assert.equal(app.app_ca_key:spki(), assert(x509.parse(chain[2])).spki)
    write(base .. '/root.pem', chain[3])
    write(base .. '/ca.pem', chain[2])
    write(base .. '/leaf.pem', chain[1])
    local ok, out = sh(('openssl verify -CAfile %s/root.pem -untrusted %s/ca.pem -purpose sslserver '
      .. '%s/leaf.pem'):format(base, base, base))
    assert(ok, out)
    assert(x509.verify(chain[1], { roots = chain[3], chain = { chain[2] }, purpose = 'server' }))
    local info = assert(x509.parse(chain[1]))
    assert.equal(key:spki(), info.spki)
    assert.equal('app.example', info.cn)
    assert.equal('Acme', info.org)
    assert.is_true(info.eku.server_auth)
    assert.is_nil(info.eku.client_auth)
    assert.equal(APP, info.ratls.app_id)
    assert.equal('app:custom', info.ratls.special_usage)
    assert.truthy(info.ratls.app_info)
    assert.truthy(info.ratls.app_info:find(COMPOSE, 1, true))
    -- the attestation extension is the CSR's and binds the leaf's key
    local ri = assert(ratls.inspect(chain[1]))
    assert.equal(ratls.report_data(key:spki()), ri.report_data)
    local ok2, out2 = sh(('openssl x509 -in %s/leaf.pem -noout -ext subjectAltName'):format(base))
    assert(ok2, out2)
    assert.truthy(out2:find('IP Address:10.0.0.1', 1, true), out2)
  end)

  it('leaves out the extensions not asked for and honours the validity', function()
    local _, body = make({ config = { ext_quote = false, ext_app_info = false, org_name = nil,
      usage_server_auth = false, usage_client_auth = true, not_before = 1700000000,
      not_after = 1800000000 } })
    local r = sign_cert(body)
    assert.equal(200, r.status, r.body)
    local info = assert(x509.parse(assert(cjson.decode(r.body)).certificate_chain[1]))
    assert.is_nil(info.ratls.attestation)
    assert.is_nil(info.ratls.app_info)
    assert.equal(APP, info.ratls.app_id)
    assert.is_true(info.eku.client_auth)
    assert.is_nil(info.eku.server_auth)
    assert.equal(1700000000, info.not_before)
    assert.equal(1800000000, info.not_after)
  end)

  it('accepts a V1 CSR (quote + JSON event log, api_version 1) as upstream converts it', function()
    local key = x509.generate_key()
    local quote = assert(ev:quote(ratls.report_data(key:spki())))
    local log = evidence.event_log_json(assert(ev:events()), 'quote')
    local c = { subject = 'v1.example', subject_alt_names = { 'v1.example' }, usage_server_auth = true,
      usage_client_auth = true, ext_quote = true }
    local bytes = csr_codec.encode_v1({ pubkey = key:spki(), config = c, quote = quote, event_log = log })
    local d = assert(csr_codec.decode_v1(bytes))
    assert.equal(quote, d.quote)
    assert.equal(log, d.event_log)
    local r = sign_cert(cjson.encode({ api_version = 1, csr = hex(bytes),
      signature = hex(openssl_sign(key, bytes)), vm_config = '' }))
    assert.equal(200, r.status, r.body)
    local chain = assert(cjson.decode(r.body)).certificate_chain
    assert(x509.verify(chain[1], { roots = chain[3], chain = { chain[2] }, purpose = 'client' }))
    local info = assert(x509.parse(chain[1]))
    assert.equal('v1.example', info.cn)
    assert.equal(APP, info.ratls.app_id)
    assert.is_nil(info.ratls.app_info)
    local ri = assert(ratls.inspect(chain[1]))
    assert.equal(ratls.report_data(key:spki()), ri.report_data)
    -- a V1 CSR whose quote is over another key
    local other = x509.generate_key()
    bytes = csr_codec.encode_v1({ pubkey = other:spki(), config = c, quote = quote, event_log = log })
    r = sign_cert(cjson.encode({ api_version = 1, csr = hex(bytes),
      signature = hex(openssl_sign(other, bytes)), vm_config = '' }))
    expect_error(r, 'not bound to the CSR key')
  end)

  it('authorises the boot-time measurements (RTMR3 up to boot-mr-done, no key provider)', function()
    local seen = {}
    require('moonstack.kms.auth').register('signcert_capture', function()
      return { authorize = function(_, info, scope)
        seen[#seen + 1] = { info = info, scope = scope }
        return { allow = true, reason = 'ok' }
      end }
    end)
    local cfg = assert(config.validate({ key_dir = base .. '/keys', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'signcert_capture' }, attestation = { collateral_file = files.collateral,
        root_ca_file = files.root, allow_simulator = true } }))
    local k2 = assert(server.start(cfg))
    local saved = kms
    kms = k2
    local key, body = make()
    local r = sign_cert(body)
    kms = saved
    k2:close()
    assert.equal(200, r.status, r.body)
    assert.equal(1, #seen)
    assert.equal('app', seen[1].scope)
    local b = seen[1].info
    assert.equal('', b.keyProviderInfo)
    -- expected from the quote's MRs and the log cut at boot-mr-done
    local att = assert(ev:attestation(ratls.report_data(key:spki()), 'cert'))
    local a = assert(attestation.decode(att))
    local rep = assert(tdx_quote.parse(a.quote)).report
    local events = assert(attestation.events(a))
    local full = assert(eventlog.replay(events, { binary = true }))
    local boot = assert(eventlog.replay(events, { binary = true, to_event = 'boot-mr-done' }))
    assert.are_not.equal(full[4], boot[4])
    assert.equal(full[4], rep.rtmr3)
    local base_mrs = rep.mr_td .. rep.rtmr0 .. rep.rtmr1 .. rep.rtmr2
    assert.equal(hex(crypto.sha256(base_mrs .. boot[4])), b.mrAggregated)
    assert.equal(hex(crypto.sha256(base_mrs .. ('\0'):rep(32))), b.mrSystem)
    -- the AppInfo extension keeps the full-replay values
    local info = assert(x509.parse(assert(cjson.decode(r.body)).certificate_chain[1]))
    assert.truthy(info.ratls.app_info:find(crypto.sha256(base_mrs .. full[4]), 1, true))
  end)

  it('refuses malformed or unbound CSRs with a clear reason', function()
    local _, body = make({ confirm = 'please sign this:' })
    expect_error(sign_cert(body), 'CSR confirm string is not "please sign cert:"')
    for _, alg in ipairs({ '-algorithm EC -pkeyopt ec_paramgen_curve:P-384', '-algorithm ed25519' }) do
      local ok, out = sh(('openssl genpkey %s | openssl pkey -pubout -outform DER -out %s/other.spki')
        :format(alg, base))
      assert(ok, out)
      _, body = make({ spki = read(base .. '/other.spki') })
      expect_error(sign_cert(body), 'not a P-256 SubjectPublicKeyInfo')
    end
    _, body = make({ truncate = 40, signature = 'x' })
    expect_error(sign_cert(body), 'malformed CSR: ESCALE: truncated')
    _, body = make({ signature = '\48\6\2\1\1\2\1\1' })
    expect_error(sign_cert(body), 'the CSR signature does not verify')
    _, body = make({ rd = ('\7'):rep(64) })
    expect_error(sign_cert(body), "report_data is not bound to the CSR key")
    _, body = make({ api_version = 3 })
    expect_error(sign_cert(body), 'unsupported api_version 3')
    _, body = make({ api_version = 1 }) -- a V2 CSR sent as V1
    expect_error(sign_cert(body), 'malformed CSR: ESCALE')
    -- still serving
    _, body = make()
    assert.equal(200, sign_cert(body).status)
  end)
end)
