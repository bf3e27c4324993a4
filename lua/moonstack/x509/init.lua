-- SPDX-License-Identifier: Apache-2.0
-- Friendly X.509 API over moonstack.native.x509: P-256 keys, certificates and CSRs built from
-- one options table (subject, SANs, validity, CA, usages, RA-TLS extensions), parsed back into
-- plain tables, and chain verification. Keys may be passed as Key objects or PEM/DER strings,
-- certificates as Cert objects or PEM/DER strings, everywhere.
--
--   local x509 = require('moonstack.x509')
--   local ca_key = x509.generate_key()
--   local ca = x509.issue({ subject = { cn = 'Test CA', o = 'Dstack' }, key = ca_key, ca = { pathlen = 0 } })
--   local key = x509.generate_key()
--   local leaf = x509.issue({ subject = 'example.com', sans = { 'example.com', '10.0.0.1' },
--     key = key, issuer = { cert = ca, key = ca_key }, eku = { 'server_auth' },
--     ratls = { attestation = bytes, special_usage = 'app:custom' } })
--   leaf:pem(); leaf:info().ratls.attestation; x509.verify(leaf, { roots = { ca } })
local native = require('moonstack.native.x509')

local M = {}

--- RA-TLS extension OIDs by name: quote, event_log, app_id, special_usage, attestation, app_info.
M.oids = {}
for name, oid in pairs(native.ratls) do
  M.oids[name] = oid
end

--- rcgen's default notBefore (1975-01-01T00:00:00Z) and validity in days, used by dstack.
M.DEFAULT_NOT_BEFORE = native.default_not_before
M.DEFAULT_DAYS = native.default_days

local CA_USAGES = { 'digital_signature', 'key_cert_sign', 'crl_sign' }
local LEAF_USAGES = { 'digital_signature' }

-- Keys ---------------------------------------------------------------------------------------

--- A fresh random P-256 private key (a Key object: pkcs8_pem(), pkcs8_der(), spki(),
--- public_pem(), scalar(), public_point(), is_private(), close()).
function M.generate_key()
  return native.key_generate()
end

