-- SPDX-License-Identifier: Apache-2.0
-- The agent's `kms` key provider: the KMS URLs from agent.lua and sys-config, each asked for
-- the app's keys in turn through the KMS's client (moonstack.kms.client.get_app_keys); a
-- denial ends the search (EDENIED with the KMS's reason), transport failures try the next.
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local kms_client = require('moonstack.kms.client')

local M = {}

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
        provider_id = spki }
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
