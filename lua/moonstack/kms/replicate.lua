-- SPDX-License-Identifier: Apache-2.0
-- Onboarding by replication (kms-vmm-gateway.md §3.11): a new KMS (B) copies the root keys of
-- a running one (A) over mutual RA-TLS, each side attested and authorised through its auth
-- backend's authorize_kms:
--   1. B calls A's GetTempCaCert and captures A's TLS certificate, which must carry an
--      attestation bound to its key (A's `tee` config) and chain to the root CA A returns;
--      B verifies that attestation (moonstack.kms.attest) and asks its own backend
--      (authorize_kms) whether A is a KMS it may take keys from (when A's attestation names no
--      OS image, B's own vm_config's os_image_hash stands in, as upstream);
--   2. B makes an RA-TLS client certificate (CN "RA-TLS TEMP Cert", its own attestation)
--      signed by A's temp CA and calls A's GetKmsKey, trusting only A's root and only the
--      certificate it checked in 1; A checks B the same way (GetKmsKey);
--   3. the root CA key must be the key of A's root certificate; B writes A's root CA
--      (certificate and key), root k256 key and temp CA into its empty key directory
--      (moonstack.kms.keys.write; sealed when given a sealer).
local cjson = require('cjson.safe')
local client = require('moonstack.http.client')
local x509 = require('moonstack.x509')
local ratls = require('moonstack.x509.ratls')
local keys = require('moonstack.kms.keys')
local events = require('moonstack.verifier.events')

local M = {}

local fail = require('moonstack.core.errors').fail

local function post(url, body, tls, timeout_ms)
  local r, err, code = client.request({ url = url, method = 'POST', body = body, tls = tls,
    timeout_ms = timeout_ms, headers = { ['content-type'] = 'application/json' } })
  if not r then
    return nil, err, code
  end
  local obj = cjson.decode(r.body)
  if r.status ~= 200 or type(obj) ~= 'table' then
    local why = type(obj) == 'table' and obj.error or r.body:sub(1, 200)
    return fail('ESOURCE', ('%s answered HTTP %d: %s'):format(url, r.status, tostring(why)))
  end
  return obj
end

--- Replicate the root keys of the KMS at `opts.source_url` (https://host:port) into
--- `opts.key_dir`. opts = { source_url, key_dir, evidence (an object with
--- :attestation(report_data, 'cert') -> VersionedAttestation: this KMS's TEE), attest
--- (moonstack.kms.attest), auth (backend), vm_config? (this KMS's, sent to A), sealer?,
--- timeout_ms?, log? }. Call from a task. Returns the material (moonstack.kms.keys) or nil,
--- 'CODE: why', CODE (ESOURCE, EBINDING, the verifier's EQUOTE/ETCB/EEVENTLOG/..., EDENIED,
--- EKEYS, ...); nothing is written unless every check passed.
function M.replicate(opts)
  assert(type(opts) == 'table' and opts.source_url and opts.key_dir and opts.evidence
    and opts.attest and opts.auth, 'kms.onboard.replicate: needs source_url, key_dir, evidence, attest, auth')
  local log = opts.log or require('moonstack.core.log').new('kms-onboard')
  local base = opts.source_url:gsub('/+$', '')
  local peer_der
  local capture = { insecure = true, verify = function(peer)
    peer_der = peer.der
    return peer.der ~= nil
  end }
  local tmp, err, code = post(base .. '/prpc/GetTempCaCert?json', '{}', capture, opts.timeout_ms)
  if not tmp then
    return nil, err, code
  end
  if type(tmp.ca_cert) ~= 'string' or type(tmp.temp_ca_cert) ~= 'string'
      or type(tmp.temp_ca_key) ~= 'string' then
    return fail('ESOURCE', 'GetTempCaCert answer lacks ca_cert, temp_ca_cert or temp_ca_key')
  end
  local root, tca, tkey = x509.cert(tmp.ca_cert), x509.cert(tmp.temp_ca_cert), x509.load_key(tmp.temp_ca_key)
  if not (root and tca and tkey) then
    return fail('ESOURCE', 'GetTempCaCert answer holds an unreadable certificate or key')
  end
  local source_pem = x509.pem(peer_der, 'CERTIFICATE')
  local ok, verr = x509.verify(source_pem, { roots = tmp.ca_cert, purpose = 'any' })
  if not ok then
    return fail('ESOURCE', 'the source TLS certificate does not chain to its root CA: ' .. tostring(verr))
  end
  local boot
  boot, err, code = opts.attest:boot_info(peer_der, '')
  if not boot then
    return nil, 'source KMS: ' .. tostring(err), code
  end
  if (boot.osImageHash or '') == '' and opts.vm_config then
    -- the source's attestation names no OS image: upstream assumes it runs this KMS's
    boot.osImageHash = events.vm_config_os_image_hash(opts.vm_config) or ''
    local image_ok, ierr, icode = opts.attest:check_image(boot)
    if not image_ok then
      return nil, 'source KMS: ' .. tostring(ierr), icode
    end
  end
  local d = opts.auth:authorize_kms(boot)
  log.info('onboarding source decision', { source = base, mr_aggregated = boot.mrAggregated,
    allow = d.allow, reason = d.reason })
  if not d.allow then
    return fail('EDENIED', 'source KMS denied: ' .. d.reason)
  end
  local id
  id, err, code = ratls.issue({ subject = 'RA-TLS TEMP Cert', eku = { 'client_auth' },
    issuer = { cert = tca, key = tkey },
    attest = function(rd) return opts.evidence:attestation(rd, 'cert') end })
  if not id then
    return nil, err, code
  end
  local pinned = ratls.tls(id, { ca = tmp.ca_cert, skip_hostname = true, verify = function(peer)
    return peer.preverify and peer.der == peer_der
  end })
  local resp
  resp, err, code = post(base .. '/prpc/GetKmsKey?json', cjson.encode({ vm_config = opts.vm_config or '' }),
    pinned, opts.timeout_ms)
  if not resp then
    return nil, err, code
  end
  local k = type(resp.keys) == 'table' and resp.keys[1]
  if type(k) ~= 'table' or type(k.ca_key) ~= 'string' or type(k.k256_key) ~= 'string' then
    return fail('ESOURCE', 'GetKmsKey answer lacks keys[1].ca_key / k256_key')
  end
  local root_key = x509.load_key(k.ca_key)
  local k256 = require('moonstack.crypto').unhex(k.k256_key)
  local tmp_key = type(resp.temp_ca_key) == 'string' and x509.load_key(resp.temp_ca_key)
  if not root_key or not k256 or not tmp_key then
    return fail('ESOURCE', 'GetKmsKey answer holds an unreadable key')
  end
  if root_key:spki() ~= root:spki() then
    return fail('ESOURCE', "the root CA key handed over is not the root certificate's key")
  end
  local m
  m, err, code = keys.write(opts.key_dir, { root_key = root_key, root_cert = root, root_k256 = k256,
    tmp_ca_key = tmp_key, tmp_ca_cert = tca }, { sealer = opts.sealer })
  if not m then
    return nil, err, code
  end
  log.info('root keys replicated', { source = base, key_dir = opts.key_dir })
  return m
end

return M
