-- SPDX-License-Identifier: Apache-2.0
-- DCAP collateral for quote verification, in the QuoteCollateralV3 JSON format of the vectors
-- (dcap-qvl's): from a file, or fetched from a PCCS / Intel PCS v4 service with an on-disk
-- cache.
--
-- Fetching follows dcap-qvl's collateral client: for a quote's FMSPC, CA ('platform' or
-- 'processor', from the PCK leaf's issuer) and TEE ('tdx' or 'sgx'):
--   {base}/sgx/certification/v4/pckcrl?ca=CA&encoding=der    body: DER CRL
--     header SGX-PCK-CRL-Issuer-Chain
--   {base}/TEE/certification/v4/tcb?fmspc=FMSPC              body: {"tcbInfo":{..},"signature"}
--     header SGX-TCB-Info-Issuer-Chain or TCB-Info-Issuer-Chain
--   {base}/TEE/certification/v4/qe/identity?update=standard  body: {"enclaveIdentity":..}
--     header SGX-Enclave-Identity-Issuer-Chain
--   {base}/sgx/certification/v4/rootcacrl                     body: hex (PCCS) or DER
--     (Intel's PCS has no such endpoint: then root_ca_crl_url, Intel's CRL distribution point)
-- Issuer chains are URL-encoded PEM. tcb_info / qe_identity keep the exact bytes of the
-- signed member (never re-serialised).
--
-- The cache holds one file per (service URL, TEE, FMSPC, CA), named
-- <sha256(url)[0..8]>-<tee>-<FMSPC>-<ca>.json, in the same JSON format as --collateral
-- files; mode 0600 in a 0700 directory, written to a temporary file then renamed. An entry is
-- used while `now` is before the earliest nextUpdate of its TCB info, QE identity and CRLs.
-- A source also keeps the latest entry per (TEE, FMSPC, CA) in memory, under the same rule.
local fs = require('moonstack.core.fs')
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local json = require('moonstack.core.json')
local quote = require('moonstack.tdx.quote')
local tdx = require('moonstack.native.tdx')
local vtime = require('moonstack.verifier.time')

local M = {}

--- The keys of a QuoteCollateralV3 JSON object (all strings).
M.KEYS = { 'pck_crl_issuer_chain', 'root_ca_crl', 'pck_crl', 'tcb_info_issuer_chain', 'tcb_info',
  'tcb_info_signature', 'qe_identity_issuer_chain', 'qe_identity', 'qe_identity_signature' }
local HEX_KEYS = { root_ca_crl = true, pck_crl = true, tcb_info_signature = true,
  qe_identity_signature = true }

--- Intel's root CA CRL distribution point (used when the service has no rootcacrl endpoint).
M.INTEL_ROOT_CA_CRL_URL = 'https://certificates.trustedservices.intel.com/IntelSGXRootCA.der'
M.INTEL_PCS_URL = 'https://api.trustedservices.intel.com'

local function fail(msg)
  return errors.fail('ECOLLATERAL', msg)
end

-- DER ------------------------------------------------------------------------------------

-- The TLV at `pos`: tag, content start, content end (inclusive), next position; or nil.
local function tlv(der, pos)
  local tag, len = der:byte(pos, pos + 1)
  if not len then
    return nil
  end
  local start = pos + 2
  if len >= 0x80 then
    local n = len - 0x80
    if n < 1 or n > 4 then
      return nil
    end
    len = 0
    for i = 1, n do
      local b = der:byte(pos + 1 + i)
      if not b then
        return nil
      end
      len = len * 256 + b
    end
    start = pos + 2 + n
  end
  local stop = start + len - 1
  if stop > #der then
    return nil
  end
  return tag, start, stop, stop + 1
end

--- nextUpdate (Unix seconds) of a DER CRL, or nil, message.
function M.crl_next_update(der)
  local tag, s = tlv(der, 1) -- CertificateList
  if tag ~= 0x30 then
    return nil, 'not a DER CRL'
  end
  local t2, pos = tlv(der, s) -- TBSCertList
  if t2 ~= 0x30 then
    return nil, 'not a DER CRL'
  end
  local fields = {}
  while #fields < 5 do
    local t, cs, ce, nxt = tlv(der, pos)
    if not t then
      break
    end
    fields[#fields + 1] = { tag = t, value = der:sub(cs, ce) }
    pos = nxt
  end
  if fields[1] and fields[1].tag == 0x02 then -- version
    table.remove(fields, 1)
  end
  -- signature, issuer, thisUpdate, nextUpdate
  local nu = fields[4]
  if not nu or (nu.tag ~= 0x17 and nu.tag ~= 0x18) then
    return nil, 'the CRL has no nextUpdate'
  end
  local t = vtime.parse_asn1(nu.value, nu.tag == 0x18)
  if not t then
    return nil, 'bad nextUpdate time in the CRL'
  end
  return t
end

-- Collateral JSON -------------------------------------------------------------------------

--- Check collateral JSON text: an object with the nine string fields (hex where hex is
--- expected; tcb_info and qe_identity JSON objects with a nextUpdate). Returns the decoded
--- table or nil, 'ECOLLATERAL: ...', 'ECOLLATERAL'.
function M.parse(text)
  if type(text) ~= 'string' then
    error('collateral.parse: text must be a string', 2)
  end
  local c, err = json.decode(text)
  if c == nil then
    return fail(err:gsub('^EPARSE: ', ''))
  end
  if type(c) ~= 'table' or json.is_array(c) then
    return fail('collateral must be a JSON object')
  end
  for _, k in ipairs(M.KEYS) do
    if type(c[k]) ~= 'string' then
      return fail(('%s: missing or not a string'):format(k))
    end
    if HEX_KEYS[k] and not codec.unhex(c[k]) then
      return fail(('%s: not hex'):format(k))
    end
  end
  for _, k in ipairs({ 'tcb_info', 'qe_identity' }) do
    local v = json.decode(c[k])
    if type(v) ~= 'table' or not vtime.parse(v.nextUpdate) then
      return fail(('%s: not a JSON object with a nextUpdate'):format(k))
    end
  end
  return c
end

--- The time (Unix seconds) the collateral stops being usable: the earliest nextUpdate of the
--- TCB info, the QE identity, the PCK CRL and the root CA CRL. Returns it or nil, msg, code.
---@param text string collateral JSON
function M.expires(text)
  local c, err, code = M.parse(text)
  if not c then
    return nil, err, code
  end
  local t = math.huge
  for _, k in ipairs({ 'tcb_info', 'qe_identity' }) do
    t = math.min(t, vtime.parse(json.decode(c[k]).nextUpdate))
  end
  for _, k in ipairs({ 'pck_crl', 'root_ca_crl' }) do
    local nu, nerr = M.crl_next_update(codec.unhex(c[k]))
    if not nu then
      return fail(('%s: %s'):format(k, nerr))
    end
    t = math.min(t, nu)
  end
  return t
end

--- Read a collateral JSON file. Returns its text or nil, msg, code (ENOENT, EIO,
--- ECOLLATERAL).
function M.read_file(path)
  local text, err, code = fs.read_file(path)
  if not text then
    return nil, err, code
  end
  local ok, perr, pcode = M.parse(text)
  if not ok then
    return nil, ('%s: %s'):format(path, perr), pcode
  end
  return text
end

-- What a quote needs ----------------------------------------------------------------------

--- The collateral a quote needs: { fmspc (upper-case hex), ca = 'platform'|'processor',
--- tee = 'tdx'|'sgx' } from its PCK chain, or nil, msg, code (EQUOTE).
function M.quote_target(bytes)
  local q, err, code = quote.parse(bytes)
  if not q then
    return nil, err, code
  end
  if not q.pck_chain then
    return errors.fail('EQUOTE', 'the quote carries no PCK certificate chain (certification '
      .. 'data type 5); fetching a PCK certificate by encrypted PPID is not supported')
  end
  local certs
  certs, err, code = tdx.parse_pem_chain(q.pck_chain)
  if not certs then
    return nil, err, code
  end
  local leaf = certs[1]
  if not (leaf and leaf.sgx) then
    return errors.fail('EQUOTE', 'the PCK leaf certificate has no SGX extension')
  end
  local issuer = leaf.issuer or ''
  local ca = issuer:find('Processor') and 'processor' or issuer:find('Platform') and 'platform'
  if not ca then
    return errors.fail('EQUOTE', ('cannot tell the PCK CA type from the issuer %q'):format(issuer))
  end
  return { fmspc = codec.hex(leaf.sgx.fmspc):upper(), ca = ca, tee = q.tee == 'TDX' and 'tdx' or 'sgx' }
end

-- Fetching --------------------------------------------------------------------------------

local function url_decode(s)
  return (s:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))
end

local function base_url(url)
  local base = url:gsub('/+$', '')
  base = base:gsub('/sgx/certification/v4$', ''):gsub('/tdx/certification/v4$', '')
  return base
end

--- The service URLs for a target (see the top of this file).
function M.urls(url, target)
  local base = base_url(url)
  local function mk(tee, path)
    return ('%s/%s/certification/v4/%s'):format(base, tee, path)
  end
  return {
    pckcrl = mk('sgx', ('pckcrl?ca=%s&encoding=der'):format(target.ca)),
    tcb = mk(target.tee, 'tcb?fmspc=' .. target.fmspc),
    qe_identity = mk(target.tee, 'qe/identity?update=standard'),
    rootcacrl = mk('sgx', 'rootcacrl'),
    is_pcs = base:sub(1, #M.INTEL_PCS_URL) == M.INTEL_PCS_URL,
  }
end

local Source = {}
Source.__index = Source

function Source:get(url, want)
  -- loaded here: verifying against local collateral also works without the runtime (rockspecs/)
  local client = require('moonstack.http.client')
  local resp, err, code = client.request({ url = url, method = 'GET', want_headers = want,
    timeout_ms = self.timeout_ms, tls = self.tls })
  if not resp then
    return nil, ('%s: GET %s: %s'):format(code, url, err:gsub('^' .. code .. ': ', '')), code
  end
  self.requests = self.requests + 1
  if resp.status < 200 or resp.status > 299 then
    return fail(('GET %s: HTTP %d'):format(url, resp.status))
  end
  return resp
end

local function header(resp, url, ...)
  for _, name in ipairs({ ... }) do
    local v = resp.headers[name]
    if v and v ~= '' then
      return url_decode(v)
    end
  end
  return fail(('GET %s: the response has no %s header'):format(url, (...)))
end

-- A CRL body as DER: binary, hex text (PCCS's rootcacrl) or PEM.
local function crl_der(body)
  local text = body:match('^%s*(.-)%s*$')
  if text:match('^%x+$') and #text % 2 == 0 then
    return codec.unhex(text)
  end
  local b64 = text:match('^%-%-%-%-%-BEGIN X509 CRL%-%-%-%-%-(.-)%-%-%-%-%-END X509 CRL%-%-%-%-%-$')
  if b64 then
    return codec.unbase64((b64:gsub('%s', '')))
  end
  return body
end

-- {"tcbInfo": {...}, "signature": hex} -> raw member text, signature hex
local function signed_body(resp, url, member)
  local v, raw = json.decode_with_raw(resp.body)
  if v == nil then
    return fail(('GET %s: %s'):format(url, raw))
  end
  if type(v[member]) ~= 'table' or type(v.signature) ~= 'string' or not codec.unhex(v.signature) then
    return fail(('GET %s: expected {"%s": {...}, "signature": hex}'):format(url, member))
  end
  return raw[member], v.signature:lower()
end

--- Fetch collateral for `target` (quote_target()) from the service; runs in a task. Returns
--- the collateral JSON text or nil, msg, code.
function Source:download(target)
  local u = M.urls(self.url, target)
  local c = {}
  local resp, err, code = self:get(u.pckcrl, { 'sgx-pck-crl-issuer-chain' })
  if not resp then return nil, err, code end
  c.pck_crl_issuer_chain, err, code = header(resp, u.pckcrl, 'sgx-pck-crl-issuer-chain')
  if not c.pck_crl_issuer_chain then return nil, err, code end
  c.pck_crl = codec.hex(crl_der(resp.body))

  resp, err, code = self:get(u.tcb, { 'sgx-tcb-info-issuer-chain', 'tcb-info-issuer-chain' })
  if not resp then return nil, err, code end
  c.tcb_info_issuer_chain, err, code = header(resp, u.tcb, 'sgx-tcb-info-issuer-chain',
    'tcb-info-issuer-chain')
  if not c.tcb_info_issuer_chain then return nil, err, code end
  c.tcb_info, c.tcb_info_signature = signed_body(resp, u.tcb, 'tcbInfo')
  if not c.tcb_info then return nil, c.tcb_info_signature, 'ECOLLATERAL' end

  resp, err, code = self:get(u.qe_identity, { 'sgx-enclave-identity-issuer-chain' })
  if not resp then return nil, err, code end
  c.qe_identity_issuer_chain, err, code = header(resp, u.qe_identity,
    'sgx-enclave-identity-issuer-chain')
  if not c.qe_identity_issuer_chain then return nil, err, code end
  c.qe_identity, c.qe_identity_signature = signed_body(resp, u.qe_identity, 'enclaveIdentity')
  if not c.qe_identity then return nil, c.qe_identity_signature, 'ECOLLATERAL' end

  local root_url = self.root_ca_crl_url
  if not u.is_pcs then
    resp = self:get(u.rootcacrl)
    if resp then
      root_url = nil
    end
  end
  if root_url then
    resp, err, code = self:get(root_url)
    if not resp then return nil, err, code end
  end
  c.root_ca_crl = codec.hex(crl_der(resp.body))
  local text = json.encode(c)
  local ok, perr, pcode = M.parse(text)
  if not ok then
    return nil, perr, pcode
  end
  return text
end

function Source:cache_path(target)
  if not self.cache_dir then
    return nil
  end
  local tag = codec.hex(crypto.sha256(base_url(self.url))):sub(1, 16)
  return ('%s/%s-%s-%s-%s.json'):format(self.cache_dir, tag, target.tee, target.fmspc, target.ca)
end



--- Collateral for a quote (binary) at `opts.now` (default now): from memory or the disk cache
--- while the entry is valid, else downloaded (and cached). Runs in a task. Returns the JSON
--- text and { source = 'memory'|'cache'|'network', target, path, expires } or nil, msg,
--- code. opts.refresh skips both caches.
function Source:fetch(quote_bytes, opts)
  opts = opts or {}
  local target, err, code = M.quote_target(quote_bytes)
  if not target then
    return nil, err, code
  end
  local now = opts.now or os.time()
  local key = ('%s-%s-%s'):format(target.tee, target.fmspc, target.ca)
  local mem = self.memory[key]
  if mem and not opts.refresh and now < mem.expires then
    return mem.text, { source = 'memory', target = target, path = mem.path, expires = mem.expires }
  end
  local path = self:cache_path(target)
  if path and not opts.refresh then
    local f = io.open(path, 'rb')
    if f then
      local text = f:read('*a')
      f:close()
      local expires = M.expires(text)
      if expires and now < expires then
        self.memory[key] = { text = text, expires = expires, path = path }
        return text, { source = 'cache', target = target, path = path, expires = expires }
      end
    end
  end
  local text
  text, err, code = self:download(target)
  if not text then
    return nil, err, code
  end
  local expires = M.expires(text)
  if path then
    local ok
    ok, err, code = fs.mkdir_p(self.cache_dir)
    if ok then
      ok, err, code = fs.write_atomic(path, text)
    end
    if not ok then
      return nil, ('cannot write the collateral cache %s: %s'):format(path, err), code
    end
  end
  self.memory[key] = { text = text, expires = expires, path = path }
  return text, { source = 'network', target = target, path = path, expires = expires }
end

--- A collateral source for a PCCS / PCS base URL. opts: cache_dir (nil: no cache),
--- timeout_ms (default 30000), tls (client TLS options for https, e.g. { ca = PEM }),
--- root_ca_crl_url (default Intel's). source:fetch(quote, {now, refresh}) runs in a task;
--- source.requests counts the HTTP requests made.
function M.pccs(url, opts)
  if type(url) ~= 'string' or not url:match('^https?://') then
    error('collateral.pccs: url must be an http(s) URL', 2)
  end
  opts = opts or {}
  return setmetatable({ url = url, cache_dir = opts.cache_dir, timeout_ms = opts.timeout_ms or 30000,
    tls = opts.tls, root_ca_crl_url = opts.root_ca_crl_url or M.INTEL_ROOT_CA_CRL_URL,
    requests = 0, memory = {} }, Source)
end

return M
