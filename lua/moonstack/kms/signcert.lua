-- SPDX-License-Identifier: Apache-2.0
-- The KMS's SignCert (kms-vmm-gateway.md §3.4, §3.5): a CVM sends a SCALE
-- CertSigningRequestV2 (moonstack.kms.csr) signed (ECDSA P-256 SHA-256, ASN.1 DER) by the
-- key it wants certified, with its VersionedAttestation appended. The KMS checks the confirm
-- string, that the key is P-256, the signature, that the attestation's report_data is the
-- RA-TLS binding of that key (SHA-512("ratls-cert:" || SPKI)), verifies the attestation
-- (moonstack.kms.attest), asks the auth backend (authorize_app) and issues the app leaf
-- (moonstack.x509.profiles.app_leaf) under the app's CA: chain [leaf, app CA, root CA].
local crypto = require('moonstack.crypto')
local ratls = require('moonstack.x509.ratls')
local profiles = require('moonstack.x509.profiles')
local attestation = require('moonstack.tdx.attestation')
local eventlog = require('moonstack.tdx.eventlog')
local quote_lib = require('moonstack.tdx.quote')
local derive = require('moonstack.kms.derive')
local csr_codec = require('moonstack.kms.csr')

local M = {}

local fail = require('moonstack.core.errors').fail

-- SubjectPublicKeyInfo DER headers of id-ecPublicKey + prime256v1 (uncompressed, compressed).
local SPKI_P256 = {
  ['\48\89\48\19\6\7\42\134\72\206\61\2\1\6\8\42\134\72\206\61\3\1\7\3\66\0'] = 65,
  ['\48\57\48\19\6\7\42\134\72\206\61\2\1\6\8\42\134\72\206\61\3\1\7\3\34\0'] = 33,
}

--- The SEC1 point of a P-256 SubjectPublicKeyInfo (DER), or nil, 'EINVAL: ...'.
function M.p256_point(spki)
  if type(spki) == 'string' then
    local n = SPKI_P256[spki:sub(1, 26)]
    if n and #spki == 26 + n then
      return spki:sub(27)
    end
  end
  return fail('EINVAL', 'the CSR public key is not a P-256 SubjectPublicKeyInfo')
end

-- One DER INTEGER at position p of s -> 32-byte big-endian value, next position.
local function der_int(s, p)
  if s:byte(p) ~= 2 then
    return nil
  end
  local n = s:byte(p + 1)
  if not n or n == 0 or n > 33 or p + 1 + n > #s then
    return nil
  end
  local v = s:sub(p + 2, p + 1 + n)
  if #v == 33 then
    if v:byte(1) ~= 0 then
      return nil
    end
    v = v:sub(2)
  end
  return ('\0'):rep(32 - #v) .. v, p + 2 + n
end

--- An ASN.1 DER ECDSA signature (SEQUENCE { r, s }) as r || s (64 bytes), or nil.
function M.der_to_rs(sig)
  if type(sig) ~= 'string' or #sig < 8 or sig:byte(1) ~= 0x30 or sig:byte(2) ~= #sig - 2 then
    return nil
  end
  local r, p = der_int(sig, 3)
  if not r then
    return nil
  end
  local s, q = der_int(sig, p)
  if not s or q ~= #sig + 1 then
    return nil
  end
  return r .. s
end

--- Verify the CSR signature: `csr` (SCALE bytes), `sig` (DER) by the P-256 key `spki`.
function M.verify_signature(csr, sig, spki)
  local point, err, code = M.p256_point(spki)
  if not point then
    return nil, err, code
  end
  local rs = M.der_to_rs(sig)
  if not rs or not crypto.p256.verify(point, crypto.sha256(csr), rs) then
    return fail('ESIGNATURE', 'the CSR signature does not verify with the CSR public key')
  end
  return true
end

local APP_INFO = { app_id = 'appId', compose_hash = 'composeHash', instance_id = 'instanceId',
  device_id = 'deviceId', mr_system = 'mrSystem', mr_aggregated = 'mrAggregated',
  os_image_hash = 'osImageHash', key_provider_info = 'keyProviderInfo' }

-- The AppInfo extension (1.9) of a CSR that asks for it, from the full-replay BootInfo.
local function c_app_info(csr, boot)
  if not csr.config.ext_app_info then
    return nil
  end
  local f = {}
  for k, b in pairs(APP_INFO) do
    f[k] = crypto.unhex(boot[b] or '') or ''
  end
  return attestation.app_info_ext(f)
end

--- A V1 CSR's quote and JSON event log as a VersionedAttestation V0 (upstream's
--- Attestation::from_tdx_quote(..).into_versioned()), or nil, 'EATTEST: ...'.
function M.v1_attestation(quote, event_log)
  local rd, err = ratls.quote_report_data(quote)
  if not rd then
    return nil, 'EATTEST: CSR quote: ' .. tostring(err), 'EATTEST'
  end
  local events, eerr = eventlog.from_json(event_log ~= '' and event_log or '[]')
  if not events then
    return fail('EATTEST', 'CSR event log: ' .. tostring(eerr))
  end
  local att, aerr, acode = attestation.encode_v0({ quote = quote, event_log = events, report_data = rd })
  if not att then
    return nil, aerr, acode
  end
  return att
