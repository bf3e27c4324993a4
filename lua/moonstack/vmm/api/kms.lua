-- SPDX-License-Identifier: Apache-2.0
-- GetAppEnvEncryptPubKey as the VMM serves it (kms-vmm-gateway.md §2.2): proxied to the KMS
-- at `kms_url` (else the first of kms_urls) through moonstack.kms.client, the KMS's answer
-- passed on unchanged (its k256 signatures let the caller check it: the VMM is not trusted
-- with it). TLS to the KMS is checked against `kms_ca` when configured.
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local kms = require('moonstack.kms.client')

local M = {}

--- The PublicKeyResponse for app `app_id` (20 bytes), or nil, msg, code.
function M.env_pubkey(vmm, app_id)
  if #app_id ~= 20 then
    return errors.fail('EINVAL', ('app_id: must be 20 bytes, got %d'):format(#app_id))
  end
  local url = vmm.cfg.kms_url
  if not url then
    return errors.fail('EUNAVAILABLE', 'no KMS is configured on this VMM (kms_urls / kms_url)')
  end
  local ca
  if vmm.cfg.kms_ca then
    local err, code
    ca, err, code = fs.read_file(vmm.cfg.kms_ca, 1024 * 1024)
    if not ca then
      return nil, 'kms_ca: ' .. tostring(err), code
    end
  end
  local r, err, code = kms.env_pubkey(url, app_id, { ca = ca, timeout_ms = 10000 })
  if not r then
    return nil, err, code
  end
  local function bytes(k)
    return type(r[k]) == 'string' and crypto.unhex(r[k]) or ''
  end
  return { public_key = bytes('public_key'), signature = bytes('signature'),
    timestamp = tonumber(r.timestamp) or 0, signature_v1 = bytes('signature_v1') }
end

return M
