-- SPDX-License-Identifier: Apache-2.0
-- The contract of moonstack.native.crypto (misuse raises naming the function; bad lengths,
-- bad keys and failed checks return nil, 'CODE: fn: message', CODE), published vectors through
-- Lua, and dstack's derivations through the moonstack.crypto.dstack layer against the specs'
-- and the shared vectors (read at test time from MOONSTACK_VECTORS or
-- $MOONSTACK_SRC/../shared/vectors).
local native = require('moonstack.native.crypto')
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local cjson = require('cjson')
local fixtures = require('fixtures')

local hex, unhex = crypto.hex, crypto.unhex

local vectors_dir = fixtures.vectors_dir

local function read_json(rel)
  local path = vectors_dir() .. '/' .. rel
  local f = io.open(path, 'rb')
  assert(f, 'test vectors not found: ' .. path .. ' (set MOONSTACK_VECTORS)')
  local text = f:read('*a')
  f:close()
  return cjson.decode(text)
end

-- Assert the expected-failure triple with the given code and message fragment.
local function assert_fail(code, fragment, ...)
  local v, msg, c = ...
  assert.is_nil(v)
  assert.equal(code, c)
  assert.is_string(msg)
  assert.equal(code .. ': ', msg:sub(1, #code + 2))
  if fragment then
    assert.truthy(msg:find(fragment, 1, true), ('%q not in %q'):format(fragment, msg))
  end
end

local ROOT = unhex('f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2afe19cec1')
local ROOT_DER = unhex('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02' ..
  '01010420f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2a' ..
  'fe19cec1a1440342000491f50522407ce29dce3ed7d31a15d80c1c42f13a2355' ..
  '2d2b33a0ce09ee11e47bce95936f3e7f80d195f879e28e1b144ef37ac9ab8e36' ..
  'a690cbf930b775897b27')
local SIM_APP_ID = unhex('5bb4ff9a3837357f19dc176407a5709c62eb6c56')
local SIM_APP_PUB = '02818494263695e8839122dbd88e281d7380622999df4e60a14befa0f2d096fc7c'
local SIM_KMS_PUB = '0321529e458424ab1f710a3a57ec4dad2fb195ddca572f7469242ba6c7563085b6'

describe('moonstack.native.crypto contract', function()
  it('raises on wrong argument types, naming the function', function()
    local cases = {
      { 'sha256', function() return native.sha256(12) end },
      { 'keccak256', function() return native.keccak256() end },
      { 'k256_recover', function() return native.k256_recover(nil, ('x'):rep(65)) end },
      { 'hkdf', function() return native.hkdf('sha256', 'k', nil, nil, '32') end },
      { 'x25519', function() return native.x25519({}, ('x'):rep(32)) end },
      { 'aes256gcm_encrypt', function() return native.aes256gcm_encrypt(('k'):rep(32), ('i'):rep(12)) end },
      { 'dstack_get_key', function() return native.dstack_get_key(('k'):rep(32), 'p', 5) end },
      { 'dstack_env_pubkey_recover', function()
        return native.dstack_env_pubkey_recover(('p'):rep(32), ('a'):rep(20), ('s'):rep(65), 1, 'now')
      end },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(case[2])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[1] .. ': bad argument', 1, true), tostring(err))
    end
    -- also when called through pcall directly (no call-site name available)
    local ok, err = pcall(native.p256_sign)
    assert.is_false(ok)
    assert.truthy(err:find('p256_sign: bad argument #1 (string expected, got no value)', 1, true))
  end)

  it('returns nil, "EINVAL: fn: ...", "EINVAL" for bad lengths', function()
    local k32, d32 = ('k'):rep(32), ('d'):rep(32)
    assert_fail('EINVAL', 'k256_sign: private key must be 32 bytes, got 31',
      native.k256_sign(('k'):rep(31), d32))
    assert_fail('EINVAL', 'k256_sign: digest must be 32 bytes, got 33', native.k256_sign(k32, d32 .. 'x'))
    assert_fail('EINVAL', 'k256_recover: signature must be 65 bytes, got 64',
      native.k256_recover(d32, ('s'):rep(64)))
    assert_fail('EINVAL', 'public key must be 33 or 65 bytes',
      native.p256_verify(('p'):rep(64), d32, ('s'):rep(64)))
    assert_fail('EINVAL', 'x25519: peer public key must be 32 bytes', native.x25519(k32, 'short'))
    assert_fail('EINVAL', 'ed25519_verify: signature must be 64 bytes',
      native.ed25519_verify(k32, 'm', ('s'):rep(63)))
    assert_fail('EINVAL', 'aes256gcm_encrypt: iv must be 12 bytes',
      native.aes256gcm_encrypt(k32, ('i'):rep(16), 'x'))
    assert_fail('EINVAL', 'at least 16 bytes', native.aes256gcm_decrypt(k32, ('i'):rep(12), 'short'))
    assert_fail('EINVAL', 'hkdf: length', native.hkdf('sha256', 'k', nil, nil, 0))
    assert_fail('EINVAL', 'hkdf: length', native.hkdf('sha256', 'k', nil, nil, 255 * 32 + 1))
    assert_fail('EINVAL', 'hkdf: length', native.hkdf('sha256', 'k', nil, nil, 1.5))
    assert_fail('EINVAL', 'app_id must be 20 bytes, got 19',
      native.dstack_kms_app_ca_key(ROOT, ('a'):rep(19)))
    assert_fail('EINVAL', 'instance_id must be 20 bytes or empty',
      native.dstack_kms_disk_key(ROOT, ('a'):rep(20), ('i'):rep(21)))
    assert_fail('EINVAL', 'blob must be at least 60 bytes', native.dstack_env_decrypt(k32, ('b'):rep(59)))
    assert_fail('EINVAL', 'requires a 32-byte digest',
      native.dstack_sign(k32, 'secp256k1_prehashed', ('d'):rep(31)))
    assert_fail('EINVAL', 'signature must be 65 bytes, got 64',
      native.dstack_env_pubkey_recover(k32, ('a'):rep(20), ('s'):rep(64)))
  end)

  it('returns EINVAL for unknown algorithms', function()
    assert_fail('EINVAL', "unknown algorithm 'md5'", native.hash('md5', 'x'))
    assert_fail('EINVAL', 'hmac: algorithm', native.hmac('keccak256', 'k', 'd'))
    assert_fail('EINVAL', "unsupported algorithm 'rsa'",
      native.dstack_get_key(('k'):rep(32), 'p', 'q', 'rsa'))
    assert_fail('EINVAL', "unsupported algorithm 'rsa'", native.dstack_sign(('k'):rep(32), 'rsa', 'x'))
  end)

  it('returns EKEY, ESIG, EDECRYPT for invalid keys, signatures and ciphertexts', function()
    assert_fail('EKEY', 'k256_pubkey: invalid key', native.k256_pubkey(('\0'):rep(32)))
    assert_fail('EKEY', 'p256_pubkey', native.p256_pubkey(('\255'):rep(32)))
    assert_fail('EKEY', 'x25519', native.x25519(('k'):rep(32), ('\0'):rep(32)))
    assert_fail('ESIG', 'k256_recover', native.k256_recover(('d'):rep(32), ('\0'):rep(65)))
    local key, iv = ('k'):rep(32), ('i'):rep(12)
    local ct = native.aes256gcm_encrypt(key, iv, 'secret')
    assert_fail('EDECRYPT', 'aes256gcm_decrypt', native.aes256gcm_decrypt(key, iv, ct, 'aad'))
  end)

  it('returns booleans from verify functions', function()
    local priv = native.k256_generate()
    local digest = native.keccak256('m')
    local sig = native.k256_sign(priv, digest)
    assert.is_true(native.k256_verify(native.k256_pubkey(priv), digest, sig))
    assert.is_false(native.k256_verify(native.k256_pubkey(priv), native.keccak256('n'), sig))
  end)

  it('does not coerce numbers to byte strings', function()
    assert.has_error(function() native.sha256(1) end)
    assert.equal(32, #native.sha256(''))
  end)
end)

describe('moonstack.crypto', function()
  it('checks bcrypt on the thread pool inside a task, the loop serving meanwhile (M7 item 4)', function()
    local uv = require('luv')
    local h = assert(io.popen("htpasswd -nbB -C 10 u 'p w'"))
    local hash = h:read('*a'):match('^u:(%S+)')
    h:close()
    assert.truthy(hash)
    -- blocking outside a task (tools)
    assert.is_true(crypto.bcrypt_check('p w', hash))
    assert.is_false(crypto.bcrypt_check('p x', hash))
    local ticks, results = 0, nil
    local timer = uv.new_timer()
    timer:start(2, 2, function() ticks = ticks + 1 end)
    require('tests.helpers.loop').run_task(function()
      results = { crypto.bcrypt_check('p w', hash), crypto.bcrypt_check('p x', hash),
        crypto.bcrypt_check('p w\0', hash), crypto.bcrypt_check('p w', hash) }
      local _, err, code = crypto.bcrypt_check('p w', '$1$salt$qJH7.N4xYta3aEG/dfqo/0')
      results[5] = code .. ' ' .. err
    end, 20000)
    timer:close()
    assert.same({ true, false, false, true,
      'EINVAL EINVAL: bcrypt_check: not a bcrypt hash ($2y$/$2b$/$2a$)' }, results)
    -- four checks at cost 10 take tens of ms each: the timer ran while they did
    assert.truthy(ticks >= 10, 'the loop was blocked: ' .. ticks .. ' ticks')
  end)

  it('converts hex both ways', function()
    assert.equal('00ff10', hex('\0\255\16'))
    assert.equal('\0\255\16', unhex('00FF10'))
    assert.equal('\0\255\16', unhex('0x00ff10'))
    assert.equal('', unhex(''))
    assert_fail('EINVAL', 'not a hex string', unhex('abc'))
    assert_fail('EINVAL', 'not a hex string', unhex('zz'))
    assert_fail('EINVAL', 'expected 2 bytes', unhex('00', 2))
    assert.has_error(function() hex(nil) end, 'codec.hex: expected a string')
  end)

  it('hashes (SHA-2, Keccak-256)', function()
    assert.equal('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
      hex(crypto.sha256('abc')))
    assert.equal('c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
      hex(crypto.keccak256('')))
    assert.equal('4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45',
      hex(crypto.keccak256('abc')))
    assert.equal('3a57666b048777f2c953dc4456f45a2588e1cb6f2da760122d530ac2ce607d4a',
      hex(crypto.keccak256(('\163'):rep(200))))
    assert.equal(hex(crypto.sha384('abc')), hex(crypto.hash('sha384', 'abc')))
    assert.equal(64, #crypto.sha512(''))
  end)

  it('derives with HKDF (RFC 5869 test case 1)', function()
    local okm = crypto.hkdf({
      ikm = ('\11'):rep(22),
      salt = unhex('000102030405060708090a0b0c'),
      info = { unhex('f0f1f2f3f4'), unhex('f5f6f7f8f9') },
      length = 42,
    })
    assert.equal('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
      hex(okm))
    assert.has_error(function() crypto.hkdf({}) end, 'crypto.hkdf: ikm must be a string')
    assert.has_error(function() crypto.hkdf({ ikm = 'k', info = { 1 } }) end)
  end)

  it('computes HMAC (RFC 4231 test case 2)', function()
    assert.equal('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
      hex(crypto.hmac('sha256', 'Jefe', 'what do ya want for nothing?')))
  end)

  it('does X25519 (RFC 7748 §6.1) and Ed25519 (RFC 8032 test 1)', function()
    local a = unhex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
    local b = unhex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb')
    assert.equal('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
      hex(crypto.x25519.pubkey(a)))
    assert.equal('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
      hex(crypto.x25519.shared(a, crypto.x25519.pubkey(b))))
    local seed = unhex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60')
    local pub = crypto.ed25519.pubkey(seed)
    assert.equal('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', hex(pub))
    local sig = crypto.ed25519.sign(seed, '')
    assert.equal('e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155' ..
      '5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      hex(sig))
    assert.is_true(crypto.ed25519.verify(pub, '', sig))
    assert.is_false(crypto.ed25519.verify(pub, 'x', sig))
  end)

  it('encrypts with AES-256-GCM (GCM spec test case 14)', function()
    local key, iv = ('\0'):rep(32), ('\0'):rep(12)
    local ct = crypto.aes256gcm.encrypt(key, iv, ('\0'):rep(16))
    assert.equal('cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919', hex(ct))
    assert.equal(('\0'):rep(16), crypto.aes256gcm.decrypt(key, iv, ct))
    local with_aad = crypto.aes256gcm.encrypt(key, iv, 'hello', 'header')
    assert.equal('hello', crypto.aes256gcm.decrypt(key, iv, with_aad, 'header'))
    assert_fail('EDECRYPT', nil, crypto.aes256gcm.decrypt(key, iv, with_aad))
  end)

  it('signs, verifies and recovers with secp256k1', function()
    local priv = crypto.k256.generate()
    local digest = crypto.keccak256('message')
    local sig = crypto.k256.sign_recoverable(priv, digest)
    assert.equal(65, #sig)
    assert.truthy(sig:byte(65) <= 1)
    assert.equal(sig, crypto.k256.sign_recoverable(priv, digest)) -- RFC 6979
    assert.equal(crypto.k256.pubkey(priv), crypto.k256.recover(digest, sig))
    assert.equal(crypto.k256.pubkey(priv, false), crypto.k256.recover(digest, sig, false))
    assert.equal(65, #crypto.k256.pubkey(priv, false))
    assert.equal(crypto.k256.pubkey(priv), crypto.k256.convert(crypto.k256.pubkey(priv, false), true))
    local ethsig = sig:sub(1, 64) .. string.char(sig:byte(65) + 27)
    assert.equal(crypto.k256.pubkey(priv), crypto.k256.recover(digest, ethsig))
    assert.is_true(crypto.k256.verify(crypto.k256.pubkey(priv), digest, sig:sub(1, 64)))
  end)

  it('verifies P-256 (RFC 6979 A.2.5) and round-trips signatures', function()
    local priv = unhex('c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721')
    local pub = crypto.p256.pubkey(priv, false)
    assert.equal('0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6' ..
      '7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299', hex(pub))
    local sig = unhex('efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716' ..
      'f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8')
    assert.is_true(crypto.p256.verify(pub, crypto.sha256('sample'), sig))
    assert.is_false(crypto.p256.verify(pub, crypto.sha256('samplE'), sig))
    local k = crypto.p256.generate()
    local s = crypto.p256.sign(k, crypto.sha256('x'))
    assert.is_true(crypto.p256.verify(crypto.p256.pubkey(k), crypto.sha256('x'), s))
  end)

  it('compares in constant time and draws random bytes', function()
    assert.is_true(crypto.equal('abc', 'abc'))
    assert.is_false(crypto.equal('abc', 'abd'))
    assert.is_false(crypto.equal('abc', 'ab'))
    assert.is_false(crypto.equal('ab', 'abc'))
    local a, b = crypto.random(32), crypto.random(32)
    assert.equal(32, #a)
    assert.is_false(a == b)
    assert.equal('', crypto.random(0))
    assert_fail('EINVAL', 'random', crypto.random(-1))
  end)
end)

describe('moonstack.crypto.dstack', function()
  it('derives the dh secret of upstream kdf.rs (663afd58…), with the exact PKCS#8', function()
    assert.equal(ROOT_DER, dstack.p256_pkcs8(ROOT))
    assert.equal('663afd58820be8ad645f9c035e93199d114ab16f738db62393bc1d7d623e8813',
      hex(dstack.derive_dh_secret(ROOT, { 'context one', 'context two' })))
    assert.equal(dstack.derive_dh_secret(ROOT, 'context onecontext two'),
      dstack.derive_dh_secret(ROOT, { 'context one', 'context two' }))
    local ikm = unhex('1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b')
    assert.equal('9db79b3fefe69f2a7b7efbc908c854bf845a629023361f2c9cb3db09fb99010f',
      hex(dstack.derive_key(ikm, 'vms')))
    assert.equal(dstack.derive_key(ikm, 'vms'), dstack.derive_p256(ikm, { 'v', 'ms' }))
    assert.has_error(function() dstack.derive_key(ikm, { 1 }) end,
      'dstack.derive_key: context[1] must be a string')
  end)

  it('derives the KMS tree (kms-vmm-gateway §9 item 2)', function()
    local keys = assert(dstack.kms_app_keys({
      root_key = ROOT, root_k256_key = ('\1'):rep(32),
      app_id = ('\17'):rep(20), instance_id = ('\34'):rep(20),
    }))
    assert.equal('a7470db8cfdd0fe24134b461d60766afa7c078abe6dce9f2c8a5c44034ca400e', hex(keys.env_crypt_key))
    assert.equal('93cf259f68b24775d54290a8ea57cf93efc994d3ff28a7b8ba7a39e9f512302f',
      hex(keys.env_crypt_pubkey))
    assert.equal('a59c814e2c6d9353af59ce4fba7215e5ec3b62a2495b4dca48ea6f9804061f51', hex(keys.disk_crypt_key))
    assert.equal('5b779e0a9fe80b2e5866d94958daa1a4e29a183228b3f37acd7eae153e18a75f', hex(keys.ca_key))
    assert.equal('88fa429170ad091e0f87b335ba19b1729610ac25441728807ce3325161846baf', hex(keys.k256_key))
    local pub = hex(keys.k256_pubkey)
    assert.equal('02a594d1', pub:sub(1, 8))
    assert.equal('01ebc3', pub:sub(-6))
    assert.equal(crypto.k256.pubkey(('\1'):rep(32)),
      dstack.kms_issued_recover(('\17'):rep(20), keys.k256_pubkey, keys.k256_signature))

    local no_instance = assert(dstack.kms_app_keys({ root_key = ROOT, app_id = ('\17'):rep(20) }))
    assert.equal('14de7a7fd8bddf8e641a55ca97f043cac4344d175419f743940840f3a348f049',
      hex(no_instance.disk_crypt_key))
    assert.is_nil(no_instance.k256_key)
    assert_fail('EINVAL', 'app_id', dstack.kms_app_keys({ root_key = ROOT, app_id = 'short' }))
    assert.has_error(function() dstack.kms_app_keys({ app_id = ('\17'):rep(20) }) end)

    local l = assert(dstack.local_app_keys(('\7'):rep(32)))
    assert.equal('366b65a79ad5959f30b0a024cd726042bc439782f24e19d0295442f7b5f7b3af', hex(l.k256_key))
  end)

  it('recovers the env-encrypt-pubkey signers and enforces the timestamp window', function()
    local pub = unhex('e33a1832c6562067ff8f844a61e51ad051f1180b66ec2551fb0251735f3ee90a')
    local legacy = unhex('8542c49081fbf4e03f62034f13fbf70630bdf256a53032e38465a27c36fd6bed' ..
      '7a5e7111652004aef37f7fd92fbfc1285212c4ae6a6154203a48f5e16cad2cef00')
    local app_id = ('\0'):rep(20)
    local signer = dstack.env_pubkey_recover({ public_key = pub, app_id = app_id, signature = legacy })
    assert.equal('0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f', hex(signer))
    assert_fail('EINVAL', 'signature must be 65 bytes',
      dstack.env_pubkey_recover({ public_key = pub, app_id = app_id, signature = legacy:sub(1, 64) }))
    assert_fail('ESIG', nil,
      dstack.env_pubkey_recover({ public_key = pub, app_id = app_id, signature = ('\0'):rep(65) }))

    local root = ('\1'):rep(32)
    local now = os.time()
    local sig = dstack.env_pubkey_sign({ root_k256_key = root, app_id = app_id, public_key = pub,
      timestamp = now })
    local kms = crypto.k256.pubkey(root)
    local function recover(ts, at, max_age)
      return dstack.env_pubkey_recover({ public_key = pub, app_id = app_id, signature = sig,
        timestamp = ts, now = at, max_age = max_age })
    end
    assert.equal(kms, recover(now))            -- now defaults to os.time()
    assert.equal(kms, recover(now, now + 300))
    assert_fail('ETIMESTAMP', 'too old', recover(now, now + 600))
    assert_fail('ETIMESTAMP', 'too old', recover(now, now + 301))
    assert.equal(kms, recover(now, now + 600, 600))
    assert_fail('ETIMESTAMP', 'in the future', recover(now, now - 120))
    assert.equal(kms, recover(now, now - 60))
    assert.is_true(dstack.env_pubkey_verify({ public_key = pub, app_id = app_id, signature = sig,
      timestamp = now, kms_pubkey = kms }))
    assert_fail('EVERIFY', 'unexpected key', dstack.env_pubkey_verify({ public_key = pub,
      app_id = app_id, signature = sig, timestamp = now, kms_pubkey = signer }))
    assert_fail('EINVAL', 'non-negative integers', recover(-1, now))
  end)

  it('reproduces the simulator chain and GetKey (kms-vmm-gateway §9 item 4)', function()
    local appkeys = read_json('dstack/simulator/appkeys.json')
    local k256_key, k256_sig = unhex(appkeys.k256_key), unhex(appkeys.k256_signature)
    assert.equal(SIM_APP_PUB, hex(crypto.k256.pubkey(k256_key)))
    assert.equal(SIM_KMS_PUB,
      hex(dstack.kms_issued_recover(SIM_APP_ID, crypto.k256.pubkey(k256_key), k256_sig)))

    local r = assert(dstack.get_key({ k256_key = k256_key, path = '/test/path', purpose = 'test-purpose',
      k256_signature = k256_sig }))
    assert.equal('b9fbb7171185c421c58610a2acba8ceae93623ae47815618cbad1e98fc042cb7', hex(r.key))
    assert.equal('02c1082e78670feed1c847db81dbd71be37e4d53200a746c0a89f0afa8173cf566', hex(r.pubkey))
    assert.equal(SIM_APP_PUB, hex(crypto.k256.recover(
      crypto.keccak256('test-purpose:' .. hex(r.pubkey)), r.signature_chain[1])))
    local chain = assert(dstack.verify_key_chain({ pubkey = r.pubkey, purpose = 'test-purpose',
      signature_chain = r.signature_chain, app_id = SIM_APP_ID, kms_pubkey = unhex(SIM_KMS_PUB) }))
    assert.equal(SIM_APP_PUB, hex(chain.app_pubkey))
    assert_fail('EVERIFY', 'unexpected KMS key', dstack.verify_key_chain({ pubkey = r.pubkey,
      purpose = 'other', signature_chain = r.signature_chain, app_id = SIM_APP_ID,
      kms_pubkey = unhex(SIM_KMS_PUB) }))

    assert.equal('4b03687002c7e0f6e8eaabea3edc108de72a06d2c2b64a3e14c34883645c7127',
      hex(crypto.x25519.pubkey(unhex(appkeys.env_crypt_key))))
  end)

  it('matches every case of derived/simulator-getkey-vectors.json', function()
    local v = read_json('derived/simulator-getkey-vectors.json')
    local appkeys = read_json('dstack/simulator/appkeys.json')
    local k256_key, k256_sig = unhex(appkeys.k256_key), unhex(appkeys.k256_signature)
    assert.truthy(#v.getKey >= 5)
    for _, case in ipairs(v.getKey) do
      local r = assert(dstack.get_key({ k256_key = k256_key, path = case.path, purpose = case.purpose,
        algorithm = case.algorithm, k256_signature = k256_sig }))
      assert.equal(case.key, hex(r.key))
      assert.equal(case.pubkey, hex(r.pubkey))
      assert.equal(case.signature_chain[1], hex(r.signature_chain[1]))
      assert.equal(case.signature_chain[2], hex(r.signature_chain[2]))
      local chain = assert(dstack.verify_key_chain({ pubkey = r.pubkey, purpose = case.purpose,
        signature_chain = r.signature_chain, app_id = unhex(v.app_id) }))
      assert.equal(v.app_k256_pubkey_compressed, hex(chain.app_pubkey))
      assert.equal(v.kms_root_k256_pubkey_recovered, hex(chain.kms_pubkey))
    end
  end)

  it('signs and verifies like the guest agent (Sign/Verify, dip1 report_data)', function()
    local appkeys = read_json('dstack/simulator/appkeys.json')
    local k256_key = unhex(appkeys.k256_key)
    for _, alg in ipairs({ 'secp256k1', 'ed25519' }) do
      local s = assert(dstack.sign({ k256_key = k256_key, algorithm = alg, data = 'payload',
        k256_signature = unhex(appkeys.k256_signature) }))
      assert.equal(3, #s.signature_chain)
      assert.equal(s.signature, s.signature_chain[1])
      assert.is_true(dstack.verify({ algorithm = alg, data = 'payload', signature = s.signature,
        public_key = s.public_key }))
      assert.is_false(dstack.verify({ algorithm = alg, data = 'payloaD', signature = s.signature,
        public_key = s.public_key }))
      local vms = dstack.get_key({ k256_key = k256_key, path = 'vms', purpose = 'signing', algorithm = alg })
      assert.equal(vms.pubkey, s.public_key)
      assert.equal(vms.signature_chain[1], s.signature_chain[2])
    end
    local pre = assert(dstack.sign({ k256_key = k256_key, algorithm = 'secp256k1_prehashed',
      data = crypto.sha256('payload') }))
    local plain = dstack.sign({ k256_key = k256_key, algorithm = 'secp256k1', data = 'payload' })
    assert.equal(pre.signature, plain.signature)

    local ikm = unhex('1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b')
    local ed = dstack.get_key({ k256_key = ikm, path = 'vms', purpose = 'signing', algorithm = 'ed25519' })
    assert.equal('dip1::ed25519-pk:5Pbre1Amf1hrp2V2bbfKlIfxpQb2pJAmrgmhxgVoG9s' .. ('\0'):rep(4),
      dstack.app_key_report_data('ed25519', ed.pubkey))
    local k = dstack.get_key({ k256_key = ikm, path = 'vms', purpose = 'signing' })
    assert.equal('dip1::secp256k1c-pk:A6t_JdVkVdMAocH3f1f20WGT6JzdntxcXimUtEax8zc9',
      dstack.app_key_report_data('secp256k1', k.pubkey))
    assert.equal(crypto.sha512('ratls-cert:spki'), dstack.report_data('ratls-cert', 'spki'))
  end)

  it('encrypts and decrypts the env blob (kms-vmm-gateway §9 item 5)', function()
    local keys = assert(dstack.kms_app_keys({ root_key = ROOT, app_id = ('\17'):rep(20) }))
    local json = '{"env":[{"key":"FOO","value":"a b"}]}'
    local blob = dstack.env_encrypt(keys.env_crypt_pubkey, json,
      { ephemeral_secret = ('\66'):rep(32), iv = ('\36'):rep(12) })
    assert.equal('132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472' ..
      '242424242424242424242424' ..
      '5c53f3d5aaec28178c334bf242d71651d62c8f7d5f2fd0667dac6dafd625279fe1086c' ..
      'b73eb92bcb723dfdc696e2a36eccfe2d391c', hex(blob))
    assert.equal(json, dstack.env_decrypt(keys.env_crypt_key, blob))
    local random_blob = dstack.env_encrypt(keys.env_crypt_pubkey, json)
    assert.is_false(random_blob == blob)
    assert.equal(json, dstack.env_decrypt(keys.env_crypt_key, random_blob))
    assert_fail('EINVAL', 'at least 60 bytes', dstack.env_decrypt(keys.env_crypt_key, blob:sub(1, 43)))
    local tampered = blob:sub(1, 50) .. string.char((blob:byte(51) + 1) % 256) .. blob:sub(52)
    assert_fail('EDECRYPT', nil, dstack.env_decrypt(keys.env_crypt_key, tampered))
    assert_fail('EKEY', nil, dstack.env_decrypt(keys.env_crypt_key, ('\0'):rep(32) .. blob:sub(33)))
    assert_fail('EINVAL', 'iv must be 12 bytes',
      dstack.env_encrypt(keys.env_crypt_pubkey, json, { iv = 'x' }))
  end)
end)
