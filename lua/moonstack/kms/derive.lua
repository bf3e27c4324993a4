-- SPDX-License-Identifier: Apache-2.0
-- One app's keys from the KMS root material (kms-vmm-gateway.md §3.3, §3.4): the app CA key
-- and its certificate (issued by the root CA), the disk key, the env key pair, the app k256
-- key with the root's `dstack-kms-issued:` signature. The derivations are
-- moonstack.crypto.dstack's (bit-identical to upstream); this module only assembles them.
local dstack = require('moonstack.crypto.dstack')
local x509 = require('moonstack.x509')
local profiles = require('moonstack.x509.profiles')

local M = {}

--- The keys of app `app_id` (20 bytes) on instance `instance_id` (20 bytes or nil/'') from
--- `material` (moonstack.kms.keys). Returns { app_ca_key (x509 Key), app_ca_cert (Cert),
--- disk_crypt_key, env_crypt_key, env_crypt_pubkey, k256_key, k256_pubkey, k256_signature }
--- (raw bytes) or nil, msg, code. opts.cert = false skips issuing the app CA certificate;
--- opts.ca = false skips the app CA altogether (no app_ca_key / app_ca_cert: GetAppKey).
function M.app_keys(material, app_id, instance_id, opts)
  assert(type(material) == 'table' and material.root_scalar and material.root_k256,
    'kms.derive.app_keys: material from moonstack.kms.keys required')
  if type(app_id) ~= 'string' or #app_id ~= 20 then
    return nil, 'EINVAL: app_id must be 20 bytes', 'EINVAL'
  end
  instance_id = instance_id or ''
  if type(instance_id) ~= 'string' or (#instance_id ~= 0 and #instance_id ~= 20) then
    return nil, 'EINVAL: instance_id must be 20 bytes or empty', 'EINVAL'
  end
  local k, err, code = dstack.kms_app_keys({ root_key = material.root_scalar,
    root_k256_key = material.root_k256, app_id = app_id, instance_id = instance_id })
  if not k then
    return nil, err, code
  end
  local out = { disk_crypt_key = k.disk_crypt_key,
    env_crypt_key = k.env_crypt_key, env_crypt_pubkey = k.env_crypt_pubkey,
    k256_key = k.k256_key, k256_pubkey = k.k256_pubkey, k256_signature = k.k256_signature }
  if opts and opts.ca == false then
    return out
  end
  local ca_key, kerr, kcode = x509.key_from_scalar(k.ca_key)
  if not ca_key then
    return nil, kerr, kcode
  end
  out.app_ca_key = ca_key
  if not (opts and opts.cert == false) then
    local cert, cerr, ccode = profiles.app_ca({ key = ca_key, app_id = app_id,
      root = { cert = material.root_cert, key = material.root_key } })
    if not cert then
      return nil, cerr, ccode
    end
    out.app_ca_cert = cert
  end
  return out
end

return M
