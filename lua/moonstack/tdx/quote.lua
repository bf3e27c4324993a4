-- SPDX-License-Identifier: Apache-2.0
-- DCAP quotes (TDX v4/v5, SGX v3) for Lua: decode a quote given as binary or hex text, parse
-- it (moonstack.native.tdx, in place, every length checked) and describe it as a flat,
-- JSON-ready table of hex strings, as `moonstack quote show` prints it.
local native = require('moonstack.native.tdx')
local fs = require('moonstack.core.fs')
local codec = require('moonstack.core.codec')
local errors = require('moonstack.core.errors')

local M = {}

local hex = codec.hex

--- Turn file contents into quote bytes: hex text (optional 0x, surrounding whitespace
--- allowed) is decoded, anything else is taken as binary. Returns bytes, 'hex'|'binary' or
--- nil, 'EQUOTE: ...', 'EQUOTE'.
---@param data string
function M.decode_input(data)
  if type(data) ~= 'string' then
    error('quote.decode_input: data must be a string', 2)
  end
  local text = data:match('^%s*(.-)%s*$')
  local digits = text:gsub('^0[xX]', '')
  if #text == 0 then
    return errors.fail('EQUOTE', 'empty input')
  end
  if #digits > 0 and not digits:find('[^0-9a-fA-F]') then
    if #digits % 2 ~= 0 then
      return errors.fail('EQUOTE', ('hex input has an odd number of digits (%d)'):format(#digits))
    end
    return codec.unhex(digits), 'hex'
  end
  if text:sub(1, 2):lower() == '0x' then
    local bad = digits:find('[^0-9a-fA-F]')
    return errors.fail('EQUOTE', ('hex input has a non-hex character at position %d'):format(bad + 2))
  end
  return data, 'binary'
end

--- Read a quote file (binary or hex text). Returns bytes, format or nil, msg, code.
---@param path string
function M.read_file(path)
  local data, err, code = fs.read_file(path)
  if not data then
    return nil, err, code
  end
  return M.decode_input(data)
end

--- Parse quote bytes. Returns the native table (binary fields; see the native's README) or
--- nil, 'EQUOTE: <field> at offset N: <why>', 'EQUOTE', offset.
---@param bytes string
function M.parse(bytes)
  if type(bytes) ~= 'string' then
    error('quote.parse: bytes must be a string', 2)
  end
  return native.parse_quote(bytes)
end

local function enclave_report(r)
  return {
    cpu_svn = hex(r.cpu_svn), misc_select = r.misc_select, attributes = hex(r.attributes),
    mr_enclave = hex(r.mr_enclave), mr_signer = hex(r.mr_signer), isv_prod_id = r.isv_prod_id,
    isv_svn = r.isv_svn, report_data = hex(r.report_data),
  }
end

local TD_FIELDS = { 'tee_tcb_svn', 'mr_seam', 'mr_signer_seam', 'seam_attributes', 'td_attributes',
  'xfam', 'mr_config_id', 'mr_owner', 'mr_owner_config', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3',
  'report_data', 'tee_tcb_svn2', 'mr_servicetd' }

--- Describe a parsed quote as a flat table of JSON-ready values (bytes as lowercase hex):
--- header fields, the report body's fields at the top level (`mrtd`, `rtmr0`..), the
--- signature data, the QE report, and the PCK chain (subjects, validity, SGX extension).
--- Returns the table, or nil, 'EQUOTE: ...', 'EQUOTE' when the embedded chain is malformed.
---@param q table from parse()
function M.describe(q)
  local d = {
    version = q.version, attestation_key_type = q.attestation_key_type,
    tee_type = ('0x%x'):format(q.tee_type), tee = q.tee, qe_svn = q.qe_svn, pce_svn = q.pce_svn,
    qe_vendor_id = hex(q.qe_vendor_id), user_data = hex(q.user_data), body_type = q.body_type,
    body_size = q.body_size, size = q.size, signed_len = q.signed_len, trailing_bytes = q.trailing,
    sig_data_len = q.sig_data_len, signature = hex(q.signature),
    attestation_pubkey = hex(q.attestation_key), cert_data_type = q.cert_type,
    inner_cert_type = q.inner_cert_type, qe_hash_ok = q.qe_hash_ok,
  }
  if q.tee == 'TDX' then
    for _, k in ipairs(TD_FIELDS) do
      if q.report[k] then
        d[k] = hex(q.report[k])
      end
    end
    d.mrtd = hex(q.report.mr_td)
  else
    for k, v in pairs(enclave_report(q.report)) do
      d[k] = v
    end
  end
  if q.qe_report then
    d.qe_report = enclave_report(q.qe_report)
    d.qe_report_signature = hex(q.qe_report_signature)
    d.qe_auth_data = hex(q.qe_auth_data)
  end
  if q.pck_chain then
    local certs, err, code = native.parse_pem_chain(q.pck_chain)
    if not certs then
      return nil, err, code
    end
    d.pck_chain, d.pck_chain_subjects = {}, {}
    for i, c in ipairs(certs) do
      d.pck_chain[i] = { subject = c.subject, issuer = c.issuer, serial = c.serial,
        not_before = c.not_before, not_after = c.not_after, sha256 = hex(c.sha256) }
      d.pck_chain_subjects[i] = c.subject
      if c.sgx and not d.pck_extension then
        d.pck_extension = { fmspc = hex(c.sgx.fmspc), pceid = hex(c.sgx.pceid),
          pcesvn = c.sgx.pcesvn, cpusvn = hex(c.sgx.cpusvn), ppid = hex(c.sgx.ppid),
          tcb_components = c.sgx.tcb_components }
        d.fmspc = d.pck_extension.fmspc
      end
    end
  end
  return d
end

--- The order `moonstack quote show` prints the scalar fields in.
M.FIELD_ORDER = { 'version', 'tee_type', 'tee', 'attestation_key_type', 'qe_svn', 'pce_svn',
  'qe_vendor_id', 'user_data', 'body_type', 'size', 'signed_len', 'trailing_bytes',
  'tee_tcb_svn', 'mr_seam', 'mr_signer_seam', 'seam_attributes', 'td_attributes', 'xfam', 'mrtd',
  'mr_config_id', 'mr_owner', 'mr_owner_config', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3',
  'tee_tcb_svn2', 'mr_servicetd', 'cpu_svn', 'misc_select', 'attributes', 'mr_enclave',
  'mr_signer', 'isv_prod_id', 'isv_svn', 'report_data', 'sig_data_len', 'attestation_pubkey',
  'cert_data_type', 'inner_cert_type', 'qe_hash_ok', 'fmspc' }

--- The TD report of a quote just obtained: `report_of(source:get_quote(rd))` passes a
--- source's failure through (nil, msg, code), parses the quote, and returns its report.
function M.report_of(q, err, code)
  if not q then
    return nil, err, code
  end
  local parsed
  parsed, err, code = M.parse(q)
  if not parsed then
    return nil, err, code
  end
  return parsed.report
end

return M
