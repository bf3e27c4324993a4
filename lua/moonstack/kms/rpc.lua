-- SPDX-License-Identifier: Apache-2.0
-- The KMS pRPC service (kms-vmm-gateway.md §3.6; upstream kms_rpc.proto, field numbers kept):
-- its messages in the form of moonstack.agent.api.proto and the methods served at
-- /prpc/<Method> and /prpc/KMS.<Method>. This slice serves the calls that release no app key:
-- GetMeta, GetTempCaCert (the temp CA key is public by design: clients use it to make the
-- mTLS certificate whose trust comes from its embedded attestation) and
-- GetAppEnvEncryptPubKey (legacy and timestamped signatures, spec §2.2).
local dstack = require('moonstack.crypto.dstack')

local M = {}

--- The message schemas (field spec { number, name, type [, omit_empty] }).
M.messages = {
  Empty = {},
  AppId = { { 1, 'app_id', 'bytes' } },
  PublicKeyResponse = { { 1, 'public_key', 'bytes' }, { 2, 'signature', 'bytes' },
    { 3, 'timestamp', 'uint64' }, { 4, 'signature_v1', 'bytes' } },
  GetMetaResponse = { { 1, 'ca_cert', 'string' }, { 2, 'allow_any_upgrade', 'bool' },
    { 3, 'k256_pubkey', 'bytes' }, { 5, 'is_dev', 'bool' },
    { 6, 'gateway_app_id', 'string', omit_empty = true },
    { 7, 'kms_contract_address', 'string', omit_empty = true }, { 8, 'chain_id', 'uint64' },
    { 9, 'app_auth_implementation', 'string', omit_empty = true } },
  GetTempCaCertResponse = { { 1, 'temp_ca_cert', 'string' }, { 2, 'temp_ca_key', 'string' },
    { 3, 'ca_cert', 'string' } },
}

local msg = M.messages

--- The methods over a running KMS `kms` = { material (moonstack.kms.keys), auth (backend),
--- now = fn() -> seconds? }. Returns the method table for moonstack.agent.api.prpc.
function M.methods(kms)
  local now = kms.now or os.time
  local t = {}

  t.GetMeta = { input = msg.Empty, output = msg.GetMetaResponse, call = function()
    local dev = kms.auth.kind == 'dev'
    local status = kms.auth:status()
    return { ca_cert = kms.material.root_cert:pem(), allow_any_upgrade = dev,
      k256_pubkey = kms.material.k256_pubkey, is_dev = dev,
      gateway_app_id = dev and status.gateway_app_id or nil }
  end }

  t.GetTempCaCert = { input = msg.Empty, output = msg.GetTempCaCertResponse, call = function()
    local m = kms.material
    return { temp_ca_cert = m.tmp_ca_cert:pem(), temp_ca_key = m.tmp_ca_key:pkcs8_pem(),
      ca_cert = m.root_cert:pem() }
  end }

  t.GetAppEnvEncryptPubKey = { input = msg.AppId, output = msg.PublicKeyResponse,
    call = function(args)
      if #args.app_id ~= 20 then
        return nil, ('EINVAL: app_id must be 20 bytes, got %d'):format(#args.app_id)
      end
      local m = kms.material
      local keys, err = dstack.kms_app_keys({ root_key = m.root_scalar, app_id = args.app_id })
      if not keys then
        return nil, err
      end
      local pub, ts = keys.env_crypt_pubkey, now()
      local sig, serr = dstack.env_pubkey_sign({ root_k256_key = m.root_k256,
        app_id = args.app_id, public_key = pub })
      if not sig then
        return nil, serr
      end
      local sig1, s1err = dstack.env_pubkey_sign({ root_k256_key = m.root_k256,
        app_id = args.app_id, public_key = pub, timestamp = ts })
      if not sig1 then
        return nil, s1err
      end
      return { public_key = pub, signature = sig, timestamp = ts, signature_v1 = sig1 }
    end }

  return t
end

return M
