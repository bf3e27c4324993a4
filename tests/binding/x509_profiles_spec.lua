-- SPDX-License-Identifier: Apache-2.0
-- moonstack.x509.profiles: the KMS and agent certificates carry the subjects, CA levels, key
-- usages and special-usage values of kms-vmm-gateway.md §3.1/§3.4, chain as the KMS chains
-- them (root -> app CA -> app leaf), and our KMS root CA made with the simulator's key has
-- exactly the names and extensions rcgen wrote into the simulator's certificate.
local cjson = require('cjson')
local x509 = require('moonstack.x509')
local profiles = require('moonstack.x509.profiles')

local vectors = require('fixtures').vectors_dir()

local function ext_map(cert)
  local m = {}
  for _, e in ipairs(cert:info().extensions) do
    m[e.oid] = e
  end
  return m
end

describe('moonstack.x509.profiles', function()
  local root_key, root, app_id

  setup(function()
    root_key = x509.generate_key()
    root = assert(profiles.kms_root_ca(root_key))
    app_id = ('\18'):rep(20)
  end)

  it('makes the KMS root CA and temp CA', function()
    local i = root:info()
    assert.equal('CN=Dstack KMS CA,O=Dstack', i.subject)
    assert.equal(i.subject, i.issuer)
    assert.is_true(i.ca)
    assert.equal(1, i.pathlen)
    assert.same({ digital_signature = true, key_cert_sign = true, crl_sign = true }, i.key_usage)
    assert.equal(x509.DEFAULT_NOT_BEFORE, i.not_before)
    assert.is_true(math.abs(i.not_after - (os.time() + 3650 * 86400)) < 120)
    assert.is_nil(i.eku)
    local tmp = assert(profiles.kms_tmp_ca(x509.generate_key()))
    assert.equal('CN=Dstack Client Temp CA,O=Dstack', tmp:info().subject)
    assert.equal(0, tmp:info().pathlen)
  end)

  it('makes the RPC certificate, with and without attestation', function()
    local key = x509.generate_key()
    local rpc = assert(profiles.kms_rpc_cert({ key = key, domain = 'kms.example.com',
      ca = { cert = root, key = root_key }, attestation = 'att' }))
    local i = rpc:info()
    assert.equal('kms.example.com', i.cn)
    assert.same({ 'kms.example.com' }, i.dns)
    assert.equal('kms:rpc', i.ratls.special_usage)
    assert.equal('att', i.ratls.attestation)
    assert.is_nil(i.eku)
    assert.is_false(i.ca)
    assert.same({ digital_signature = true }, i.key_usage)
    assert.is_true(x509.verify(rpc, { roots = { root }, hostname = 'kms.example.com' }))
    local bare = assert(profiles.kms_rpc_cert({ key = key, domain = 'kms.example.com',
      ca = { cert = root, key = root_key } }))
    assert.is_nil(bare:info().ratls.attestation)
  end)

  it('chains root -> app CA -> app leaf', function()
    local ca_key = x509.generate_key()
    local app_ca = assert(profiles.app_ca({ key = ca_key, app_id = app_id,
      root = { cert = root, key = root_key } }))
    local ci = app_ca:info()
    assert.equal('CN=Dstack App CA,O=Dstack', ci.subject)
    assert.equal(0, ci.pathlen)
    assert.equal(app_id, ci.ratls.app_id)
    assert.equal('app:ca', ci.ratls.special_usage)
    local leaf_key = x509.generate_key()
    local leaf = assert(profiles.app_leaf({ public_key = leaf_key:spki(), subject = 'app.dstack.local',
      org = 'Acme', sans = { 'app.dstack.local', '10.0.3.2' }, server_auth = true, client_auth = true,
      attestation = 'evidence', app_id = app_id, app_info = '\152', issuer = { cert = app_ca, key = ca_key },
      not_before = 1800000000, not_after = 1900000000 }))
    local li = leaf:info()
    assert.equal('CN=app.dstack.local,O=Acme', li.subject)
    assert.same({ 'app.dstack.local' }, li.dns)
    assert.same({ '10.0.3.2' }, li.ips)
    assert.is_true(li.eku.server_auth and li.eku.client_auth)
    assert.equal('app:custom', li.ratls.special_usage)
    assert.equal(app_id, li.ratls.app_id)
    assert.equal('evidence', li.ratls.attestation)
    assert.equal('\152', li.ratls.app_info)
    assert.equal(1800000000, li.not_before)
    assert.equal(1900000000, li.not_after)
    assert.equal(leaf_key:spki(), li.spki)
    -- the KMS response chain [leaf, app CA, root] verifies, within the leaf's validity
    assert.is_true(x509.verify(leaf, { chain = { app_ca }, roots = { root }, time = 1850000000,
      purpose = 'server', hostname = '10.0.3.2' }))
    -- the app CA may not issue further CAs (pathlen 0)
    local sub_key = x509.generate_key()
    local sub = assert(x509.issue({ subject = 'sub', key = sub_key, ca = true,
      issuer = { cert = app_ca, key = ca_key } }))
    local sub_leaf = assert(profiles.app_leaf({ key = x509.generate_key(), subject = 'x',
      issuer = { cert = sub, key = sub_key } }))
    local ok, err, code = x509.verify(sub_leaf, { chain = { sub, app_ca }, roots = { root } })
    assert.is_nil(ok)
    assert.equal('EVERIFY', code)
    assert.matches('path length', err)
    -- a leaf with neither usage has no EKU at all
    local plain = assert(profiles.app_leaf({ key = x509.generate_key(), subject = 'demo',
      issuer = { cert = app_ca, key = ca_key } }))
    assert.is_nil(plain:info().eku)
  end)

  it("makes non-KMS providers' App Root Cert", function()
    local c = assert(profiles.app_root_cert({ key = x509.generate_key(), attestation = 'att' }))
    local i = c:info()
    assert.equal('CN=App Root Cert', i.subject)
    assert.equal(1, i.pathlen)
    assert.equal('att', i.ratls.attestation)
  end)

  it("matches rcgen's KMS root CA from the simulator fixture", function()
    local f = io.open(vectors .. '/dstack/simulator/appkeys.json', 'rb')
    if not f then
      return pending('vectors not found at ' .. vectors)
    end
    local appkeys = cjson.decode(f:read('*a'))
    f:close()
    local theirs = assert(x509.cert(appkeys.ca_cert))
    local ours = assert(profiles.kms_root_ca(appkeys.key_provider.None.key))
    local t, o = theirs:info(), ours:info()
    assert.equal(t.subject, o.subject)
    assert.equal(t.issuer, o.issuer)
    assert.equal(t.not_before, o.not_before)
    assert.equal(t.spki, o.spki)
    assert.equal(t.signature_algorithm, o.signature_algorithm)
    -- the same extensions, in the same order, with the same criticality and byte-identical
    -- values, but for KeyUsage: rcgen writes the BIT STRING with 9 named bits (03 03 07 86 00),
    -- OpenSSL the DER-minimal form without trailing zero bits (03 02 01 86); same bits
    assert.equal(#t.extensions, #o.extensions)
    for n, e in ipairs(t.extensions) do
      assert.equal(e.oid, o.extensions[n].oid)
      assert.equal(e.critical, o.extensions[n].critical)
      if e.oid ~= '2.5.29.15' then
        assert.equal(e.value, o.extensions[n].value)
      end
    end
    assert.equal('\3\3\7\134\0', ext_map(theirs)['2.5.29.15'].value)
    assert.equal('\3\2\1\134', ext_map(ours)['2.5.29.15'].value)
    assert.same(t.key_usage, o.key_usage)
    assert.equal(t.ski, o.ski)
  end)
end)
