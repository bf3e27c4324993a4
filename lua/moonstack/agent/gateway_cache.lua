-- SPDX-License-Identifier: Apache-2.0
-- What the agent keeps between gateway registrations (spec kms-vmm-gateway.md §6.6, upstream's
-- /run/dstack/gateway-cache.json): the WireGuard private key, the client certificate the KMS
-- signed (reused while it has at least 10 minutes of validity left) and the last answer, in
-- one JSON file of mode 0600. A file that is not private (group/other may read or write it),
-- or does not parse, is ignored and replaced: the keys it held are not trusted.
--
--   local cache = gateway_cache.load(path)        -- a table (empty when absent or refused)
--   gateway_cache.save(path, cache)               -- true | nil, msg, code
--   gateway_cache.wg_key(cache)                   -- the cached WG key, or a new one (cached)
--   gateway_cache.client_cert(cache, ctx, opts)   -- inside a task: { cert = PEM chain, key =
--       PEM, not_after } from the cache or a new one through ctx.sign_cert (the KMS's SignCert:
--       CN dstack-guest-agent, clientAuth, app-info extension, valid opts.cert_days)
local uv = require('luv')
local cjson = require('cjson.safe')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local x509 = require('moonstack.x509')
local wgn = require('moonstack.native.wg')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- The subject of the registration certificate (as upstream's guest).
M.SUBJECT = 'dstack-guest-agent'
--- A cached certificate is reused while it has at least this many seconds left.
M.MIN_VALIDITY_S = 600
local MAX_FILE = 1048576

--- The cache at `path` (a table; empty when there is none or it cannot be trusted).
function M.load(path)
  if not uv.fs_stat(path) then
    return {}
  end
  local ok, err = fs.check_private(path, 'gateway cache')
  if not ok then
    log.warn('ignoring the gateway cache', { error = err })
    return {}
  end
  local text = fs.read_file(path, MAX_FILE)
  local t = text and cjson.decode(text)
  if type(t) ~= 'table' then
    log.warn('ignoring an unreadable gateway cache', { path = path })
    return {}
  end
  return t
end

--- Write the cache (mode 0600, atomically). True or nil, msg, code.
function M.save(path, cache)
  local text = cjson.encode(cache)
  if not text then
    return errors.fail('EINVAL', 'the gateway cache does not encode as JSON')
  end
  return fs.write_atomic(path, text, 384)
end

--- The WireGuard private key of the cache, or a new one put in it.
function M.wg_key(cache)
  local k = cache.wg_private_key
  if type(k) ~= 'string' or not pcall(wgn.pubkey, k) then
    k = wgn.genkey()
    cache.wg_private_key = k
  end
  return k
end

-- The cached client certificate when it is usable for at least MIN_VALIDITY_S more seconds.
local function cached_cert(cache, now)
  local c = cache.client_cert
  if type(c) ~= 'table' or type(c.cert) ~= 'string' or type(c.key) ~= 'string' then
    return nil
  end
  local leaf = x509.cert(c.cert)
  local key = x509.load_key(c.key)
  if not leaf or not key or leaf:spki() ~= key:spki() then
    return nil
  end
  local info = leaf:info()
  if info.not_after - now < M.MIN_VALIDITY_S or info.not_before > now + 60 then
    return nil
  end
  return { cert = c.cert, key = c.key, not_after = info.not_after }
end

--- The registration certificate (inside a task): the cached one while valid, else a new key
--- signed through ctx.sign_cert (cached). opts = { cert_days = 10 }. Returns { cert, key,
--- not_after } or nil, msg, code (ENOTSUP when the app's keys did not come from a KMS).
function M.client_cert(cache, ctx, opts)
  local now = os.time()
  local c = cached_cert(cache, now)
  if c then
    return c
  end
  if type(ctx.sign_cert) ~= 'function' then
    return errors.fail('ENOTSUP', 'gateway registration needs the app keys from a KMS '
      .. '(its SignCert issues the client certificate): this app has no KMS key provider')
  end
  local key = x509.generate_key()
  local days = (opts and opts.cert_days) or 10
  local chain, err, code = ctx.sign_cert({ key = key, subject = M.SUBJECT, alt_names = {},
    usage_server_auth = false, usage_client_auth = true, ext_quote = false, ext_app_info = true,
    not_before = now - 60, not_after = now + days * 86400 })
  if not chain then
    return nil, 'SignCert: ' .. tostring(err), code
  end
  local leaf = x509.cert(chain[1])
  if not leaf or leaf:spki() ~= key:spki() then
    return errors.fail('EPROTO', 'SignCert returned a certificate for another key')
  end
  c = { cert = table.concat(chain, '\n'), key = key:pkcs8_pem(), not_after = leaf:info().not_after }
  cache.client_cert = { cert = c.cert, key = c.key }
  return c
end

return M
