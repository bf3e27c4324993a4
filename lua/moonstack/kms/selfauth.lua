-- SPDX-License-Identifier: Apache-2.0
-- Self-authorization (kms-vmm-gateway.md §3.6, upstream's enforce_self_authorization): before
-- each trusted RPC (GetAppKey, GetAppEnvEncryptPubKey, GetTempCaCert, SignCert, GetKmsKey) the
-- KMS asks its own auth backend whether the KMS itself may run: its own attestation (from its
-- TEE, report_data = 64 zero bytes, fetched once), verified and replayed into a BootInfo each
-- time (the TCB status follows the collateral), then authorize_kms. The decision is never
-- cached: a policy or contract that stops trusting this KMS's image stops its key releases at
-- once.
local M = {}

--- The RPC methods guarded by self-authorization.
M.TRUSTED = { GetAppKey = true, GetAppEnvEncryptPubKey = true, GetTempCaCert = true,
  SignCert = true, GetKmsKey = true }

local Checker = {}
Checker.__index = Checker

--- A checker. opts = { evidence (attestation(report_data, form) -> bytes), attest
--- (moonstack.kms.attest), auth (moonstack.kms.auth backend), log }. Fetches and checks the
--- KMS's own attestation now (call from a task); returns the checker or nil, msg, code.
function M.new(opts)
  assert(type(opts) == 'table' and opts.evidence and opts.attest and opts.auth,
    'kms.selfauth.new: needs evidence, attest and auth')
  local att, err, code = opts.evidence:attestation(('\0'):rep(64), 'full')
  if not att then
    return nil, 'cannot obtain the KMS\'s own attestation: ' .. tostring(err), code
  end
  local self = setmetatable({ attestation = att, attest = opts.attest, auth = opts.auth,
    log = opts.log }, Checker)
  local boot
  boot, err, code = self:boot_info()
  if not boot then
    return nil, err, code
  end
  self.app_id, self.compose_hash = boot.appId, boot.composeHash
  return self
end

--- The KMS's own BootInfo (its attestation verified again) and the verifier's details, or
--- nil, msg, code.
function Checker:boot_info()
  local boot, details, code = self.attest:check_attestation(self.attestation, '')
  if not boot then
    return nil, 'the KMS\'s own attestation does not verify: ' .. tostring(details), code
  end
  return boot, details
end

--- Whether this KMS may serve a trusted RPC now: true, or nil, 'EDENIED: ...', 'EDENIED'.
function Checker:check()
  local boot, err = self:boot_info()
  if not boot then
    return nil, 'EDENIED: self-authorization failed: ' .. tostring(err), 'EDENIED'
  end
  local d = self.auth:authorize_kms(boot)
  if not d.allow then
    if self.log then
      self.log.warn('self-authorization denied: trusted RPCs refused', { reason = d.reason,
        compose_hash = boot.composeHash })
    end
    return nil, 'EDENIED: self-authorization denied: ' .. tostring(d.reason), 'EDENIED'
  end
  return true
end

--- Wrap the trusted methods of a method table (moonstack.kms.api) so that each call first
--- passes check(). Returns the table.
function Checker:guard(methods)
  for name, m in pairs(methods) do
    if M.TRUSTED[name] then
      local call = m.call
      m.call = function(...)
        local ok, err, code = self:check()
        if not ok then
          return nil, err, code
        end
        return call(...)
      end
    end
  end
  return methods
end

return M
