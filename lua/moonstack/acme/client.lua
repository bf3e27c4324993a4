-- SPDX-License-Identifier: Apache-2.0
-- An RFC 8555 client over moonstack.http.client: the directory, nonces (a badNonce answer is
-- retried with the fresh nonce it carries), the account (created, or found by its key),
-- orders, authorizations, challenges, polling with a bounded backoff, finalize and the chain.
-- Requests are ES256 JWS (moonstack.acme.jws) with a P-256 account key. Every answer is
-- parsed strictly: bounded sizes, timeouts, the fields used checked for type. Call from a task.
local client = require('moonstack.http.client')
local json = require('moonstack.core.json')
local jws = require('moonstack.acme.jws')
local task = require('moonstack.core.task')
local uv = require('luv')
local x509 = require('moonstack.x509')

local M = {}

--- Largest JSON answer accepted, and largest certificate chain.
M.MAX_JSON = 256 * 1024
M.MAX_CHAIN = 512 * 1024
--- badNonce retries per request.
M.NONCE_RETRIES = 5

local WANT = { 'replay-nonce', 'retry-after', 'link' }

local Client = {}
Client.__index = Client

local function fail(code, msg)
  return nil, code .. ': ' .. msg, code
end

--- A client for the ACME server whose directory is `opts.directory_url`, with the account
--- key `opts.key` (moonstack.x509 Key or PEM), optional `opts.account_uri` (the kid),
--- `opts.ca` (PEM text trusted for the server's TLS, else the system roots), `opts.timeout_ms`
--- per request (15 s).
function M.new(opts)
  assert(type(opts) == 'table' and type(opts.directory_url) == 'string', 'acme.client.new: directory_url')
  local key = x509.key(opts.key, 'acme.client.new: key')
  local self = setmetatable({ url = opts.directory_url, key = key, kid = opts.account_uri,
    tls = opts.ca and { ca = opts.ca } or nil, timeout_ms = opts.timeout_ms or 15000,
    nonces = {}, requests = 0, bad_nonces = 0 }, Client)
  self.jwk = jws.jwk(key)
  self.thumbprint = jws.thumbprint(self.jwk)
  return self
end

-- The decoded JSON object of `resp`, or nil, msg, code (EPROTO).
local function decode(resp, what)
  local v = json.decode(resp.body)
  if type(v) ~= 'table' or json.is_array(v) then
    return fail('EPROTO', ('%s: the answer is not a JSON object (HTTP %d)'):format(what, resp.status))
  end
  return v
end

-- The problem document of an error answer as 'CODE: ...'.
local function problem(resp, what)
  local p = json.decode(resp.body)
  local ptype = type(p) == 'table' and type(p.type) == 'string' and p.type or ''
  local detail = type(p) == 'table' and type(p.detail) == 'string' and p.detail:sub(1, 300) or
    resp.body:sub(1, 200)
  return ('EACME: %s: HTTP %d %s %s'):format(what, resp.status, ptype, detail), ptype
end

function Client:_request(opts, what)
  opts.tls = self.tls
  opts.timeout_ms = self.timeout_ms
  opts.want_headers = WANT
  opts.host_port = true
  opts.max_response = opts.max_response or M.MAX_JSON
  self.requests = self.requests + 1
  local resp, err, code = client.request(opts)
  if not resp then
    return nil, ('%s: %s'):format(what, tostring(err)), code
  end
  local n = resp.headers['replay-nonce']
  if type(n) == 'string' and n:match('^[%w%-_]+$') and #n <= 200 and #self.nonces < 16 then
    self.nonces[#self.nonces + 1] = n
  end
  return resp
end

--- The directory (fetched once): { newNonce, newAccount, newOrder, ... } (URLs checked).
function Client:directory()
  if self.dir then
    return self.dir
  end
  local resp, err, code = self:_request({ url = self.url, method = 'GET' }, 'GET directory')
  if not resp then
    return nil, err, code
  end
  if resp.status ~= 200 then
    return fail('EACME', ('GET %s: HTTP %d'):format(self.url, resp.status))
  end
  local d
  d, err, code = decode(resp, 'directory')
  if not d then
    return nil, err, code
  end
  for _, k in ipairs({ 'newNonce', 'newAccount', 'newOrder' }) do
    if type(d[k]) ~= 'string' or not d[k]:match('^https?://') then
      return fail('EPROTO', ('directory: %s is not a URL'):format(k))
    end
  end
  self.dir = d
  return d
end

function Client:_nonce()
  local n = table.remove(self.nonces)
  if n then
    return n
  end
  local d, err, code = self:directory()
  if not d then
    return nil, err, code
  end
  local resp
  resp, err, code = self:_request({ url = d.newNonce, method = 'GET' }, 'newNonce')
  if not resp then
    return nil, err, code
  end
  n = table.remove(self.nonces)
  if not n then
    return fail('EPROTO', ('newNonce: HTTP %d without a Replay-Nonce'):format(resp.status))
  end
  return n
end

--- POST a JWS to `url` with `payload` (a table; nil for POST-as-GET). `use_jwk` signs with
--- the JWK instead of the account URL (newAccount). Returns the response (status, headers,
--- body) for 2xx answers, or nil, msg, code (EACME with the problem document otherwise).
function Client:post(url, payload, use_jwk, accept)
  local body = payload == nil and '' or json.encode(payload)
  for attempt = 1, M.NONCE_RETRIES + 1 do
    local nonce, err, code = self:_nonce()
    if not nonce then
      return nil, err, code
    end
    local header = { nonce = nonce, url = url }
    if use_jwk or not self.kid then
      header.jwk = self.jwk
    else
      header.kid = self.kid
    end
    local signed
    signed, err, code = jws.sign(self.key, header, body)
    if not signed then
      return nil, err, code
    end
    local resp
    resp, err, code = self:_request({ url = url, method = 'POST', body = signed,
      headers = { ['content-type'] = 'application/jose+json', accept = accept },
      max_response = accept and M.MAX_CHAIN or nil }, 'POST ' .. url)
    if not resp then
      return nil, err, code
    end
    if resp.status >= 200 and resp.status < 300 then
      return resp
    end
    local msg, ptype = problem(resp, 'POST ' .. url)
    if ptype ~= 'urn:ietf:params:acme:error:badNonce' or attempt > M.NONCE_RETRIES then
      return nil, msg, 'EACME'
    end
    self.bad_nonces = self.bad_nonces + 1 -- retried with the nonce this answer carried
  end
end

-- POST and decode a JSON object answer.
function Client:post_json(url, payload, use_jwk)
  local resp, err, code = self:post(url, payload, use_jwk)
  if not resp then
    return nil, err, code
  end
  local v
  v, err, code = decode(resp, 'POST ' .. url)
  if not v then
    return nil, err, code
  end
  return v, resp
end

--- The account of this key: created (terms agreed) unless `only_existing` (then found by its
--- key, RFC 8555 §7.3.1). Sets and returns the account URL (kid), and the account object.
function Client:account(opts)
  opts = opts or {}
  local d, err, code = self:directory()
  if not d then
    return nil, err, code
  end
  local payload = { termsOfServiceAgreed = true }
  if opts.only_existing then
    payload = { onlyReturnExisting = true }
  elseif opts.contact then
    payload.contact = opts.contact
  end
  local acct, resp = self:post_json(d.newAccount, payload, true)
  if not acct then
    return nil, resp, 'EACME'
  end
  local loc = resp.headers.location
  if type(loc) ~= 'string' or not loc:match('^https?://') or #loc > 2048 then
    return fail('EPROTO', 'newAccount: no account URL in Location')
  end
  if acct.status ~= 'valid' then
    return fail('EACME', ('newAccount: account status %s'):format(tostring(acct.status)))
  end
  self.kid = loc
  return loc, acct
end

local ORDER_STATES = { pending = true, ready = true, processing = true, valid = true, invalid = true }

-- An order object checked: status, authorizations (URLs), finalize, certificate (when valid).
local function check_order(o, what)
  if not ORDER_STATES[o.status] then
    return fail('EPROTO', ('%s: bad order status %s'):format(what, tostring(o.status)))
  end
  if type(o.authorizations) ~= 'table' or #o.authorizations == 0 or #o.authorizations > 100 then
    return fail('EPROTO', what .. ': authorizations is not a list of URLs')
  end
  for _, a in ipairs(o.authorizations) do
    if type(a) ~= 'string' or not a:match('^https?://') then
      return fail('EPROTO', what .. ': authorizations is not a list of URLs')
    end
  end
  if type(o.finalize) ~= 'string' or not o.finalize:match('^https?://') then
    return fail('EPROTO', what .. ': finalize is not a URL')
  end
  if o.status == 'valid' and (type(o.certificate) ~= 'string' or not o.certificate:match('^https?://')) then
    return fail('EPROTO', what .. ': a valid order without a certificate URL')
  end
  return o
end

--- A new order for DNS `names`. Returns the order object (with .url) or nil, msg, code.
function Client:new_order(names)
  local d, err, code = self:directory()
  if not d then
    return nil, err, code
  end
  local ids = {}
  for i, n in ipairs(names) do
    ids[i] = { type = 'dns', value = n }
  end
  local o, resp = self:post_json(d.newOrder, { identifiers = ids })
  if not o then
    return nil, resp, 'EACME'
  end
  o, err, code = check_order(o, 'newOrder')
  if not o then
    return nil, err, code
  end
  local loc = resp.headers.location
  if type(loc) ~= 'string' or not loc:match('^https?://') then
    return fail('EPROTO', 'newOrder: no order URL in Location')
  end
  o.url = loc
  return o
end

--- An authorization: { status, identifier = { type, value }, wildcard, challenges } checked.
function Client:authorization(url)
  local a, err = self:post_json(url, nil)
  if not a then
    return nil, err, 'EACME'
  end
  if type(a.status) ~= 'string' or type(a.identifier) ~= 'table' or
      type(a.identifier.value) ~= 'string' or type(a.challenges) ~= 'table' then
    return fail('EPROTO', 'authorization ' .. url .. ': missing status, identifier or challenges')
  end
  for _, c in ipairs(a.challenges) do
    if type(c) ~= 'table' or type(c.type) ~= 'string' or type(c.url) ~= 'string' then
      return fail('EPROTO', 'authorization ' .. url .. ': a challenge without type or url')
    end
  end
  return a
end

--- The dns-01 challenge of authorization `a` with its TXT value: challenge, value.
function Client:dns01(a)
  for _, c in ipairs(a.challenges) do
    if c.type == 'dns-01' then
      if type(c.token) ~= 'string' or not c.token:match('^[%w%-_]+$') or #c.token > 256 then
        return fail('EPROTO', 'dns-01 challenge: bad token')
      end
      return c, jws.dns01_value(c.token, self.thumbprint)
    end
  end
  return fail('EACME', ('authorization for %s offers no dns-01 challenge'):format(a.identifier.value))
end

--- Tell the server the challenge at `url` is ready (POST {}).
function Client:respond(url)
  local c, err = self:post_json(url, {})
  if not c then
    return nil, err, 'EACME'
  end
  return c
end

--- Poll `url` (POST-as-GET) until its status is in `done` (a set) or `deadline_ms` (uv.now())
--- passes: backoff 250 ms doubling to 4 s (a Retry-After up to 10 s is honoured). Returns the
--- object, or nil, msg, code (EACME for status invalid, ETIMEDOUT).
function Client:poll(url, done, deadline_ms)
  local delay = 250
  while true do
    local v, resp = self:post_json(url, nil)
    if not v then
      return nil, resp, 'EACME'
    end
    if type(v.status) ~= 'string' then
      return fail('EPROTO', url .. ': no status')
    end
    if done[v.status] then
      return v
    end
    if v.status == 'invalid' then
      local e = type(v.error) == 'table' and type(v.error.detail) == 'string' and v.error.detail or ''
      for _, c in ipairs(type(v.challenges) == 'table' and v.challenges or {}) do
        if type(c) == 'table' and type(c.error) == 'table' and type(c.error.detail) == 'string' then
          e = e .. ' ' .. c.error.detail
        end
      end
      return fail('EACME', ('%s is invalid: %s'):format(url, e:sub(1, 400)))
    end
    local wait = delay
    local ra = tonumber(resp.headers['retry-after'])
    if ra and ra > 0 then
      wait = math.min(ra * 1000, 10000)
    end
    if uv.now() + wait > deadline_ms then
      return fail('ETIMEDOUT', ('%s still %s'):format(url, v.status))
    end
    task.sleep(wait)
    delay = math.min(delay * 2, 4000)
  end
end

--- Finalize `order` with the CSR DER and wait for it to be valid. Returns the order.
function Client:finalize(order, csr_der, deadline_ms)
  local o, err = self:post_json(order.finalize, { csr = jws.b64url(csr_der) })
  if not o then
    return nil, err, 'EACME'
  end
  local code
  o, err, code = self:poll(order.url, { valid = true }, deadline_ms)
  if not o then
    return nil, err, code
  end
  return check_order(o, 'order ' .. order.url)
end

--- Download the certificate chain (PEM) at `url`; every block must parse as a certificate.
--- Returns the PEM text and the list of Certs (leaf first).
function Client:certificate(url)
  local resp, err, code = self:post(url, nil, false, 'application/pem-certificate-chain')
  if not resp then
    return nil, err, code
  end
  local certs
  certs, err = x509.certs(resp.body)
  if not certs or #certs == 0 then
    return nil, 'EPROTO: the certificate chain does not parse: ' .. tostring(err), 'EPROTO'
  end
  if #certs > 10 then
    return fail('EPROTO', 'the certificate chain has more than 10 certificates')
  end
  local pems = {}
  for i, c in ipairs(certs) do
    pems[i] = c:pem()
  end
  return table.concat(pems), certs
end

return M
