-- SPDX-License-Identifier: Apache-2.0
-- The `dev` KMS auth backend: every app and KMS check is allowed, with the configured
-- gateway_app_id (default 'any', which disables the guests' gateway certificate checks), as
-- upstream's `[core.auth_api] type = "dev"`. For development only: it warns loudly when it
-- starts and on every decision, since every decision releases keys to anybody attested.
-- The KMS daemon registers it as kind 'dev' with moonstack.kms.auth.register.
local log = require('moonstack.core.log').new('kms-auth')

local M = {}

local Dev = {}
Dev.__index = Dev

--- Every check is allowed: { allow = true, reason = 'dev mode', gateway_app_id }.
function Dev:authorize(boot_info, scope)
  self.decisions = self.decisions + 1
  log.warn('DEV AUTH: allowing without any check', { scope = scope, app_id = boot_info.appId,
    compose_hash = boot_info.composeHash })
  return { allow = true, reason = 'dev mode', gateway_app_id = self.gateway_app_id }
end

function Dev:status()
  return { gateway_app_id = self.gateway_app_id, decisions = self.decisions }
end

--- cfg = { kind = 'dev', gateway_app_id = 'any' }. Returns the backend or nil, 'EINVAL: ...'.
function M.new(cfg)
  local gw = cfg.gateway_app_id == nil and 'any' or cfg.gateway_app_id
  if type(gw) ~= 'string' then
    return nil, 'EINVAL: dev auth gateway_app_id must be a string', 'EINVAL'
  end
  for k in pairs(cfg) do
    if k ~= 'kind' and k ~= 'gateway_app_id' then
      return nil, ('EINVAL: dev auth: unknown key %s'):format(tostring(k)), 'EINVAL'
    end
  end
  log.warn('DEV AUTH BACKEND: every app and KMS is allowed its keys without any check; '
    .. 'never use this outside development', { gateway_app_id = gw })
  return setmetatable({ gateway_app_id = gw, decisions = 0 }, Dev)
end

return M
