-- SPDX-License-Identifier: Apache-2.0
-- moonstack.agent.boot: identity values (compose_hash, app_id, instance_id) on the shared
-- vectors, the RTMR3 boot events against the upstream simulator fixture (order, payloads,
-- RTMR3), simulator mode, encrypted env + allowed_envs, launch tokens, the local key
-- provider's derivations (spec kms-vmm-gateway.md §3.3), MR_CONFIG_ID, key provider pins,
-- and the agent config schema. Boots run on the real sim backend in temporary directories.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local x509 = require('moonstack.x509')
local ratls = require('moonstack.x509.ratls')
local sim = require('moonstack.sim')
local eventlog = require('moonstack.tdx.eventlog')
local quote = require('moonstack.tdx.quote')
local fixtures = require('tests.helpers.fixtures')
local loop = require('tests.helpers.loop')
local boot = require('moonstack.agent.boot')
local config = require('moonstack.agent.config')
local compose = require('moonstack.cvm.app_compose')
local measure = require('moonstack.agent.boot.measure')
local keys = require('moonstack.agent.boot.keys')
local envm = require('moonstack.agent.boot.env')
local mrconfig = require('moonstack.agent.boot.mrconfig')
local teeboot = require('moonstack.agent.boot.tee')
local bus = require('moonstack.core.events')

local hex, unhex = crypto.hex, crypto.unhex
local SIM = 'dstack/simulator/'
local SIM_APP_ID = '5bb4ff9a3837357f19dc176407a5709c62eb6c56'

local function write(path, text)
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
end

local function decoded_fixture()
  return assert(cjson.decode(fixtures.read_vector('derived/simulator-attestation.decoded.json')))
end

-- A shared folder under a fresh temp dir; returns the base dir and a config for it.
local function setup(app, opts)
  opts = opts or {}
  local base = fixtures.tmpdir('agent-boot', true)
  local shared = base .. '/shared'
  os.execute(('mkdir -p %q'):format(shared))
  write(shared .. '/app-compose.json', type(app) == 'string' and app or cjson.encode(app))
  write(shared .. '/.sys-config.json', opts.sys_config or
    '{"vm_config":"{\\"os_image_hash\\":\\"' .. ('ab'):rep(32) .. '\\"}"}')
  for name, text in pairs(opts.files or {}) do
    write(shared .. '/' .. name, text)
  end
  local cfg = assert(config.validate({ shared_dir = shared, state_dir = base .. '/state',
    key_provider = opts.key_provider or { kind = 'keys_file', file = fixtures.vector(SIM .. 'appkeys.json') },
    tee = { name = 'sim', dir = base .. '/sim', cvm = 'c' },
    listen = { dstack = false, tappd = false, public = false } }))
  return base, cfg
end

local function run_boot(cfg)
  return loop.run_task(function()
    return boot.run(cfg, { launch = false })
  end, 20000)
end

