-- SPDX-License-Identifier: Apache-2.0
-- The KMS service over real TLS (moonstack.http.client trusting only the KMS root CA): the RPC
-- certificate's profile and chain, GetMeta / GetTempCaCert / GetAppEnvEncryptPubKey in JSON
-- and protobuf, at /prpc/<M> and /prpc/KMS.<M>, the env pubkey equal to the spec's vector with
-- both signatures recovering the KMS k256 key, clear 400s for bad input, /health, a client
-- without the CA refused, and a restart on the same key directory serving the same keys.
local uv = require('luv')
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local client = require('moonstack.http.client')
local loop = require('tests.helpers.loop')
local proto = require('moonstack.core.proto')
local x509 = require('moonstack.x509')
local keys = require('moonstack.kms.keys')
local config = require('moonstack.kms.config')
local rpc = require('moonstack.kms.api')
local server = require('moonstack.kms')

local hex, unhex = crypto.hex, crypto.unhex
local ROOT = unhex('f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2afe19cec1')
local K256_ROOT = ('\1'):rep(32)
local APP = ('\17'):rep(20)
local ENV_PUB = '93cf259f68b24775d54290a8ea57cf93efc994d3ff28a7b8ba7a39e9f512302f'

local base, kms, material

local function start(extra)
  local t = { key_dir = base .. '/keys', listen = { host = '127.0.0.1', port = 0 },
    auth = { kind = 'dev', gateway_app_id = 'gw-any' } }
  for k, v in pairs(extra or {}) do
    t[k] = v
  end
  local cfg = assert(config.validate(t))
  return assert(server.start(cfg))
end

local function call(path, body, opts)
  opts = opts or {}
  return loop.run_task(function()
    return client.request({ url = ('https://127.0.0.1:%d%s'):format(kms:port(), path),
      method = opts.method or 'POST', body = body, host = 'localhost',
      headers = opts.headers, tls = opts.tls or { ca = material.root_cert:pem() } })
  end, 10000)
end

