-- SPDX-License-Identifier: Apache-2.0
-- The certificates dstack's KMS and guest agent issue, as moonstack.x509 options
-- (kms-vmm-gateway.md §3.1, §3.3, §3.4; guest-and-attestation.md §6.2): the KMS root CA, the
-- client temp CA, the KMS RPC certificate, the per-app CA, app leaf certificates and the
-- self-signed "App Root Cert" of non-KMS key providers. Subjects, CA levels, key usages and
-- special-usage values follow upstream's ra-tls CertRequest; validity defaults to rcgen's
-- (notBefore 1975-01-01, notAfter now + 3650 days). Every function returns a Cert or nil, err,
-- code.
local x509 = require('moonstack.x509')

local M = {}

--- Special-usage values (OID …62397.1.4).
M.USAGE = { KMS_RPC = 'kms:rpc', APP_CA = 'app:ca', APP_CUSTOM = 'app:custom' }

local function copy_validity(o, opts)
  o.not_before, o.not_after, o.days = opts.not_before, opts.not_after, opts.days
  return o
end

--- The KMS root CA (root-ca.crt): self-signed, O=Dstack, CN=Dstack KMS CA, CA pathlen 1,
--- KeyUsage digitalSignature + keyCertSign + cRLSign. opts: not_before, not_after, days.
function M.kms_root_ca(key, opts)
  return x509.issue(copy_validity({ subject = { o = 'Dstack', cn = 'Dstack KMS CA' }, key = key,
    ca = { pathlen = 1 } }, opts or {}))
end

--- The client temp CA (tmp-ca.crt): self-signed, O=Dstack, CN=Dstack Client Temp CA, pathlen 0.
function M.kms_tmp_ca(key, opts)
  return x509.issue(copy_validity({ subject = { o = 'Dstack', cn = 'Dstack Client Temp CA' }, key = key,
    ca = { pathlen = 0 } }, opts or {}))
end

--- The KMS RPC certificate (rpc.crt): CN = SAN = opts.domain (then the SANs opts.alt_names,
--- IPs become iPAddress), special usage kms:rpc, no EKU, attestation (.1.8) when
--- opts.attestation is given, signed by opts.ca = { cert =, key = }.
function M.kms_rpc_cert(opts)
  assert(type(opts) == 'table' and opts.key and opts.domain and opts.ca,
    'profiles.kms_rpc_cert: needs key, domain and ca')
  local sans = { opts.domain }
  for _, n in ipairs(opts.alt_names or {}) do
    if n ~= opts.domain then
      sans[#sans + 1] = n
    end
  end
  return x509.issue(copy_validity({ subject = opts.domain, sans = sans, key = opts.key,
    issuer = opts.ca, ratls = { special_usage = M.USAGE.KMS_RPC, attestation = opts.attestation } }, opts))
end

--- A per-app CA: O=Dstack, CN=Dstack App CA, pathlen 0, app id (.1.3) and special usage app:ca,
--- signed by opts.root = { cert =, key = } (the KMS root CA).
function M.app_ca(opts)
  assert(type(opts) == 'table' and opts.key and opts.app_id and opts.root,
    'profiles.app_ca: needs key, app_id and root')
  return x509.issue(copy_validity({ subject = { o = 'Dstack', cn = 'Dstack App CA' }, key = opts.key,
    ca = { pathlen = 0 }, issuer = opts.root,
    ratls = { app_id = opts.app_id, special_usage = M.USAGE.APP_CA } }, opts))
end

--- An app leaf (SignCert, or signed locally by the app's CA): CN = opts.subject, O = opts.org?,
--- SANs opts.sans (IPs become iPAddress), KeyUsage digitalSignature, EKU serverAuth/clientAuth
--- from opts.server_auth/opts.client_auth (none if neither), attestation / app_id / app_info
--- when given, special usage opts.special_usage or app:custom; the key is opts.key (Key/PEM) or
--- opts.public_key (SPKI DER/PEM); signed by opts.issuer = { cert =, key = }.
function M.app_leaf(opts)
  assert(type(opts) == 'table' and opts.subject and opts.issuer and (opts.key or opts.public_key),
    'profiles.app_leaf: needs subject, issuer and key or public_key')
  local eku = {}
  if opts.server_auth then
    eku[#eku + 1] = 'server_auth'
  end
  if opts.client_auth then
    eku[#eku + 1] = 'client_auth'
  end
  return x509.issue(copy_validity({
    -- an empty subject (the SDKs' default) means no CN: X.520 names are at least 1 character
    subject = { cn = opts.subject ~= '' and opts.subject or nil, o = opts.org },
    sans = opts.sans, key = opts.key,
    public_key = opts.public_key, issuer = opts.issuer, eku = #eku > 0 and eku or nil,
    ratls = { attestation = opts.attestation, app_id = opts.app_id, app_info = opts.app_info,
      special_usage = opts.special_usage or M.USAGE.APP_CUSTOM },
  }, opts))
end

--- The self-signed CA of non-KMS key providers: CN=App Root Cert, CA pathlen opts.ca_level
--- (default 1), attestation (.1.8) when given.
function M.app_root_cert(opts)
  assert(type(opts) == 'table' and opts.key, 'profiles.app_root_cert: needs key')
  return x509.issue(copy_validity({ subject = 'App Root Cert', key = opts.key,
    ca = { pathlen = opts.ca_level or 1 }, ratls = { attestation = opts.attestation } }, opts))
end

return M
