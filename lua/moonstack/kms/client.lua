-- SPDX-License-Identifier: Apache-2.0
-- How a CVM talks to the KMS (the KMS service's client module): GetAppKey as upstream
-- dstack-util's request_app_keys (spec kms-vmm-gateway.md §1.3 step 5, §3.6; guest-and-
-- attestation.md §8.2):
--   1. GetTempCaCert from the KMS (TLS: the configured KMS root CA, else — as upstream, which
--      uses tls_no_check here — unverified; the answer names the root CA `ca_cert`);
--   2. a fresh RA-TLS client certificate: new P-256 key, attestation = a quote from the TEE
--      whose report_data binds that key (moonstack.x509.ratls.issue), signed by the temp CA;
--   3. GetAppKey over mutual TLS trusting only the root CA (configured, or the one step 1
--      named: trust on first use, bound by the app-compose key_provider_id pin, which
--      moonstack.agent.boot.keys checks against the root's SPKI).
-- A denial is EDENIED with the KMS's reason. (The agent's key provider over it, trying each KMS
-- URL in turn, is moonstack.agent.boot.kms_provider.)
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local prpc = require('moonstack.http.prpc_client')
local x509 = require('moonstack.x509')
local ratls = require('moonstack.x509.ratls')

local M = {}

-- `method` at `base` (moonstack.http.prpc_client).
local function call(base, method, body, tls, timeout_ms)
  return prpc.call(base, method, body, { tls = tls, timeout_ms = timeout_ms })
end

local function unhex_field(obj, name, len)
  local v = obj[name]
  if v == nil or v == cjson.null then
    v = ''
  end
  local b = type(v) == 'string' and crypto.unhex(v)
  if not b or (len and #b ~= len) then
    return errors.fail('EPROTO', ('GetAppKey answer: %s is not %s'):format(name,
      len and (len .. ' hex bytes') or 'hex'))
  end
  return b
end

-- The app keys (context format, moonstack.agent.boot.keys) from a GetAppKey answer.
local function keys_of(resp, url, root, tmp)
  local keys = { gateway_app_id = type(resp.gateway_app_id) == 'string' and resp.gateway_app_id or '' }
  local err, code
  for _, f in ipairs({ { 'k256_key', 32 }, { 'k256_signature', 65 }, { 'disk_crypt_key' },
      { 'env_crypt_key', 32 }, { 'os_image_hash' } }) do
    keys[f[1]], err, code = unhex_field(resp, f[1], f[2])
    if not keys[f[1]] then
      return nil, err, code
    end
  end
  if #keys.disk_crypt_key == 0 then
    return errors.fail('EPROTO', 'GetAppKey answer: disk_crypt_key is empty')
  end
  local ca = type(resp.ca_cert) == 'string' and x509.cert(resp.ca_cert)
  if not ca or not ca.der == root.der then
    return errors.fail('EPROTO',
      'GetAppKey answer: ca_cert is not the root CA the TLS session was checked against')
  end
  local os_image_hash = keys.os_image_hash
  keys.os_image_hash = nil
  keys.ca_cert_pem = resp.ca_cert
  keys.key_provider = { kind = 'Kms', url = url, pubkey = root:spki(),
    tmp_ca_key = tmp.temp_ca_key, tmp_ca_cert = tmp.temp_ca_cert }
  return keys, os_image_hash
end

-- An RA-TLS session with the KMS at opts.url (inside a task): GetTempCaCert (TLS to opts.ca,
-- else unverified as upstream), then a fresh client certificate (CN "RA-TLS TEMP Cert", the
-- CVM's attestation over its key) signed by the temp CA. Returns { tls, root = Cert, tmp } or
-- nil, msg, code.
local function ratls_session(opts, timeout)
  local tls0 = opts.ca and { ca = opts.ca } or { insecure = true }
  local tmp, err, code = call(opts.url, 'GetTempCaCert', '{}', tls0, timeout)
  if not tmp then
    return nil, ('GetTempCaCert: %s'):format(err), code
  end
  local tmp_cert = type(tmp.temp_ca_cert) == 'string' and x509.cert(tmp.temp_ca_cert)
  local tmp_key = type(tmp.temp_ca_key) == 'string' and x509.load_key(tmp.temp_ca_key)
  local root = x509.cert(opts.ca or (type(tmp.ca_cert) == 'string' and tmp.ca_cert) or '')
  if not tmp_cert or not tmp_key or not root then
    return errors.fail('EPROTO', 'GetTempCaCert answer lacks temp_ca_cert, temp_ca_key or ca_cert')
  end
  local evidence = require('moonstack.tdx.evidence').new({ tee = opts.tee,
    vm_config = opts.vm_config or '' })
  local id
  id, err, code = ratls.issue({ subject = 'RA-TLS TEMP Cert', eku = { 'client_auth' },
    issuer = { cert = tmp_cert, key = tmp_key },
    attest = function(rd)
      local a, e, c = evidence:attestation(rd, 'cert')
      if not a then
        return nil, 'cannot attest the RA-TLS client certificate: ' .. tostring(e), c
      end
      return a
    end })
  if not id then
    return nil, err, code
  end
  -- the leaf alone: its issuer is the KMS's own temp CA (sending it makes the KMS decode it)
  return { tls = ratls.tls({ cert = id.cert, key = id.key }, { ca = root:pem() }), root = root,
    tmp = tmp, evidence = evidence }
end

--- GetAppEnvEncryptPubKey (inside a task): the X25519 public key env for app `app_id` (20
--- bytes) is encrypted to, with the KMS's signatures (spec §2.2). opts = { ca (the KMS root
--- PEM; without it the TLS session is unverified: the answer carries its own k256 signatures,
--- for the caller to check), timeout_ms? }. Returns the decoded JSON answer { public_key,
--- signature, timestamp, signature_v1 } (hex strings, timestamp a number) or nil, msg, code.
function M.env_pubkey(url, app_id, opts)
  opts = opts or {}
  local tls = opts.ca and { ca = opts.ca } or { insecure = true }
  local body = cjson.encode({ app_id = crypto.hex(app_id) })
  local resp, err, code = call(url, 'GetAppEnvEncryptPubKey', body, tls, opts.timeout_ms)
  if not resp then
    return nil, ('GetAppEnvEncryptPubKey: %s'):format(err), code
  end
  if type(resp.public_key) ~= 'string' or not crypto.unhex(resp.public_key, 32) then
    return errors.fail('EPROTO', 'GetAppEnvEncryptPubKey answer lacks a 32-byte public_key')
  end
  return resp
