-- SPDX-License-Identifier: Apache-2.0
-- Example KMS auth policy: release keys only to CVMs running an allow-listed app-compose
-- (by compose hash, optionally pinned to an app id) on a platform whose TCB is acceptable.
--
-- on_auth receives the BootInfo of the CVM asking for keys (camelCase keys, lowercase hex:
-- appId, composeHash, instanceId, deviceId, mrAggregated, osImageHash, tcbStatus,
-- advisoryIds, ...) and returns { allow = bool, reason = string?, gateway_app_id = string? }.
-- Any error, timeout or malformed answer is a deny.
--
-- Check it (this runs the tests below): moonstack policy check allow-compose-hashes.lua

-- The gateway app id handed to allowed CVMs ('any' disables their gateway certificate check).
local GATEWAY_APP_ID = 'any'

-- compose hash -> the app id it must run as, or true for any app id.
local ALLOWED = {
  ['7f3e2b7c9e1a4c0d8b6a5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0'] = true,
  ['c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00'] =
    'ea549f02e1a25fabd1cb788380e033ec5461b2ff',
}

local ACCEPTED_TCB = { UpToDate = true, SWHardeningNeeded = true }

-- Lowercase hex without a 0x prefix, or nil.
local function hex(v)
  if type(v) ~= 'string' then
    return nil
  end
  return (v:lower():gsub('^0x', ''))
end

local function deny(reason)
  return { allow = false, reason = reason }
end

-- Fixtures for the tests below.
local ALLOWED_HASH = '7f3e2b7c9e1a4c0d8b6a5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0'
local PINNED_HASH = 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00'
local PINNED_APP = 'ea549f02e1a25fabd1cb788380e033ec5461b2ff'

return {
  name = 'allow-compose-hashes',
  version = '1.0',
  description = 'Allow-list of app-compose hashes for key release',

  on_auth = function(boot)
    local compose = hex(boot.composeHash)
    if not compose or compose == '' then
      return deny('no compose hash in the boot info')
    end
    local rule = ALLOWED[compose]
    if rule == nil then
      return deny('compose hash ' .. compose .. ' is not allow-listed')
    end
    if rule ~= true and hex(boot.appId) ~= rule then
      return deny('compose hash ' .. compose .. ' is not allowed for this app id')
    end
    if not ACCEPTED_TCB[boot.tcbStatus or ''] then
      return deny('TCB status ' .. tostring(boot.tcbStatus) .. ' is not accepted')
    end
    return { allow = true, reason = 'compose hash allow-listed', gateway_app_id = GATEWAY_APP_ID }
  end,

  tests = {
    {
      name = 'an allow-listed compose hash gets its keys',
      hook = 'on_auth',
      input = { composeHash = ALLOWED_HASH, appId = 'aa', tcbStatus = 'UpToDate' },
      expect = { allow = true, gateway_app_id = 'any' },
    },
    {
      name = 'hashes are compared case-insensitively, with or without 0x',
      hook = 'on_auth',
      input = { composeHash = '0x' .. ALLOWED_HASH:upper(), tcbStatus = 'SWHardeningNeeded' },
      expect = { allow = true },
    },
    {
      name = 'an unknown compose hash is denied',
      hook = 'on_auth',
      input = { composeHash = ('00'):rep(32), tcbStatus = 'UpToDate' },
      expect = { allow = false, reason = 'compose hash ' .. ('00'):rep(32) .. ' is not allow-listed' },
    },
    {
      name = 'a missing compose hash is denied',
      hook = 'on_auth',
      input = { tcbStatus = 'UpToDate' },
      expect = { allow = false },
    },
    {
      name = 'a pinned hash needs its app id',
      hook = 'on_auth',
      input = { composeHash = PINNED_HASH, appId = ('11'):rep(20), tcbStatus = 'UpToDate' },
      expect = { allow = false },
    },
    {
      name = 'a pinned hash with its app id is allowed',
      hook = 'on_auth',
      input = { composeHash = PINNED_HASH, appId = PINNED_APP, tcbStatus = 'UpToDate' },
      expect = { allow = true },
    },
    {
      name = 'an out-of-date TCB is denied',
      hook = 'on_auth',
      input = { composeHash = ALLOWED_HASH, tcbStatus = 'OutOfDate' },
      expect = { allow = false, reason = 'TCB status OutOfDate is not accepted' },
    },
  },
}
