-- SPDX-License-Identifier: Apache-2.0
-- RA-TLS (dstack): certificates whose key is bound to TEE evidence. The evidence travels in
-- the certificate (OID …62397.1.8 attestation, or the older .1.1 quote + .1.2 event log) and
-- its report_data must equal SHA-512("ratls-cert:" || SubjectPublicKeyInfo DER).
--
-- This module issues such certificates (issue), takes them apart and checks the binding
-- (inspect), and builds the `tls.verify` hook of moonstack.http servers and clients
-- (verify_hook) that demands an RA-TLS peer certificate and hands the evidence to a verifier
-- function. Quote verification (DCAP, RTMR replay, policy) is not done here: the caller's
-- `check(info)` does it (M3 plugs the real verifier in).
--
-- Where report_data is read from (the default extractor):
--   * .1.1 quote: TDX v4 at byte 568, v5 at 54+520 (TD report) or 54+320 (SGX body), SGX v3 at
--     48+320, 64 bytes (guest-and-attestation.md §3).
--   * .1.8 attestation, VersionedAttestation V0 (SCALE, first byte 0x00) or V1 (msgpack), TDX:
--     the attestation's report_data field; when its embedded quote is long enough, the quote's
--     report_data must be equal as well. opts.report_data = function(evidence) -> 64 bytes |
--     nil, err replaces this extractor.
local x509 = require('moonstack.x509')
local native = require('moonstack.native.x509')

local M = {}

local fail = require('moonstack.core.errors').fail

--- The RA-TLS binding of a key: SHA-512("ratls-cert:" .. spki_der), 64 bytes.
function M.report_data(spki_der)
  return native.ratls_report_data(spki_der)
end

local function u16le(s, i)
  local a, b = s:byte(i, i + 1)
  return a + b * 256
end

local function u32le(s, i)
  local a, b, c, d = s:byte(i, i + 3)
  return a + b * 256 + c * 65536 + d * 16777216
end

--- The 64-byte report_data of a raw quote (TDX v4/v5, SGX v3), or nil, err, 'EATTEST'.
function M.quote_report_data(quote)
  if type(quote) ~= 'string' or #quote < 48 then
    return fail('EATTEST', 'quote too short')
  end
  local version, tee = u16le(quote, 1), u32le(quote, 5)
  local off
  if version == 4 or version == 3 then
    off = tee == 0x81 and 568 or 368
  elseif version == 5 then
    if #quote < 54 then
      return fail('EATTEST', 'quote too short')
    end
    local body_type = u16le(quote, 49)
    off = body_type == 1 and 54 + 320 or 54 + 520
  else
    return fail('EATTEST', ('unknown quote version %d'):format(version))
  end
  if #quote < off + 64 then
    return fail('EATTEST', 'quote too short for its report_data')
  end
  return quote:sub(off + 1, off + 64)
end

