-- SPDX-License-Identifier: Apache-2.0
-- Example KMS auth policy: the platform's TCB must be UpToDate, except that a status or a
-- security advisory the operator has reviewed is tolerated until a deadline (a grace period
-- to patch hosts after Intel publishes a TCB recovery). Past the deadline it denies.
--
-- Inputs are BootInfo tables (tcbStatus, advisoryIds, ...) plus `now` (Unix seconds; the
-- policy sandbox has no clock). Check it: moonstack policy check tcb-grace-period.lua

-- TCB status -> accepted until (Unix seconds). UpToDate is always accepted.
local STATUS_GRACE = {
  SWHardeningNeeded = math.huge, -- mitigated in software: accepted for good
  OutOfDate = 1798761600, -- 2027-01-01T00:00:00Z
  OutOfDateConfigurationNeeded = 1798761600,
}

-- Advisory -> accepted until (Unix seconds). Any other advisory denies.
local ADVISORY_GRACE = {
  ['INTEL-SA-00828'] = math.huge,
  ['INTEL-SA-00960'] = 1798761600,
}

local function deny(reason)
  return { allow = false, reason = reason }
end

local function check_tcb(boot)
  local now = boot.now
  if type(now) ~= 'number' then
    return deny('no current time in the input')
  end
  local status = boot.tcbStatus
  if status ~= 'UpToDate' then
    local until_t = STATUS_GRACE[status or '']
    if not until_t then
      return deny('TCB status ' .. tostring(status) .. ' is not accepted')
    end
    if now >= until_t then
      return deny('grace period for TCB status ' .. status .. ' is over')
    end
  end
  for _, id in ipairs(boot.advisoryIds or {}) do
    local until_t = ADVISORY_GRACE[id]
    if not until_t then
      return deny('advisory ' .. id .. ' is not accepted')
    end
    if now >= until_t then
      return deny('grace period for advisory ' .. id .. ' is over')
    end
  end
  return { allow = true, reason = 'TCB ' .. status .. ' accepted', gateway_app_id = 'any' }
end

local BEFORE, AFTER = 1767225600, 1798761600 -- 2026-01-01, 2027-01-01

return {
  name = 'tcb-grace-period',
  version = '1.0',
  description = 'TCB status and advisories, with grace periods',

  on_auth = check_tcb,
  on_kms_auth = function(boot)
    local d = check_tcb(boot)
    d.gateway_app_id = nil
    return d
  end,

  tests = {
    { name = 'UpToDate is accepted', hook = 'on_auth',
      input = { tcbStatus = 'UpToDate', advisoryIds = {}, now = AFTER },
      expect = { allow = true, reason = 'TCB UpToDate accepted' } },
    { name = 'OutOfDate within the grace period', hook = 'on_auth',
      input = { tcbStatus = 'OutOfDate', advisoryIds = { 'INTEL-SA-00960' }, now = BEFORE },
      expect = { allow = true } },
    { name = 'OutOfDate after the grace period', hook = 'on_auth',
      input = { tcbStatus = 'OutOfDate', advisoryIds = {}, now = AFTER },
      expect = { allow = false, reason = 'grace period for TCB status OutOfDate is over' } },
    { name = 'an advisory after its grace period', hook = 'on_auth',
      input = { tcbStatus = 'SWHardeningNeeded', advisoryIds = { 'INTEL-SA-00960' }, now = AFTER },
      expect = { allow = false, reason = 'grace period for advisory INTEL-SA-00960 is over' } },
    { name = 'a permanently accepted advisory', hook = 'on_auth',
      input = { tcbStatus = 'SWHardeningNeeded', advisoryIds = { 'INTEL-SA-00828' }, now = AFTER },
      expect = { allow = true } },
    { name = 'an unknown advisory', hook = 'on_auth',
      input = { tcbStatus = 'UpToDate', advisoryIds = { 'INTEL-SA-99999' }, now = BEFORE },
      expect = { allow = false, reason = 'advisory INTEL-SA-99999 is not accepted' } },
    { name = 'Revoked is never accepted', hook = 'on_kms_auth',
      input = { tcbStatus = 'Revoked', now = BEFORE },
      expect = { allow = false, reason = 'TCB status Revoked is not accepted' } },
  },
}
