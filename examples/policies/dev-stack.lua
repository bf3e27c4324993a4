-- SPDX-License-Identifier: Apache-2.0
-- The KMS auth policy of the local dev stack (`moonstack dev up` copies it to
-- .moonstack-dev/kms/policy.lua with GATEWAY_APP_ID set to its gateway's app id): every app
-- on a platform the KMS trusts is allowed, except apps an operator blocks below, and every
-- decision says why. A real deployment lists its apps' compose hashes instead
-- (allow-compose-hashes.lua, allow-apps-and-images.lua). Edit the copy while the stack runs:
-- the KMS reloads it on save, and the dashboard and `kms.decisions()` show the new version.
-- Check it: moonstack policy check dev-stack.lua

local GATEWAY_APP_ID = 'any'

-- app id (lowercase hex) -> why it is blocked
local BLOCKED_APPS = {
  ['0000000000000000000000000000000000000000'] = 'the all-zero app id is never an app',
}

local function deny(reason)
  return { allow = false, reason = reason }
end

return {
  name = 'dev-stack',
  version = '1',
  description = 'Local dev stack: any app on a trusted platform, blocked ids excepted',

  on_auth = function(boot)
    local blocked = BLOCKED_APPS[boot.appId or '']
    if blocked then
      return deny('app ' .. boot.appId .. ' is blocked: ' .. blocked)
    end
    if boot.tcbStatus == 'Revoked' then
      return deny('the platform TCB is revoked')
    end
    return { allow = true, reason = 'dev stack: any app on a trusted platform',
      gateway_app_id = GATEWAY_APP_ID }
  end,

  on_kms_auth = function()
    return deny('the dev stack runs one KMS: no replica may onboard')
  end,

  tests = {
    { name = 'an app is allowed', hook = 'on_auth',
      input = { appId = ('ab'):rep(20), composeHash = ('cd'):rep(32), tcbStatus = 'UpToDate' },
      expect = { allow = true, gateway_app_id = GATEWAY_APP_ID } },
    { name = 'a blocked app is denied with its reason', hook = 'on_auth',
      input = { appId = ('00'):rep(20), composeHash = ('cd'):rep(32) },
      expect = { allow = false, reason = 'app ' .. ('00'):rep(20) ..
        ' is blocked: the all-zero app id is never an app' } },
    { name = 'a revoked TCB is denied', hook = 'on_auth',
      input = { appId = ('ab'):rep(20), tcbStatus = 'Revoked' }, expect = { allow = false } },
    { name = 'no KMS replica', hook = 'on_kms_auth', input = {}, expect = { allow = false } },
  },
}