--- Decode a VersionedAttestation (V0 SCALE or V1 msgpack, moonstack.tdx.attestation) for
--- the binding: returns { version, quote, report_data, config, events, runtime_events } (counts
--- for the two logs), or nil, err, code (EATTEST malformed, EUNSUPPORTED another platform).
function M.decode_attestation(bytes)
  local a, err = require('moonstack.tdx.attestation').decode(bytes)
  if not a then
    local msg = tostring(err):gsub('^EATTESTATION: ', '')
    return fail(msg:find('is not supported', 1, true) and 'EUNSUPPORTED' or 'EATTEST',
      'malformed attestation: ' .. msg)
  end
  return { version = a.version, quote = a.quote, report_data = a.report_data, config = a.config,
    events = #a.event_log, runtime_events = #a.runtime_events }
end

--- The RA-TLS evidence carried by a parsed certificate: { kind = 'attestation', attestation = }
--- (.1.8, preferred) or { kind = 'quote', quote =, event_log = } (.1.1 + .1.2), or nil, err,
--- 'ENOATTEST'.
function M.evidence(info)
  local r = info.ratls
  if r.attestation then
    return { kind = 'attestation', attestation = r.attestation }
  end
  if r.quote then
    if not r.event_log then
      return fail('EATTEST', 'quote extension without the event log extension (.1.2)')
    end
    return { kind = 'quote', quote = r.quote, event_log = r.event_log }
  end
  if info.ratls_invalid then
    return fail('EATTEST', 'RA-TLS extension is not an OCTET STRING: '
      .. table.concat(info.ratls_invalid, ', '))
  end
  return fail('ENOATTEST', 'certificate carries no attestation (.1.8) or quote (.1.1) extension')
end

--- The report_data of `evidence` (see the module comment), or nil, err, code.
function M.evidence_report_data(evidence)
  if evidence.kind == 'quote' then
    return M.quote_report_data(evidence.quote)
  end
  local a, err, code = M.decode_attestation(evidence.attestation)
  if not a then
    return nil, err, code
  end
  local q = M.quote_report_data(a.quote)
  if q and q ~= a.report_data then
    return fail('EATTEST', "the quote's report_data differs from the attestation's")
  end
  return a.report_data
end

--- Take an RA-TLS certificate (Cert, PEM or DER) apart and check its binding. Returns info =
--- { cert = parsed fields, der, spki, evidence, report_data, app_id, app_info, special_usage },
--- or nil, err, code: EPARSE, ENOATTEST (no evidence), EATTEST (malformed), EUNSUPPORTED,
--- EBINDING (report_data is not the binding of the certificate's key).
--- opts.report_data = function(evidence) -> 64 bytes | nil, err overrides the extractor.
function M.inspect(cert, opts)
  opts = opts or {}
  local info, err, code = x509.parse(cert)
  if not info then
    return nil, err, code
  end
  local ev
  ev, err, code = M.evidence(info)
  if not ev then
    return nil, err, code
  end
  local rd
  if opts.report_data then
    rd, err = opts.report_data(ev)
    code = 'EATTEST'
  else
    rd, err, code = M.evidence_report_data(ev)
  end
  if type(rd) ~= 'string' or #rd ~= 64 then
    return nil, err or 'EATTEST: no 64-byte report_data in the evidence', code or 'EATTEST'
  end
  if rd ~= M.report_data(info.spki) then
    return fail('EBINDING', "the evidence's report_data is not SHA-512('ratls-cert:' || SPKI)")
  end
  return {
    cert = info, der = info.der, spki = info.spki, evidence = ev, report_data = rd,
    app_id = info.ratls.app_id, app_info = info.ratls.app_info,
    special_usage = info.ratls.special_usage,
  }
end

--- A `tls.verify` hook for moonstack.http servers and clients that demands an RA-TLS peer
--- certificate. opts.check(info) (required) is the verifier: it gets inspect()'s info plus
--- `peer` ({der, chain, preverify, error}) and returns true to accept, or false/nil and a
--- reason; an error it raises rejects the peer. opts.require_chain = true also demands that
--- OpenSSL's chain check (against tls.ca) passed. opts.report_data as for inspect().
function M.verify_hook(opts)
  assert(type(opts) == 'table' and type(opts.check) == 'function',
    'ratls.verify_hook: needs opts.check = function(info) -> ok, reason')
  return function(peer)
    if not peer.der then
      return false, 'no peer certificate'
    end
    if opts.require_chain and not peer.preverify then
      return false, 'certificate chain: ' .. tostring(peer.error or 'not trusted')
    end
    local info, err = M.inspect(peer.der, opts)
    if not info then
      return false, err
    end
    info.peer = peer
    local ok, accept, reason = pcall(opts.check, info)
    if not ok then
      return false, 'check failed: ' .. tostring(accept)
    end
    if not accept then
      return false, reason or 'rejected by the check'
    end
    return true
  end
end

local ISSUE_KEYS = {
  attest = true, key = true, issuer = true, app_id = true, app_info = true, special_usage = true,
}

--- Issue an RA-TLS certificate: take opts.key (default: a fresh P-256 key), compute its
--- binding, call opts.attest(report_data, spki) for the evidence (a string = attestation bytes
--- for .1.8, or { attestation = } or { quote =, event_log = }), and sign the certificate with
--- opts.issuer = { cert =, key =, chain = {...}? } (absent: self-signed). app_id, app_info and
--- special_usage add those extensions; every other option goes to x509.issue (subject, sans,
--- eku, not_before, days, ...). Returns { cert = Cert, key = Key, chain = { Cert... },
--- report_data = } or nil, err, code.
function M.issue(opts)
  assert(type(opts) == 'table' and type(opts.attest) == 'function',
    'ratls.issue: needs opts.attest = function(report_data) -> evidence')
  local key, err, code
  if opts.key ~= nil then
    key, err, code = x509.key(opts.key)
  else
    key = x509.generate_key()
  end
  if not key then
    return nil, err, code
  end
  local spki = key:spki()
  local rd = M.report_data(spki)
  local ev
  ev, err, code = opts.attest(rd, spki)
  if not ev then
    return nil, err or 'EATTEST: attest() returned nothing', code or 'EATTEST'
  end
  if type(ev) == 'string' then
    ev = { attestation = ev }
  end
  local ratls = { attestation = ev.attestation, quote = ev.quote, event_log = ev.event_log,
    app_id = opts.app_id, app_info = opts.app_info, special_usage = opts.special_usage }
  local o = { key = key, ratls = ratls }
  for k, v in pairs(opts) do
    if not ISSUE_KEYS[k] then
      o[k] = v
    end
  end
  local chain = {}
  if opts.issuer then
    o.issuer = { cert = opts.issuer.cert, key = opts.issuer.key }
    local certs
    certs, err, code = x509.certs(opts.issuer.cert)
    if not certs then
      return nil, err, code
    end
    chain[1] = certs[1]
    for _, c in ipairs(opts.issuer.chain or {}) do
      chain[#chain + 1] = assert(x509.cert(c))
    end
  end
  local cert
  cert, err, code = x509.issue(o)
  if not cert then
    return nil, err, code
  end
  return { cert = cert, key = key, chain = chain, report_data = rd }
end

--- The `tls` table of moonstack.http for an identity ({ cert, key, chain? }, e.g. from issue()):
--- cert = the leaf PEM followed by the chain, key = the PKCS#8 PEM; the fields of `extra`
--- (verify, ca, client_cert, ...) are copied in.
function M.tls(identity, extra)
  assert(type(identity) == 'table' and identity.cert and identity.key, 'ratls.tls: needs { cert, key }')
  local function pem(c)
    if type(c) == 'string' and c:find('-----BEGIN', 1, true) then
      return c
    end
    return assert(x509.cert(c)):pem()
  end
  local parts = { pem(identity.cert) }
  for _, c in ipairs(identity.chain or {}) do
    parts[#parts + 1] = pem(c)
  end
  local key = identity.key
  if x509.is_key(key) then
    key = key:pkcs8_pem()
  end
  local t = { cert = table.concat(parts), key = key }
  for k, v in pairs(extra or {}) do
    t[k] = v
  end
  return t
end

return M
