-- SPDX-License-Identifier: Apache-2.0
-- The agent's `kms` key provider against an in-process KMS over real mutual TLS: a simulated
-- CVM (moonstack.sim, app-id/compose-hash/instance-id events) gets the temp CA, attests a fresh
-- client certificate, and receives the spec's vector keys (root f57527ce…, k256 root 0x01×32,
-- app 0x11×20, instance 0x22×20); the root CA learned from GetTempCaCert or pinned by sys-config
-- kms_ca; the key_provider_id pin; a denial carries the backend's reason; dead URLs skipped.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local loop = require('tests.helpers.loop')
local auth = require('moonstack.kms.auth')
local config = require('moonstack.kms.config')
local server = require('moonstack.kms')
local x509 = require('moonstack.x509')
local keys = require('moonstack.agent.boot.keys')
local kms_fixture = require('kms_fixture')

local hex, unhex = crypto.hex, crypto.unhex
local APP, COMPOSE = kms_fixture.APP, kms_fixture.COMPOSE
local OS_IMAGE = ('ab'):rep(32)
local VM_CONFIG = cjson.encode({ os_image_hash = OS_IMAGE })

local fx
local base, material, tee, files
local servers = {}

local function start(auth_cfg)
  local cfg = assert(config.validate({ key_dir = base .. '/keys', domain = 'localhost',
    listen = { host = '127.0.0.1', port = 0 }, auth = auth_cfg or { kind = 'dev', gateway_app_id = 'gw-1' },
    attestation = { collateral_file = files.collateral, root_ca_file = files.root,
      allow_simulator = true }, image = { measurements_dir = files.measurements } }))
  local k = assert(server.start(cfg))
  servers[#servers + 1] = k
  return k
end

local function url(k)
  return ('https://localhost:%d'):format(k:port())
end

local function get(req)
  req.tee = tee
  req.vm_config = VM_CONFIG
  req.sys_config = req.sys_config or {}
  req.config = req.config or { kind = 'auto' }
  req.compose_key_provider = 'kms'
  return loop.run_task(function()
    return keys.get(req)
  end, 20000)
end

describe('agent kms key provider', function()
  setup(function()
    fx = kms_fixture.setup('agent_kms_provider_spec')
    base, material, tee, files = fx.base, fx.material, fx.tee, fx.files
    kms_fixture.register_image(fx, OS_IMAGE)
  end)

  teardown(function()
    kms_fixture.teardown(fx, servers)
  end)

  it('gets the app keys from sys-config kms_urls, pinned by the root SPKI', function()
    local kms = start()
    local spki = material.root_cert:spki()
    local r = assert(get({ sys_config = { kms_urls = { url(kms) } }, key_provider_id = spki }))
    assert.equal('kms', r.provider)
    assert.same({ name = 'kms', id = hex(spki) }, r.info)
    assert.equal(spki, r.provider_id)
    assert.equal(unhex(OS_IMAGE), r.os_image_hash)
    local k = r.keys
    assert.equal(material.root_cert:pem(), k.ca_cert_pem)
    assert.equal('a7470db8cfdd0fe24134b461d60766afa7c078abe6dce9f2c8a5c44034ca400e', hex(k.env_crypt_key))
    assert.equal('a59c814e2c6d9353af59ce4fba7215e5ec3b62a2495b4dca48ea6f9804061f51', hex(k.disk_crypt_key))
    assert.equal('88fa429170ad091e0f87b335ba19b1729610ac25441728807ce3325161846baf', hex(k.k256_key))
    assert.equal(crypto.k256.pubkey(('\1'):rep(32)),
      dstack.kms_issued_recover(APP, crypto.k256.pubkey(k.k256_key), k.k256_signature))
    assert.equal('gw-1', k.gateway_app_id)
    assert.equal('Kms', k.key_provider.kind)
    assert.equal(spki, k.key_provider.pubkey)
    -- the appkeys.json round trip keeps the KMS variant
    local again = assert(keys.parse_appkeys(keys.appkeys_json(k)))
    assert.equal(hex(k.k256_key), hex(again.k256_key))
    assert.equal('Kms', again.key_provider.kind)
  end)

  it('trusts a pinned kms_ca and refuses a KMS that is not under it', function()
    local kms = start()
    local r = assert(get({ config = { kind = 'kms', urls = { url(kms) } },
      sys_config = { kms_ca = material.root_cert:pem() } }))
    assert.equal('kms', r.info.name)
    local other = assert(x509.issue({ subject = 'Other Root', key = x509.generate_key(),
      ca = { pathlen = 1 } }))
    local ok, err, code = get({ config = { kind = 'kms', urls = { url(kms) } },
      sys_config = { kms_ca = other:pem() } })
    assert.is_nil(ok)
    assert.equal('EUNAVAILABLE', code)
    assert.truthy(err:find('no KMS answered GetAppKey: ' .. url(kms) .. ': GetTempCaCert', 1, true), err)
  end)

  it('refuses a KMS whose root is not the key_provider_id pin', function()
    local kms = start()
    local ok, err, code = get({ sys_config = { kms_urls = { url(kms) } }, key_provider_id = ('\0'):rep(91) })
    assert.is_nil(ok)
    assert.equal('EDENIED', code)
    assert.truthy(err:find('unexpected key provider id ' .. hex(material.root_cert:spki()), 1, true), err)
  end)

  it('skips a dead URL, fails clearly without any', function()
    local kms = start()
    local r = assert(get({ sys_config = { kms_urls = { 'https://localhost:1', url(kms) } } }))
    assert.equal('kms', r.info.name)
    local ok, err, code = get({ sys_config = { kms_urls = { 'https://localhost:1' } } })
    assert.is_nil(ok)
    assert.equal('EUNAVAILABLE', code)
    assert.truthy(err:find('no KMS answered GetAppKey: https://localhost:1: GetTempCaCert', 1, true), err)
    ok, err, code = get({ sys_config = {} })
    assert.is_nil(ok)
    assert.equal('EINVAL', code)
    assert.truthy(err:find('no KMS URL', 1, true), err)
  end)

  it('fails with the auth backend reason when the KMS denies the boot', function()
    auth.register('agent_deny_test', function()
      return { authorize = function(_, info)
        return { allow = false, reason = 'compose hash ' .. info.composeHash .. ' not allowed' }
      end }
    end)
    local kms = start({ kind = 'agent_deny_test' })
    local ok, err, code = get({ sys_config = { kms_urls = { url(kms) } } })
    assert.is_nil(ok)
    assert.equal('EDENIED', code)
    assert.truthy(err:find('KMS ' .. url(kms) .. ' refused the app keys: GetAppKey: boot denied: '
      .. 'compose hash ' .. hex(COMPOSE) .. ' not allowed', 1, true), err)
  end)
end)
