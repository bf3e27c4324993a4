-- SPDX-License-Identifier: Apache-2.0
-- Onboarding by replication over real mutual RA-TLS: KMS A (simulated CVM "kms-a", its RPC
-- certificate attested through kms.lua `tee`) hands its root keys to B (simulated CVM "kms-b")
-- only after each side verified the other's quote and asked its auth backend's authorize_kms.
-- B's key directory then holds A's root CA, root k256 key and temp CA (keys.load). Refused,
-- nothing written: B's backend denies A, A's backend denies B, A's certificate carries no
-- attestation. Self-authorization: A asks its backend about itself before each trusted RPC,
-- never caching the answer.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local loop = require('tests.helpers.loop')
local sim = require('moonstack.sim')
local evidence = require('moonstack.tdx.evidence')
local auth = require('moonstack.kms.auth')
local keys = require('moonstack.kms.keys')
local config = require('moonstack.kms.config')
local server = require('moonstack.kms')
local onboard = require('moonstack.kms.replicate')

local unhex = crypto.unhex
local ROOT = unhex('f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2afe19cec1')
local HASH_A, HASH_B = ('\170'):rep(32), ('\187'):rep(32)

local base, material, files, tee_a, tee_b
local servers = {}
local allowed = {} -- compose hash (hex) -> true, per backend name
local asked = {}
local os_seen = {}

local function write(path, data)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
end

-- Each backend knows its own KMS (self-authorization, counted apart) and what `allowed` says.
local own = { a_test = crypto.hex(HASH_A), b_test = crypto.hex(HASH_B) }
local self_asked, self_denied = {}, {}