--- Load a key from PEM or DER (PKCS#8, SEC1, or a public SPKI). Returns Key or nil, err, code.
function M.load_key(text)
  assert(type(text) == 'string', 'x509.load_key: expects a PEM or DER string')
  return native.key_load(text)
end

--- The P-256 key with the 32-byte big-endian scalar `d`. Returns Key or nil, err, code.
function M.key_from_scalar(d)
  return native.key_from_scalar(d)
end

--- Whether `v` is a Key object.
function M.is_key(v)
  return native.is_key(v)
end

--- `k` as a Key: a Key is returned as is, a string is loaded. Raises on other types.
function M.key(k, what)
  if native.is_key(k) then
    return k
  end
  if type(k) ~= 'string' then
    error(('x509: %s must be a key or a PEM/DER string, got %s'):format(what or 'key', type(k)), 3)
  end
  return native.key_load(k)
end

-- Certificates ---------------------------------------------------------------------------------

local Cert = {}
Cert.__index = Cert

function Cert.__tostring(c)
  local i = c:info()
  return ('moonstack.x509.Cert (%s, issuer %s)'):format(i.subject, i.issuer)
end

function Cert.__eq(a, b)
  return a.der == b.der
end

--- The certificate as PEM.
function Cert:pem()
  return native.pem_encode('CERTIFICATE', self.der)
end

--- The parsed fields (see README: subject, issuer, cn, org, serial, not_before, not_after,
--- sans, dns, ips, ca, pathlen, key_usage, eku, ski, aki, extensions, ratls, spki, fingerprint).
function Cert:info()
  if not self._info then
    self._info = assert(native.cert_info(self.der))
  end
  return self._info
end

--- The raw extnValue (DER) and criticality of extension `oid`, or nil.
function Cert:ext(oid)
  for _, e in ipairs(self:info().extensions) do
    if e.oid == oid then
      return e.value, e.critical
    end
  end
  return nil
end

--- The content of RA-TLS extension `name` (quote, attestation, app_id, ...), or nil.
function Cert:ratls(name)
  assert(M.oids[name], 'cert:ratls: unknown RA-TLS extension name')
  return self:info().ratls[name]
end

--- The SubjectPublicKeyInfo DER.
function Cert:spki()
  return self:info().spki
end

local function new_cert(der)
  return setmetatable({ der = der }, Cert)
end

--- Whether `v` is a Cert object.
function M.is_cert(v)
  return getmetatable(v) == Cert
end

--- `c` (Cert, PEM or DER) as a Cert, checked to parse. Returns Cert or nil, err, code.
function M.cert(c)
  if M.is_cert(c) then
    return c
  end
  if type(c) ~= 'string' then
    error('x509.cert: expects a Cert, PEM or DER string, got ' .. type(c), 2)
  end
  local info, err, code = native.cert_info(c)
  if not info then
    return nil, err, code
  end
  local cert = new_cert(info.der)
  cert._info = info
  return cert
end

--- Every certificate of a PEM bundle (or one DER), as a list of Certs. nil, err, code if none.
function M.certs(text)
  if M.is_cert(text) then
    return { text }
  end
  if type(text) == 'table' then
    local out = {}
    for i, c in ipairs(text) do
      local cert, err, code = M.cert(c)
      if not cert then
        return nil, ('%s (certificate %d)'):format(err, i), code
      end
      out[#out + 1] = cert
    end
    return out
  end
  if not text:find('-----BEGIN', 1, true) then
    local cert, err, code = M.cert(text)
    return cert and { cert } or nil, err, code
  end
  local blocks, err, code = native.pem_decode(text)
  if not blocks then
    return nil, err, code
  end
  local out = {}
  for _, b in ipairs(blocks) do
    if b.label == 'CERTIFICATE' then
      local cert, cerr, ccode = M.cert(b.der)
      if not cert then
        return nil, cerr, ccode
      end
      out[#out + 1] = cert
    end
  end
  if #out == 0 then
    return nil, 'EPARSE: no CERTIFICATE block', 'EPARSE'
  end
  return out
end

local ISSUE_KEYS = {
  subject = true, cn = true, org = true, sans = true, key = true, public_key = true, csr = true,
  issuer = true, not_before = true, not_after = true, days = true, ca = true, pathlen = true,
  key_usage = true, eku = true, serial = true, ski = true, aki = true, ratls = true,
  extensions = true,
}

local function check_keys(opts, allowed, fn)
  for k in pairs(opts) do
    if not allowed[k] then
      error(('x509.%s: unknown option %s'):format(fn, tostring(k)), 3)
    end
  end
end

-- The native options table for issue()/csr().
local function native_opts(opts, fn)
  local subject = opts.subject
  local cn, org = opts.cn, opts.org
  if type(subject) == 'string' then
    cn = subject
  elseif type(subject) == 'table' then
    cn, org = subject.cn or subject.CN, subject.o or subject.O or subject.org
  elseif subject ~= nil then
    error(('x509.%s: subject must be a string or { cn =, o = }'):format(fn), 3)
  end
  local ca, pathlen = opts.ca, opts.pathlen
  if type(ca) == 'table' then
    pathlen = ca.pathlen
    ca = true
  end
  local not_after = opts.not_after
  if opts.days then
    assert(not not_after, 'x509.' .. fn .. ': give days or not_after, not both')
    not_after = os.time() + math.floor(opts.days * 86400)
  end
  return {
    cn = cn, org = org, sans = opts.sans, not_before = opts.not_before, not_after = not_after,
    serial = opts.serial, ca = ca and true or nil, pathlen = ca and pathlen or nil,
    key_usage = opts.key_usage or (ca and CA_USAGES or LEAF_USAGES),
    eku = opts.eku, ski = opts.ski, aki = opts.aki, ratls = opts.ratls, extensions = opts.extensions,
  }
end

-- The options of issue() completed from a parsed CSR: its key, and its subject and SANs
-- unless the caller gives them.
local function csr_defaults(opts, req)
  local o = {}
  for k, v in pairs(opts) do
    o[k] = v
  end
  o.csr = nil
  o.public_key = opts.public_key or req.spki
  if opts.subject == nil and opts.cn == nil then
    o.cn, o.org = req.cn, req.org
  end
  if opts.sans == nil and #req.sans > 0 then
    o.sans = {}
    for _, san in ipairs(req.sans) do
      if san.type == 'dns' or san.type == 'ip' then
        o.sans[#o.sans + 1] = san.value
      end
    end
  end
  return o
end

--- Create a certificate. Options: subject = 'CN' | { cn =, o = } (or cn =, org =), sans = {
--- DNS names or IP literals }, key = the subject's Key/PEM (or public_key = SPKI/PEM, or csr =
--- a CSR whose key, subject and SANs are used unless given), issuer = { cert =, key = } (absent:
--- self-signed with `key`), not_before (unix; default 1975-01-01), not_after (unix) or days
--- (default 3650), ca = true | { pathlen = n }, key_usage = { names } (default
--- digital_signature, plus key_cert_sign and crl_sign for a CA), eku = { 'server_auth',
--- 'client_auth' }, serial (bytes; default random), ski/aki = false to leave them out, ratls = {
--- attestation =, quote =, event_log =, app_id =, app_info =, special_usage = }, extensions = {
--- { oid =, value =, critical =, der = } }. Returns a Cert, or nil, err, code.
function M.issue(opts)
  assert(type(opts) == 'table', 'x509.issue: expects an options table')
  check_keys(opts, ISSUE_KEYS, 'issue')
  local o = opts
  if opts.csr then
    local req, err, code = native.csr_info(opts.csr)
    if not req then
      return nil, err, code
    end
    if not req.signature_ok then
      return nil, 'EPARSE: the CSR signature does not verify', 'EPARSE'
    end
    o = csr_defaults(opts, req)
  end
  local key, err, code
  if o.key ~= nil then
    key, err, code = M.key(o.key, 'key')
  elseif o.public_key ~= nil then
    key, err, code = M.key(o.public_key, 'public_key')
  else
    error('x509.issue: needs key, public_key or csr', 2)
  end
  if not key then
    return nil, err, code
  end
  local issuer_der, issuer_key
  if o.issuer ~= nil then
    assert(type(o.issuer) == 'table' and o.issuer.cert and o.issuer.key,
      'x509.issue: issuer must be { cert =, key = }')
    local c = o.issuer.cert
    issuer_der = M.is_cert(c) and c.der or c
    issuer_key, err, code = M.key(o.issuer.key, 'issuer.key')
    if not issuer_key then
      return nil, err, code
    end
  end
  local der
  der, err, code = native.cert_create(native_opts(o, 'issue'), key, issuer_der, issuer_key)
  if not der then
    return nil, err, code
  end
  return new_cert(der)
end

local Csr = {}
Csr.__index = Csr

--- The request as PEM.
function Csr:pem()
  return native.pem_encode('CERTIFICATE REQUEST', self.der)
end

--- The parsed fields (subject, cn, org, sans, extensions, ratls, spki, signature_ok, ...).
function Csr:info()
  if not self._info then
    self._info = assert(native.csr_info(self.der))
  end
  return self._info
end

local CSR_KEYS = {
  subject = true, cn = true, org = true, sans = true, key = true, key_usage = true, eku = true,
  ratls = true, extensions = true,
}

--- Create a PKCS#10 request signed by `key` (which must be private): subject, sans, key_usage,
--- eku, ratls and extensions as for issue(). Returns a Csr (der, pem(), info()) or nil, err, code.
function M.csr(opts)
  assert(type(opts) == 'table', 'x509.csr: expects an options table')
  check_keys(opts, CSR_KEYS, 'csr')
  local key, err, code = M.key(opts.key, 'key')
  if not key then
    return nil, err, code
  end
  local o = native_opts(opts, 'csr')
  o.key_usage = opts.key_usage
  local der
  der, err, code = native.csr_create(o, key)
  if not der then
    return nil, err, code
  end
  return setmetatable({ der = der }, Csr)
end

--- Parse a certificate (Cert, PEM or DER) into a table. Returns the table or nil, err, code.
function M.parse(c)
  if M.is_cert(c) then
    return c:info()
  end
  return native.cert_info(c)
end

--- Parse a CSR (PEM or DER) into a table. Returns the table or nil, err, code.
function M.parse_csr(text)
  if getmetatable(text) == Csr then
    return text:info()
  end
  return native.csr_info(text)
end

local function ders(list, what)
  if list == nil then
    return nil
  end
  local certs, err, code = M.certs(list)
  if not certs then
    return nil, ('%s (%s)'):format(err, what), code
  end
  local out = {}
  for i, c in ipairs(certs) do
    out[i] = c.der
  end
  return out
end

--- Verify `leaf` up to one of `opts.roots` (list or PEM bundle) through `opts.chain`
--- (untrusted intermediates), at `opts.time` (unix; default now), for `opts.purpose`
--- ('server', 'client', 'any'), optionally matching `opts.hostname`; `opts.partial` lets a
--- non-self-signed certificate be a trust anchor. Returns true or nil, err, code (EVERIFY).
function M.verify(leaf, opts)
  assert(type(opts) == 'table' and opts.roots, 'x509.verify: needs opts.roots')
  local leaf_der = M.is_cert(leaf) and leaf.der or leaf
  local roots, err, code = ders(opts.roots, 'roots')
  if not roots then
    return nil, err, code
  end
  local chain
  if opts.chain ~= nil then
    chain, err, code = ders(opts.chain, 'chain')
    if not chain then
      return nil, err, code
    end
  end
  return native.verify(leaf_der, chain, roots, { time = opts.time, purpose = opts.purpose,
    hostname = opts.hostname, partial = opts.partial })
end

--- PEM text of `der` under `label` (default CERTIFICATE).
function M.pem(der, label)
  return native.pem_encode(label or 'CERTIFICATE', der)
end

--- The blocks of a PEM text: { { label =, der = }, ... }, or nil, err, code.
function M.split_pem(text)
  return native.pem_decode(text)
end

--- report_data for a content type: SHA-512(tag .. ':' .. data), 64 bytes.
function M.report_data(tag, data)
  return native.report_data(tag, data)
end

--- DER OCTET STRING of `data` (how RA-TLS extensions wrap their content), and its inverse.
M.octets_wrap = native.octets_wrap
M.octets_unwrap = native.octets_unwrap

return M
