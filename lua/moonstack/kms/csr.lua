-- SPDX-License-Identifier: Apache-2.0
-- dstack's SignCert CSR in SCALE (moonstack.core.scale; kms-vmm-gateway.md §3.5):
-- CertSigningRequestV2 = confirm String · pubkey Vec<u8> (SPKI DER) · CertConfigV2 · the
-- VersionedAttestation bytes appended raw (no length).
-- CertConfigV2 = org_name Option<String> · subject String · subject_alt_names Vec<String> ·
-- usage_server_auth bool · usage_client_auth bool · ext_quote bool · ext_app_info bool ·
-- not_before Option<u64> · not_after Option<u64>. V1 (api_version 1) = confirm · pubkey ·
-- CertConfig (the first six fields of CertConfigV2) · quote Vec<u8> · event_log Vec<u8> (JSON).
local scale = require('moonstack.core.scale')

local M = {}

local concat = table.concat

--- The confirm string a CSR must start with.
M.CONFIRM = 'please sign cert:'

local function u64(v)
  return scale.uint(v, 8)
end

--- Encode a CertSigningRequestV2 { confirm?, pubkey (SPKI DER), config = { org_name?, subject,
--- subject_alt_names = {}, usage_server_auth, usage_client_auth, ext_quote, ext_app_info,
--- not_before?, not_after? }, attestation (raw bytes) }.
function M.encode_v2(csr)
  local c = csr.config or {}
  local sans = { scale.compact(#(c.subject_alt_names or {})) }
  for _, s in ipairs(c.subject_alt_names or {}) do
    sans[#sans + 1] = scale.bytes(s)
  end
  return concat({ scale.bytes(csr.confirm or M.CONFIRM), scale.bytes(csr.pubkey),
    scale.option(c.org_name, scale.bytes), scale.bytes(c.subject or ''), concat(sans),
    scale.bool(c.usage_server_auth), scale.bool(c.usage_client_auth), scale.bool(c.ext_quote),
    scale.bool(c.ext_app_info), scale.option(c.not_before, u64), scale.option(c.not_after, u64),
    csr.attestation or '' })
end

local function config_v1(c)
  local sans = { scale.compact(#(c.subject_alt_names or {})) }
  for _, s in ipairs(c.subject_alt_names or {}) do
    sans[#sans + 1] = scale.bytes(s)
  end
  return concat({ scale.option(c.org_name, scale.bytes), scale.bytes(c.subject or ''), concat(sans),
    scale.bool(c.usage_server_auth), scale.bool(c.usage_client_auth), scale.bool(c.ext_quote) })
end

--- Encode a CertSigningRequestV1 { confirm?, pubkey, config = { org_name?, subject,
--- subject_alt_names, usage_server_auth, usage_client_auth, ext_quote }, quote, event_log }.
function M.encode_v1(csr)
  return concat({ scale.bytes(csr.confirm or M.CONFIRM), scale.bytes(csr.pubkey),
    config_v1(csr.config or {}), scale.bytes(csr.quote or ''), scale.bytes(csr.event_log or '') })
end

-- The CertConfig fields V1 and V2 share, in wire order (V2 appends ext_app_info and the
-- validity window).
local function read_config_common(r)
  return {
    org_name = r:option('org_name', r.bytes),
    subject = r:bytes('subject'),
    subject_alt_names = r:vec('subject_alt_names', r.bytes),
    usage_server_auth = r:bool('usage_server_auth'),
    usage_client_auth = r:bool('usage_client_auth'),
    ext_quote = r:bool('ext_quote'),
  }
end

--- Decode a CertSigningRequestV1 (the table encode_v1 takes; config also has ext_app_info =
--- false as V2 does), or nil, 'ESCALE: ...'. Trailing bytes are an error.
function M.decode_v1(data)
  assert(type(data) == 'string', 'csr.decode_v1: data must be a string')
  return scale.pcall(function()
    local r = scale.reader(data)
    local out = { confirm = r:bytes('confirm'), pubkey = r:bytes('pubkey') }
    local c = read_config_common(r)
    c.ext_app_info = false
    out.config = c
    out.quote = r:bytes('quote')
    out.event_log = r:bytes('event_log')
    if r.pos <= #data then
      r:fail(('%d trailing bytes'):format(#data - r.pos + 1))
    end
    return out
  end)
end

--- Decode a CertSigningRequestV2 (the table encode_v2 takes), or nil, 'ESCALE: ...'.
--- The confirm string is returned, not checked.
function M.decode_v2(data)
  assert(type(data) == 'string', 'csr.decode_v2: data must be a string')
  return scale.pcall(function()
    local r = scale.reader(data)
    local out = { confirm = r:bytes('confirm'), pubkey = r:bytes('pubkey') }
    local c = read_config_common(r)
    c.ext_app_info = r:bool('ext_app_info')
    c.not_before = r:option('not_before', function(rr, w) return rr:uint(8, w) end)
    c.not_after = r:option('not_after', function(rr, w) return rr:uint(8, w) end)
    out.config = c
    out.attestation = r:rest()
    return out
  end)
end

return M
