-- SPDX-License-Identifier: Apache-2.0
-- The KMS pRPC service (kms-vmm-gateway.md §3.6; upstream kms_rpc.proto, field numbers kept):
-- its messages in the form of moonstack.core.proto and the methods served at
-- /prpc/<Method> and /prpc/KMS.<Method>: GetMeta, GetTempCaCert (the temp CA key is public by
-- design: clients use it to make the mTLS certificate whose trust comes from its embedded
-- attestation), GetAppEnvEncryptPubKey (legacy and timestamped signatures, spec §2.2) and
-- GetAppKey (the caller's RA-TLS certificate -> BootInfo (moonstack.kms.attest) -> the auth
-- backend -> the app's keys (moonstack.kms.derive)), SignCert (moonstack.kms.signcert) and
-- GetKmsKey (the root keys handed to another KMS the backend's authorize_kms allows).
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local derive = require('moonstack.kms.derive')
local signcert = require('moonstack.kms.signcert')
local admin = require('moonstack.kms.admin')
local prpc = require('moonstack.core.prpc')

local M = {}

--- The message schemas (field spec { number, name, type [, omit_empty] }).
M.messages = {
  Empty = {},
  AppId = { { 1, 'app_id', 'bytes' } },
  PublicKeyResponse = { { 1, 'public_key', 'bytes' }, { 2, 'signature', 'bytes' },
    { 3, 'timestamp', 'uint64' }, { 4, 'signature_v1', 'bytes' } },
  BootstrapInfo = { { 1, 'ca_pubkey', 'bytes' }, { 2, 'k256_pubkey', 'bytes' },
    { 3, 'attestation', 'bytes' } },
  GetMetaResponse = { { 1, 'ca_cert', 'string' }, { 2, 'allow_any_upgrade', 'bool' },
    { 3, 'k256_pubkey', 'bytes' }, { 4, 'bootstrap_info', 'message' },
    { 5, 'is_dev', 'bool' },
    { 6, 'gateway_app_id', 'string', omit_empty = true },
    { 7, 'kms_contract_address', 'string', omit_empty = true }, { 8, 'chain_id', 'uint64' },
    { 9, 'app_auth_implementation', 'string', omit_empty = true } },
  GetAppKeyRequest = { { 1, 'api_version', 'uint64' }, { 2, 'vm_config', 'string' } },
  AppKeyResponse = { { 1, 'ca_cert', 'string' }, { 2, 'disk_crypt_key', 'bytes' },
    { 3, 'env_crypt_key', 'bytes' }, { 4, 'k256_key', 'bytes' }, { 5, 'k256_signature', 'bytes' },
    { 6, 'tproxy_app_id', 'string' }, { 7, 'gateway_app_id', 'string' },
    { 8, 'os_image_hash', 'bytes' } },
  GetTempCaCertResponse = { { 1, 'temp_ca_cert', 'string' }, { 2, 'temp_ca_key', 'string' },
    { 3, 'ca_cert', 'string' } },
  SignCertRequest = { { 1, 'api_version', 'uint64' }, { 2, 'csr', 'bytes' },
    { 3, 'signature', 'bytes' }, { 4, 'vm_config', 'string' } },
  SignCertResponse = { { 1, 'certificate_chain', 'string*' } },
  GetKmsKeyRequest = { { 1, 'vm_config', 'string' } },
  KmsKeys = { { 1, 'ca_key', 'string' }, { 2, 'k256_key', 'bytes' } },
}
M.messages.GetMetaResponse[4].schema = M.messages.BootstrapInfo
M.messages.KmsKeyResponse = { { 1, 'temp_ca_key', 'string' },
  { 2, 'keys', 'message*', schema = M.messages.KmsKeys } }

local msg = M.messages

-- One builder per method: build.<Method>(kms, now) -> { input, output, call }.
local build = {}

function build.GetMeta(kms, now) -- luacheck: ignore 212
  return { input = msg.Empty, output = msg.GetMetaResponse, call = function()
    local dev = kms.auth.kind == 'dev'
    local info, err, code = kms.auth:info() -- the webhook's GET <url>, every time (as upstream)
    if not info then
      return nil, err, code
    end
    if dev then
      info.gateway_app_id = kms.auth:status().gateway_app_id
    end
    return { ca_cert = kms.material.root_cert:pem(), allow_any_upgrade = dev,
      k256_pubkey = kms.material.k256_pubkey, is_dev = dev, gateway_app_id = info.gateway_app_id,
      bootstrap_info = kms.bootstrap_info,
      kms_contract_address = info.kms_contract_address, chain_id = info.chain_id or 0,
      app_auth_implementation = info.app_auth_implementation }
  end }
end

function build.GetTempCaCert(kms, now) -- luacheck: ignore 212
  return { input = msg.Empty, output = msg.GetTempCaCertResponse, call = function()
    local m = kms.material
    return { temp_ca_cert = m.tmp_ca_cert:pem(), temp_ca_key = m.tmp_ca_key:pkcs8_pem(),
      ca_cert = m.root_cert:pem() }
  end }
end

function build.GetAppEnvEncryptPubKey(kms, now) -- luacheck: ignore 212
  return { input = msg.AppId, output = msg.PublicKeyResponse,
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
end

function build.GetAppKey(kms, now) -- luacheck: ignore 212
  return { input = msg.GetAppKeyRequest, output = msg.AppKeyResponse,
    call = function(args, req)
      if (args.api_version or 0) > 1 then
        return nil, ('EINVAL: unsupported api_version %d'):format(args.api_version)
      end
      if not kms.attest then
        return nil, 'EUNAVAILABLE: GetAppKey needs attestation settings (kms.lua attestation = {...})'
      end
      local boot, err = kms.attest:boot_info(req.peer_cert, args.vm_config)
      if not boot then
        kms.log.warn('GetAppKey refused', { peer = req.peer, error = err })
        return nil, err
      end
      local d = kms.auth:authorize_app(boot)
      kms.log.info('GetAppKey decision', { app_id = boot.appId, compose_hash = boot.composeHash,
        instance_id = boot.instanceId, allow = d.allow, reason = d.reason })
      if not d.allow then
        return nil, 'EDENIED: boot denied: ' .. d.reason
      end
      local app_id, instance_id = crypto.unhex(boot.appId or ''), crypto.unhex(boot.instanceId or '')
      if not app_id or #app_id ~= 20 then
        return nil, 'EATTEST: the event log names no 20-byte app-id'
      end
      local k, kerr = derive.app_keys(kms.material, app_id, instance_id or '', { ca = false })
      if not k then
        return nil, kerr
      end
      local gw = d.gateway_app_id or ''
      return { ca_cert = kms.material.root_cert:pem(), disk_crypt_key = k.disk_crypt_key,
        env_crypt_key = k.env_crypt_key, k256_key = k.k256_key, k256_signature = k.k256_signature,
        tproxy_app_id = gw, gateway_app_id = gw,
        os_image_hash = crypto.unhex(boot.osImageHash or '') or '' }
    end }
end

function build.GetKmsKey(kms, now) -- luacheck: ignore 212
  return { input = msg.GetKmsKeyRequest, output = msg.KmsKeyResponse,
    call = function(args, req)
      if not kms.attest then
        return nil, 'EUNAVAILABLE: GetKmsKey needs attestation settings (kms.lua attestation = {...})'
      end
      local boot, err = kms.attest:boot_info(req.peer_cert, args.vm_config)
      if not boot then
        kms.log.warn('GetKmsKey refused', { peer = req.peer, error = err })
        return nil, err
      end
      local d = kms.auth:authorize_kms(boot)
      kms.log.info('GetKmsKey decision', { app_id = boot.appId, compose_hash = boot.composeHash,
        mr_aggregated = boot.mrAggregated, allow = d.allow, reason = d.reason })
      if not d.allow then
        return nil, 'EDENIED: KMS denied: ' .. d.reason
      end
      local m = kms.material
      return { temp_ca_key = m.tmp_ca_key:pkcs8_pem(),
        keys = { { ca_key = m.root_key:pkcs8_pem(), k256_key = m.root_k256 } } }
    end }
end

function build.SignCert(kms, now) -- luacheck: ignore 212
  return { input = msg.SignCertRequest, output = msg.SignCertResponse,
    call = function(args)
      local r, err, code = signcert.handle(kms, args)
      if not r then
        kms.log.warn('SignCert refused', { error = err })
      end
      return r, err, code
    end }
end

--- The methods over a running KMS `kms` = { material (moonstack.kms.keys), auth (backend),
--- attest (moonstack.kms.attest, or nil: GetAppKey unavailable), log, now = fn() -> seconds? }.
--- Returns the method table for moonstack.core.prpc.
function M.methods(kms)
  local now = kms.now or os.time
  local t = {}
  for name, make in pairs(build) do
    t[name] = make(kms, now)
  end
  return t
end

--- The RPC listener's HTTP handler over a running KMS: the KMS service's methods (kms.methods)
--- at /prpc/<M> and /prpc/KMS.<M>, `GET /health`, and `GET /metrics` when cfg.metrics, all
--- counted by kms.metrics. Statuses: pRPC's (200, 400 with {"error"}, 500 for a bug).
function M.handler(kms)
  return kms.metrics:wrap(prpc.handler({
    { prefix = '/prpc/', service = 'KMS', methods = kms.methods } },
    function(req)
      if req.method ~= 'GET' then
        return nil
      end
      if req.path == '/health' then
        return 200, 'OK', { ['content-type'] = 'text/plain' }
      end
      if req.path == '/metrics' and kms.cfg.metrics then
        return 200, kms.metrics:render(), { ['content-type'] = 'text/plain; version=0.0.4' }
      end
    end))
end

--- The admin listener's HTTP handler: 401 (with a Bearer challenge) unless the request
--- carries the admin credentials `creds` (moonstack.kms.admin), 429 (Retry-After) when the
--- client is over its failed-login limit (kms.login_limit), then the Admin service.
function M.admin_handler(kms, creds)
  local h = prpc.handler({ { prefix = '/prpc/', service = 'Admin', methods = admin.methods(kms) } })
  return function(req)
    local ok, status, headers, why = admin.judge(req, creds, kms.login_limit)
    if not ok then
      kms.log.warn('admin request refused', { path = req.path, peer = req.peer, status = status,
        reason = why })
      headers['content-type'] = 'application/json'
      return status, status == 429 and { error = why } or '{"error":"unauthorized"}', headers
    end
    return h(req)
  end
end

return M