end

--- Ask one KMS for the app keys (inside a task). opts = { url (base URL), tee (a TEE backend),
--- vm_config (string), ca (PEM of the KMS root CA, optional), timeout_ms? }. Returns
--- { keys, root = Cert, os_image_hash = bytes } or nil, msg, code (EDENIED: the KMS refused,
--- its reason in msg; EPROTO; transport codes).
function M.get_app_keys(opts)
  assert(type(opts) == 'table' and type(opts.url) == 'string' and opts.tee,
    'kms_client.get_app_keys: needs { url, tee }')
  local timeout = opts.timeout_ms or 30000
  local session, err, code = ratls_session(opts, timeout)
  if not session then
    return nil, err, code
  end
  local resp
  resp, err, code = call(opts.url, 'GetAppKey',
    cjson.encode({ api_version = 1, vm_config = opts.vm_config or '' }), session.tls, timeout)
  if not resp then
    return nil, ('GetAppKey: %s'):format(err), code
  end
  local keys, os_image_hash = keys_of(resp, opts.url, session.root, session.tmp)
  if not keys then
    return nil, os_image_hash, 'EPROTO'
  end
  return { keys = keys, root = session.root, os_image_hash = os_image_hash }
end

-- ECDSA (r || s, 64 bytes) as the ASN.1 DER signature SignCert wants.
local function der_signature(rs)
  local function int(b)
    b = b:gsub('^%z+', '')
    if b == '' or b:byte(1) >= 0x80 then
      b = '\0' .. b
    end
    return '\2' .. string.char(#b) .. b
  end
  local body = int(rs:sub(1, 32)) .. int(rs:sub(33, 64))
  return '\48' .. string.char(#body) .. body
end

--- SignCert (inside a task): the KMS signs a certificate for a P-256 key of this CVM
--- (guest-and-attestation.md §6.2, kms-vmm-gateway.md §3.5). opts = { url, tee, vm_config, ca
--- (the KMS root PEM), key (x509 private Key), config = CertConfigV2 { subject,
--- subject_alt_names, usage_server_auth, usage_client_auth, ext_quote, ext_app_info,
--- not_before?, not_after?, org_name? }, attestation (VersionedAttestation over the key's RA-TLS
--- binding; made here when absent), timeout_ms? }. Returns the chain { leaf, app CA, root }
--- (PEMs) or nil, msg, code (EDENIED: refused, with the KMS's reason).
function M.sign_cert(opts)
  assert(type(opts) == 'table' and type(opts.url) == 'string' and opts.tee and opts.key
    and type(opts.config) == 'table', 'kms_client.sign_cert: needs { url, tee, key, config }')
  local timeout = opts.timeout_ms or 30000
  local session, err, code = ratls_session(opts, timeout)
  if not session then
    return nil, err, code
  end
  local spki = opts.key:spki()
  local att = opts.attestation
  if not att then
    att, err, code = session.evidence:attestation(ratls.report_data(spki), 'cert')
    if not att then
      return nil, 'cannot attest the certificate key: ' .. tostring(err), code
    end
  end
  local csr = require('moonstack.kms.csr').encode_v2({ pubkey = spki, config = opts.config,
    attestation = att })
  local rs
  rs, err, code = crypto.p256.sign(opts.key:scalar(), crypto.sha256(csr))
  if not rs then
    return nil, err, code
  end
  local resp
  resp, err, code = call(opts.url, 'SignCert', cjson.encode({ api_version = 2,
    csr = crypto.hex(csr), signature = crypto.hex(der_signature(rs)),
    vm_config = opts.vm_config or '' }), session.tls, timeout)
  if not resp then
    return nil, ('SignCert: %s'):format(err), code
  end
  local chain = resp.certificate_chain
  if type(chain) ~= 'table' or #chain < 2 then
    return errors.fail('EPROTO', 'SignCert answer has no certificate chain')
  end
  for i, pem in ipairs(chain) do
    if type(pem) ~= 'string' or not x509.cert(pem) then
      return errors.fail('EPROTO', ('SignCert answer: certificate_chain[%d] is not a certificate'):format(i))
    end
  end
  return chain
end

--- The KMS's dashboard feed after `since` (inside a task; moonstack.ui.remote):
--- conn = { url = its admin base URL, token = its admin token, tls?, timeout_ms? }. Returns
--- { part, seq, snapshot?, events } or nil, msg, code.
function M.dashboard_feed(conn, since)
  return require('moonstack.ui.remote').feed(conn, since)
end

--- POST the dashboard action `op` (JSON text `body`) to the KMS's admin listener (inside a
--- task). Returns status, decoded answer, or nil, msg, code.
function M.dashboard_action(conn, op, body)
  return require('moonstack.ui.remote').action(conn, op, body)
end

return M
