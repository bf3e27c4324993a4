-- SPDX-License-Identifier: Apache-2.0
-- The certbot inside the gateway (kms-vmm-gateway.md §6.9): one ACME account (key and URI kept
-- in the store, reused across restarts; its evidence quote at creation; CAA set for every
-- domain when auto_set_caa), and per configured base domain D a wildcard certificate `*.D`
-- with a fresh P-256 key (moonstack.acme.issue), renewed when not_after - now <
-- renew_before_expiration, checked every renew_interval, under the store lock 'cert/D'. A node
-- that finds a newer certificate in the store (another node renewed) loads it instead of
-- ordering. Each issuance stores the evidence quote over "zt-cert:" || SPKI
-- (moonstack.gateway.acme_info) and swaps the certificate into the running proxy: a new
-- snapshot, so connections in flight keep the one they started with.
local acme_client = require('moonstack.acme.client')
local acme_info = require('moonstack.gateway.acme_info')
local caa = require('moonstack.acme.caa')
local cert_store = require('moonstack.gateway.cert_store')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')
local issue = require('moonstack.acme.issue')
local json = require('moonstack.core.json')
local provider = require('moonstack.acme.provider')
local task = require('moonstack.core.task')
local x509 = require('moonstack.x509')

local M = {}

--- Evidence entries kept per domain (AcmeInfo's quoted_hist_keys).
M.MAX_HISTORY = 32

local Certbot = {}
Certbot.__index = Certbot

local function decode(text)
  local v = text and json.decode(text)
  return type(v) == 'table' and not json.is_array(v) and v or nil
end

--- The certbot of gateway `gw` (cfg.certbot enabled), its store (`store` or local files under
--- certbot.store_dir / <data_dir>/certbot). Loads the stored certificates into the proxy and
--- starts the renewal loop. Returns it or nil, msg, code.
function M.start(gw, store)
  local cfg = gw.cfg.certbot
  local ca
  if cfg.ca then
    local err, code
    ca, err, code = fs.read_file(cfg.ca, 1024 * 1024)
    if not ca then
      return nil, 'certbot.ca: ' .. tostring(err), code
    end
  end
  local dns_cfg = {}
  for k, v in pairs(cfg.dns) do
    dns_cfg[k] = v
  end
  dns_cfg.ttl = cfg.dns_txt_ttl
  dns_cfg.dns_server = cfg.dns_resolver -- challtestsrv reads CAA back from its DNS
  local dns, err, code = provider.new(dns_cfg)
  if not dns then
    return nil, 'certbot.' .. tostring(err), code
  end
  local self = setmetatable({ gw = gw, cfg = cfg, log = gw.log, ca = ca, dns = dns,
    store = store or cert_store.new(cfg.store_dir or (gw.cfg.data_dir .. '/certbot')),
    current = {}, accounts = 0, orders = 0, renewals = 0, loaded = 0, failures = 0,
    last_error = nil }, Certbot)
  self.source, err, code = acme_info.source(gw.cfg.attestation)
  if gw.cfg.attestation and not self.source then
    return nil, err, code
  end
  if not self.source then
    gw.log.warn('certbot: no attestation configured: certificates are issued without evidence')
  end
  local acct = decode(self.store:get('acme/account'))
  self.account_uri = acct and acct.acme_url == cfg.acme_url and acct.account_uri or nil
  for _, d in ipairs(cfg.domains) do
    local data = decode(self.store:get('cert/' .. d .. '/data'))
    if data and self:_usable(data) then
      self:_install(d, data, 'stored')
    end
  end
  self.task = task.spawn_named('gateway:certbot', function()
    while not self.stopped do
      local ok, e = pcall(self.check, self, false)
      if not ok then
        self.log.error('certbot: check failed', { error = tostring(e) })
      end
      task.sleep(math.max(50, math.floor(cfg.renew_interval * 1000)))
    end
  end)
  return self
end

-- Whether stored data is a certificate with its key that is not yet expired.
function Certbot:_usable(data) -- luacheck: ignore 212
  if type(data.chain) ~= 'string' or type(data.key) ~= 'string' or type(data.not_after) ~= 'number' then
    return false
  end
  local certs = x509.certs(data.chain)
  local key = x509.load_key(data.key)
  return certs ~= nil and key ~= nil and certs[1]:spki() == key:spki() and data.not_after > os.time()
end

-- Publish `data` as the proxy's certificate for `domain`.
function Certbot:_install(domain, data, how)
  self.current[domain] = data
  if how == 'stored' then
    self.loaded = self.loaded + 1
    -- issued elsewhere (another node, an earlier run): the account is the store's
    local acct = self:_load('acme/account')
    if acct and acct.acme_url == self.cfg.acme_url and type(acct.account_uri) == 'string' then
      self.account_uri = acct.account_uri
    end
  end
  self.gw:set_acme_cert(domain, { cert = data.chain, key = data.key })
  self.log.info('certbot: certificate in use', { domain = domain, serial = data.serial,
    not_after = data.not_after, how = how })
end

-- An evidence entry over `report_data`: the quote JSON text ('' without a source or when the
-- TEE fails, which is logged).
function Certbot:_quote(report_data, what)
  if not self.source then
    return ''
  end
  local q, err = self.source:quote(report_data)
  if not q then
    self.log.error('certbot: no evidence quote for ' .. what, { error = err })
    return ''
  end
  return q
end

-- The decoded JSON object at `key`: the table, false (absent, or not an object), or nil, msg,
-- code when the store cannot be read (etcd down: never taken for "absent").
function Certbot:_load(key)
  local text, err, code = self.store:get(key)
  if text == nil and err then
    return nil, err, code
  end
  return decode(text) or false
end

-- The stored account of this ACME directory with its key, or false; nil, msg, code.
function Certbot:_stored_account()
  local acct, err, code = self:_load('acme/account')
  if acct == nil then
    return nil, err, code
  end
  local key = acct and acct.acme_url == self.cfg.acme_url and type(acct.key) == 'string' and
    type(acct.account_uri) == 'string' and x509.load_key(acct.key)
  return key and acct or false, key
end

-- Create the account under the store lock 'acme-account' (one account for the whole cluster:
-- a node that finds it created meanwhile uses it). acct, key or nil, msg, code.
function Certbot:_create_account()
  local token, holder = self.store:lock('acme-account', math.max(120, self.cfg.renew_timeout))
  if not token then
    return nil, 'EBUSY: certbot: the ACME account is being created elsewhere (' ..
      tostring(holder) .. ')', 'EBUSY'
  end
  local ok, acct, key, code = pcall(function()
    local a, k, c = self:_stored_account()
    if a ~= false then
      return a, k, c
    end
    k = x509.generate_key()
    local cl = acme_client.new({ directory_url = self.cfg.acme_url, key = k, ca = self.ca })
    local uri, err
    uri, err, c = cl:account({ contact = self.cfg.contact and { 'mailto:' .. self.cfg.contact } })
    if not uri then
      return nil, err, c
    end
    a = { key = k:pkcs8_pem(), account_uri = uri, acme_url = self.cfg.acme_url, caa = {} }
    local put
    put, err, c = self.store:put('acme/account', json.encode(a))
    if not put then
      return nil, err, c
    end
    self.accounts = self.accounts + 1
    self.log.info('certbot: ACME account created', { account_uri = uri })
    return a, k
  end)
  self.store:unlock('acme-account', token)
  if not ok then
    return nil, 'EINTERNAL: ' .. tostring(acct), 'EINTERNAL'
  end
  return acct, key, code
end

-- The ACME client with the account (stored, else created: its evidence, CAA).
function Certbot:_account()
  local acct, key, code = self:_stored_account()
  if acct == false then
    acct, key, code = self:_create_account()
  end
  if not acct then
    return nil, key, code
  end
  local c = acme_client.new({ directory_url = self.cfg.acme_url, key = key, ca = self.ca,
    account_uri = acct.account_uri })
  local att = decode(self.store:get('acme/attestation'))
  if self.source and (not att or att.account_uri ~= acct.account_uri or att.quote == '') then
    self.store:put('acme/attestation', json.encode({ account_uri = acct.account_uri,
      quote = self:_quote(acme_info.account_report_data(acct.account_uri), 'the account'),
      attestation = '' }))
  end
  if self.cfg.auto_set_caa then
    acct.caa = type(acct.caa) == 'table' and acct.caa or {}
    local changed = false
    for _, d in ipairs(self.cfg.domains) do
      if acct.caa[d] ~= acct.account_uri then
        local ok, err = caa.set(self.dns, d, acct.account_uri, self.cfg.caa_issuer)
        if ok then
          acct.caa[d], changed = acct.account_uri, true
          self.log.info('certbot: CAA records set', { domain = d })
        else
          self.log.error('certbot: CAA records not set', { domain = d, error = err })
        end
      end
    end
    if changed then
      self.store:put('acme/account', json.encode(acct))
    end
  end
  self.account_uri = acct.account_uri
  return c
end

-- Store the evidence of a new certificate and append it to the domain's history.
function Certbot:_evidence(domain, r)
  local entry = { public_key = crypto.hex(r.spki),
    quote = self:_quote(acme_info.cert_report_data(r.spki), domain), attestation = '',
    serial = r.serial, not_after = r.not_after, issued_at = os.time() }
  self.store:put('cert/' .. domain .. '/attestation/latest', json.encode(entry))
  local hist = self.store:get('cert/' .. domain .. '/attestation/history')
  hist = hist and json.decode(hist)
  hist = type(hist) == 'table' and json.is_array(hist) and hist or json.array()
  hist[#hist + 1] = entry
  while #hist > M.MAX_HISTORY do
    table.remove(hist, 1)
  end
  self.store:put('cert/' .. domain .. '/attestation/history', json.encode(hist))
end

--- Renew `domain` if due (or `force`). Returns 'fresh' (not due), 'loaded' (another node's
--- newer certificate), 'renewed', 'locked' (another holder), or nil, msg, code.
function Certbot:renew(domain, force)
  local cur = self.current[domain]
  local due = not cur or cur.not_after - os.time() < self.cfg.renew_before_expiration
  if not due and not force then
    -- another node may have renewed: the store holds the cluster's current certificate
    local stored = self:_load('cert/' .. domain .. '/data')
    if stored and stored.serial ~= cur.serial and self:_usable(stored) then
      self:_install(domain, stored, 'stored')
      return 'loaded'
    end
    return 'fresh'
  end
  local token, holder = self.store:lock('cert/' .. domain, math.max(600, self.cfg.renew_timeout * 2))
  if not token then
    self.log.info('certbot: renewal lock held elsewhere', { domain = domain, holder = holder })
    return 'locked'
  end
  local ok, res, err, code = pcall(function()
    local stored, serr, scode = self:_load('cert/' .. domain .. '/data')
    if stored == nil then
      return nil, serr, scode
    end
    if stored and self:_usable(stored) and (not cur or stored.not_after > cur.not_after) then
      if stored.not_after - os.time() >= self.cfg.renew_before_expiration and not force then
        self:_install(domain, stored, 'stored')
        return 'loaded'
      end
    end
    local c, aerr, acode = self:_account()
    if not c then
      return nil, aerr, acode
    end
    self.orders = self.orders + 1
    local r
    r, aerr, acode = task.timeout(self.cfg.renew_timeout * 1000, issue.obtain, c, self.dns,
      { domain = domain, dns_server = self.cfg.dns_resolver, max_dns_wait = self.cfg.max_dns_wait,
        timeout = self.cfg.renew_timeout, log = self.log })
    if not r then
      return nil, aerr, acode
    end
    local data = { chain = r.chain, key = r.key, not_after = r.not_after, serial = r.serial,
      issued_at = os.time() }
    if not self.store:holds('cert/' .. domain, token) then
      -- the lock's lease ran out (etcd away too long): another node may be renewing; the
      -- certificate it stores is picked up at the next check
      return nil, 'ELOCKLOST: certbot: the renewal lock of ' .. domain .. ' was lost; '
        .. 'the certificate is not stored', 'ELOCKLOST'
    end
    local pok
    pok, aerr, acode = self.store:put('cert/' .. domain .. '/data', json.encode(data))
    if not pok then
      return nil, aerr, acode
    end
    self:_evidence(domain, r)
    self.renewals = self.renewals + 1
    self:_install(domain, data, 'issued')
    return 'renewed'
  end)
  self.store:unlock('cert/' .. domain, token)
  if not ok then
    res, err, code = nil, 'EINTERNAL: ' .. tostring(res), 'EINTERNAL'
  end
  if not res then
    self.failures = self.failures + 1
    self.last_error = err
    self.log.error('certbot: renewal failed', { domain = domain, error = err })
  end
  return res, err, code
end

--- Check every domain (renew what is due; all with `force`), one check at a time. Returns {
--- [domain] = result } (an error as 'error: ...').
function Certbot:check(force)
  while self.busy do
    task.sleep(50)
  end
  self.busy = true
  local out = {}
  for _, d in ipairs(self.cfg.domains) do
    local ok, r, err = pcall(self.renew, self, d, force)
    out[d] = ok and (r or ('error: ' .. tostring(err))) or ('error: ' .. tostring(r))
  end
  self.busy = false
  return out
end

--- Set the CAA records of every domain for the account (Admin SetCaa): the account is
--- created first when there is none. True or nil, msg, code (the first failure).
function Certbot:set_caa()
  local c, err, code = self:_account()
  if not c then
    return nil, err, code
  end
  for _, d in ipairs(self.cfg.domains) do
    local ok
    ok, err, code = caa.set(self.dns, d, self.account_uri, self.cfg.caa_issuer)
    if not ok then
      return nil, err, code
    end
    self.log.info('certbot: CAA records set', { domain = d })
  end
  return true
end

--- What the REPL's gw.certs() shows: per domain serial, not_after, seconds left; counters.
function Certbot:status()
  local domains = {}
  for _, d in ipairs(self.cfg.domains) do
    local c = self.current[d]
    domains[d] = c and { serial = c.serial, not_after = c.not_after,
      left = c.not_after - os.time() } or false
  end
  return { domains = domains, account_uri = self.account_uri or '', accounts = self.accounts,
    orders = self.orders,
    renewals = self.renewals, loaded = self.loaded, failures = self.failures,
    last_error = self.last_error, acme_url = self.cfg.acme_url,
    evidence = self.source and self.source.kind or 'none' }
end

--- Stop the renewal loop. Idempotent.
function Certbot:close()
  self.stopped = true
  if self.task then
    self.task:cancel('certbot stopped')
    self.task = nil
  end
end

return M