end

--- Turn `boot` (the BootInfo of a full replay) into the boot-time one upstream's SignCert
--- authorises (decode_app_info(boottime_mr = true)): RTMR3 replayed only up to the
--- `boot-mr-done` event, no key provider (key_provider_info empty, mr_system over 32 zero
--- bytes), mr_aggregated over that RTMR3. `att` is the verified VersionedAttestation V0.
--- Returns boot or nil, msg, code.
function M.boot_time(boot, att)
  local a, err, code = attestation.decode(att)
  if not a then
    return nil, err, code
  end
  local q
  q, err, code = quote_lib.parse(a.quote)
  if not q then
    return nil, err, code
  end
  local events
  events, err, code = attestation.events(a)
  if not events then
    return nil, err, code
  end
  local r
  r, err, code = eventlog.replay(events, { to_event = 'boot-mr-done', binary = true })
  if not r then
    return nil, err, code
  end
  local rep, zero = q.report, ('\0'):rep(48)
  local base = rep.mr_td .. rep.rtmr0 .. rep.rtmr1 .. rep.rtmr2
  local agg = base .. r[4]
  if rep.mr_config_id ~= zero or rep.mr_owner ~= zero or rep.mr_owner_config ~= zero then
    agg = agg .. rep.mr_config_id .. rep.mr_owner .. rep.mr_owner_config
  end
  boot.mrSystem = crypto.hex(crypto.sha256(base .. ('\0'):rep(32)))
  boot.mrAggregated = crypto.hex(crypto.sha256(agg))
  boot.keyProviderInfo = ''
  return boot
end

--- Handle SignCert `args` = { api_version, csr, signature, vm_config } for `kms` (the rpc.lua
--- context: material, auth, attest, log). Returns { certificate_chain = { PEM leaf, app CA,
--- root } } or nil, 'CODE: reason' (EINVAL, ESCALE, ESIGNATURE, EBINDING, EATTEST (a malformed
--- CSR quote), the verifier's EQUOTE/ETCB/EEVENTLOG/..., EDENIED...).
function M.handle(kms, args)
  local v = args.api_version
  if v ~= 1 and v ~= 2 then
    return fail('EINVAL', ('unsupported api_version %s (1 or 2)'):format(tostring(v)))
  end
  if not kms.attest then
    return fail('EUNAVAILABLE', 'SignCert needs attestation settings (kms.lua attestation = {...})')
  end
  local csr, err, code = (v == 1 and csr_codec.decode_v1 or csr_codec.decode_v2)(args.csr or '')
  if not csr then
    return nil, 'EINVAL: malformed CSR: ' .. err, code
  end
  if csr.confirm ~= csr_codec.CONFIRM then
    return fail('EINVAL', ('CSR confirm string is not %q'):format(csr_codec.CONFIRM))
  end
  local ok
  ok, err, code = M.verify_signature(args.csr, args.signature or '', csr.pubkey)
  if not ok then
    return nil, err, code
  end
  if v == 1 then
    csr.attestation, err, code = M.v1_attestation(csr.quote, csr.event_log)
    if not csr.attestation then
      return nil, err, code
    end
  end
  local rd
  rd, err, code = ratls.evidence_report_data({ kind = 'attestation', attestation = csr.attestation })
  if not rd then
    return nil, 'EATTEST: CSR attestation: ' .. err, code
  end
  if rd ~= ratls.report_data(csr.pubkey) then
    return fail('EBINDING', "the CSR attestation's report_data is not bound to the CSR key")
  end
  local boot
  boot, err, code = kms.attest:check_attestation(csr.attestation, args.vm_config)
  if not boot then
    return nil, err, code
  end
  local app_info = c_app_info(csr, boot) -- AppInfo is the full-replay one, as upstream's
  boot, err, code = M.boot_time(boot, csr.attestation)
  if not boot then
    return nil, err, code
  end
  local d = kms.auth:authorize_app(boot)
  kms.log.info('SignCert decision', { app_id = boot.appId, compose_hash = boot.composeHash,
    subject = csr.config.subject, allow = d.allow, reason = d.reason })
  if not d.allow then
    return fail('EDENIED', 'boot denied: ' .. d.reason)
  end
  local app_id = crypto.unhex(boot.appId or '')
  if not app_id or #app_id ~= 20 then
    return fail('EATTEST', 'the event log names no 20-byte app-id')
  end
  local k
  k, err, code = derive.app_keys(kms.material, app_id, '')
  if not k then
    return nil, err, code
  end
  local c = csr.config
  local leaf
  leaf, err, code = profiles.app_leaf({ subject = c.subject, org = c.org_name,
    sans = c.subject_alt_names, public_key = csr.pubkey,
    issuer = { cert = k.app_ca_cert, key = k.app_ca_key },
    server_auth = c.usage_server_auth, client_auth = c.usage_client_auth,
    attestation = c.ext_quote and csr.attestation or nil, app_id = app_id,
    app_info = app_info,
    not_before = c.not_before, not_after = c.not_after })
  if not leaf then
    return nil, err, code
  end
  return { certificate_chain = { leaf:pem(), k.app_ca_cert:pem(), kms.material.root_cert:pem() } }
end

return M