-- A guest agent (the simulator's API on a unix socket) with the vector app keys, or with
-- another app's k256 key; helpers to start a KMS in a task and to stop an agent.
local fixtures = require('tests.helpers.fixtures')
local simulator = require('moonstack.agent.simulator')
local function write(path, text)
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
end
local function agent(name, k256)
  local dir = base .. '/' .. name
  uv.fs_mkdir(dir, 448)
  write(dir .. '/compose.json', '{"manifest_version":2,"name":"kms","runner":"bash",'
    .. '"bash_script":"true","kms_enabled":true}')
  local keys_file = fixtures.vector('dstack/simulator/appkeys.json')
  if k256 then
    local k = assert(cjson.decode((assert(require('moonstack.core.fs').read_file(keys_file)))))
    k.k256_key = k256
    keys_file = dir .. '/appkeys.json'
    write(keys_file, cjson.encode(k))
  end
  return assert(simulator.start({ keys_file = keys_file, compose_file = dir .. '/compose.json',
    socket_dir = dir, app_id = APP })), dir .. '/dstack.sock'
end
local function start_in_task(t)
  return loop.run_task(function()
    local cfg = assert(config.validate(t))
    local k, err, code = server.start(cfg)
    return { k = k, err = err, code = code }
  end, 20000)
end
local function stop_agent(a)
  loop.run_task(function() a:stop() end, 10000)
  loop.settle(100)
end

describe('kms server', function()
  setup(function()
    local root = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    uv.fs_mkdir(root, 493)
    base = assert(uv.fs_mkdtemp(root .. '/kms_server_spec.XXXXXX'))
    material = assert(keys.create(base .. '/keys', { root_scalar = ROOT, root_k256 = K256_ROOT }))
    kms = start()
  end)

  teardown(function()
    if kms then
      kms:close()
    end
    os.execute(("rm -rf '%s'"):format(base))
  end)

  it('serves an RPC certificate issued by the root CA for its domain', function()
    local info = kms.rpc_cert:info()
    assert.equal('localhost', info.cn)
    assert.same({ 'localhost' }, info.dns)
    assert.equal('kms:rpc', kms.rpc_cert:ratls('special_usage'))
    assert(x509.verify(kms.rpc_cert, { roots = { material.root_cert } }))
    assert.is_false(kms.created)
  end)

  it('answers GetMeta in JSON and protobuf, with and without the KMS. prefix', function()
    local r = assert(call('/prpc/GetMeta?json', ''))
    assert.equal(200, r.status, r.body)
    local meta = assert(cjson.decode(r.body))
    assert.equal(material.root_cert:pem(), meta.ca_cert)
    assert.equal(hex(crypto.k256.pubkey(K256_ROOT)), meta.k256_pubkey)
    assert.is_true(meta.is_dev)
    assert.is_true(meta.allow_any_upgrade)
    assert.equal('gw-any', meta.gateway_app_id)
    local r2 = assert(call('/prpc/KMS.GetMeta', ''))
    assert.equal(200, r2.status)
    local pb = assert(proto.from_proto(rpc.messages.GetMetaResponse, r2.body))
    assert.equal(meta.ca_cert, pb.ca_cert)
    assert.equal(crypto.k256.pubkey(K256_ROOT), pb.k256_pubkey)
    assert.is_true(pb.is_dev)
  end)

  it("fills GetMeta from the auth webhook's GET <url>, and fails without it", function()
    local hook = require('moonstack.http.server').new({ name = 'hook',
      listen = { host = '127.0.0.1', port = 0 } })
    local up = true
    hook:get('/auth', function()
      if not up then
        return 503, 'down for maintenance'
      end
      return 200, { status = 'ok', kmsContractAddr = '0x' .. ('12'):rep(20), gatewayAppId = 'gw-hook',
        chainId = 1337, appAuthImplementation = '0x' .. ('34'):rep(20) }
    end)
    assert(hook:listen())
    local url = ('http://127.0.0.1:%d/auth'):format(hook:port())
    local saved = kms
    kms = start({ auth = { kind = 'webhook', url = url } })
    local r = assert(call('/prpc/GetMeta?json', ''))
    assert.equal(200, r.status, r.body)
    local meta = assert(cjson.decode(r.body))
    assert.equal('0x' .. ('12'):rep(20), meta.kms_contract_address)
    assert.equal('gw-hook', meta.gateway_app_id)
    assert.equal(1337, meta.chain_id)
    assert.equal('0x' .. ('34'):rep(20), meta.app_auth_implementation)
    assert.is_false(meta.is_dev)
    up = false
    r = assert(call('/prpc/GetMeta?json', ''))
    assert.equal(400, r.status)
    assert.truthy(r.body:find('auth webhook ' .. url .. ' returned HTTP 503: down for maintenance', 1, true),
      r.body)
    hook:close()
    kms:close()
    kms = saved
  end)

  it('hands out the temp CA (key included) and the root CA', function()
    local r = assert(call('/prpc/GetTempCaCert?json', ''))
    assert.equal(200, r.status, r.body)
    local t = assert(cjson.decode(r.body))
    assert.equal(material.tmp_ca_cert:pem(), t.temp_ca_cert)
    assert.equal(material.tmp_ca_key:scalar(), assert(x509.load_key(t.temp_ca_key)):scalar())
    assert.equal(material.root_cert:pem(), t.ca_cert)
  end)

  it('signs the env encryption public key (legacy and timestamped)', function()
    local before = os.time()
    local r = assert(call('/prpc/GetAppEnvEncryptPubKey?json', cjson.encode({ app_id = hex(APP) })))
    assert.equal(200, r.status, r.body)
    local p = assert(cjson.decode(r.body))
    assert.equal(ENV_PUB, p.public_key)
    assert.is_true(p.timestamp >= before and p.timestamp <= os.time())
    local kms_pub = crypto.k256.pubkey(K256_ROOT)
    assert.equal(kms_pub, assert(dstack.env_pubkey_recover({ public_key = unhex(ENV_PUB),
      app_id = APP, signature = unhex(p.signature) })))
    assert.equal(kms_pub, assert(dstack.env_pubkey_recover({ public_key = unhex(ENV_PUB),
      app_id = APP, signature = unhex(p.signature_v1), timestamp = p.timestamp })))
    -- the v1 signature covers the timestamp
    assert.not_equal(kms_pub, (dstack.env_pubkey_recover({ public_key = unhex(ENV_PUB),
      app_id = APP, signature = unhex(p.signature_v1), timestamp = p.timestamp - 1 })))
    -- 0x prefix accepted; GET query form
    r = assert(call('/prpc/KMS.GetAppEnvEncryptPubKey?json', '{"app_id":"0x' .. hex(APP) .. '"}'))
    assert.equal(ENV_PUB, cjson.decode(r.body).public_key)
    r = assert(call('/prpc/GetAppEnvEncryptPubKey?app_id=' .. hex(APP), nil, { method = 'GET' }))
    assert.equal(ENV_PUB, cjson.decode(r.body).public_key)
  end)

  it('answers bad input with a clear 400 and keeps serving', function()
    local cases = {
      { '/prpc/GetAppEnvEncryptPubKey?json', '{"app_id":"abcd"}', 'app_id must be 20 bytes, got 2' },
      { '/prpc/GetAppEnvEncryptPubKey?json', '{"app_id":"zz"}', 'failed to decode' },
      { '/prpc/GetAppEnvEncryptPubKey?json', '{not json', 'invalid JSON request body' },
      { '/prpc/NoSuchMethod?json', '', 'no such method: NoSuchMethod' },
    }
    for _, c in ipairs(cases) do
      local r = assert(call(c[1], c[2]))
      assert.equal(400, r.status, c[1])
      local e = assert(cjson.decode(r.body), r.body).error
      assert.truthy(e:find(c[3], 1, true), ('%q not in %q'):format(c[3], e))
    end
    local r = assert(call('/health', nil, { method = 'GET' }))
    assert.equal(200, r.status)
    assert.equal('OK', r.body)
  end)

  it('is refused by a client that does not trust its root CA', function()
    local r, err, code = call('/prpc/GetMeta?json', '', { tls = {} })
    assert.is_nil(r)
    assert.equal('ECERT', code, err)
  end)

  it('serves the same keys after a restart on the same key directory', function()
    kms:close()
    kms = start()
    local r = assert(call('/prpc/GetMeta?json', ''))
    assert.equal(hex(crypto.k256.pubkey(K256_ROOT)), cjson.decode(r.body).k256_pubkey)
    assert.equal(material.root_cert:pem(), cjson.decode(r.body).ca_cert)
  end)

  it('uses the dev auth backend: every check allowed with its gateway id', function()
    local info = { teeVariant = 'dstack-tdx', tcbStatus = 'OutOfDate', appId = hex(APP) }
    local d = loop.run_task(function() return kms.auth:authorize_app(info) end, 5000)
    assert.same({ allow = true, reason = 'dev mode', gateway_app_id = 'gw-any' }, d)
    d = loop.run_task(function() return kms.auth:authorize_kms(info) end, 5000)
    assert.is_true(d.allow)
    assert.equal('dev', kms:status().auth.kind)
    assert.is_nil(require('moonstack.kms.dev_auth').new({ kind = 'dev', url = 'x' }))
  end)

  it('seals the root keys at rest when configured, and opens them on the next start', function()
    local tee = assert(require('moonstack.sim').new({ dir = base .. '/sim', cvm = 'kms', create = true }))
    tee:close()
    local t = { key_dir = base .. '/sealed', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'dev' }, seal = { tee = 'sim', dir = base .. '/sim', cvm = 'kms' } }
    local k1 = assert(server.start(assert(config.validate(t))))
    local pub = k1.material.k256_pubkey
    k1:close()
    assert.is_true(require('moonstack.kms.seal').is_sealed(
      assert(require('moonstack.core.fs').read_file(base .. '/sealed/root-k256.key'))))
    local k2 = assert(server.start(assert(config.validate(t))))
    assert.equal(pub, k2.material.k256_pubkey)
    k2:close()
    t.seal = nil
    local k3, err, code = server.start(assert(config.validate(t)))
    assert.is_nil(k3)
    assert.equal('EKEYS', code)
    assert.truthy(err:find('is sealed', 1, true), err)
    t.seal = { tee = 'sim', dir = base .. '/sim', cvm = 'nope' }
    k3, err = server.start(assert(config.validate(t)))
    assert.is_nil(k3)
    assert.truthy(err:find('^seal: '), err)
  end)

  it("seals with its guest agent's key (the CVM's app keys) and no other agent's", function()
    local seal = require('moonstack.kms.seal')
    local a, sock = agent('agent-a')
    local t = { key_dir = base .. '/agent-sealed', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'dev' }, seal = { tee = 'agent', socket = sock } }
    local r = start_in_task(t)
    assert.truthy(r.k, r.err)
    local pub = r.k.material.k256_pubkey
    r.k:close()
    for _, f in ipairs({ 'root-ca.key', 'root-k256.key', 'tmp-ca.key' }) do
      local text = assert(require('moonstack.core.fs').read_file(base .. '/agent-sealed/' .. f))
      assert.is_true(seal.is_sealed(text), f)
      assert.is_nil(text:find('PRIVATE KEY', 1, true), f)
    end
    r = start_in_task(t) -- the same agent: the same keys
    assert.truthy(r.k, r.err)
    assert.equal(pub, r.k.material.k256_pubkey)
    r.k:close()
    stop_agent(a)
    -- nobody at the socket: a clear error, nothing regenerated
    r = start_in_task(t)
    assert.is_nil(r.k)
    assert.truthy(r.err:find('guest agent', 1, true), r.err)
    -- another app's agent (other app keys): the files do not unseal
    local b
    b, sock = agent('agent-b', ('77'):rep(32))
    t.seal.socket = sock
    r = start_in_task(t)
    assert.is_nil(r.k)
    assert.equal('EKEYS', r.code, r.err)
    assert.truthy(r.err:find('unseal', 1, true), r.err)
    stop_agent(b)
    local k256 = assert(require('moonstack.core.fs').read_file(base .. '/agent-sealed/root-k256.key'))
    assert.is_true(seal.is_sealed(k256))
  end)

  it("attests its RPC certificate through its guest agent (tee = { kind = 'agent' })", function()
    local ratls = require('moonstack.x509.ratls')
    local a, sock = agent('agent-tee')
    local r = start_in_task({ key_dir = base .. '/agent-tee-keys', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'dev' }, tee = { kind = 'agent', socket = sock } })
    assert.truthy(r.k, r.err)
    -- the certificate a client sees carries the agent's attestation, bound to its key
    local seen
    local got = loop.run_task(function()
      return client.request({ url = ('https://127.0.0.1:%d/health'):format(r.k:port()), host = 'localhost',
        tls = { ca = r.k.material.root_cert:pem(), verify = function(peer)
          seen = peer.der
          return peer.preverify
        end } })
    end, 10000)
    assert.equal(200, assert(got).status)
    local info = assert(ratls.inspect(seen))
    assert.equal('kms:rpc', info.special_usage)
    -- and it verifies with the agent's simulated platform: the agent's app, in its CVM
    local state = base .. '/agent-tee/.moonstack-agent/sim'
    local t = assert(require('moonstack.sim').new({ dir = state,
      cvm = require('moonstack.agent.simulator.context').CVM }))
    local checker = assert(require('moonstack.kms.attest').new({ collateral = assert(t:collateral(os.time())),
      root_ca = (assert(t:root_ca())), allow_simulator = true }))
    t:close()
    local boot = assert(loop.run_task(function() return checker:boot_info(seen, '') end, 10000))
    assert.equal(hex(APP), boot.appId)
    r.k:close()
    stop_agent(a)
    -- no agent: the KMS does not start without its attestation
    r = start_in_task({ key_dir = base .. '/agent-tee-keys', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'dev' }, tee = { kind = 'agent', socket = sock } })
    assert.is_nil(r.k)
    assert.truthy(r.err:find('guest agent', 1, true), r.err)
  end)

  it('refuses to start on a broken key directory or a bad auth config', function()
    os.rename(base .. '/keys/tmp-ca.key', base .. '/tmp-ca.key')
    local k, err, code = server.start(assert(config.validate({ key_dir = base .. '/keys',
      listen = { host = '127.0.0.1', port = 0 }, auth = { kind = 'dev' } })))
    os.rename(base .. '/tmp-ca.key', base .. '/keys/tmp-ca.key')
    assert.is_nil(k)
    assert.equal('EKEYS', code)
    assert.truthy(err:find('missing tmp-ca.key', 1, true), err)
    local cfg
    cfg, err = config.validate({ key_dir = base .. '/keys', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'nope' } })
    assert.is_nil(cfg)
    assert.truthy(err:find("unknown auth kind 'nope' (valid: dev, eth, policy, webhook", 1, true), err)
  end)
end)
