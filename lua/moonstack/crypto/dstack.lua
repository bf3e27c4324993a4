-- SPDX-License-Identifier: Apache-2.0
-- dstack's key derivations and signature formats (byte-compatible with upstream): the KDF
-- primitives, the KMS and non-KMS derivation trees, GetKey/Sign/Verify with their signature
-- chains, the KMS-issued and env-encrypt-pubkey signatures, report_data formats and the
-- encrypted-env blob. All values are raw byte strings (crypto.hex/unhex convert); app_id is
-- 20 bytes, instance_id 20 bytes or empty. Failures return nil, 'CODE: message', CODE.
local native = require('moonstack.native.crypto')

local M = {}

--- Default accepted age (s) of a timestamped env-encrypt-pubkey signature, and the allowed
--- clock skew into the future.
M.ENV_SIG_MAX_AGE = native.DSTACK_ENV_SIG_MAX_AGE
M.ENV_SIG_MAX_FUTURE = native.DSTACK_ENV_SIG_MAX_FUTURE

local function check(cond, fn, msg)
  if not cond then
    error(('dstack.%s: %s'):format(fn, msg), 3)
  end
end

local function opts_table(fn, opts)
  check(type(opts) == 'table', fn, 'expected an options table')
  return opts
end

-- A context: a string, or a list of strings concatenated.
local function context(fn, ctx)
  if type(ctx) == 'table' then
    for i, part in ipairs(ctx) do
      check(type(part) == 'string', fn, ('context[%d] must be a string'):format(i))
    end
    return table.concat(ctx)
  end
  check(type(ctx) == 'string', fn, 'context must be a string or a list of strings')
  return ctx
end

--- derive_key: HKDF-SHA256 with salt 'RATLS' over ikm and the context parts; length bytes.
function M.derive_key(ikm, ctx, length)
  return native.dstack_derive_key(ikm, context('derive_key', ctx), length or 32)
end

--- derive_p256: a P-256 private scalar (EKEY if the derived bytes are out of range).
function M.derive_p256(ikm, ctx)
  return native.dstack_derive_p256(ikm, context('derive_p256', ctx))
end

--- derive_dh_secret: SHA-256 of the 138-byte PKCS#8 DER of derive_p256(ikm, ctx).
function M.derive_dh_secret(ikm, ctx)
  return native.dstack_derive_dh_secret(ikm, context('derive_dh_secret', ctx))
end

--- The exact 138-byte PKCS#8 DER of a P-256 scalar (as rcgen encodes it).
M.p256_pkcs8 = native.dstack_p256_pkcs8

--- The KMS derivation tree for one app. opts = { root_key = P-256 root scalar?, root_k256_key =
--- secp256k1 root scalar?, app_id = 20 bytes, instance_id = 20 bytes or nil/'' }. Returns
--- { ca_key, disk_crypt_key, env_crypt_key, env_crypt_pubkey } (with root_key) and
--- { k256_key, k256_pubkey, k256_signature } (with root_k256_key).
function M.kms_app_keys(opts)
  opts_table('kms_app_keys', opts)
  check(opts.root_key or opts.root_k256_key, 'kms_app_keys', 'root_key or root_k256_key needed')
  local keys, err, code = {}
  if opts.root_key then
    keys.ca_key, err, code = native.dstack_kms_app_ca_key(opts.root_key, opts.app_id)
    if not keys.ca_key then return nil, err, code end
    keys.disk_crypt_key, err, code = native.dstack_kms_disk_key(opts.root_key, opts.app_id,
      opts.instance_id)
    if not keys.disk_crypt_key then return nil, err, code end
    keys.env_crypt_key, keys.env_crypt_pubkey, code =
      native.dstack_kms_env_key(opts.root_key, opts.app_id)
    if not keys.env_crypt_key then return nil, keys.env_crypt_pubkey, code end
  end
  if opts.root_k256_key then
    local key, pub, sig = native.dstack_kms_app_k256(opts.root_k256_key, opts.app_id)
    if not key then return nil, pub, sig end
    keys.k256_key, keys.k256_pubkey, keys.k256_signature = key, pub, sig
  end
  return keys
end

--- Keys of the non-KMS providers (none/local/tpm) from a 32-byte seed:
--- { ca_key, disk_crypt_key, k256_key } (no env key, no k256_signature).
function M.local_app_keys(seed)
  local ca, disk, k256 = native.dstack_local_app_keys(seed)
  if not ca then return nil, disk, k256 end
  return { ca_key = ca, disk_crypt_key = disk, k256_key = k256 }
end

--- GetKey. opts = { k256_key = app key (32 bytes), path = '', purpose = '', algorithm =
--- 'secp256k1' | 'k256' | '' | 'ed25519', k256_signature = the KMS signature? }. Returns
--- { key, pubkey, signature_chain = { chain0, k256_signature } }.
function M.get_key(opts)
  opts_table('get_key', opts)
  local key, pub, chain0 = native.dstack_get_key(opts.k256_key, opts.path or '',
    opts.purpose or '', opts.algorithm or '')
  if not key then return nil, pub, chain0 end
  return { key = key, pubkey = pub, signature_chain = { chain0, opts.k256_signature } }
