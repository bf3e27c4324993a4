-- SPDX-License-Identifier: Apache-2.0
-- The dev stack's certificates, made once and reused:
--   gateway/ca.pem, ca.key        a local CA for the proxy (curl --cacert, a browser's import)
--   gateway/proxy.pem, proxy.key  *.<base_domain> from that CA: the proxy's TLS termination
--   gateway/rpc.pem, rpc.key      the gateway's RegisterCvm server certificate, issued by the
--                                 KMS root with the gateway's app id (as a KMS would for a
--                                 gateway CVM), so CVMs accept it and the KMS names it; for
--                                 localhost, 127.0.0.1 and 10.0.2.2 (M.GUEST_HOST: the host's
--                                 loopback as a QEMU guest on user networking reaches it)
-- Keys are written 0600. The KMS root is read from its key directory, which the KMS made.
local uv = require('luv')
local fs = require('moonstack.core.fs')
local x509 = require('moonstack.x509')
local crypto = require('moonstack.crypto')

local M = {}

--- The host's loopback as a QEMU guest on user networking (restrict=off) reaches it: the KMS's
--- and the gateway's RPC certificates name it.
M.GUEST_HOST = '10.0.2.2'

local RPC_SANS = { 'localhost', '127.0.0.1', M.GUEST_HOST }

-- Whether `cert` names the IP `ip`.
local function names_ip(cert, ip)
  for _, v in ipairs(cert:info().ips or {}) do
    if v == ip then
      return true
    end
  end
  return false
end

local function load(path, what)
  local text, err = fs.read_file(path)
  if not text then
    return nil, ('%s: %s'):format(what, err)
  end
  return text
end

local function write_pair(base, cert, key, chain)
  local ok, err = fs.write_atomic(base .. '.key', key:pkcs8_pem(), tonumber('600', 8))
  if not ok then
    return nil, err
  end
  return fs.write_atomic(base .. '.pem', cert:pem() .. (chain or ''), tonumber('644', 8))
end

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

--- Make (once) the proxy's local CA and its wildcard certificate for `base_domain` in
--- `gw_dir`. Returns { ca, cert, key } paths or nil, msg.
function M.proxy(gw_dir, base_domain)
  local out = { ca = gw_dir .. '/ca.pem', cert = gw_dir .. '/proxy.pem', key = gw_dir .. '/proxy.key' }
  if exists(out.ca) and exists(out.cert) and exists(out.key) then
    local cert = x509.cert(load(out.cert, 'proxy certificate') or '')
    local dns = cert and cert:info().dns or {}
    if dns[1] == '*.' .. base_domain and cert:info().not_after > os.time() + 86400 then
      return out
    end
  end
  local ca_key = x509.generate_key()
  local ca, err = x509.issue({ subject = { cn = 'moonstack dev CA', o = 'moonstack dev stack' },
    key = ca_key, ca = { pathlen = 0 }, days = 825, not_before = os.time() - 60 })
  if not ca then
    return nil, 'the dev CA: ' .. tostring(err)
  end
  local key = x509.generate_key()
  local cert
  cert, err = x509.issue({ subject = '*.' .. base_domain, sans = { '*.' .. base_domain, base_domain },
    key = key, issuer = { cert = ca, key = ca_key }, eku = { 'server_auth' }, days = 397,
    not_before = os.time() - 60 })
  if not cert then
    return nil, 'the proxy certificate: ' .. tostring(err)
  end
  local ok
  ok, err = write_pair(gw_dir .. '/ca', ca, ca_key)
  if ok then
    ok, err = write_pair(gw_dir .. '/proxy', cert, key, ca:pem())
  end
  if not ok then
    return nil, err
  end
  return out
end

--- Make (once) the gateway's RegisterCvm certificate in `gw_dir`, issued by the KMS root of
--- `kms_key_dir` with app id `app_id_hex`. Returns { cert, key, kms_ca } paths or nil, msg.
function M.gateway_rpc(gw_dir, kms_key_dir, app_id_hex)
  local out = { cert = gw_dir .. '/rpc.pem', key = gw_dir .. '/rpc.key',
    kms_ca = kms_key_dir .. '/root-ca.crt' }
  local root_pem, err = load(out.kms_ca, 'the KMS root certificate')
  if not root_pem then
    return nil, err
  end
  local root = x509.cert(root_pem)
  if exists(out.cert) and exists(out.key) then
    local cert = x509.cert(load(out.cert, 'rpc certificate') or '')
    local id = cert and cert:ratls('app_id')
    if id and crypto.hex(id) == app_id_hex and cert:info().issuer == root:info().subject
        and names_ip(cert, M.GUEST_HOST) then
      return out
    end
  end
  local root_key_pem
  root_key_pem, err = load(kms_key_dir .. '/root-ca.key', 'the KMS root key')
  if not root_key_pem then
    return nil, err
  end
  local key = x509.generate_key()
  local cert
  cert, err = x509.issue({ subject = 'gateway.dev.localhost', sans = RPC_SANS,
    key = key, issuer = { cert = root, key = x509.load_key(root_key_pem) }, eku = { 'server_auth' },
    days = 397, not_before = os.time() - 60, ratls = { app_id = crypto.unhex(app_id_hex) } })
  if not cert then
    return nil, 'the gateway rpc certificate: ' .. tostring(err)
  end
  local ok
  ok, err = write_pair(gw_dir .. '/rpc', cert, key, root:pem())
  if not ok then
    return nil, err
  end
  return out
end

return M