local function names(events)
  local out = {}
  for _, e in ipairs(events) do
    if e.event_type == eventlog.RUNTIME_EVENT_TYPE then
      out[#out + 1] = e.event
    end
  end
  return out
end

local BASE_APP = { manifest_version = 2, name = 'demo', runner = 'bash', bash_script = 'true' }

local function app_with(fields)
  local a = {}
  for k, v in pairs(BASE_APP) do
    a[k] = v
  end
  for k, v in pairs(fields or {}) do
    a[k] = v
  end
  return a
end

describe('agent boot: identity', function()
  it('compose_hash is SHA-256 of the raw file (atlas vectors), app_id its first 20 bytes', function()
    for file, want in pairs({
      ['derived/atlas-default-app-compose.json'] =
        'a372f45a6f60cacfdf6be794a0729e3fb79c43b190db2e38b91544d149d9f6b5',
      ['derived/atlas-vllm-app-compose.json'] =
        '11899cdb6d8e0022298eb89acc347faafb8720488428c965542ff13b47949fa4',
    }) do
      local raw = fixtures.read_vector(file)
      assert(compose.parse(raw))
      local h = compose.compose_hash(raw)
      assert.are.equal(want, hex(h))
      assert.are.equal(want:sub(1, 40), hex(assert(compose.app_id(h, ''))))
      assert.are.equal(SIM_APP_ID, hex(assert(compose.app_id(h, unhex(SIM_APP_ID)))))
    end
    local raw = fixtures.read_vector(SIM .. 'app-compose.json')
    assert.are.equal('65b4e574f16973956908b6359920593c3b7d9f36f38e81a47f996a0c0d5435bb',
      hex(compose.compose_hash(raw)))
    local ok, err, code = compose.app_id(compose.compose_hash(raw), 'short')
    assert.is_nil(ok)
    assert.are.equal('EINVAL', code)
    assert.matches('expected 20 bytes, got 5', err)
  end)

  it('instance_id = SHA-256(seed || app_id)[:20] (known answer), empty with no_instance_id', function()
    local seed = ''
    for i = 0, 19 do
      seed = seed .. string.char(i)
    end
    -- computed with Python's hashlib for seed 00..13 and the simulator's app id
    assert.are.equal('f4b5aea62c5e5161c2b774872d1662e6a8e15bb7',
      hex(compose.instance_id(seed, unhex(SIM_APP_ID), false)))
    assert.are.equal('', compose.instance_id(seed, unhex(SIM_APP_ID), true))
  end)

  it('checks app-compose like the guest: manifest, runner, key provider, init scripts', function()
    local function bad(app, pat)
      local ok, err, code = compose.parse(type(app) == 'string' and app or cjson.encode(app))
      assert.is_nil(ok)
      assert.are.equal('EINVAL', code)
      assert.matches(pat, err)
    end
    bad('[1]', 'not a JSON object')
    bad(app_with({ manifest_version = 3 }), 'numbers are accepted only for 1 and 2')
    bad(app_with({ manifest_version = '03' }), 'not a canonical positive integer')
    bad(app_with({ manifest_version = '4' }), 'unsupported manifest_version 4')
    bad(app_with({ runner = 'podman' }), 'runner must be')
    bad(app_with({ key_provider = 'hsm' }), 'key_provider must be')
    bad(app_with({ init_script = { 'a', 'b' } }), 'needs manifest_version "3"')
    bad(app_with({ manifest_version = '3', requirements = { nope = 1 } }), 'requirements.nope')
    local app = assert(compose.parse(cjson.encode(app_with({ manifest_version = '3',
      init_script = { 'a', 'b' }, kms_enabled = true }))))
    assert.are.same({ 'a', 'b' }, compose.init_scripts(app))
    assert.are.equal('kms', compose.key_provider(app))
    assert.are.same({ sysinfo = false, tcbinfo = true, logs = false }, compose.public_flags(app))
  end)
end)

describe('agent boot: RTMR3 events', function()
  it('measure reproduces the simulator fixture: every payload, the order and RTMR3', function()
    local fx = decoded_fixture()
    local want = fx.runtime_events
    local kfile = assert(keys.parse_appkeys(fixtures.read_vector(SIM .. 'appkeys.json')))
    local info = keys.file_identity(kfile, 'kms')
    local events = measure.app_events({ app_id = unhex(want[2].payload),
      compose_hash = unhex(want[3].payload), instance_id = unhex(want[4].payload) })
    for _, e in ipairs(measure.key_events({ os_image_hash = unhex(want[6].payload),
        key_provider_json = keys.info_json(info) })) do
      events[#events + 1] = e
    end
    for _, e in ipairs(measure.final_events('zfs')) do
      events[#events + 1] = e
    end
    assert.are.equal(#want, #events)
    for i, e in ipairs(events) do
      assert.are.equal(want[i].event, e.name)
      assert.are.equal(want[i].payload, hex(e.payload), e.name)
    end
    -- emitted into a fresh sim CVM: RTMR3 equals the fixture quote's
    local dir = fixtures.tmpdir('agent-measure', true)
    local tee = assert(sim.new({ dir = dir .. '/sim', cvm = 'x', create = true,
      runtime_log_dir = dir .. '/rt' }))
    assert(teeboot.prepare(tee, 1, true))
    assert(measure.emit(tee, events, 1))
    assert.are.equal(fx.quote_report.rtmr3, hex(tee:rtmrs()[4]))
    assert.are.equal(fx.quote_report.rtmr3, assert(eventlog.replay(tee:event_log()))[4])
    tee:close()
  end)

  it('simulate(): the fixture order, its key-provider payload, RTMR3 in fresh quotes', function()
    local fx = decoded_fixture()
    local dir = fixtures.tmpdir('agent-sim', true)
    local simulator_context = require('moonstack.agent.simulator.context')
    local ctx = assert(simulator_context.simulate({ keys = fixtures.vector(SIM .. 'appkeys.json'),
      compose = fixtures.vector(SIM .. 'app-compose.json'),
      sys_config = fixtures.vector(SIM .. 'sys-config.json'), state_dir = dir, app_id = SIM_APP_ID }))
    local events = assert(ctx.tee:event_log())
    local want = {}
    for i, e in ipairs(fx.runtime_events) do
      want[i] = e.event
    end
    assert.are.same(want, names(events))
    local by = {}
    for _, e in ipairs(events) do
      by[e.event] = e.event_payload
    end
    assert.are.equal(fx.runtime_events[7].payload, hex(by['key-provider']))
    assert.are.equal(SIM_APP_ID, hex(by['app-id']))
    assert.are.equal(hex(ctx.compose_hash), hex(by['compose-hash']))
    assert.are.equal('64f0d1545cd510a8dfed7ad609d105b5d41f0cb2afcfdda8867ede00c88add7a',
      hex(ctx.os_image_hash))
    assert.are.equal('kms', ctx.key_provider_info.name)
    assert.are.equal(hex(crypto.sha256('')), hex(ctx.device_id))
    assert.are.equal('running', ctx.state)
    -- the KMS-issued signature in the keys file verifies for this app id
    local k = assert(dstack.get_key({ k256_key = ctx.keys.k256_key, path = 'x', purpose = 'p',
      k256_signature = ctx.keys.k256_signature }))
    local chain = assert(dstack.verify_key_chain({ pubkey = k.pubkey, purpose = 'p',
      signature_chain = k.signature_chain, app_id = ctx.app_id }))
    assert.are.equal('0321529e458424ab1f710a3a57ec4dad2fb195ddca572f7469242ba6c7563085b6',
      hex(chain.kms_pubkey))
    local q = assert(quote.parse(assert(ctx.tee:get_quote('rd'))))
    assert.are.equal(assert(eventlog.replay(events))[4], hex(q.report.rtmr3))
    assert.are.equal(hex(mrconfig.v1(ctx.compose_hash)), hex(q.report.mr_config_id))
    ctx:close()
    assert.are.equal('stopped', ctx.state)
  end)

  it('run(): init-script-hash per script and gpu-policy-hash in upstream order', function()
    local app = app_with({ manifest_version = '3', init_script = { 'echo a', 'echo b' },
      requirements = { gpu_policy = { attest_gpu = false } }, key_provider = 'kms' })
    local _, cfg = setup(app)
    local ctx = assert(run_boot(cfg))
    local events = assert(ctx.tee:event_log())
    assert.are.same({ 'system-preparing', 'app-id', 'compose-hash', 'init-script-hash',
      'init-script-hash', 'gpu-policy-hash', 'instance-id', 'boot-mr-done', 'os-image-hash',
      'key-provider', 'storage-fs', 'system-ready' }, names(events))
    assert.are.equal(hex(crypto.sha256('echo a')), hex(events[4].event_payload))
    assert.are.equal(hex(crypto.sha256('echo b')), hex(events[5].event_payload))
    assert.are.equal(hex(crypto.sha256('{"attest_gpu":false}')), hex(events[6].event_payload))
    assert.are.equal(hex(ctx.tee:rtmrs()[4]), assert(eventlog.replay(events))[4])
    assert.are.equal(('ab'):rep(32), hex(events[9].event_payload))
    ctx:close()
  end)

  it('run(): app_id from .instance_info, a stable instance_id from its seed', function()
    local seed = ('07'):rep(20)
    local _, cfg = setup(app_with({ key_provider = 'kms' }), { files = {
      ['.instance_info'] = '{"app_id":"' .. SIM_APP_ID .. '","instance_id_seed":"' .. seed .. '"}' } })
    local ctx = assert(run_boot(cfg))
    assert.are.equal(SIM_APP_ID, hex(ctx.app_id))
    assert.are.equal(hex(crypto.sha256(unhex(seed) .. unhex(SIM_APP_ID))):sub(1, 40),
      hex(ctx.instance_id))
    local saved = cjson.decode(fixtures.read(cfg.state_dir .. '/.instance_info'))
    assert.are.equal(seed, saved.instance_id_seed)
    local appkeys = assert(keys.parse_appkeys(fixtures.read(cfg.state_dir .. '/.appkeys.json')))
    assert.are.equal(hex(ctx.keys.k256_key), hex(appkeys.k256_key))
    ctx:close()
  end)

  it('run(): publishes its steps and states on the event bus, without secrets', function()
    local _, cfg = setup(app_with({ key_provider = 'kms' }))
    local seen = {}
    local sub = bus.subscribe('agent.', function(ev) seen[#seen + 1] = ev end)
    local ctx = assert(run_boot(cfg))
    sub:close()
    local steps, states, measured = {}, {}, nil
    for _, ev in ipairs(seen) do
      if ev.topic == 'agent.boot' then
        steps[#steps + 1] = ev.data.step
        if ev.data.step == 'measure' then
          measured = ev.data.events -- the step's detail, plain values only
        end
      else
        assert.are.equal('agent.state', ev.topic)
        states[#states + 1] = ev.data.state
      end
    end
    local want = {}
    for _, st in ipairs(ctx.steps) do
      want[#want + 1] = st.name
    end
    assert.are.same(want, steps)
    assert.is_true(#steps >= 4)
    assert.are.same({ 'starting' }, states)
    assert.is_true(measured > 0)
    local text = cjson.encode(seen)
    for _, secret in pairs(ctx.keys) do
      if type(secret) == 'string' and #secret >= 16 then
        assert.is_nil(text:find(hex(secret), 1, true))
        assert.is_nil(text:find(secret, 1, true))
      end
    end
    ctx:close()
  end)
end)

describe('agent boot: encrypted env', function()
  local env_key = unhex(assert(cjson.decode(fixtures.read_vector(SIM .. 'appkeys.json'))).env_crypt_key)
  local function blob(pairs_list)
    local list = {}
    for i, p in ipairs(pairs_list) do
      list[i] = { key = p[1], value = p[2] }
    end
    return assert(dstack.env_encrypt(crypto.x25519.pubkey(env_key), cjson.encode({ env = list })))
  end

  it('decrypts with env_crypt_key and keeps allowed_envs only', function()
    local env, dropped = envm.decrypt(env_key,
      blob({ { 'A', '1' }, { 'SECRET', 'x' }, { 'B', 'two words' } }), { A = true, B = true })
    assert.are.same({ A = '1', B = 'two words' }, env)
    assert.are.same({ 'SECRET' }, dropped)
    assert.are.equal('A=1\nB="two words"\n', envm.dotenv(env))
    assert.are.equal('{"A":"1","B":"two words"}', envm.json(env))
    -- a key not allowed is dropped even when its name is invalid; an allowed bad name fails
    env = envm.decrypt(env_key, blob({ { 'bad-name', 'x' } }), {})
    assert.are.same({}, env)
    local ok, err, code = envm.decrypt(env_key, blob({ { 'bad-name', 'x' } }), { ['bad-name'] = true })
    assert.is_nil(ok)
    assert.are.equal('EINVAL', code)
    assert.matches('invalid env key: bad%-name', err)
    ok, err, code = envm.decrypt(crypto.random(32), blob({ { 'A', '1' } }), { A = true })
    assert.is_nil(ok)
    assert.are.equal('EDECRYPT', code)
    assert.matches('failed to decrypt', err)
    assert.are.same({}, (envm.decrypt('', 'anything', { A = true })))
  end)

  it('escapes values like upstream convert_env_to_str', function()
    assert.are.equal('K=simple\n', envm.dotenv({ K = 'simple' }))
    assert.are.equal('K="say \\"hello\\""\n', envm.dotenv({ K = 'say "hello"' }))
    assert.are.equal('K="line1\\nline2"\n', envm.dotenv({ K = 'line1\nline2' }))
    assert.are.equal('K="price=\\$100"\n', envm.dotenv({ K = 'price=$100' }))
    assert.are.equal('K="command=\\`date\\`"\n', envm.dotenv({ K = 'command=`date`' }))
  end)

  it('enforces the size rules', function()
    local ok, err = envm.parse(cjson.encode({ env = { { key = 'K', value = ('v'):rep(128 * 1024 + 1) } } }),
      { K = true })
    assert.is_nil(ok)
    assert.matches('value too long', err)
    local many = {}
    for i = 1, 1025 do
      many[i] = { key = 'K' .. i, value = '' }
    end
    ok, err = envm.parse(cjson.encode({ env = many }), {})
    assert.is_nil(ok)
    assert.matches('too many', err)
  end)

  it('run(): the context env holds the allowed keys; a bad allowed name fails the boot', function()
    local app = app_with({ key_provider = 'kms', allowed_envs = { 'GOOD', 'ALSO' } })
    local _, cfg = setup(app, { files = { ['.encrypted-env'] = blob({ { 'GOOD', 'yes' },
      { 'EVIL', 'no' }, { 'ALSO', 'a b' } }) } })
    local ctx = assert(run_boot(cfg))
    assert.are.same({ GOOD = 'yes', ALSO = 'a b' }, ctx.env)
    assert.are.equal('ALSO="a b"\nGOOD=yes\n', fixtures.read(cfg.state_dir .. '/.decrypted-env'))
    ctx:close()
    local _, cfg2 = setup(app_with({ key_provider = 'kms', allowed_envs = { '9LIVES' } }),
      { files = { ['.encrypted-env'] = blob({ { '9LIVES', 'x' } }) } })
    local ok, err, code = run_boot(cfg2)
    assert.is_nil(ok)
    assert.are.equal('EINVAL', code)
    assert.matches('env: invalid env key: 9LIVES', err)
  end)
end)

describe('agent boot: launch tokens', function()
  local TOKEN = 'unit-test-launch-token-0000000001'
  -- upstream dstack-util's test vector: sha256("dstack-launch-token/v1:" || TOKEN)
  local PIN = '28faa1319055d733ad9651f5ab7689c15b04609846bcd27b3c5bc8df6246f5a3'
  local function uc(token)
    return cjson.encode({ dstack = { launch_token = token } })
  end

  it('requirements.launch_token_hash: accepts the token, rejects wrong/short/missing', function()
    assert.is_true(envm.check_launch_token(PIN, uc(TOKEN)))
    local function no(pin, user_config, code, pat)
      local ok, err, c = envm.check_launch_token(pin, user_config)
      assert.is_nil(ok)
      assert.are.equal(code, c)
      assert.matches(pat, err)
    end
    no(PIN, uc('wrong-launch-token-00000000000001'), 'EDENIED', 'launch token mismatch')
    no('e128cf5f3c3633d3a1f450d3d4bece260b20f9afb667de4bbff6dd985f1e5d1a', uc('test'), 'EDENIED',
      'too short')
    no(PIN, uc(('a'):rep(31)), 'EDENIED', 'too short')
    no(PIN, '{}', 'EDENIED', 'missing dstack.launch_token')
    no('zz', uc(TOKEN), 'EINVAL', 'not a hex string')
    no('9f86d0', uc(TOKEN), 'EINVAL', 'expected a 32%-byte sha256 hex')
  end)

  it('APP_LAUNCH_TOKEN: launch_token_hash = sha256(token) against the decrypted env', function()
    local pin = hex(crypto.sha256(TOKEN))
    assert.is_true(envm.check_app_launch_token(pin, { APP_LAUNCH_TOKEN = TOKEN }))
    assert.are.same({ true, 'skipped' }, { envm.check_app_launch_token(nil, {}) })
    local ok, err, code = envm.check_app_launch_token(pin, { APP_LAUNCH_TOKEN = TOKEN .. 'x' })
    assert.is_nil(ok)
    assert.are.equal('EDENIED', code)
    assert.matches('incorrect APP_LAUNCH_TOKEN', err)
    ok, err = envm.check_app_launch_token(pin, {})
    assert.is_nil(ok)
    assert.matches('not in the decrypted env', err)
  end)

  it('run(): a wrong token stops the boot before anything is measured', function()
    local app = app_with({ manifest_version = '3', key_provider = 'kms',
      requirements = { launch_token_hash = PIN } })
    local _, cfg = setup(app, { files = { ['.user-config'] = uc(TOKEN) } })
    local ctx = assert(run_boot(cfg))
    ctx:close()
    local base, cfg2 = setup(app, { files = { ['.user-config'] = uc('x' .. TOKEN) } })
    local ok, err, code = run_boot(cfg2)
    assert.is_nil(ok)
    assert.are.equal('EDENIED', code)
    assert.matches('^EDENIED: policy: launch token mismatch', err)
    assert.is_nil(io.open(base .. '/sim/cvms/c.runtime/runtime_events.log'))
  end)
end)

describe('agent boot: key providers', function()
  it('local: upstream non-KMS derivations from the seed, local-sgx + mr', function()
    local seed = unhex(('5a'):rep(32))
    local _, cfg = setup(app_with({ key_provider = 'local' }),
      { key_provider = { kind = 'local', seed = ('5a'):rep(32), mr = ('cd'):rep(32) } })
    local ctx = assert(run_boot(cfg))
    local k = ctx.keys
    assert.are.equal(hex(assert(dstack.derive_key(seed, 'app-k256-key', 32))), hex(k.k256_key))
    assert.are.equal(hex(crypto.sha256(dstack.p256_pkcs8(assert(dstack.derive_p256(seed, 'app-disk-key'))))),
      hex(k.disk_crypt_key))
    assert.are.equal('', k.env_crypt_key)
    assert.are.equal('', k.k256_signature)
    local ca_key = assert(x509.load_key(k.app_ca.key))
    assert.are.equal(hex(assert(dstack.derive_p256(seed, 'app-key'))), hex(ca_key:scalar()))
    local info = assert(x509.parse(k.ca_cert_pem))
    assert.are.equal('App Root Cert', info.cn)
    assert.is_true(info.ca)
    assert.are.equal(1, info.pathlen)
    assert.are.equal(hex(ca_key:spki()), hex(info.spki))
    -- the attestation in the certificate binds its key
    local r = assert(ratls.inspect(k.ca_cert_pem))
    assert.are.equal('attestation', r.evidence.kind)
    assert.are.equal(hex(x509.report_data('ratls-cert', info.spki)), hex(r.report_data))
    assert.are.same({ name = 'local-sgx', id = ('cd'):rep(32) }, ctx.key_provider_info)
    local events = ctx.tee:event_log()
    assert.are.equal('{"name":"local-sgx","id":"' .. ('cd'):rep(32) .. '"}',
      events[#events - 2].event_payload)
    ctx:close()
  end)

  it('none: fresh random keys and a new instance every boot', function()
    local _, cfg = setup(app_with({}), { key_provider = { kind = 'auto' } })
    local a = assert(run_boot(cfg))
    a:close()
    local b = assert(run_boot(cfg))
    b:close()
    assert.are_not.equal(hex(a.keys.k256_key), hex(b.keys.k256_key))
    assert.are_not.equal(hex(a.instance_id), hex(b.instance_id))
    assert.are.same({ name = 'none', id = '' }, b.key_provider_info)
  end)

  it('kms needs a URL; contradictions and pins are refused', function()
    local _, cfg = setup(app_with({ key_provider = 'kms' }), { key_provider = { kind = 'auto' } })
    local ok, err, code = run_boot(cfg)
    assert.is_nil(ok)
    assert.are.equal('EINVAL', code)
    assert.matches('no KMS URL %(sys%-config kms_urls or key_provider.urls%)', err)
    _, cfg = setup(app_with({ key_provider = 'kms' }),
      { key_provider = { kind = 'local', seed = ('01'):rep(32) } })
    ok, err = run_boot(cfg)
    assert.is_nil(ok)
    assert.matches("asks for the 'kms' key provider but the agent is configured with 'local'", err)
    _, cfg = setup(app_with({ key_provider = 'kms', key_provider_id = ('00'):rep(91) }))
    ok, err, code = run_boot(cfg)
    assert.is_nil(ok)
    assert.are.equal('EDENIED', code)
    assert.matches('unexpected key provider id', err)
  end)

  it('appkeys.json round trip and bad files', function()
    local text = fixtures.read_vector(SIM .. 'appkeys.json')
    local k = assert(keys.parse_appkeys(text))
    assert.are.equal('None', k.key_provider.kind)
    local again = assert(keys.parse_appkeys(keys.appkeys_json(k)))
    assert.are.same(k, again)
    local obj = cjson.decode(text)
    obj.k256_key = 'zz'
    local ok, err = keys.parse_appkeys(cjson.encode(obj))
    assert.is_nil(ok)
    assert.matches('k256_key is not hex', err)
  end)
end)

describe('agent boot: MR_CONFIG_ID', function()
  it('checks V1 (the fixture), V2 and V3', function()
    local fx = decoded_fixture()
    local mci = unhex(fx.quote_report.mr_config_id)
    local ch = unhex(fx.runtime_events[3].payload)
    assert.is_true(mrconfig.check(mci, { compose_hash = ch }))
    local ok, err, code = mrconfig.check(mci, { compose_hash = crypto.sha256('other') })
    assert.is_nil(ok)
    assert.are.equal('EDENIED', code)
    assert.matches('does not match', err)
    assert.is_true(mrconfig.check(('\0'):rep(48), {}))
    local l = { compose_hash = ch, app_id = unhex(SIM_APP_ID), key_provider = 'kms',
      key_provider_id = 'kp', instance_id = '', init_script_hashes = {} }
    assert.is_true(mrconfig.check(mrconfig.v2(ch, l.app_id, 'kms', 'kp'), l))
    assert.is_nil(mrconfig.check(mrconfig.v2(ch, l.app_id, 'local', 'kp'), l))
    local doc = '{"app_id":"' .. SIM_APP_ID .. '","compose_hash":"' .. hex(ch)
      .. '","key_provider":"kms","version":3}'
    l.mr_config_document = doc
    assert.is_true(mrconfig.check(mrconfig.v3(doc), l))
    l.mr_config_document = doc:gsub('"kms"', '"none"')
    assert.is_nil(mrconfig.check(mrconfig.v3(l.mr_config_document), l))
  end)

  it('run(): a CVM launched for another compose does not boot', function()
    local base, cfg = setup(app_with({ key_provider = 'kms' }))
    local t = assert(sim.new({ dir = base .. '/sim', cvm = 'c', create = true,
      td = { mr_config_id = mrconfig.v1(crypto.sha256('another compose')) } }))
    t:close()
    local ok, err, code = run_boot(cfg)
    assert.is_nil(ok)
    assert.are.equal('EDENIED', code)
    assert.matches('^EDENIED: verify: mr_config_id', err)
  end)
end)

describe('agent config', function()
  it('applies defaults and names bad keys', function()
    local cfg = assert(config.validate({ tee = { name = 'tdx' } }))
    assert.are.equal('/dstack/.host-shared', cfg.shared_dir)
    assert.are.equal('/var/lib/moonstack/agent/logs', cfg.log_dir)
    assert.are.same({ host = '0.0.0.0', port = 8090 }, cfg.listen.public)
    assert.are.same({ unix = '/var/run/dstack.sock' }, cfg.listen.dstack)
    assert.are.equal('auto', cfg.key_provider.kind)
    assert.are.equal(5000, cfg.runner.stop_grace_ms)
    local function bad(t, pat)
      local ok, err, code = config.validate(t)
      assert.is_nil(ok)
      assert.are.equal('EINVAL', code)
      assert.matches(pat, err)
    end
    bad({}, 'config.tee: missing')
    bad({ tee = { name = 'sim' } }, 'needs dir')
    bad({ tee = { name = 'tdx' }, key_provider = { kind = 'keys_file' } }, 'needs file')
    bad({ tee = { name = 'tdx' }, key_provider = { kind = 'local', seed = 'ab' } }, 'expected 64 hex digits')
    bad({ tee = { name = 'tdx' }, listen = { public = { port = 70000 } } }, 'config.listen.public')
    bad({ tee = { name = 'tdx' }, runner = { nope = 1 } }, 'config.runner.nope: unknown key')
  end)
end)