end

--- Sign. opts = { k256_key, algorithm = 'secp256k1' | 'secp256k1_prehashed' | 'ed25519',
--- data, k256_signature? }. Returns { signature, public_key, signature_chain = { signature,
--- chain0, k256_signature } } (the key is GetKey('vms', 'signing')).
function M.sign(opts)
  opts_table('sign', opts)
  local sig, pub, chain0 = native.dstack_sign(opts.k256_key, opts.algorithm, opts.data)
  if not sig then return nil, pub, chain0 end
  return { signature = sig, public_key = pub,
    signature_chain = { sig, chain0, opts.k256_signature } }
end

--- Verify. opts = { algorithm, data, signature, public_key } -> boolean.
function M.verify(opts)
  opts_table('verify', opts)
  return native.dstack_verify(opts.algorithm, opts.data, opts.signature, opts.public_key)
end

--- Check a GetKey result's chain. opts = { pubkey, purpose = '', signature_chain = { s0, s1 },
--- app_id, kms_pubkey? }. Returns { app_pubkey, kms_pubkey } (recovered); with kms_pubkey
--- given, a different signer fails with EVERIFY.
function M.verify_key_chain(opts)
  opts_table('verify_key_chain', opts)
  local chain = opts.signature_chain
  check(type(chain) == 'table', 'verify_key_chain', 'signature_chain must be a list')
  local app, kms, code = native.dstack_verify_key_chain(opts.pubkey, opts.purpose or '',
    chain[1], opts.app_id, chain[2])
  if not app then return nil, kms, code end
  if opts.kms_pubkey and kms ~= opts.kms_pubkey then
    return nil, 'EVERIFY: verify_key_chain: signed by an unexpected KMS key', 'EVERIFY'
  end
  return { app_pubkey = app, kms_pubkey = kms }
end

--- The KMS root's `dstack-kms-issued:` signature over an app k256 public key (33 bytes).
M.kms_issued_sign = native.dstack_kms_issued_sign         -- (root_k256, app_id, app_pub) -> sig
--- The KMS root key recovered from a `dstack-kms-issued:` signature.
M.kms_issued_recover = native.dstack_kms_issued_recover   -- (app_id, app_pub, sig) -> kms_pub

--- Sign an env-encrypt public key. opts = { root_k256_key, app_id, public_key (32 bytes),
--- timestamp = seconds? } (no timestamp = the legacy signature).
function M.env_pubkey_sign(opts)
  opts_table('env_pubkey_sign', opts)
  return native.dstack_env_pubkey_sign(opts.root_k256_key, opts.app_id, opts.public_key,
    opts.timestamp)
end

--- Recover the signer (33-byte compressed) of an env-encrypt-pubkey signature. opts = {
--- public_key, app_id, signature, timestamp? , now = os.time(), max_age = 300 }. A timestamp
--- older than max_age or more than 60 s ahead of now fails with ETIMESTAMP.
function M.env_pubkey_recover(opts)
  opts_table('env_pubkey_recover', opts)
  if opts.timestamp == nil then
    return native.dstack_env_pubkey_recover(opts.public_key, opts.app_id, opts.signature)
  end
  return native.dstack_env_pubkey_recover(opts.public_key, opts.app_id, opts.signature,
    opts.timestamp, opts.now or os.time(), opts.max_age or M.ENV_SIG_MAX_AGE)
end

--- As env_pubkey_recover, and the signer must be opts.kms_pubkey (33 bytes): true, or nil,
--- 'EVERIFY: ...', 'EVERIFY'.
function M.env_pubkey_verify(opts)
  opts_table('env_pubkey_verify', opts)
  check(type(opts.kms_pubkey) == 'string', 'env_pubkey_verify', 'kms_pubkey must be a string')
  local signer, err, code = M.env_pubkey_recover(opts)
  if not signer then return nil, err, code end
  if signer ~= opts.kms_pubkey then
    return nil, 'EVERIFY: env_pubkey_verify: signed by an unexpected key', 'EVERIFY'
  end
  return true
end

--- report_data = SHA-512(tag .. ':' .. content) (64 bytes); tags 'ratls-cert', 'app-data'...
M.report_data = native.dstack_report_data

--- GetAttestationForAppKey report_data: 'dip1::secp256k1c-pk:' or 'dip1::ed25519-pk:' +
--- base64url(pub), zero-padded to 64 bytes. (algorithm, pub) -> 64 bytes.
M.app_key_report_data = native.dstack_app_key_report_data

--- Encrypt env plaintext (the JSON) to an app's env public key: ephemeral pub (32) || IV (12)
--- || AES-256-GCM ciphertext || tag. opts = { ephemeral_secret?, iv? } (tests only).
function M.env_encrypt(pub, plaintext, opts)
  opts = opts or {}
  return native.dstack_env_encrypt(pub, plaintext, opts.ephemeral_secret, opts.iv)
end

--- Decrypt an encrypted-env blob with the app's env_crypt_key.
M.env_decrypt = native.dstack_env_decrypt -- (secret, blob) -> plaintext

return M
