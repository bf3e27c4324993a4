-- SPDX-License-Identifier: Apache-2.0
-- GetKmsKey over real mutual TLS: a simulated CVM (moonstack.sim) presents an RA-TLS client
-- certificate issued by the KMS temp CA; the KMS verifies it like a GetAppKey caller and asks
-- the auth backend's authorize_kms (not authorize_app) before handing over the temp CA key and
-- the root keys (root CA key PEM, raw k256 scalar) in KmsKeyResponse, a nested repeated
-- message, in JSON and protobuf. Refused: no client certificate, a backend that allows apps
-- but denies this KMS (its reason returned).
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local client = require('moonstack.http.client')
local loop = require('tests.helpers.loop')
local x509 = require('moonstack.x509')
local ratls = require('moonstack.x509.ratls')
local evidence = require('moonstack.tdx.evidence')
local proto = require('moonstack.core.proto')
local auth = require('moonstack.kms.auth')
local config = require('moonstack.kms.config')
local server = require('moonstack.kms')
local rpc = require('moonstack.kms.api')
local kms_fixture = require('kms_fixture')

local unhex = crypto.unhex
local ROOT = unhex('f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2afe19cec1')
local K256 = ('\1'):rep(32)

local fx
local base, material, tee, files, id
local servers = {}
local scopes = {}

local function start(auth_cfg)
  local cfg = assert(config.validate({ key_dir = base .. '/keys',
    listen = { host = '127.0.0.1', port = 0 }, auth = auth_cfg,
    attestation = { collateral_file = files.collateral, root_ca_file = files.root,
      allow_simulator = true } }))
  local k = assert(server.start(cfg))
  servers[#servers + 1] = k
  return k
end

local function get_kms_key(kms, with_id, json)
  local tls = { ca = material.root_cert:pem() }
  if with_id then
    tls = ratls.tls(id, tls)
  end
  local body = json and '{"vm_config":""}'
    or proto.to_proto(rpc.messages.GetKmsKeyRequest, { vm_config = '' })
  return assert(loop.run_task(function()
    return client.request({ url = ('https://127.0.0.1:%d/prpc/GetKmsKey%s'):format(kms:port(),
      json and '?json' or ''), method = 'POST', host = 'localhost', body = body, tls = tls })
  end, 15000))
end

describe('kms GetKmsKey', function()
  setup(function()
    fx = kms_fixture.setup('kms_getkmskey_spec', { cvm = 'kms',
      events = { { 'app-id', ('\68'):rep(20) }, { 'compose-hash', ('\85'):rep(32) } } })
    base, material, tee, files = fx.base, fx.material, fx.tee, fx.files
    local ev = evidence.new({ tee = tee, vm_config = '' })
    id = assert(ratls.issue({ subject = 'RA-TLS TEMP Cert', eku = { 'client_auth' },
      issuer = { cert = material.tmp_ca_cert, key = material.tmp_ca_key },
      attest = function(rd) return assert(ev:attestation(rd, 'cert')) end }))
    auth.register('kms_scope_test', function()
      return { authorize = function(_, info, scope)
        scopes[#scopes + 1] = scope
        if scope == 'kms' then
          return { allow = false, reason = 'kms ' .. info.composeHash .. ' not registered' }
        end
        return { allow = true, reason = 'ok', gateway_app_id = 'gw' }
      end }
    end)
  end)

  teardown(function()
    kms_fixture.teardown(fx, servers)
  end)

  it('hands the root keys to an attested KMS the backend allows (JSON and protobuf)', function()
    local kms = start({ kind = 'dev' })
    local r = get_kms_key(kms, true, true)
    assert.equal(200, r.status, r.body)
    local k = assert(cjson.decode(r.body))
    assert.equal(material.tmp_ca_key:pkcs8_pem(), k.temp_ca_key)
    assert.equal(1, #k.keys)
    assert.equal(crypto.hex(K256), k.keys[1].k256_key)
    local ca = assert(x509.load_key(k.keys[1].ca_key))
    assert.equal(ROOT, ca:scalar())
    assert.equal(material.root_cert:spki(), ca:spki())
    local r2 = get_kms_key(kms, true, false)
    assert.equal(200, r2.status)
    local pb = assert(proto.from_proto(rpc.messages.KmsKeyResponse, r2.body))
    assert.equal(k.temp_ca_key, pb.temp_ca_key)
    assert.same({ { ca_key = k.keys[1].ca_key, k256_key = K256 } }, pb.keys)
  end)

  it('refuses without a client certificate and asks authorize_kms, not authorize_app', function()
    local kms = start({ kind = 'kms_scope_test' })
    local r = get_kms_key(kms, false, true)
    assert.equal(400, r.status)
    assert.truthy(r.body:find('an RA-TLS client certificate is required', 1, true), r.body)
    assert.same({}, scopes)
    r = get_kms_key(kms, true, true)
    assert.equal(400, r.status)
    assert.equal('KMS denied: kms ' .. ('55'):rep(32) .. ' not registered',
      assert(cjson.decode(r.body)).error)
    assert.same({ 'kms' }, scopes)
    assert.falsy(r.body:find('PRIVATE', 1, true))
  end)
end)
