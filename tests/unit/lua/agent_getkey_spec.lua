-- SPDX-License-Identifier: Apache-2.0
-- The guest API's key methods on the wire: with the upstream simulator's appkeys.json, GetKey
-- (and Tappd.DeriveK256Key) answer exactly vectors/derived/simulator-getkey-vectors.json,
-- through the pRPC layer in JSON (POST, GET query, ?json) and protobuf; the chains recover the
-- app key and the KMS root; cached answers equal fresh ones; Sign/Verify and their errors.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local fixtures = require('tests.helpers.fixtures')
local keysfile = require('moonstack.agent.boot.keys')
local methods = require('moonstack.agent.api.methods')
local prpc = require('moonstack.core.prpc')
local proto = require('moonstack.core.proto')
local messages = require('moonstack.agent.api.messages')

local hex, unhex = crypto.hex, crypto.unhex

local vectors = cjson.decode(fixtures.read_vector('derived/simulator-getkey-vectors.json'))
local keys = assert(keysfile.parse_appkeys(fixtures.read_vector('dstack/simulator/appkeys.json')))

-- A context with the simulator's keys; GetKey/Sign/Verify need no TEE.
local function new_svc()
  return methods.build({ keys = keys, tee = {} })
end

local function req(body, opts)
  opts = opts or {}
  return { method = opts.method or 'POST', path = '/GetKey', body = body or '', args = opts.args or {},
    headers = { ['content-type'] = opts.ctype == nil and 'application/json' or opts.ctype or nil } }
end

local function call(svc, name, body, opts)
  local status, text, headers = prpc.call(name, svc.dstack[name] or svc.tappd[name], req(body, opts))
  return status, text, headers
end

