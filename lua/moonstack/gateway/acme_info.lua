-- SPDX-License-Identifier: Apache-2.0
-- The certbot's transparency evidence (kms-vmm-gateway.md §6.9): quotes whose report_data is
-- SHA-512("zt-cert:" || SPKI DER of a certificate key), or SHA-512("acme-account:" || account
-- URI), from the TEE the gateway runs in — its guest agent (`attestation = { agent = PATH }`,
-- GetQuote on the dstack socket) or, for tests and development, a simulated TDX platform
-- (`attestation = { sim = DIR }`); and the AcmeInfo answer built from the store. The quote of
-- an entry is a GetQuoteResponse as JSON text { quote (hex), event_log, report_data (hex),
-- vm_config }, as upstream serves it.
local crypto = require('moonstack.crypto')
local json = require('moonstack.core.json')

local M = {}

--- The report_data of a certificate key's evidence.
function M.cert_report_data(spki_der)
  return crypto.sha512('zt-cert:' .. spki_der)
end

--- The report_data of the ACME account's evidence.
function M.account_report_data(account_uri)
  return crypto.sha512('acme-account:' .. account_uri)
end

--- The quote source of `cfg` ({ agent = PATH } or { sim = DIR, cvm? }), or nil (no evidence:
--- the certbot runs without it and says so). Returns an object with :quote(report_data) ->
--- JSON text, or nil, msg, code; and :emit_event(name, payload) -> true or nil, msg, code (a
--- runtime event in RTMR3: EmitEvent on the agent, the simulated TD's RTMR3 and log).
function M.source(cfg)
  if not cfg then
    return nil
  end
  if cfg.agent then
    local guest = require('moonstack.agent.client').new(cfg.agent)
    return { kind = 'agent', quote = function(_, rd)
      local q, err, code = guest:quote(rd)
      if not q then
        return nil, err, code
      end
      return json.encode(q)
    end, emit_event = function(_, name, payload)
      return guest:emit_event(name, payload)
    end }
  end
  require('moonstack.tdx.tee') -- registers the backends
  local tee, err, code = require('moonstack.core.tee').create('sim', { dir = cfg.sim,
    cvm = cfg.cvm or 'gateway', create = true })
  if not tee then
    return nil, 'attestation.sim: ' .. tostring(err), code
  end
  local ev = require('moonstack.tdx.evidence')
  local source = ev.new({ tee = tee, vm_config = '' })
  return { kind = 'sim', quote = function(_, rd)
    local q, qerr, qcode = source:quote(rd)
    if not q then
      return nil, qerr, qcode
    end
    local events
    events, qerr, qcode = source:events()
    if not events then
      return nil, qerr, qcode
    end
    return json.encode({ quote = crypto.hex(q), event_log = ev.event_log_json(events, 'quote'),
      report_data = crypto.hex(rd), vm_config = '' })
  end, emit_event = function(_, name, payload)
    local ok, eerr, ecode = tee:emit_event(name, payload, { version = 1 })
    if not ok then
      return nil, eerr, ecode
    end
    source:invalidate()
    return true
  end }
end

local function decode(text)
  local v = text and json.decode(text)
  return type(v) == 'table' and v or nil
end

--- The AcmeInfo answer for base domain `domain` from `store` (moonstack.gateway.cert_store's
--- interface): { account_uri, hist_keys (SPKI DER list), quoted_hist_keys = { { public_key,
--- quote, attestation } }, account_quote, account_attestation, active_cert, base_domain }.
function M.info(store, domain)
  local acct = decode(store:get('acme/account')) or {}
  local aatt = decode(store:get('acme/attestation')) or {}
  local hist = decode(store:get('cert/' .. domain .. '/attestation/history')) or {}
  local data = decode(store:get('cert/' .. domain .. '/data')) or {}
  local keys, quoted = {}, {}
  for _, h in ipairs(hist) do
    local pk = type(h.public_key) == 'string' and crypto.unhex(h.public_key)
    if pk then
      keys[#keys + 1] = pk
      quoted[#quoted + 1] = { public_key = pk, quote = type(h.quote) == 'string' and h.quote or '',
        attestation = type(h.attestation) == 'string' and h.attestation or '' }
    end
  end
  return { account_uri = type(acct.account_uri) == 'string' and acct.account_uri or '',
    hist_keys = keys, quoted_hist_keys = quoted,
    account_quote = type(aatt.quote) == 'string' and aatt.quote or '',
    account_attestation = type(aatt.attestation) == 'string' and aatt.attestation or '',
    active_cert = type(data.chain) == 'string' and data.chain or '', base_domain = domain }
end

--- The AcmeInfo answer as JSON-ready (bytes as hex, as upstream's pRPC JSON writes them).
function M.info_json(info)
  local out = { account_uri = info.account_uri, hist_keys = json.array(),
    quoted_hist_keys = json.array(), account_quote = info.account_quote,
    account_attestation = info.account_attestation, active_cert = info.active_cert,
    base_domain = info.base_domain }
  for i, k in ipairs(info.hist_keys) do
    out.hist_keys[i] = crypto.hex(k)
  end
  for i, q in ipairs(info.quoted_hist_keys) do
    out.quoted_hist_keys[i] = { public_key = crypto.hex(q.public_key), quote = q.quote,
      attestation = q.attestation }
  end
  return out
end

return M
