-- SPDX-License-Identifier: Apache-2.0
-- Key methods of the guest API (guest-and-attestation.md §1.3, §7.2; kms-vmm-gateway.md §3.3):
-- GetKey (= Tappd.DeriveK256Key), Sign and Verify over the app's k256 root key, with dstack's
-- signature chains. The derivations are moonstack.crypto.dstack's; GetKey is deterministic, so
-- its answers are cacheable (see prpc `cache`). Keys are never logged.
local dstack = require('moonstack.crypto.dstack')

local M = {}

local KEY_ALGS = { [''] = true, secp256k1 = true, k256 = true, ed25519 = true }
local SIGN_ALGS = { secp256k1 = true, k256 = true, secp256k1_prehashed = true, ed25519 = true }

local function unsupported()
  return nil, 'EINVAL: Unsupported algorithm', 'EINVAL'
end

local function app_key(ctx)
  local k = ctx.keys and ctx.keys.k256_key
  if type(k) ~= 'string' or #k ~= 32 then
    return nil, 'EUNAVAILABLE: the app key is not available (no key provider)', 'EUNAVAILABLE'
  end
  return k
end

--- GetKey(path, purpose, algorithm) -> { key, pubkey, signature_chain = { chain0, kms sig } }.
function M.get_key(ctx, path, purpose, algorithm)
  if not KEY_ALGS[algorithm] then
    return unsupported()
  end
  local k, err, code = app_key(ctx)
  if not k then
    return nil, err, code
  end
  local r
  r, err, code = dstack.get_key({ k256_key = k, path = path, purpose = purpose, algorithm = algorithm,
    k256_signature = ctx.keys.k256_signature or '' })
  if not r then
    return nil, err, code
  end
  return r
end

--- The pRPC cache key of a GetKey request.
function M.cache_key(a)
  return ('%d:%s%d:%s%s'):format(#a.path, a.path, #a.purpose, a.purpose, a.algorithm)
end

--- Sign(algorithm, data) -> { signature, signature_chain (3), public_key }.
function M.sign(ctx, algorithm, data)
  if not SIGN_ALGS[algorithm] then
    return unsupported()
  end
  if algorithm == 'secp256k1_prehashed' and #data ~= 32 then
    return nil, ('EINVAL: Pre-hashed signing requires a 32-byte digest, but received %d bytes')
      :format(#data), 'EINVAL'
  end
  local k, err, code = app_key(ctx)
  if not k then
    return nil, err, code
  end
  return dstack.sign({ k256_key = k, algorithm = algorithm, data = data,
    k256_signature = ctx.keys.k256_signature or '' })
end

--- Verify(algorithm, data, signature, public_key) -> boolean; malformed keys or signatures fail.
function M.verify(algorithm, data, signature, public_key)
  if not SIGN_ALGS[algorithm] then
    return unsupported()
  end
  local ok, err = dstack.verify({ algorithm = algorithm, data = data, signature = signature,
    public_key = public_key })
  if ok == nil then
    return nil, 'EINVAL: invalid signature or public key: ' .. tostring(err):gsub('^E[A-Z]+: ', ''),
      'EINVAL'
  end
  return ok
end

--- The public key of the Sign key for `algorithm` (GetAttestationForAppKey), or nil, err.
function M.sign_pubkey(ctx, algorithm)
  if algorithm == 'secp256k1_prehashed' or not KEY_ALGS[algorithm] or algorithm == '' then
    return unsupported()
  end
  local r, err, code = M.get_key(ctx, 'vms', 'signing', algorithm)
  if not r then
    return nil, err, code
  end
  return r.pubkey
end

return M