describe('GetKey with the upstream simulator keys', function()
  it('answers exactly the vectors (JSON)', function()
    local svc = new_svc()
    assert.is_true(#vectors.getKey >= 5)
    for _, v in ipairs(vectors.getKey) do
      local body = cjson.encode({ path = v.path, purpose = v.purpose, algorithm = v.algorithm })
      local status, text, headers = call(svc, 'GetKey', body)
      assert.are.equal(200, status)
      assert.are.equal('application/json', headers['content-type'])
      local r = cjson.decode(text)
      assert.are.equal(v.key, r.key)
      assert.are.same(v.signature_chain, r.signature_chain)
      -- the exact wire form: fields in proto order, bare lowercase hex
      assert.are.equal(('{"key":"%s","signature_chain":["%s","%s"]}'):format(v.key,
        v.signature_chain[1], v.signature_chain[2]), text)
    end
  end)

  it('chains recover the app key and the KMS root', function()
    for _, v in ipairs(vectors.getKey) do
      local r = assert(dstack.verify_key_chain({ pubkey = unhex(v.pubkey), purpose = v.purpose,
        signature_chain = { unhex(v.signature_chain[1]), unhex(v.signature_chain[2]) },
        app_id = unhex(vectors.app_id), kms_pubkey = unhex(vectors.kms_root_k256_pubkey_recovered) }))
      assert.are.equal(vectors.app_k256_pubkey_compressed, hex(r.app_pubkey))
    end
  end)

  it('is the same through a GET query, ?json, protobuf and Tappd.DeriveK256Key', function()
    local svc = new_svc()
    local v = vectors.getKey[3]
    local _, text = call(svc, 'GetKey', '', { method = 'GET',
      args = { path = v.path, purpose = v.purpose, algorithm = v.algorithm } })
    assert.are.equal(v.key, cjson.decode(text).key)
    local pbody = proto.to_proto(messages.GetKeyArgs, v)
    local status, bin, headers = call(svc, 'GetKey', pbody, { ctype = false })
    assert.are.equal(200, status)
    assert.are.equal('application/octet-stream', headers['content-type'])
    local r = assert(proto.from_proto(messages.GetKeyResponse, bin))
    assert.are.equal(v.key, hex(r.key))
    assert.are.same(v.signature_chain, { hex(r.signature_chain[1]), hex(r.signature_chain[2]) })
    _, text = call(svc, 'GetKey', cjson.encode(v), { ctype = 'text/plain', args = { json = '' } })
    assert.are.equal(v.key, cjson.decode(text).key)
    _, text = call(svc, 'DeriveK256Key', cjson.encode(v))
    local d = cjson.decode(text)
    assert.are.equal(v.key, d.k256_key)
    assert.are.same(v.signature_chain, d.k256_signature_chain)
  end)

  it('serves cached answers equal to fresh ones, and separates the cache keys', function()
    local svc = new_svc()
    local a1 = select(2, call(svc, 'GetKey', '{"path":"a\\u0000b","purpose":"c"}'))
    local b1 = select(2, call(svc, 'GetKey', '{"path":"a","purpose":"b\\u0000c"}'))
    assert.are_not.equal(cjson.decode(a1).key, cjson.decode(b1).key)
    assert.are.equal(a1, select(2, call(svc, 'GetKey', '{"path":"a\\u0000b","purpose":"c"}')))
    assert.are.equal(a1, select(2, call(new_svc(), 'GetKey', '{"path":"a\\u0000b","purpose":"c"}')))
    -- k256, '' and secp256k1 give one key; ed25519 the same bytes with another chain[0]
    local function key(alg)
      local _, text = call(svc, 'GetKey', cjson.encode({ path = 'p', purpose = 'q', algorithm = alg }))
      return cjson.decode(text).key
    end
    assert.are.equal(key('secp256k1'), key('k256'))
    assert.are.equal(key('secp256k1'), key(''))
    assert.are.equal(key('secp256k1'), key('ed25519'))
  end)

  -- Upstream decodes the path into a Rust String: serde_json (JSON) and prost (protobuf) refuse
  -- bytes that are not UTF-8, so the request is a 400 and no key is derived for them.
  it('refuses a path that is not UTF-8, in every form, and takes any UTF-8', function()
    local svc = new_svc()
    for _, bad in ipairs({ 'a\255b', '\192\175', '\237\160\128', '\244\144\128\128', 'x\226\130' }) do
      local status, text = call(svc, 'GetKey', '{"path":"' .. bad .. '","purpose":"p"}')
      assert.are.equal(400, status)
      assert.matches('path: invalid UTF%-8', cjson.decode(text).error)
      status = call(svc, 'GetKey', '', { method = 'GET', args = { path = bad } })
      assert.are.equal(400, status)
      status, text = call(svc, 'GetKey', proto.to_proto(messages.GetKeyArgs, { path = bad }),
        { ctype = false })
      assert.are.equal(400, status)
      assert.matches('invalid UTF%-8', assert(proto.from_proto(proto.ProtoError, text)).message)
    end
    for _, good in ipairs({ 'caf\195\169', '\240\159\148\145', '\239\191\191', 'a\0b' }) do
      local status = call(svc, 'GetKey', cjson.encode({ path = good }))
      assert.are.equal(200, status)
      status = call(svc, 'GetKey', '', { method = 'GET', args = { path = good } })
      assert.are.equal(200, status)
    end
  end)

  it('refuses other algorithms with upstream\'s message', function()
    local svc = new_svc()
    for _, alg in ipairs({ 'secp256k1_prehashed', 'rsa', 'SECP256K1' }) do
      local status, text = call(svc, 'GetKey', cjson.encode({ path = 'x', algorithm = alg }))
      assert.are.equal(400, status)
      assert.are.equal('Unsupported algorithm', cjson.decode(text).error)
    end
  end)
end)

describe('Sign and Verify', function()
  it('sign with the vms key and chain to the KMS root; verify round-trips', function()
    local svc = new_svc()
    local vms = vectors.getKey[5]
    assert.are.equal('vms', vms.path)
    for _, alg in ipairs({ 'secp256k1', 'k256', 'ed25519', 'secp256k1_prehashed' }) do
      local data = alg == 'secp256k1_prehashed' and crypto.sha256('m') or 'm'
      local status, text = call(svc, 'Sign', cjson.encode({ algorithm = alg, data = hex(data) }))
      assert.are.equal(200, status)
      local s = cjson.decode(text)
      assert.are.equal(3, #s.signature_chain)
      assert.are.equal(s.signature, s.signature_chain[1])
      if alg ~= 'ed25519' then
        assert.are.equal(vms.pubkey, s.public_key)
        assert.are.equal(vms.signature_chain[1], s.signature_chain[2])
      end
      assert.are.equal(vms.signature_chain[2], s.signature_chain[3])
      local body = { algorithm = alg, data = hex(data), signature = s.signature, public_key = s.public_key }
      assert.are.equal('{"valid":true}', select(2, call(svc, 'Verify', cjson.encode(body))))
      body.data = hex(alg == 'secp256k1_prehashed' and crypto.sha256('n') or 'n')
      assert.are.equal('{"valid":false}', select(2, call(svc, 'Verify', cjson.encode(body))))
    end
  end)

  it('reports upstream\'s errors', function()
    local svc = new_svc()
    local function err(name, body)
      local status, text = call(svc, name, cjson.encode(body))
      assert.are.equal(400, status)
      return cjson.decode(text).error
    end
    assert.are.equal('Pre-hashed signing requires a 32-byte digest, but received 31 bytes',
      err('Sign', { algorithm = 'secp256k1_prehashed', data = hex(('x'):rep(31)) }))
    assert.are.equal('Unsupported algorithm', err('Sign', { algorithm = 'rsa', data = '00' }))
    assert.are.equal('Unsupported algorithm', err('Verify', { algorithm = 'rsa', data = '00' }))
    assert.matches('invalid signature or public key', err('Verify', { algorithm = 'ed25519',
      data = '00', signature = '01', public_key = '02' }))
  end)
end)
