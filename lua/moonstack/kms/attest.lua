-- SPDX-License-Identifier: Apache-2.0
-- How the KMS checks a caller (kms-vmm-gateway.md §3.7): the client's RA-TLS certificate must
-- carry evidence bound to its key (moonstack.x509.ratls.inspect), the quote must pass DCAP
-- (moonstack.verifier: Intel's root, or a simulator root when allowed), the TD must not be a
-- debug TD, the event log must replay to RTMR3 (moonstack.verifier's check_attestation /
-- check_quote); the result is the BootInfo the auth backend decides on (camelCase keys, hex:
-- moonstack.kms.auth.bootinfo), with osImageHash from the request's vm_config when it names
-- one. The TCB status is not judged here (any but Revoked): it is in the BootInfo for the auth
-- backend. A rejection keeps the verifier's code and reason (EQUOTE, ESIG, ETCB, EEVENTLOG,
-- ESIMULATED, ...), so a denied caller learns what failed.
local attestation = require('moonstack.tdx.attestation')
local bootinfo = require('moonstack.kms.auth.bootinfo')
local cjson = require('cjson.safe')
local ratls = require('moonstack.x509.ratls')
local verifier = require('moonstack.verifier')
local policy = require('moonstack.verifier.rules')
local events = require('moonstack.verifier.events')

local M = {}

local Attest = {}
Attest.__index = Attest

local fail = require('moonstack.core.errors').fail
local attestation_events

--- A checker. opts = { collateral = JSON text | pccs = URL (+ cache_dir, timeout_ms),
--- root_ca = PEM/DER of a simulator root?, allow_simulator = false, image = a
--- moonstack.kms.image gate? }. Returns it or nil, msg, code.
function M.new(opts)
  local statuses = {}
  for _, s in ipairs(policy.TCB_STATUSES) do
    if s ~= 'Revoked' then
      statuses[#statuses + 1] = s
    end
  end
  local v, err, code = verifier.new({
    policy = { disable_runtime_verification = true, replay_rtmrs = { 3 },
      allowed_tcb_status = statuses, allow_simulator = opts.allow_simulator == true },
    collateral = opts.collateral, pccs = opts.pccs, cache_dir = opts.cache_dir,
    timeout_ms = opts.timeout_ms, root_ca = opts.root_ca })
  if not v then
    return nil, err, code
  end
  return setmetatable({ verifier = v, image = opts.image }, Attest)
end

--- Whether `boot` runs the OS image it names (the image gate; true without one), or nil,
--- 'EIMAGE: ...', 'EIMAGE'. boot_info() and check_attestation() call it; call it again after
--- changing boot.osImageHash.
function Attest:check_image(boot, ctx)
  if not self.image then
    return true
  end
  return self.image:check(boot, ctx)
end

-- A function giving the event log of VersionedAttestation bytes (for the gate's lite path).
attestation_events = function(att)
  return function()
    local a = attestation.decode(att)
    return a and a.event_log
  end
end

--- The BootInfo of the CVM presenting certificate `peer_der` (DER; nil when the client sent
--- none) and the verifier's result, or nil, 'CODE: why', CODE (ENOATTEST, EBINDING, EATTEST
--- for malformed evidence, then the verifier's: EQUOTE, ETCB, EEVENTLOG, ...). `vm_config` is
--- the request's (JSON text or ''). Call from a task (collateral may be fetched).
function Attest:boot_info(peer_der, vm_config)
  if not peer_der then
    return fail('ENOATTEST', 'an RA-TLS client certificate is required')
  end
  local info, err, code = ratls.inspect(peer_der)
  if not info then
    return nil, err, code
  end
  local ev = info.evidence
  if ev.kind == 'attestation' then
    local ok, err2, code2, detail = self.verifier:check_attestation(ev.attestation)
    return self:_accept(vm_config, ok, err2, code2, detail, attestation_events(ev.attestation))
  end
  if ev.event_log:sub(1, 6) == 'ELGZv1' then
    return fail('EUNSUPPORTED', 'compressed (ELGZv1) event logs are not supported yet')
  end
  local ok, err2, code2, detail = self.verifier:check_quote(ev.quote, ev.event_log)
  return self:_accept(vm_config, ok, err2, code2, detail, function()
    return cjson.decode(ev.event_log)
  end)
end

--- The BootInfo of VersionedAttestation bytes `att` (SignCert's CSR attestation; its binding is
--- the caller's to check) and the verifier's result, or nil, 'CODE: why', CODE. Call from a
--- task.
function Attest:check_attestation(att, vm_config)
  if type(att) ~= 'string' or att == '' then
    return fail('ENOATTEST', 'no attestation')
  end
  local ok, err, code, detail = self.verifier:check_attestation(att)
  return self:_accept(vm_config, ok, err, code, detail, attestation_events(att))
end

-- The BootInfo of an accepted verifier result, the request's vm_config naming the OS image;
-- `log_fn` (a function) gives the event log to the image gate's lite path.
function Attest:_accept(vm_config, result, err, code, _, log_fn)
  if not result then
    return nil, err, code
  end
  local boot = bootinfo.from_verifier(result.boot_info)
  -- as the AppInfo reads it: a vm_config naming a non-hex hash stays a claim the gate refuses
  boot.osImageHash = result.app_info.os_image_hash
  if type(vm_config) == 'string' and vm_config ~= '' then
    local h = events.vm_config_os_image_hash(vm_config)
    if h then
      boot.osImageHash = h
    end
  end
  local ok, ierr, icode = self:check_image(boot, { vm_config = vm_config, events = log_fn })
  if not ok then
    return nil, ierr, icode
  end
  return boot, result
end

return M
