-- SPDX-License-Identifier: Apache-2.0
-- MR_CONFIG_ID: the 48-byte TDX launch field the VMM may set to pin what the CVM boots (spec
-- kms-vmm-gateway.md §1.5). The guest checks it against what it measured; all zero = no pin.
--   byte 0 = 1: bytes 1..33 = compose_hash
--   byte 0 = 2: bytes 1..33 = Keccak-256(compose_hash || app_id || kp_byte ||
--               key_provider_id), kp_byte none 0, local 1, kms 2, tpm 3
--   byte 0 = 3: bytes 1..33 = SHA-256("dstack-mr-config-v3:" || 0x00 || document), with the
--               MrConfigV3 document from sys-config mr_config; its present fields must equal
--               the local values
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local quote = require('moonstack.tdx.quote')

local M = {}

local KP_BYTE = { none = 0, ['local'] = 1, kms = 2, tpm = 3 }

local function id(version, digest)
  return string.char(version) .. digest .. ('\0'):rep(48 - 1 - #digest)
end

--- The expected MR_CONFIG_ID V1 for a compose hash.
function M.v1(compose_hash)
  return id(1, compose_hash)
end

--- The expected MR_CONFIG_ID V2. kp = 'none'|'local'|'kms'|'tpm'.
function M.v2(compose_hash, app_id, kp, key_provider_id)
  return id(2, crypto.keccak256(compose_hash .. app_id .. string.char(KP_BYTE[kp] or 0)
    .. (key_provider_id or '')))
end

--- The expected MR_CONFIG_ID V3 of a MrConfigV3 document (the exact string).
function M.v3(document)
  return id(3, crypto.sha256('dstack-mr-config-v3:\0' .. document))
end

-- Compare one optional hex field of the V3 document with a local value.
local function field(doc, key, value)
  local v = doc[key]
  if v == nil or v == cjson.null then
    return true
  end
  if type(v) ~= 'string' or crypto.unhex(v) ~= value then
    return errors.fail('EDENIED', ('mr_config %s does not match the local value'):format(key))
  end
  return true
end

--- Check a MrConfigV3 document against local values (l = { app_id, compose_hash,
--- key_provider, key_provider_id, instance_id, init_script_hashes }).
function M.check_v3_document(document, l)
  local doc = cjson.decode(document or '')
  if type(doc) ~= 'table' then
    return errors.fail('EINVAL', 'sys-config mr_config is not a JSON document')
  end
  if doc.version ~= 3 then
    return errors.fail('EINVAL', 'mr_config version must be 3')
  end
  for _, f in ipairs({ { 'app_id', l.app_id }, { 'compose_hash', l.compose_hash },
      { 'key_provider_id', l.key_provider_id }, { 'instance_id', l.instance_id } }) do
    local ok, err, code = field(doc, f[1], f[2] or '')
    if not ok then
      return nil, err, code
    end
  end
  if doc.key_provider ~= nil and doc.key_provider ~= l.key_provider then
    return errors.fail('EDENIED', 'mr_config key_provider does not match the local value')
  end
  if type(doc.init_script_hashes) == 'table' then
    local want = l.init_script_hashes or {}
    if #doc.init_script_hashes ~= #want then
      return errors.fail('EDENIED', 'mr_config init_script_hashes do not match the local scripts')
    end
    for i, h in ipairs(doc.init_script_hashes) do
      if type(h) ~= 'string' or crypto.unhex(h) ~= want[i] then
        return errors.fail('EDENIED', 'mr_config init_script_hashes do not match the local scripts')
      end
    end
  end
  return true
end

--- Check a 48-byte MR_CONFIG_ID against local values `l` (see check_v3_document; plus
--- mr_config_document for V3). Returns true or nil, 'EDENIED: ...', code.
function M.check(mr_config_id, l)
  if mr_config_id == nil or mr_config_id == ('\0'):rep(48) then
    return true
  end
  local v = mr_config_id:byte(1)
  local expected
  if v == 1 then
    expected = M.v1(l.compose_hash)
  elseif v == 2 then
    expected = M.v2(l.compose_hash, l.app_id, l.key_provider, l.key_provider_id)
  elseif v == 3 then
    if not l.mr_config_document then
      return errors.fail('EDENIED', 'mr_config is required for TDX MR_CONFIG_ID v3')
    end
    local ok, err, code = M.check_v3_document(l.mr_config_document, l)
    if not ok then
      return nil, err, code
    end
    expected = M.v3(l.mr_config_document)
  else
    return errors.fail('EDENIED', ('invalid mr_config_id version %d'):format(v))
  end
  if not crypto.equal(expected, mr_config_id) then
    return errors.fail('EDENIED', ('mr_config_id %s does not match the app (expected %s)'):format(
      crypto.hex(mr_config_id), crypto.hex(expected)))
  end
  return true
end

--- The TD's MR_CONFIG_ID from a backend: its measurements() when it has them (sim), else a
--- quote over zero report_data. nil, msg, code when neither works.
function M.read(tee)
  if tee.measurements then
    local m, err, code = tee:measurements()
    if not m then
      return nil, err, code
    end
    return m.mr_config_id
  end
  local report, err, code = quote.report_of(tee:get_quote(''))
  if not report then
    return nil, err, code
  end
  return report.mr_config_id
end

return M