local function backend(name)
  auth.register(name, function()
    return { authorize = function(_, info, scope)
      if scope == 'kms' and info.composeHash == own[name] then
        self_asked[name] = (self_asked[name] or 0) + 1
        if self_denied[name] then
          return { allow = false, reason = 'this KMS image is withdrawn' }
        end
        return { allow = true, reason = 'myself' }
      end
      asked[#asked + 1] = name .. ':' .. scope
      os_seen[name] = info.osImageHash
      if scope == 'kms' and allowed[name][info.composeHash] then
        return { allow = true, reason = 'known KMS' }
      end
      return { allow = false, reason = name .. ' does not know ' .. info.composeHash:sub(1, 8) }
    end }
  end)
  allowed[name] = {}
end

local function att_cfg()
  return { collateral_file = files.collateral, root_ca_file = files.root, allow_simulator = true }
end

local function start_a(with_tee)
  local cfg = assert(config.validate({ key_dir = base .. '/a', listen = { host = '127.0.0.1', port = 0 },
    auth = { kind = 'a_test' }, attestation = att_cfg(), image = { measurements_dir = base .. '/mrs' },
    tee = with_tee and { kind = 'sim', dir = base .. '/sim', cvm = 'kms-a' } or nil }))
  local k = assert(server.start(cfg))
  servers[#servers + 1] = k
  return k
end

local function replicate(a, dir, vm_config, image)
  return loop.run_task(function()
    return onboard.replicate({ source_url = ('https://127.0.0.1:%d'):format(a:port()), key_dir = dir,
      vm_config = vm_config,
      evidence = evidence.new({ tee = tee_b, vm_config = '' }),
      attest = assert(require('moonstack.kms.setup').attest_from_config(att_cfg(), image)),
      auth = assert(auth.new({ kind = 'b_test' })), timeout_ms = 10000 })
  end, 20000)
end

describe('kms onboarding', function()
  setup(function()
    local root = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    uv.fs_mkdir(root, 493)
    base = assert(uv.fs_mkdtemp(root .. '/kms_onboard_spec.XXXXXX'))
    material = assert(keys.create(base .. '/a', { root_scalar = ROOT, root_k256 = ('\1'):rep(32) }))
    tee_a = assert(sim.new({ dir = base .. '/sim', cvm = 'kms-a', create = true }))
    assert(tee_a:emit_event('compose-hash', HASH_A, { version = 1 }))
    tee_b = assert(sim.new({ dir = base .. '/sim', cvm = 'kms-b', create = true }))
    assert(tee_b:emit_event('compose-hash', HASH_B, { version = 1 }))
    files = { collateral = base .. '/collateral.json', root = base .. '/sim-root.pem' }
    write(files.collateral, assert(tee_a:collateral(os.time())))
    write(files.root, (assert(tee_a:root_ca())))
    backend('a_test')
    backend('b_test')
    -- both KMSes run the OS image cd…: its boot measurements are registered for A's gate
    local m = assert(tee_b:measurements())
    uv.fs_mkdir(base .. '/mrs', 448)
    write(base .. '/mrs/' .. ('cd'):rep(32) .. '.json', require('cjson').encode({
      mrtd = crypto.hex(m.mrtd), rtmr0 = crypto.hex(m.rtmr0), rtmr1 = crypto.hex(m.rtmr1),
      rtmr2 = crypto.hex(m.rtmr2) }))
  end)

  teardown(function()
    for _, k in ipairs(servers) do
      k:close()
    end
    for _, t in ipairs({ tee_a, tee_b }) do
      t:close()
    end
    os.execute(("rm -rf '%s'"):format(base))
  end)

  before_each(function()
    asked = {}
    allowed.a_test[crypto.hex(HASH_B)] = true
    allowed.b_test[crypto.hex(HASH_A)] = true
  end)

  it('copies the root keys after both sides attested and authorised each other', function()
    local a = start_a(true)
    local m, err = replicate(a, base .. '/b', '{"os_image_hash":"' .. ('cd'):rep(32) .. '"}')
    assert.truthy(m, err)
    assert.same({ 'b_test:kms', 'a_test:kms' }, asked)
    -- A's attestation names no OS image: B judged it with its own vm_config's; A got B's
    assert.equal(('cd'):rep(32), os_seen.b_test)
    assert.equal(('cd'):rep(32), os_seen.a_test)
    local b = assert(keys.load(base .. '/b'))
    assert.equal(material.root_cert:pem(), b.root_cert:pem())
    assert.equal(ROOT, b.root_key:scalar())
    assert.equal(('\1'):rep(32), b.root_k256)
    assert.equal(material.tmp_ca_cert:pem(), b.tmp_ca_cert:pem())
    assert.equal(material.tmp_ca_key:scalar(), b.tmp_ca_key:scalar())
    -- so B derives every app key as A does
    local derive = require('moonstack.kms.derive')
    local app, inst = ('\171'):rep(20), ('\205'):rep(20)
    local ka, kb = assert(derive.app_keys(material, app, inst)), assert(derive.app_keys(b, app, inst))
    for _, f in ipairs({ 'disk_crypt_key', 'env_crypt_key', 'k256_key', 'k256_signature' }) do
      assert.equal(crypto.hex(ka[f]), crypto.hex(kb[f]), f)
    end
    assert.equal(ka.app_ca_key:scalar(), kb.app_ca_key:scalar())
    -- a second run refuses to overwrite
    local m2, err2 = replicate(a, base .. '/b')
    assert.is_nil(m2)
    assert.truthy(err2:find('refusing to overwrite', 1, true), err2)
  end)

  it('asks its own backend about itself before each trusted RPC (self-authorization)', function()
    local a = start_a(true)
    assert.is_truthy(a.selfauth)
    local function call(method)
      return loop.run_task(function()
        return require('moonstack.http.client').request({ url = ('https://127.0.0.1:%d/prpc/%s?json')
          :format(a:port(), method), method = 'POST', body = '{}', host = 'localhost',
          tls = { ca = material.root_cert:pem() } })
      end, 10000)
    end
    self_asked.a_test = 0
    assert.equal(200, assert(call('GetTempCaCert')).status)
    assert.equal(1, self_asked.a_test)
    self_denied.a_test = true -- the policy withdraws this KMS's image: no caching
    local r = assert(call('GetTempCaCert'))
    assert.equal(400, r.status)
    assert.truthy(r.body:find('self-authorization denied: this KMS image is withdrawn', 1, true), r.body)
    assert.equal(200, assert(call('GetMeta')).status) -- not a trusted RPC
    assert.equal(2, self_asked.a_test)
    self_denied.a_test = nil
    assert.equal(200, assert(call('GetTempCaCert')).status)
    assert.equal(3, self_asked.a_test)
    -- off when asked, and impossible without the KMS's TEE
    local cfg = assert(config.validate({ key_dir = base .. '/a', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'a_test' }, attestation = att_cfg(), self_authorization = false,
      tee = { kind = 'sim', dir = base .. '/sim', cvm = 'kms-a' } }))
    assert.is_false(cfg.self_authorization)
    local _, err = config.validate({ key_dir = base .. '/a', auth = { kind = 'dev' },
      self_authorization = true })
    assert.truthy(err:find('self_authorization needs tee', 1, true), err)
  end)

  it('refuses when its own backend does not know the source KMS', function()
    allowed.b_test = {}
    local m, err, code = replicate(start_a(true), base .. '/b2')
    assert.is_nil(m)
    assert.equal('EDENIED', code)
    assert.truthy(err:find('source KMS denied: b_test does not know aaaaaaaa', 1, true), err)
    assert.same({ 'b_test:kms' }, asked)
    assert.is_nil(uv.fs_stat(base .. '/b2'))
  end)

  it("refuses a source whose boot chain is not the OS image it is taken to run", function()
    -- A's attestation names no image: B takes it to run B's own (cd…), and B's gate knows no
    -- measurements for that image
    local m, err, code = replicate(start_a(true), base .. '/b4',
      '{"os_image_hash":"' .. ('cd'):rep(32) .. '"}', { measurements_dir = base .. '/no-mrs' })
    assert.is_nil(m)
    assert.equal('EIMAGE', code, err)
    assert.truthy(err:find('source KMS: EIMAGE: OS image ' .. ('cd'):rep(32), 1, true), err)
    assert.is_nil(uv.fs_stat(base .. '/b4'))
  end)

  it('is refused when the source backend does not know this KMS', function()
    allowed.a_test = {}
    local m, err = replicate(start_a(true), base .. '/b3')
    assert.is_nil(m)
    assert.truthy(err:find('KMS denied: a_test does not know bbbbbbbb', 1, true), err)
    assert.is_nil(uv.fs_stat(base .. '/b3'))
  end)

  it('onboards at start from kms.lua onboard = { source_url } and then serves A\'s root', function()
    local a = start_a(true)
    local cfg = assert(config.validate({ key_dir = base .. '/b5', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'b_test' }, attestation = att_cfg(),
      tee = { kind = 'sim', dir = base .. '/sim', cvm = 'kms-b' },
      onboard = { source_url = ('https://127.0.0.1:%d'):format(a:port()) } }))
    local b = assert(loop.run_task(function() return server.start(cfg) end, 20000))
    servers[#servers + 1] = b
    assert.is_false(b.created)
    assert.equal(material.root_cert:pem(), b.material.root_cert:pem())
    assert.equal(material.k256_pubkey, b.material.k256_pubkey)
    assert.same({ 'b_test:kms', 'a_test:kms' }, asked)
    -- the keys are B's now: a restart does not ask A again
    b:close()
    a:close()
    asked = {}
    local b2 = assert(loop.run_task(function() return server.start(cfg) end, 20000))
    servers[#servers + 1] = b2
    assert.same({}, asked)
    assert.equal(material.root_cert:pem(), b2.material.root_cert:pem())
    -- onboarding needs this KMS's TEE and the attestation settings
    local _, err = config.validate({ key_dir = base .. '/b6', auth = { kind = 'dev' },
      onboard = { source_url = 'https://x:1' } })
    assert.truthy(err:find('config.onboard needs tee', 1, true), err)
  end)

  it('refuses a source whose certificate carries no attestation', function()
    local m, err = replicate(start_a(false), base .. '/b4')
    assert.is_nil(m)
    assert.truthy(err:find('source KMS: ENOATTEST', 1, true), err)
    assert.is_nil(uv.fs_stat(base .. '/b4'))
  end)
end)
