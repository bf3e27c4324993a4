-- SPDX-License-Identifier: Apache-2.0
-- The agent's `kms` key provider: the KMS URLs from agent.lua and sys-config, each asked for
-- the app's keys in turn through the KMS's client (moonstack.kms.client.get_app_keys); a
-- denial ends the search (EDENIED with the KMS's reason), transport failures try the next.
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local kms_client = require('moonstack.kms.client')

local M = {}

--- The certificate signer of an app whose keys came from the KMS at `kms.url` (guest spec
--- §6.2: with the KMS as key provider, GetTlsKey's certificates come from its SignCert, the
--- chain ending at the KMS root). kms = { url, tee, vm_config, ca = root PEM }. Returns the
--- context's sign_cert(req) hook (moonstack.agent.api.certs).
function M.signer(kms)
  return function(req)
    return kms_client.sign_cert({ url = kms.url, tee = kms.tee, vm_config = kms.vm_config,
      ca = kms.ca, key = req.key, attestation = req.attestation, config = {
        subject = req.subject or '', subject_alt_names = req.alt_names or {},
        usage_server_auth = req.usage_server_auth == true,
        usage_client_auth = req.usage_client_auth == true, ext_quote = req.ext_quote == true,
        ext_app_info = req.ext_app_info == true, not_before = req.not_before,
        not_after = req.not_after } })
  end
end

--- The KMS URLs of a boot: the agent config's key_provider.urls, else sys-config kms_urls.
function M.urls(kcfg, sys_config)
  local list = (kcfg and kcfg.urls) or (type(sys_config) == 'table' and sys_config.kms_urls)
  local out = {}
  for _, u in ipairs(type(list) == 'table' and list or {}) do
    if type(u) == 'string' and u ~= '' then
      out[#out + 1] = u
    end
  end
  return out
end

--- The key provider `kms` (moonstack.agent.boot.keys): try each URL; a denial stops at once.
--- The root CA may be pinned with sys-config `kms_ca` (PEM).
function M.provider(req)
  local urls = M.urls(req.config, req.sys_config)
  if #urls == 0 then
    return errors.fail('EINVAL', 'kms_enabled but no KMS URL (sys-config kms_urls or key_provider.urls)')
  end
  local ca = type(req.sys_config) == 'table' and type(req.sys_config.kms_ca) == 'string'
    and req.sys_config.kms_ca ~= '' and req.sys_config.kms_ca or nil
  local failures = {}
  for _, url in ipairs(urls) do
    local r, err, code = kms_client.get_app_keys({ url = url, tee = req.tee, vm_config = req.vm_config,
      ca = ca })
    if r then
      local spki = r.root:spki()
      local result = { keys = r.keys, info = { name = 'kms', id = crypto.hex(spki) },
        provider_id = spki, sign_cert = M.signer({ url = url, tee = req.tee,
          vm_config = req.vm_config, ca = r.root:pem() }) }
      if #r.os_image_hash > 0 then
        result.os_image_hash = r.os_image_hash
      end
      return result
    end
    if code == 'EDENIED' then
      return errors.fail('EDENIED', ('KMS %s refused the app keys: %s'):format(url, err))
    end
    failures[#failures + 1] = ('%s: %s'):format(url, tostring(err))
  end
  return errors.fail('EUNAVAILABLE', 'no KMS answered GetAppKey: ' .. table.concat(failures, '; '))
end

return M
