-- SPDX-License-Identifier: Apache-2.0
-- The verifier as a Lua API: bytes in (a VersionedAttestation, or a quote and its event log),
-- one structured verdict out. It runs Verifier:verify (DCAP, the simulator rule, the policy of
-- moonstack.verifier.rules with the event-log checks of moonstack.verifier.events), adds what a
-- relying party checks on top (an event log is required, mr_signer_seam zero, an attestation's
-- report_data equal to its quote's), and names the first thing that failed with a stable code
-- (README.md, "The Lua API"). Reached as verifier:check_quote / verifier:check_attestation
-- (moonstack.verifier); the HTTP service, `moonstack verify` and the KMS render its result.
local attestation = require('moonstack.tdx.attestation')
local codec = require('moonstack.core.codec')

local M = {}

local hex, unhex = codec.hex, codec.unhex

--- The codes a rejection carries, most fundamental first: the first code present among a
--- result's failures is the result's code. Codes not listed (the quote stage's: EQUOTE, ESIG,
--- ECHAIN, ECRL, EEXPIRED, EQEID, ECOLLATERAL, ESIMULATED, and collateral fetching errors)
--- come before all of these, since a quote that does not verify is reported alone.
M.PRIORITY = { 'ESIMULATED', 'ETCB', 'EATTR', 'EQUOTE', 'EBINDING', 'EEVENTLOG', 'EPOLICY' }

local RANK, UNRANKED = {}, #M.PRIORITY + 1
for i, c in ipairs(M.PRIORITY) do
  RANK[c] = i
end

-- How a rejection with each code opens its message.
local PHRASE = {
  ETCB = 'TCB not accepted',
  EATTR = 'TD attributes not accepted',
  EBINDING = 'attestation not bound to its quote',
  EEVENTLOG = 'event log rejected',
  EPOLICY = 'policy violated',
}

--- The code of a policy violation, by its field (moonstack.verifier.rules): ETCB for
--- allowed_tcb_status and grace_period, ESIMULATED for allow_simulator, EATTR for allow_debug,
--- EEVENTLOG for event_log and event_log.*, EPOLICY for the rest (expected_bootchain,
--- os_image_hash, app_compose, key_provider, report_data).
function M.violation_code(field)
  local top = tostring(field):match('^[%w_]+')
  if top == 'allowed_tcb_status' or top == 'grace_period' then
    return 'ETCB'
  elseif top == 'allow_simulator' then
    return 'ESIMULATED'
  elseif top == 'allow_debug' then
    return 'EATTR'
  elseif top == 'event_log' then
    return 'EEVENTLOG'
  end
  return 'EPOLICY'
end

local function raw(h)
  return type(h) == 'string' and unhex(h) or ''
end

local BOOT_HASHES = { 'mr_aggregated', 'os_image_hash', 'mr_system', 'app_id', 'compose_hash',
  'instance_id', 'device_id', 'key_provider_info' }

-- The BootInfo (raw bytes) of a verified report and the AppInfo of its replayed log.
local function boot_info(report, info, tee_variant, advisories)
  local b = { tee_variant = tee_variant, tcb_status = report.status, advisory_ids = advisories }
  for _, k in ipairs(BOOT_HASHES) do
    b[k] = raw(info[k])
  end
  for _, k in ipairs({ 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3' }) do
    b[k] = raw(report[k])
  end
  return b
end

-- The failures of a verification record `r`, in the order the HTTP service lists them.
local function failures_of(r, opts)
  local out = {}
  local function add(stage, code, reason, field)
    out[#out + 1] = { stage = stage, code = code, reason = reason, field = field }
  end
  if not r.verified then
    add('quote', r.code or 'EQUOTE', r.error or 'EQUOTE: not verified')
    return out
  end
  local rep = r.report
  if rep.tee_type == 'TDX' and rep.mr_signer_seam and rep.mr_signer_seam:find('[^0]') then
    add('check', 'EQUOTE', 'mr_signer_seam is not zero')
  end
  if opts.report_data and hex(opts.report_data) ~= rep.report_data then
    add('check', 'EBINDING', 'the attestation report_data differs from the quote report_data')
  end
  for _, v in ipairs(r.policy.violations) do
    add('policy', M.violation_code(v.field), v.reason, v.field)
  end
  if not r.event_log.given then
    add('check', 'EEVENTLOG', 'no event log was given')
  end
  return out
end

-- 'CODE: phrase: detail[; detail...]' for the failures that carry `code`.
local function message(code, failures)
  local parts = {}
  for _, f in ipairs(failures) do
    if f.code == code then
      local reason = f.stage == 'quote' and f.reason:gsub('^E[A-Z0-9_]+: ', '') or f.reason
      parts[#parts + 1] = f.field and (f.field .. ': ' .. reason) or reason
    end
  end
  return ('%s: %s: %s'):format(code, PHRASE[code] or 'quote verification failed',
    table.concat(parts, '; '))
end

--- Check `quote` (binary) and `event_log` with verifier `v` (moonstack.verifier); see
--- Verifier:check_quote for the arguments and the result.
function M.quote(v, quote, event_log, opts)
  if type(quote) ~= 'string' then
    error('verifier:check_quote: quote must be a string', 3)
  end
  opts = opts or {}
  local r = v:verify(quote, { event_log = event_log, vm_config = opts.vm_config, now = opts.now,
    refresh = opts.refresh })
  local rep = r.report
  local res = { ok = false, verified = r.verified, policy_ok = r.policy.ok, exit_code = r.exit_code,
    violations = r.policy.violations, event_log = r.event_log, app_info = r.app_info,
    collateral = r.collateral, report = rep, verification = r, advisory_ids = {} }
  if rep then
    res.status, res.simulated, res.tee_type = rep.status, rep.simulated == true, rep.tee_type
    res.tee_variant = rep.tee_type == 'TDX' and 'dstack-tdx' or 'sgx'
    res.ppid = rep.ppid and unhex(rep.ppid) or nil
    for i, id in ipairs(rep.advisory_ids or {}) do
      res.advisory_ids[i] = id
    end
  end
  local replayed = r.event_log and r.event_log.replayed
  if replayed then
    res.rtmrs = {}
    for i = 0, 3 do
      res.rtmrs['rtmr' .. i] = raw(replayed['rtmr' .. i])
    end
  end
  if r.app_info and rep then
    res.boot_info = boot_info(rep, r.app_info, res.tee_variant, res.advisory_ids)
  end
  res.failures = failures_of(r, opts)
  if #res.failures == 0 then
    res.ok = true
    return res
  end
  local code = res.failures[1].code
  if res.failures[1].stage ~= 'quote' then
    for _, f in ipairs(res.failures) do
      if (RANK[f.code] or UNRANKED) < (RANK[code] or UNRANKED) then
        code = f.code
      end
    end
  end
  res.code, res.error = code, message(code, res.failures)
  return nil, res.error, res.code, res
end

--- Check VersionedAttestation `bytes` with verifier `v`; see Verifier:check_attestation.
function M.attestation(v, bytes, opts)
  if type(bytes) ~= 'string' then
    error('verifier:check_attestation: attestation must be a string', 3)
  end
  local att, err, code = attestation.decode(bytes)
  if not att then
    return nil, err, code
  end
  local events
  events, err, code = attestation.events(att)
  if not events then
    return nil, err, code
  end
  local o = {}
  for k, val in pairs(opts or {}) do
    o[k] = val
  end
  if o.vm_config == nil then
    o.vm_config = att.config
  end
  o.report_data = att.report_data
  local res, detail
  res, err, code, detail = M.quote(v, att.quote, events, o)
  local result = res or detail
  result.attestation = att
  return res, err, code, detail
end

return M
