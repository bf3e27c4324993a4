-- SPDX-License-Identifier: Apache-2.0
-- One verification, as `moonstack verify` and the verifier service run it: DCAP-verify a quote
-- (moonstack.dcap) against collateral from a file or a PCCS (moonstack.verifier.collateral),
-- then evaluate the policy (moonstack.verifier.rules) with the event log.
--
-- The simulator rule: without `root_ca` only the Intel SGX Root CA (pinned) is trusted, so a
-- simulated quote fails its chain (ECHAIN). With `root_ca` that root is trusted as a simulator
-- root and its quotes verify with simulated = true, but the outcome is still "not verified"
-- (ESIMULATED, exit 2) unless the policy sets allow_simulator. A simulated quote is accepted
-- only when both are given.
--
--   local verifier = require('moonstack.verifier')
--   local v = assert(verifier.new({ policy = p, collateral = text } or { pccs = url, ... }))
--   local r = v:verify(quote_bytes, { event_log = events, now = t })   -- in a task for pccs
--   r.exit_code  -- 0 verified and policy ok, 1 verified but policy violated, 2 not verified
--
-- A relying party (the KMS, the HTTP service) asks for a verdict instead:
--   local r, err, code = v:check_attestation(bytes)          -- or v:check_quote(q, log, opts)
--   if not r then ... end  -- code: EQUOTE, ETCB, EEVENTLOG, EPOLICY, ... (README.md)
--   r.boot_info.compose_hash, r.status, r.rtmrs.rtmr3 ...
local check = require('moonstack.verifier.check')
local dcap = require('moonstack.dcap')
local codec = require('moonstack.core.codec')
local collateral = require('moonstack.verifier.collateral')
local errors = require('moonstack.core.errors')
local json = require('moonstack.core.json')
local policy_mod = require('moonstack.verifier.rules')

local M = {}

--- The policy used when none is given: platform only (runtime verification disabled), the
--- default allowed_tcb_status {'UpToDate'}.
M.DEFAULT_POLICY = { disable_runtime_verification = true }

local Verifier = {}
Verifier.__index = Verifier

