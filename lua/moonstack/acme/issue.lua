-- SPDX-License-Identifier: Apache-2.0
-- One certificate by DNS-01 (kms-vmm-gateway.md §6.9): an order for `*.D`, per authorization
-- the TXT records at `_acme-challenge.<identifier>` replaced with the key authorization digest,
-- the DNS self-check (moonstack.acme.dns.wait_txt; it proceeds after max_dns_wait anyway), the
-- challenges marked ready and polled, the TXT records removed again (also after a failure),
-- a FRESH P-256 key and its CSR, finalize, and the chain downloaded and checked: its leaf
-- carries the fresh key and names `*.D`. In a task.
local dns = require('moonstack.acme.dns')
local fs = require('moonstack.core.fs')
local uv = require('luv')
local x509 = require('moonstack.x509')

local M = {}

--- The first nameserver of /etc/resolv.conf as 'ip:53' (the default self-check server).
function M.system_resolver()
  local text = fs.read_file('/etc/resolv.conf', 64 * 1024) or ''
  local ns = text:match('\nnameserver%s+([%d%.]+)') or text:match('^nameserver%s+([%d%.]+)')
  return (ns or '127.0.0.1') .. ':53'
end

local function note(log, msg, fields)
  if log then
    log.info(msg, fields)
  end
end

--- Obtain a certificate for `*.<opts.domain>` with the ACME client `c` (an account set) and
--- the DNS provider `provider`. opts: domain, dns_server ('ip[:port]' for the self-check;
--- default the system resolver), max_dns_wait (s, 60), timeout (s, 300: the whole order), log.
--- Returns { chain (PEM, leaf first), key (PKCS#8 PEM), not_after, serial, spki (DER),
--- order_url } or nil, msg, code.
function M.obtain(c, provider, opts)
  local domain = opts.domain:gsub('^%*%.', ''):lower()
  local names = { '*.' .. domain }
  local deadline = uv.now() + (opts.timeout or 300) * 1000
  local order, err, code = c:new_order(names)
  if not order then
    return nil, err, code
  end
  note(opts.log, 'acme order created', { domain = domain, order = order.url, status = order.status })
  local pending, made = {}, {}
  local function cleanup()
    for fqdn in pairs(made) do
      local ok, cerr = provider:cleanup(fqdn)
      if not ok and opts.log then
        opts.log.warn('acme: TXT cleanup failed', { fqdn = fqdn, error = cerr })
      end
    end
  end
  local ok, res, rerr, rcode = pcall(function()
    for _, url in ipairs(order.authorizations) do
      local a, aerr, acode = c:authorization(url)
      if not a then
        return nil, aerr, acode
      end
      if a.status ~= 'valid' then
        local chal, value = c:dns01(a)
        if not chal then
          return nil, value, 'EACME'
        end
        local fqdn = '_acme-challenge.' .. a.identifier.value:lower()
        if not made[fqdn] then
          local cok, cerr, ccode = provider:cleanup(fqdn) -- what an earlier run left
          if not cok then
            return nil, cerr, ccode
          end
          made[fqdn] = {}
        end
        local pok, perr, pcode = provider:present(fqdn, value)
        if not pok then
          return nil, perr, pcode
        end
        table.insert(made[fqdn], value)
        pending[#pending + 1] = { url = url, chal = chal, fqdn = fqdn }
      end
    end
    local server = opts.dns_server or M.system_resolver()
    for fqdn, values in pairs(made) do
      local seen, why = dns.wait_txt(server, fqdn, values, opts.max_dns_wait or 60)
      if not seen and opts.log then
        opts.log.warn('acme: TXT records not seen within max_dns_wait; proceeding',
          { fqdn = fqdn, server = server, last = why })
      end
    end
    for _, p in ipairs(pending) do
      local r, perr, pcode = c:respond(p.chal.url)
      if not r then
        return nil, perr, pcode
      end
    end
    for _, p in ipairs(pending) do
      local a, perr, pcode = c:poll(p.url, { valid = true }, deadline)
      if not a then
        return nil, perr, pcode
      end
    end
    return true
  end)
  cleanup()
  if not ok then
    return nil, 'EACME: ' .. tostring(res), 'EACME'
  elseif not res then
    return nil, rerr, rcode
  end
  local order_url = order.url
  order, err, code = c:poll(order_url, { ready = true, valid = true }, deadline)
  if not order then
    return nil, err, code
  end
  order.url = order_url
  local key = x509.generate_key()
  local csr
  csr, err, code = x509.csr({ key = key, subject = names[1], sans = names })
  if not csr then
    return nil, err, code
  end
  local o = order
  if o.status ~= 'valid' then
    o, err, code = c:finalize(o, csr.der, deadline)
    if not o then
      return nil, err, code
    end
  end
  local chain, certs
  chain, certs, code = c:certificate(o.certificate)
  if not chain then
    return nil, certs, code
  end
  local leaf = certs[1]
  if leaf:spki() ~= key:spki() then
    return nil, 'EACME: the issued certificate does not carry the key of the CSR', 'EACME'
  end
  local info = leaf:info()
  local named = false
  for _, n in ipairs(info.dns or {}) do
    named = named or n:lower() == names[1]
  end
  if not named then
    return nil, ('EACME: the issued certificate does not name %s'):format(names[1]), 'EACME'
  end
  note(opts.log, 'acme certificate issued', { domain = domain, serial = info.serial,
    not_after = info.not_after })
  return { chain = chain, key = key:pkcs8_pem(), not_after = info.not_after, serial = info.serial,
    spki = leaf:spki(), order_url = o.url }
end

return M
