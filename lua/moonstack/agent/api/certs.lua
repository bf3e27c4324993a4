-- SPDX-License-Identifier: Apache-2.0
-- Certificates the guest API issues (guest-and-attestation.md §6.2): GetTlsKey (a fresh P-256
-- key), the legacy Tappd.DeriveKey (a key derived from the app key and a path, or a random one)
-- and the "demo" client certificate of Info.app_cert. With usage_ra_tls the leaf carries the
-- attestation (extension 1.8) over SHA-512("ratls-cert:" || SPKI); with_app_info adds the AppInfo
-- extension (1.9). Signing: the context's `sign_cert(req)` hook when it has one (a KMS SignCert
-- client), else locally by the app CA (`ctx.keys.app_ca`), giving [leaf, app CA (, KMS root)].
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local x509 = require('moonstack.x509')
local profiles = require('moonstack.x509.profiles')
local ratls = require('moonstack.x509.ratls')

local M = {}

local Certs = {}
Certs.__index = Certs

--- The certificate issuer of a context. `evidence` is its moonstack.tdx.evidence;
--- `app_info` a function returning the AppInfo fields for extension 1.9 (binary values).
function M.new(ctx, evidence, app_info)
  return setmetatable({ ctx = ctx, evidence = evidence, app_info = app_info }, Certs)
end

-- The local signer: the app CA as { cert = Cert, key = Key } and the chain above the leaf (PEMs).
function Certs:_local_ca()
  if self.ca then
    return self.ca
  end
  local keys = self.ctx.keys or {}
  local app_ca = keys.app_ca
  if type(app_ca) ~= 'table' or not app_ca.cert or not app_ca.key then
    return nil, 'EUNAVAILABLE: no app CA to sign certificates with', 'EUNAVAILABLE'
  end
  local cert, err, code = x509.cert(app_ca.cert)
  if not cert then
    return nil, err, code
  end
  local key
  key, err, code = x509.load_key(app_ca.key)
  if not key then
    return nil, err, code
  end
  local chain = { cert:pem() }
  if keys.ca_cert_pem and keys.ca_cert_pem ~= '' then
    local root = x509.cert(keys.ca_cert_pem)
    if root and root.der ~= cert.der then
      chain[#chain + 1] = root:pem()
    end
  end
  self.ca = { cert = cert, key = key, chain = chain }
  return self.ca
end

--- Issue a leaf for `req` = { key = Key (private), subject, alt_names, usage_ra_tls,
--- usage_server_auth, usage_client_auth, not_before?, not_after?, with_app_info }: returns
--- { key = PKCS#8 PEM, certificate_chain = { PEM... } } or nil, err, code.
function Certs:issue(req)
  local attestation, app_info, err, code
  if req.usage_ra_tls then
    local rd = ratls.report_data(req.key:spki())
    attestation, err, code = self.evidence:attestation(rd, 'cert')
    if not attestation then
      return nil, err, code
    end
  end
  if req.with_app_info then
    app_info, err, code = self.app_info()
    if not app_info then
      return nil, err, code
    end
  end
  local chain
  if self.ctx.sign_cert then
    chain, err, code = self.ctx.sign_cert({ key = req.key, subject = req.subject,
      alt_names = req.alt_names, usage_server_auth = req.usage_server_auth,
      usage_client_auth = req.usage_client_auth, ext_quote = req.usage_ra_tls,
      ext_app_info = req.with_app_info, not_before = req.not_before, not_after = req.not_after,
      attestation = attestation })
    if not chain then
      return nil, err, code
    end
  else
    local ca
    ca, err, code = self:_local_ca()
    if not ca then
      return nil, err, code
    end
    local leaf
    leaf, err, code = profiles.app_leaf({ subject = req.subject, sans = req.alt_names, key = req.key,
      issuer = { cert = ca.cert, key = ca.key }, server_auth = req.usage_server_auth,
      client_auth = req.usage_client_auth, attestation = attestation, app_info = app_info,
      not_before = req.not_before, not_after = req.not_after })
    if not leaf then
      return nil, err, code
    end
    chain = { leaf:pem() }
    for _, pem in ipairs(ca.chain) do
      chain[#chain + 1] = pem
    end
  end
  return { key = req.key:pkcs8_pem(), certificate_chain = chain }
end

local function p256_key(seed, info)
  local scalar, err, code = dstack.derive_p256(seed, info)
  if not scalar then
    return nil, err, code
  end
  return x509.key_from_scalar(scalar)
end

--- GetTlsKey: a fresh key (HKDF of a random seed, empty info) and its certificate.
function Certs:get_tls_key(a)
  if a.not_before and a.not_after and a.not_before >= a.not_after then
    return nil, 'EINVAL: not_before must be earlier than not_after', 'EINVAL'
  end
  local key, err, code = p256_key(crypto.random(32), '')
  if not key then
    return nil, err, code
  end
  return self:issue({ key = key, subject = a.subject, alt_names = a.alt_names,
    usage_ra_tls = a.usage_ra_tls, usage_server_auth = a.usage_server_auth,
    usage_client_auth = a.usage_client_auth, not_before = a.not_before, not_after = a.not_after,
    with_app_info = a.with_app_info })
end

--- Tappd.DeriveKey: the key derive_p256(app k256 key, path) (random with random_seed); no
--- app-info extension, default validity.
function Certs:derive_key(a)
  local key, err, code
  if a.random_seed then
    key, err, code = p256_key(crypto.random(32), a.path)
  else
    local k = self.ctx.keys and self.ctx.keys.k256_key
    if type(k) ~= 'string' or #k ~= 32 then
      return nil, 'EUNAVAILABLE: the app key is not available (no key provider)', 'EUNAVAILABLE'
    end
    key, err, code = p256_key(k, a.path)
  end
  if not key then
    return nil, err, code
  end
  return self:issue({ key = key, subject = a.subject, alt_names = a.alt_names,
    usage_ra_tls = a.usage_ra_tls, usage_server_auth = a.usage_server_auth,
    usage_client_auth = a.usage_client_auth })
end

--- The demo certificate of Info.app_cert: subject demo-cert, client auth, with attestation;
--- the chain's PEMs joined by "\n" (as upstream).
function Certs:demo_cert()
  local r, err, code = self:get_tls_key({ subject = 'demo-cert', alt_names = {}, usage_ra_tls = true,
    usage_server_auth = false, usage_client_auth = true, with_app_info = false })
  if not r then
    return nil, err, code
  end
  return table.concat(r.certificate_chain, '\n')
end

return M