--- Create a verifier. opts:
---   policy      a policy table (validated here) or nil for DEFAULT_POLICY
---   collateral  collateral JSON text (fixed), or
---   pccs        a PCCS/PCS base URL (else the policy's pccs_url), with cache_dir,
---               timeout_ms, tls, root_ca_crl_url as in moonstack.verifier.collateral
---   root_ca     DER or PEM of a simulator root (see the simulator rule above)
--- Returns the verifier or nil, msg, code (EINVAL for a bad policy or options, ECOLLATERAL,
--- ECHAIN for a bad root).
function M.new(opts)
  opts = opts or {}
  local p, err, code = policy_mod.validate(opts.policy or M.DEFAULT_POLICY)
  if not p then
    return nil, err, code
  end
  local self = setmetatable({ policy = p, parsed = {} }, Verifier)
  if opts.collateral and opts.pccs then
    return errors.fail('EINVAL', 'give a collateral file or a PCCS URL, not both')
  end
  if opts.collateral then
    local ok, perr, pcode = collateral.parse(opts.collateral)
    if not ok then
      return nil, perr, pcode
    end
    self.fixed, err, code = dcap.collateral(opts.collateral)
    if not self.fixed then
      return nil, err, code
    end
  else
    local url = opts.pccs or p.pccs_url
    if not url then
      return errors.fail('EINVAL', 'no collateral: give a collateral file, a PCCS URL, or a '
        .. 'policy with pccs_url')
    end
    if not url:match('^https?://') then
      return errors.fail('EINVAL', ('PCCS URL must be http(s): %s'):format(url))
    end
    self.source = collateral.pccs(url, { cache_dir = opts.cache_dir, timeout_ms = opts.timeout_ms,
      tls = opts.tls, root_ca_crl_url = opts.root_ca_crl_url })
  end
  self.dcap, err, code = dcap.verifier({ root_ca = opts.root_ca, simulator = opts.root_ca ~= nil,
    allow_debug = p.allow_debug })
  if not self.dcap then
    return nil, err, code
  end
  return self
end

-- Parsed collateral for a fetched JSON text (parsed once per distinct text; a few kept).
function Verifier:_parsed(text)
  local c = self.parsed[text]
  if not c then
    local err, code
    c, err, code = dcap.collateral(text)
    if not c then
      return nil, err, code
    end
    self.nparsed = (self.nparsed or 0) + 1
    if self.nparsed > 16 then
      self.parsed, self.nparsed = {}, 1
    end
    self.parsed[text] = c
  end
  return c
end

--- Verify `quote_bytes` (binary). opts: now (unix seconds, default now), event_log (TdxEvent
--- tables or JSON text), vm_config, refresh (re-download collateral). With a PCCS source this
--- must run in a task. Returns a result table:
---   { verified, exit_code (0/1/2), error ('CODE: reason'), code, report (moonstack.dcap's),
---     policy = { ok, violations }, event_log = { given, verified }, app_info,
---     collateral = { source = 'file'|'memory'|'cache'|'network', expires } }
function Verifier:verify(quote_bytes, opts)
  if type(quote_bytes) ~= 'string' then
    error('verifier:verify: quote must be a string', 2)
  end
  opts = opts or {}
  local now = opts.now or os.time()
  local result = { verified = false, exit_code = 2,
    policy = { ok = false, violations = json.array() }, event_log = { given = false, verified = false } }
  local function fail(msg, code)
    result.error, result.code = msg, code
    return result
  end
  local coll, err, code
  if self.fixed then
    coll = self.fixed
    result.collateral = { source = 'file' }
  else
    local text, info
    text, info, code = self.source:fetch(quote_bytes, { now = now, refresh = opts.refresh })
    if not text then
      return fail(info, code)
    end
    result.collateral = { source = info.source, expires = info.expires }
    coll, err, code = self:_parsed(text)
    if not coll then
      return fail(err, code)
    end
  end
  local report
  report, err, code = self.dcap:verify(quote_bytes, coll, { now = now })
  if not report then
    return fail(err, code)
  end
  result.report = report
  local ev = policy_mod.evaluate(self.policy, report, { event_log = opts.event_log, now = now,
    vm_config = opts.vm_config, ppid = report.ppid and codec.unhex(report.ppid) })
  result.policy = { ok = ev.ok, violations = ev.violations }
  result.event_log = ev.event_log
  result.app_info = ev.app_info
  if report.simulated and not self.policy.allow_simulator then
    return fail('ESIMULATED: the quote chains to the simulator root given as root_ca, and the '
      .. 'policy does not set allow_simulator', 'ESIMULATED')
  end
  result.verified = true
  result.exit_code = ev.ok and 0 or 1
  return result
end

--- Verify `quote` (binary) with `event_log` (TdxEvent tables, their JSON text, or nil) and
--- judge it as a relying party does: accepted only when the quote verifies (a simulated one
--- only if the policy allows it), the policy holds, an event log was given and replays, the
--- TD's mr_signer_seam is zero and, with opts.report_data (64 bytes), the quote carries it.
--- opts: now, vm_config (JSON text: os_image_hash for the AppInfo), refresh, report_data.
--- With a PCCS source this must run in a task. Returns the result, or when rejected nil,
--- 'CODE: what failed: details', CODE, result. The result:
---   { ok, code?, error?, verified (DCAP passed and a simulated quote allowed), policy_ok,
---     exit_code (moonstack verify's), status (TCB), advisory_ids, simulated, tee_type,
---     tee_variant ('dstack-tdx'|'sgx'), ppid (raw), violations = { {field, reason} },
---     event_log = { given, verified, replayed (hex) }, rtmrs = { rtmr0..3 (raw, replayed;
---     nil without a replay) }, app_info (hex, moonstack.verifier.events), boot_info (raw
---     bytes, when the log replayed: tee_variant, mr_aggregated, os_image_hash, mr_system,
---     app_id, compose_hash, instance_id, device_id, key_provider_info, tcb_status,
---     advisory_ids, mrtd, rtmr0..3), failures = { {stage = 'quote'|'check'|'policy', code,
---     reason, field?} }, report (moonstack.dcap's, hex), collateral, verification (the
---     Verifier:verify record, for M.summary) }.
--- code is the most fundamental failure's: the quote stage's own (EQUOTE, ESIG, ECHAIN,
--- ECRL, EEXPIRED, ETCB, EQEID, EATTR, ECOLLATERAL, ESIMULATED, a fetch error), else ETCB,
--- EATTR, EQUOTE, EBINDING, EEVENTLOG, EPOLICY in that order.
function Verifier:check_quote(quote, event_log, opts)
  return check.quote(self, quote, event_log, opts)
end

--- Check a dstack VersionedAttestation (V0 or V1 bytes): its quote with its event log, the
--- attestation's config as vm_config (unless opts.vm_config), and its report_data, which the
--- quote must carry (EBINDING). opts and the result as check_quote's, plus result.attestation
--- (moonstack.tdx.attestation's table). Bytes that do not decode: nil, 'EATTESTATION: ...',
--- 'EATTESTATION' (no result).
function Verifier:check_attestation(bytes, opts)
  return check.attestation(self, bytes, opts)
end

local REPORT_KEYS = { 'status', 'tee_type', 'quote_version', 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2',
  'rtmr3', 'report_data', 'simulated', 'tcb_date', 'fmspc', 'mr_config_id', 'mr_owner',
  'mr_owner_config', 'td_attributes', 'xfam', 'mr_seam', 'mr_signer_seam', 'tee_tcb_svn',
  'mr_enclave', 'mr_signer', 'isv_prod_id', 'isv_svn', 'platform_status', 'qe_status' }

--- A flat JSON-ready summary of a result: verified, status, advisory_ids, tee_type,
--- quote_version, mrtd, rtmr0..3, report_data, simulated, policy {ok, violations}, (more
--- report fields), event_log, app_info, collateral, error and code when not verified.
--- Fields the verification did not produce are json.null.
function M.summary(result)
  local r = result.report or {}
  local out = { verified = result.verified, policy = result.policy, event_log = result.event_log }
  for _, k in ipairs(REPORT_KEYS) do
    if r[k] ~= nil then
      out[k] = r[k]
    end
  end
  for _, k in ipairs({ 'status', 'tee_type', 'quote_version', 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2',
    'rtmr3', 'report_data' }) do
    if out[k] == nil then
      out[k] = json.null
    end
  end
  if out.simulated == nil then
    out.simulated = json.null
  end
  out.advisory_ids = json.array({})
  for i, id in ipairs(r.advisory_ids or {}) do
    out.advisory_ids[i] = id
  end
  out.app_info = result.app_info
  out.collateral = result.collateral
  if result.error then
    out.error, out.code = result.error, result.code
  end
  return out
end

return M
