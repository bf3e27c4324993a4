-- SPDX-License-Identifier: Apache-2.0
-- Friendly crypto API over moonstack.native.crypto. Keys, digests, signatures and ciphertexts
-- are plain Lua strings of raw bytes (never hex): convert at the edges with crypto.hex() and
-- crypto.unhex(). ECDSA functions take a 32-byte digest (hash the message yourself, e.g.
-- crypto.sha256(msg) for P-256, crypto.keccak256(msg) for Ethereum-style secp256k1).
-- Errors follow the native contract: wrong types raise; bad lengths, invalid keys and failed
-- checks return nil, 'CODE: message', CODE. dstack's derivations live in moonstack.crypto.dstack.
local native = require('moonstack.native.crypto')
local codec = require('moonstack.core.codec')

local M = {}

local function check(cond, fn, msg)
  if not cond then
    error(('crypto.%s: %s'):format(fn, msg), 3)
  end
end

--- Lowercase hex of a byte string (moonstack.core.codec's, the one copy).
M.hex = codec.hex
--- Bytes of a hex string (either case, optional 0x prefix), or nil, 'EINVAL: ...', 'EINVAL';
--- `len` (optional) is the required number of bytes (moonstack.core.codec's).
M.unhex = codec.unhex

--- SHA-256 of s (32 raw bytes).
M.sha256 = native.sha256
--- SHA-384 of s (48 raw bytes).
M.sha384 = native.sha384
--- SHA-512 of s (64 raw bytes).
M.sha512 = native.sha512
--- Ethereum's Keccak-256 of s (32 raw bytes; not NIST SHA3-256).
M.keccak256 = native.keccak256

--- Digest of s with alg = 'sha256' | 'sha384' | 'sha512' | 'keccak256' | 'sha3-256' |
--- 'sha3-384' | 'sha3-512' | 'keccak384' | 'keccak512' (keccak* = original Keccak padding).
M.hash = native.hash

--- HMAC: crypto.hmac('sha256', key, data).
M.hmac = native.hmac

--- Cryptographically secure random bytes.
M.random = native.random

--- Constant-time equality of two byte strings (false if the lengths differ).
M.equal = native.equal

--- HKDF (RFC 5869). opts = { ikm = bytes, salt = bytes?, info = bytes or list of bytes?,
--- length = 32, hash = 'sha256' }. A list of info parts is concatenated.
function M.hkdf(opts)
  check(type(opts) == 'table', 'hkdf', 'expected an options table')
  check(type(opts.ikm) == 'string', 'hkdf', 'ikm must be a string')
  check(opts.salt == nil or type(opts.salt) == 'string', 'hkdf', 'salt must be a string')
  local info = opts.info
  if type(info) == 'table' then
    for i, part in ipairs(info) do
      check(type(part) == 'string', 'hkdf', ('info[%d] must be a string'):format(i))
    end
    info = table.concat(info)
  end
  check(info == nil or type(info) == 'string', 'hkdf', 'info must be a string or a list')
  local length = opts.length or 32
  check(type(length) == 'number', 'hkdf', 'length must be a number')
  return native.hkdf(opts.hash or 'sha256', opts.ikm, opts.salt, info, length)
end

--- ECDSA over NIST P-256. Private keys are 32-byte scalars, public keys SEC1 (33 bytes
--- compressed by default, 65 uncompressed), signatures r||s (64 bytes).
M.p256 = {
  generate = native.p256_generate,         -- () -> priv
  pubkey = native.p256_pubkey,             -- (priv, compressed = true) -> pub
  convert = native.p256_convert,           -- (pub, compressed) -> pub
  sign = native.p256_sign,                 -- (priv, digest32) -> sig (random nonce)
  verify = native.p256_verify,             -- (pub, digest32, sig) -> boolean
}

--- ECDSA over secp256k1 (libsecp256k1): deterministic RFC 6979 low-S signatures, r||s (64)
--- or recoverable r||s||v (65, v = 0/1; recover also accepts 27/28).
M.k256 = {
  generate = native.k256_generate,                 -- () -> priv
  pubkey = native.k256_pubkey,                     -- (priv, compressed = true) -> pub
  convert = native.k256_convert,                   -- (pub, compressed) -> pub
  sign = native.k256_sign,                         -- (priv, digest32) -> sig64
  sign_recoverable = native.k256_sign_recoverable, -- (priv, digest32) -> sig65
  recover = native.k256_recover,                   -- (digest32, sig65, compressed = true) -> pub
  verify = native.k256_verify,                     -- (pub, digest32, sig64) -> boolean (low-S only)
}

--- X25519 (RFC 7748). Secrets and public keys are 32 bytes.
M.x25519 = {
  generate = function() return native.random(32) end, -- () -> secret
  pubkey = native.x25519_pubkey,                       -- (secret) -> pub
  shared = native.x25519,                              -- (secret, peer_pub) -> shared (EKEY if all zero)
}

--- Ed25519 (RFC 8032). Seeds and public keys are 32 bytes, signatures 64.
M.ed25519 = {
  generate = function() return native.random(32) end, -- () -> seed
  pubkey = native.ed25519_pubkey,                      -- (seed) -> pub
  sign = native.ed25519_sign,                          -- (seed, msg) -> sig
  verify = native.ed25519_verify,                      -- (pub, msg, sig) -> boolean
}

--- AES-256-GCM with a 12-byte IV; the 16-byte tag follows the ciphertext.
M.aes256gcm = {
  encrypt = native.aes256gcm_encrypt, -- (key, iv, plaintext, aad?) -> ciphertext..tag
  decrypt = native.aes256gcm_decrypt, -- (key, iv, ciphertext..tag, aad?) -> plaintext | nil, 'EDECRYPT: ...'
}

--- Check `password` against a bcrypt hash (htpasswd -B: $2y$/$2b$/$2a$), in constant time:
--- true or false; nil, 'EINVAL: ...' if `hash` is not bcrypt. Passwords over 72 bytes (bcrypt's
--- limit) or holding a NUL never match. bcrypt is slow on purpose (cost 12: ~200 ms): inside a
--- task the check runs on the libuv thread pool while the task waits, so the loop keeps
--- serving; outside a task it blocks (tools).
function M.bcrypt_check(password, hash)
  -- A process that never loaded the task module (plain LuaJIT: rockspecs/) is in no task.
  local task = package.loaded['moonstack.core.task']
  if not (task and task.current()) then
    return native.bcrypt_check(password, hash)
  end
  return task.await(function(resume)
    local queued, err, code = native.bcrypt_check(password, hash, resume)
    if not queued then -- not a bcrypt hash, or the pool refused the work
      resume(nil, err, code)
    end
  end)
end
--- Whether `hash` is a bcrypt hash bcrypt_check takes ($2a$/$2b$/$2y$, cost 4..31, 60 characters).
M.bcrypt_hash_valid = native.bcrypt_hash_valid

return M
