-- SPDX-License-Identifier: Apache-2.0
-- Atlas's session binding (concrete-security/atlas, core/src/dstack/verifier.rs), as data and
-- pure functions shared by the server and the client:
--   * the client POSTs /tdx_quote {"nonce_hex": 32 random bytes as hex} on the TLS connection;
--   * the server answers {"quote": GetQuoteResponse} (quote hex, event_log JSON text,
--     report_data hex, vm_config) with report_data = SHA-512(nonce || EKM), EKM = the TLS
--     exporter with label "EXPORTER-Channel-Binding", no context, 32 bytes (RFC 9266);
--   * the certificate is bound by the runtime (RTMR3) event "New TLS Certificate" whose payload
--     is the lowercase hex text of SHA-256(certificate DER); the last such event counts.
local crypto = require('moonstack.crypto')
local json = require('moonstack.core.json')

local M = {}

M.EXPORTER_LABEL = 'EXPORTER-Channel-Binding'
M.EXPORTER_LEN = 32
M.NONCE_LEN = 32
M.QUOTE_PATH = '/tdx_quote'
M.CERT_EVENT = 'New TLS Certificate'
--- The largest /tdx_quote request body accepted.
M.MAX_REQUEST_BODY = 4096

--- report_data = SHA-512(nonce || ekm) (64 bytes).
function M.report_data(nonce, ekm)
  assert(type(nonce) == 'string' and type(ekm) == 'string', 'binding.report_data: two strings')
  return crypto.sha512(nonce .. ekm)
end

--- The payload of the certificate event for certificate `der`: hex(SHA-256(der)) as text.
function M.cert_event_payload(der)
  return crypto.hex(crypto.sha256(der))
end

--- The request body for `nonce`.
function M.request_body(nonce)
  return json.encode({ nonce_hex = crypto.hex(nonce) })
end

--- The nonce of a /tdx_quote request body: 32 bytes, or nil, 'EINVAL: ...', 'EINVAL'.
function M.parse_request(body)
  local v = type(body) == 'string' and #body <= M.MAX_REQUEST_BODY and json.decode(body)
  if type(v) ~= 'table' or type(v.nonce_hex) ~= 'string' then
    return nil, 'EINVAL: the body must be a JSON object with nonce_hex', 'EINVAL'
  end
  local nonce = #v.nonce_hex == 2 * M.NONCE_LEN and crypto.unhex(v.nonce_hex)
  if not nonce then
    return nil, ('EINVAL: nonce_hex must be %d bytes as hex'):format(M.NONCE_LEN), 'EINVAL'
  end
  return nonce
end

--- The answer body around a GetQuoteResponse given as JSON text.
function M.response_body(quote_json)
  return '{"quote":' .. quote_json .. '}'
end

--- Parse an answer body: { quote = bytes, event_log = JSON text, vm_config, report_data =
--- bytes? } or nil, 'EQUOTE: ...', 'EQUOTE'.
function M.parse_response(body)
  local v = type(body) == 'string' and json.decode(body)
  local q = type(v) == 'table' and v.quote
  if type(q) ~= 'table' or type(q.quote) ~= 'string' or type(q.event_log) ~= 'string' then
    return nil, 'EQUOTE: the /tdx_quote answer is not {"quote": {quote, event_log, ...}}', 'EQUOTE'
  end
  local bytes = crypto.unhex(q.quote)
  if not bytes or #bytes < 48 then
    return nil, 'EQUOTE: quote.quote is not a hex quote', 'EQUOTE'
  end
  return { quote = bytes, event_log = q.event_log,
    vm_config = type(q.vm_config) == 'string' and q.vm_config or nil,
    report_data = type(q.report_data) == 'string' and crypto.unhex(q.report_data) or nil }
end

--- The certificate hash (hex text) the event log `events` (decoded TdxEvent tables) binds:
--- the payload of the last "New TLS Certificate" event, or nil when there is none.
function M.logged_cert_hash(events)
  local found
  for _, e in ipairs(events) do
    if type(e) == 'table' and e.event == M.CERT_EVENT and type(e.event_payload) == 'string' then
      found = crypto.unhex(e.event_payload) or ''
    end
  end
  return found
end

return M
