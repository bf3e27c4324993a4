-- SPDX-License-Identifier: Apache-2.0
-- Example KMS auth policy: keys are released only on allow-listed machines. deviceId is
-- H256(PPID) of the CPU the CVM runs on (spec §3.7); an app may be pinned to a subset, or
-- allowed on any listed device. KMS instances must run on a device of their own list.
--
-- Inputs are BootInfo tables (deviceId, appId, ...) plus `now`.
-- Check it: moonstack policy check device-allow-list.lua

local DEVICES = {
  ['d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1'] = 'rack-1/host-a',
  ['d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2'] = 'rack-1/host-b',
}

-- app id -> set of devices it may run on (apps not listed may run on any device of DEVICES).
local APP_DEVICES = {
  ['ea549f02e1a25fabd1cb788380e033ec5461b2ff'] = {
    ['d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1'] = true,
  },
}

local KMS_DEVICES = {
  ['d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2'] = true,
}

local function deny(reason)
  return { allow = false, reason = reason }
end

local D1 = ('d1'):rep(32)
local D2 = ('d2'):rep(32)
local PINNED = 'ea549f02e1a25fabd1cb788380e033ec5461b2ff'

return {
  name = 'device-allow-list',
  version = '1.0',
  description = 'Release keys only on allow-listed devices',

  on_auth = function(boot)
    local dev = boot.deviceId or ''
    local host = DEVICES[dev]
    if not host then
      return deny('device ' .. dev .. ' is not allowed')
    end
    local pinned = APP_DEVICES[boot.appId or '']
    if pinned and not pinned[dev] then
      return deny('app ' .. boot.appId .. ' may not run on ' .. host)
    end
    return { allow = true, reason = 'device ' .. host, gateway_app_id = 'any' }
  end,

  on_kms_auth = function(boot)
    if not KMS_DEVICES[boot.deviceId or ''] then
      return deny('KMS is not allowed to boot on this device')
    end
    return { allow = true, reason = 'KMS device allowed' }
  end,

  tests = {
    { name = 'a listed device', hook = 'on_auth', input = { deviceId = D2, appId = ('aa'):rep(20) },
      expect = { allow = true, reason = 'device rack-1/host-b' } },
    { name = 'an unlisted device', hook = 'on_auth', input = { deviceId = ('00'):rep(32) },
      expect = { allow = false, reason = 'device ' .. ('00'):rep(32) .. ' is not allowed' } },
    { name = 'a pinned app on its device', hook = 'on_auth', input = { deviceId = D1, appId = PINNED },
      expect = { allow = true } },
    { name = 'a pinned app elsewhere', hook = 'on_auth', input = { deviceId = D2, appId = PINNED },
      expect = { allow = false, reason = 'app ' .. PINNED .. ' may not run on rack-1/host-b' } },
    { name = 'a KMS on its device', hook = 'on_kms_auth', input = { deviceId = D2 },
      expect = { allow = true } },
    { name = 'a KMS on an app device', hook = 'on_kms_auth', input = { deviceId = D1 },
      expect = { allow = false } },
  },
}
