-- SPDX-License-Identifier: Apache-2.0
-- Key providers: where a CVM's app keys come from (spec kms-vmm-gateway.md §1.3 step 5, §3.3).
-- A provider is a function(req) -> result | nil, msg, code, with
--   req    = { app_id, instance_id, compose_hash, app_compose, sys_config, vm_config,
--              os_image_hash, tee, config = the key_provider config table }
--   result = { keys = (see moonstack.agent.context), info = { name =, id = hex },
--              os_image_hash = bytes? (KMS only: measured as os-image-hash), provider_id =
--              bytes (checked against app-compose key_provider_id) }
-- Providers here:
--   kms        the KMS's GetAppKey over RA-TLS (moonstack.kms.client; URLs from
--              key_provider.urls or sys-config kms_urls, root CA pinned by sys-config kms_ca
--              or learned from GetTempCaCert as upstream, checked by the key_provider_id pin)
--   local      a 32-byte seed (an SGX local key provider's sealing key in production) with
--              upstream's non-KMS derivations: app CA = derive_p256(seed, "app-key"), disk key
--              = SHA-256(PKCS8(derive_p256(seed, "app-disk-key"))), k256 = derive_key(seed,
--              "app-k256-key"); no env key, no k256_signature; reported as local-sgx + mr
--   none       the same derivations from a fresh random seed (keys change every boot)
--   keys_file  an upstream appkeys.json (the simulator's format), for development
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local x509 = require('moonstack.x509')

local M = {}

local function null(v)
  return v == nil or v == cjson.null
end

local function hex_bytes(obj, key, what, len)
  local v = obj[key]
  if null(v) or v == '' then
    if len then
      return errors.fail('EINVAL', ('%s: %s is missing'):format(what, key))
    end
    return ''
  end
  local b = type(v) == 'string' and crypto.unhex(v)
  if not b then
    return errors.fail('EINVAL', ('%s: %s is not hex'):format(what, key))
  end
  if len and #b ~= len then
    return errors.fail('EINVAL', ('%s: %s must be %d bytes, got %d'):format(what, key, len, #b))
  end
  return b
end

--- Decode an upstream appkeys.json text into context keys: { k256_key, k256_signature,
--- disk_crypt_key, env_crypt_key, gateway_app_id, ca_cert_pem, app_ca = { key, cert }?,
--- key_provider = { kind = 'None'|'Local'|'Tpm'|'Kms', ... } }. nil, msg, code on errors.
function M.parse_appkeys(text, what)
  what = what or 'appkeys.json'
  local obj = cjson.decode(text)
  if type(obj) ~= 'table' then
    return errors.fail('EINVAL', what .. ': not a JSON object')
  end
  local keys = {}
  local err, code
  for _, f in ipairs({ { 'k256_key', 32 }, { 'k256_signature' }, { 'disk_crypt_key' },
      { 'env_crypt_key' } }) do
    keys[f[1]], err, code = hex_bytes(obj, f[1], what, f[2])
    if not keys[f[1]] then
      return nil, err, code
    end
  end
  if #keys.k256_signature ~= 0 and #keys.k256_signature ~= 65 then
    return errors.fail('EINVAL', what .. ': k256_signature must be 65 bytes')
  end
  if #keys.env_crypt_key ~= 0 and #keys.env_crypt_key ~= 32 then
    return errors.fail('EINVAL', what .. ': env_crypt_key must be 32 bytes')
  end
  keys.gateway_app_id = type(obj.gateway_app_id) == 'string' and obj.gateway_app_id or ''
  if type(obj.ca_cert) ~= 'string' or not x509.cert(obj.ca_cert) then
    return errors.fail('EINVAL', what .. ': ca_cert must be a PEM certificate')
  end
  keys.ca_cert_pem = obj.ca_cert
  local kp = obj.key_provider
  if type(kp) ~= 'table' then
    return errors.fail('EINVAL', what .. ': key_provider must be {"None"|"Local"|"Tpm"|"Kms": {...}}')
  end
  local kind, body = next(kp)
  if next(kp, kind) ~= nil or type(body) ~= 'table' then
    return errors.fail('EINVAL', what .. ': key_provider must hold exactly one variant')
  end
  local provider = { kind = kind }
  if kind == 'None' or kind == 'Local' or kind == 'Tpm' then
    if type(body.key) ~= 'string' or not x509.load_key(body.key) then
      return errors.fail('EINVAL', ('%s: key_provider.%s.key must be a PEM private key'):format(what, kind))
    end
    provider.key = body.key
    keys.app_ca = { key = body.key, cert = obj.ca_cert }
    if kind == 'Local' then
      provider.mr, err, code = hex_bytes(body, 'mr', what .. ' key_provider.Local')
      if not provider.mr then
        return nil, err, code
      end
    elseif kind == 'Tpm' then
      provider.pubkey = type(body.pubkey) == 'string' and (crypto.unhex(body.pubkey) or '') or ''
    end
  elseif kind == 'Kms' then
    provider.url = body.url
    provider.pubkey, err, code = hex_bytes(body, 'pubkey', what .. ' key_provider.Kms')
    if not provider.pubkey then
      return nil, err, code
    end
    provider.tmp_ca_key, provider.tmp_ca_cert = body.tmp_ca_key, body.tmp_ca_cert
  else
    return errors.fail('EINVAL', ('%s: unknown key_provider variant %s'):format(what, tostring(kind)))
  end
  keys.key_provider = provider
  return keys
end

--- An upstream appkeys.json text for context keys (0600 file content; holds secrets).
function M.appkeys_json(keys)
  local kp = keys.key_provider or { kind = 'None' }
  local body
  if kp.kind == 'Local' then
    body = { key = kp.key, mr = crypto.hex(kp.mr or '') }
  elseif kp.kind == 'Tpm' then
    body = { key = kp.key, pubkey = crypto.hex(kp.pubkey or '') }
  elseif kp.kind == 'Kms' then
    body = { url = kp.url, pubkey = crypto.hex(kp.pubkey or ''), tmp_ca_key = kp.tmp_ca_key,
      tmp_ca_cert = kp.tmp_ca_cert }
  else
    body = { key = kp.key }
  end
  local parts = {
    '"disk_crypt_key":' .. cjson.encode(crypto.hex(keys.disk_crypt_key or '')),
    '"env_crypt_key":' .. cjson.encode(crypto.hex(keys.env_crypt_key or '')),
    '"k256_key":' .. cjson.encode(crypto.hex(keys.k256_key)),
    '"k256_signature":' .. cjson.encode(crypto.hex(keys.k256_signature or '')),
    '"gateway_app_id":' .. cjson.encode(keys.gateway_app_id or ''),
    '"ca_cert":' .. cjson.encode(keys.ca_cert_pem or ''),
    '"key_provider":' .. cjson.encode({ [kp.kind] = body }),
  }
  return (('{' .. table.concat(parts, ',') .. '}'):gsub('\\/', '/'))
end

--- The key-provider event payload: {"name":N,"id":I} (serde order) as bytes.
function M.info_json(info)
  return '{"name":' .. cjson.encode(info.name) .. ',"id":' .. cjson.encode(info.id) .. '}'
end

-- The non-KMS derivations from a 32-byte seed (upstream gen_app_keys_from_seed). The App Root
-- Cert carries the TEE's attestation (.1.8, VersionedAttestation over the RA-TLS binding of its
-- key, the agent API's encoder) when `tee` is given.
local function keys_from_seed(seed, kind, mr, tee, vm_config)
  local k, err, code = dstack.local_app_keys(seed)
  if not k then
    return nil, err, code
  end
  local key
  key, err, code = x509.key_from_scalar(k.ca_key)
  if not key then
    return nil, err, code
  end
  local attestation
  if tee then
    local evidence = require('moonstack.tdx.evidence').new({ tee = tee,
      vm_config = vm_config or '' })
    attestation, err, code = evidence:attestation(x509.report_data('ratls-cert', key:spki()), 'cert')
    if not attestation then
      return nil, 'cannot attest the app root certificate: ' .. tostring(err), code
    end
  end
  local cert
  cert, err, code = x509.issue({ subject = 'App Root Cert', key = key, ca = { pathlen = 1 },
    ratls = { attestation = attestation } })
  if not cert then
    return nil, err, code
  end
  local pem = key:pkcs8_pem()
  local provider = { kind = kind, key = pem, mr = mr }
  if kind == 'Tpm' then
    provider.pubkey = key:spki()
  end
  return {
    k256_key = k.k256_key, k256_signature = '', disk_crypt_key = k.disk_crypt_key,
    env_crypt_key = '', gateway_app_id = '', ca_cert_pem = cert:pem(),
    app_ca = { key = pem, cert = cert:pem() }, key_provider = provider,
  }
end
M.keys_from_seed = keys_from_seed

local function read_seed(cfg)
  if cfg.seed then
    return crypto.unhex(cfg.seed)
  end
  if not cfg.seed_file then
    return errors.fail('EINVAL', "the local key provider needs key_provider.seed or seed_file")
  end
  local data, err, code = fs.read_file(cfg.seed_file, 4096)
  if not data then
    return nil, err, code
  end
  if #data == 32 then
    return data
  end
  local h = crypto.unhex((data:gsub('%s+', '')))
  if not h or #h ~= 32 then
    return errors.fail('EINVAL', cfg.seed_file .. ': expected 32 raw bytes or 64 hex digits')
  end
  return h
end

-- ---- providers ----

local providers = {}

providers.kms = function(req)
  return require('moonstack.agent.boot.kms_provider').provider(req)
end

providers['local'] = function(req)
  local seed, err, code = read_seed(req.config)
  if not seed then
    return nil, err, code
  end
  local mr = req.config.mr and crypto.unhex(req.config.mr) or ''
  local keys
  keys, err, code = keys_from_seed(seed, 'Local', mr, req.tee, req.vm_config)
  if not keys then
    return nil, err, code
  end
  return { keys = keys, info = { name = 'local-sgx', id = crypto.hex(mr) }, provider_id = mr }
end

providers.none = function(req)
  local keys, err, code = keys_from_seed(crypto.random(32), 'None', nil, req.tee, req.vm_config)
  if not keys then
    return nil, err, code
  end
  return { keys = keys, info = { name = 'none', id = '' }, provider_id = '' }
end

--- The key-provider identity of keys from a keys file: Kms → kms + pubkey, Local → local-sgx
--- + mr, Tpm → tpm, None → none — except that None keys of an app whose compose asks for a
--- KMS stand for a simulated KMS (upstream's simulator): kms + the SPKI of ca_cert.
function M.file_identity(keys, compose_kp)
  local kp = keys.key_provider
  if kp.kind == 'Kms' then
    return { name = 'kms', id = crypto.hex(kp.pubkey) }, kp.pubkey
  elseif kp.kind == 'Local' then
    return { name = 'local-sgx', id = crypto.hex(kp.mr) }, kp.mr
  elseif kp.kind == 'Tpm' then
    return { name = 'tpm', id = '' }, ''
  end
  if compose_kp == 'kms' then
    local spki = assert(x509.cert(keys.ca_cert_pem)):spki()
    return { name = 'kms', id = crypto.hex(spki) }, spki
  end
  return { name = 'none', id = '' }, ''
end

providers.keys_file = function(req)
  local text, err, code = fs.read_file(req.config.file, 1024 * 1024)
  if not text then
    return nil, err, code
  end
  local keys
  keys, err, code = M.parse_appkeys(text, req.config.file)
  if not keys then
    return nil, err, code
  end
  local info, id = M.file_identity(keys, req.compose_key_provider)
  local result = { keys = keys, info = info, provider_id = id }
  if info.name == 'kms' and req.os_image_hash and req.os_image_hash ~= '' then
    result.os_image_hash = req.os_image_hash -- what a KMS would return for this image
  end
  return result
end

--- Register (or replace) a provider: fn(req) -> result | nil, msg, code.
function M.register(name, fn)
  providers[name] = fn
end

--- Which provider serves this boot: the configured kind, or with 'auto' the app-compose
--- key provider. Returns the provider name or nil, msg, code (a configured kind that
--- contradicts app-compose, tpm).
function M.select(kind, compose_kp)
  if kind == 'keys_file' then
    return 'keys_file'
  end
  if compose_kp == 'tpm' then
    return errors.fail('ENOTSUP', 'the tpm key provider is not supported by this agent')
  end
  if kind == 'auto' or kind == nil then
    return compose_kp
  end
  if kind ~= compose_kp then
    return errors.fail('EINVAL', ("app-compose asks for the '%s' key provider but the agent is "
      .. "configured with '%s'"):format(compose_kp, kind))
  end
  return kind
end

--- Obtain the app keys for `req` (see the top). Checks the app-compose key_provider_id pin.
function M.get(req)
  local cfg = req.config or { kind = 'auto' }
  local name, err, code = M.select(cfg.kind, req.compose_key_provider)
  if not name then
    return nil, err, code
  end
  local provider = providers[name]
  if not provider then
    return errors.fail('ENOTSUP', ('no key provider %s'):format(tostring(name)))
  end
  local result
  result, err, code = provider(req)
  if not result then
    return nil, err, code
  end
  local pin = req.key_provider_id or ''
  if pin ~= '' and not crypto.equal(pin, result.provider_id or '') then
    return errors.fail('EDENIED', ('unexpected key provider id %s, expected %s'):format(
      crypto.hex(result.provider_id or ''), crypto.hex(pin)))
  end
  result.provider = name
  return result
end

return M
