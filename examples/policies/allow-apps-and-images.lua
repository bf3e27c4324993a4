-- SPDX-License-Identifier: Apache-2.0
-- Example KMS auth policy: allow-lists of OS images and, per app id, of compose hashes (the
-- shape of upstream's auth-simple). KMS instances (on_kms_auth: self-check and onboarding
-- peers) must run an allowed OS image with an allowed aggregated measurement.
--
-- Inputs are BootInfo tables (camelCase keys, lowercase hex: appId, composeHash, osImageHash,
-- mrAggregated, deviceId, tcbStatus, ..., and the quote's mrtd, rtmr0-3) plus `now` (Unix
-- seconds). osImageHash is what the CVM claims; the KMS's image gate (kms.lua image.verify, on
-- by default) has already checked that the quote's MRTD and RTMR0-2 are those registered for
-- that image, so an allow-list of images here is an allow-list of boot chains.
-- Check it: moonstack policy check allow-apps-and-images.lua

local OS_IMAGES = {
  ['1f2e3d4c5b6a79880f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c4b5a6978'] = 'dstack-0.5.4',
}

-- app id -> { compose hashes }
local APPS = {
  ['ea549f02e1a25fabd1cb788380e033ec5461b2ff'] = {
    ['7f3e2b7c9e1a4c0d8b6a5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0'] = true,
  },
}

local KMS_MR_AGGREGATED = {
  ['a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1'] = true,
}

local GATEWAY_APP_ID = 'any'

local function deny(reason)
  return { allow = false, reason = reason }
end

local function image_ok(boot)
  if not OS_IMAGES[boot.osImageHash or ''] then
    return nil, 'OS image ' .. tostring(boot.osImageHash) .. ' is not allowed'
  end
  return true
end

-- Test fixtures.
local IMAGE = '1f2e3d4c5b6a79880f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c4b5a6978'
local APP = 'ea549f02e1a25fabd1cb788380e033ec5461b2ff'
local COMPOSE = '7f3e2b7c9e1a4c0d8b6a5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0'
local MR = 'a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1'

return {
  name = 'allow-apps-and-images',
  version = '1.0',
  description = 'Allow-lists of OS images, per-app compose hashes and KMS measurements',

  on_auth = function(boot)
    local ok, why = image_ok(boot)
    if not ok then
      return deny(why)
    end
    local hashes = APPS[boot.appId or '']
    if not hashes then
      return deny('app ' .. tostring(boot.appId) .. ' is not registered')
    end
    if not hashes[boot.composeHash or ''] then
      return deny('compose hash ' .. tostring(boot.composeHash) .. ' is not allowed for this app')
    end
    return { allow = true, reason = 'allowed', gateway_app_id = GATEWAY_APP_ID }
  end,

  on_kms_auth = function(boot)
    local ok, why = image_ok(boot)
    if not ok then
      return deny(why)
    end
    if not KMS_MR_AGGREGATED[boot.mrAggregated or ''] then
      return deny('Aggregated MR not allowed')
    end
    return { allow = true, reason = 'allowed' }
  end,

  tests = {
    { name = 'a registered app and compose hash on an allowed image', hook = 'on_auth',
      input = { appId = APP, composeHash = COMPOSE, osImageHash = IMAGE },
      expect = { allow = true, gateway_app_id = 'any' } },
    { name = 'an unknown OS image', hook = 'on_auth',
      input = { appId = APP, composeHash = COMPOSE, osImageHash = ('00'):rep(32) },
      expect = { allow = false, reason = 'OS image ' .. ('00'):rep(32) .. ' is not allowed' } },
    { name = 'an unregistered app', hook = 'on_auth',
      input = { appId = ('11'):rep(20), composeHash = COMPOSE, osImageHash = IMAGE },
      expect = { allow = false, reason = 'app ' .. ('11'):rep(20) .. ' is not registered' } },
    { name = 'a compose hash the app did not register', hook = 'on_auth',
      input = { appId = APP, composeHash = ('22'):rep(32), osImageHash = IMAGE },
      expect = { allow = false } },
    { name = 'a KMS with an allowed measurement', hook = 'on_kms_auth',
      input = { mrAggregated = MR, osImageHash = IMAGE }, expect = { allow = true } },
    { name = 'a KMS with another measurement', hook = 'on_kms_auth',
      input = { mrAggregated = ('33'):rep(32), osImageHash = IMAGE },
      expect = { allow = false, reason = 'Aggregated MR not allowed' } },
  },
}
