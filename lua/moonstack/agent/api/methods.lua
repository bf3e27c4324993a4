-- SPDX-License-Identifier: Apache-2.0
-- The method tables of the three guest services over one agent context: DstackGuest
-- (dstack.sock), Tappd (tappd.sock, legacy) and Worker (the public listener). Each method is
-- { input, output, call(args, req) [, cache] } for moonstack.core.prpc; the semantics are
-- guest-and-attestation.md §1.3–1.5.
local attestation = require('moonstack.tdx.attestation')
local dstack = require('moonstack.crypto.dstack')
local evidence_lib = require('moonstack.tdx.evidence')
local info_lib = require('moonstack.agent.api.info')
local certs_lib = require('moonstack.agent.api.certs')
local keys = require('moonstack.agent.api.keys')
local log = require('moonstack.core.log').new('agent.api')
local messages = require('moonstack.agent.api.messages')

local M = {}

local function m(input, output, call, cache)
  return { input = assert(messages[input], input), output = assert(messages[output], output),
    call = call, cache = cache }
end

--- The state behind the methods of `ctx` (it survives a code swap): { evidence, info,
--- certs }. opts: dmi_dir, gpu_file (moonstack.agent.api.info).
function M.state(ctx, opts)
  local ev = evidence_lib.new(ctx)
  local info = info_lib.new(ctx, ev, opts or {})
  local certs = certs_lib.new(ctx, ev, function()
    local fields, err, code = info:app_info_ext_fields()
    if not fields then
      return nil, err, code
    end
    return attestation.app_info_ext(fields)
  end)
  return { evidence = ev, info = info, certs = certs }
end

--- A quote over `rd` and the event log (its quote form) it goes with: q, log or nil, msg, code.
function M.quote_and_log(ev, rd)
  local events, err, code = ev:events()
  if not events then
    return nil, err, code
  end
  local q
  q, err, code = ev:quote(rd)
  if not q then
    return nil, err, code
  end
  return q, evidence_lib.event_log_json(events, 'quote')
end

-- GetQuote: a quote over the padded report_data, with the event log in its quote form.
local function get_quote(ctx, ev, a)
  local rd, err, code = evidence_lib.pad_report_data(a.report_data)
  if not rd then
    return nil, err, code
  end
  local q, log_json
  q, log_json, code = M.quote_and_log(ev, rd)
  if not q then
    return nil, log_json, code
  end
  return { quote = q, event_log = log_json, report_data = rd, vm_config = ctx.vm_config or '' }
end

-- Tappd.TdxQuote: report_data hashed as the legacy API says.
local function tdx_quote(ev, a)
  local rd, alg, prefix = evidence_lib.tdx_quote_report_data(a.report_data, a.hash_algorithm, a.prefix)
  if not rd then
    return nil, alg, prefix
  end
  local q, log_json, code = M.quote_and_log(ev, rd)
  if not q then
    return nil, log_json, code
  end
  return { quote = q, event_log = log_json, hash_algorithm = alg, prefix = prefix }
end

-- GetKey's key and signature chain, answered under the field names `key_field` and
-- `chain_field` (DstackGuest.GetKey and Tappd.DeriveK256Key differ only there).
local function app_key(ctx, a, key_field, chain_field)
  local r, err, code = keys.get_key(ctx, a.path, a.purpose, a.algorithm)
  if not r then
    return nil, err, code
  end
  return { [key_field] = r.key, [chain_field] = r.signature_chain }
end

-- The DstackGuest service (dstack.sock).
local function dstack_service(ctx, st, opts)
  local ev, info, certs = st.evidence, st.info, st.certs
  return {
    GetTlsKey = m('GetTlsKeyArgs', 'GetTlsKeyResponse', function(a) return certs:get_tls_key(a) end),
    GetKey = m('GetKeyArgs', 'GetKeyResponse', function(a)
      return app_key(ctx, a, 'key', 'signature_chain')
    end, keys.cache_key),
    GetQuote = m('RawQuoteArgs', 'GetQuoteResponse', function(a) return get_quote(ctx, ev, a) end),
    Attest = m('RawQuoteArgs', 'AttestResponse', function(a)
      local rd, err, code = evidence_lib.pad_report_data(a.report_data)
      if not rd then
        return nil, err, code
      end
      local bytes
      bytes, err, code = ev:attestation(rd, 'full')
      if not bytes then
        return nil, err, code
      end
      return { attestation = bytes }
    end),
    EmitEvent = m('EmitEventArgs', 'Empty', function(a)
      if opts.emit_event == false then
        return nil, 'EINVAL: EmitEvent is disabled: runtime RTMR3 events are system-owned', 'EINVAL'
      end
      local digest, err, code = ctx.tee:emit_event(a.event, a.payload)
      ev:invalidate()
      if not digest then
        return nil, err, code
      end
      log.info('runtime event emitted', { event = a.event, payload_bytes = #a.payload })
      return {}
    end),
    Info = m('Empty', 'AppInfo', function() return info:app_info() end),
    Sign = m('SignRequest', 'SignResponse', function(a)
      return keys.sign(ctx, a.algorithm, a.data)
    end),
    Verify = m('VerifyRequest', 'VerifyResponse', function(a)
      local valid, err, code = keys.verify(a.algorithm, a.data, a.signature, a.public_key)
      if valid == nil then
        return nil, err, code
      end
      return { valid = valid }
    end),
    Version = m('Empty', 'WorkerVersion', info_lib.version),
    GpuInfo = m('Empty', 'GpuInfoResponse', function() return info:gpu_info() end),
  }
end

-- The legacy Tappd service (tappd.sock).
local function tappd_service(ctx, st)
  local ev, info, certs = st.evidence, st.info, st.certs
  return {
    DeriveKey = m('DeriveKeyArgs', 'GetTlsKeyResponse', function(a) return certs:derive_key(a) end),
    DeriveK256Key = m('GetKeyArgs', 'DeriveK256KeyResponse', function(a)
      return app_key(ctx, a, 'k256_key', 'k256_signature_chain')
    end, keys.cache_key),
    TdxQuote = m('TdxQuoteArgs', 'TdxQuoteResponse', function(a) return tdx_quote(ev, a) end),
    RawQuote = m('RawQuoteArgs', 'TdxQuoteResponse', function(a)
      return tdx_quote(ev, { report_data = a.report_data, hash_algorithm = 'raw', prefix = '' })
    end),
    Info = m('Empty', 'AppInfo', function() return info:app_info() end),
    Version = m('Empty', 'WorkerVersion', info_lib.version),
  }
end

-- The Worker service (the public listener).
local function worker_service(ctx, st)
  local ev, info = st.evidence, st.info
  return {
    Info = m('Empty', 'AppInfo', function() return info:app_info(ctx.public or {}) end),
    Version = m('Empty', 'WorkerVersion', info_lib.version),
    GetAttestationForAppKey = m('GetAttestationForAppKeyRequest', 'GetQuoteResponse', function(a)
      local pub, err, code = keys.sign_pubkey(ctx, a.algorithm)
      if not pub then
        return nil, err, code
      end
      local alg = a.algorithm == 'ed25519' and 'ed25519' or 'secp256k1'
      local rd
      rd, err, code = dstack.app_key_report_data(alg, pub)
      if not rd then
        return nil, err, code
      end
      return get_quote(ctx, ev, { report_data = rd })
    end),
  }
end

--- Build the services of `ctx`. opts: emit_event (default true: EmitEvent extends RTMR3;
--- false answers 400 as dstack 0.6 does), dmi_dir, gpu_file. `st` (optional) is the state
--- to serve (M.state; kept across a code swap). Returns { dstack, tappd, worker, evidence,
--- info, certs } (the method tables and the state behind them).
function M.build(ctx, opts, st)
  opts = opts or {}
  st = st or M.state(ctx, opts)
  return { evidence = st.evidence, info = st.info, certs = st.certs,
    dstack = dstack_service(ctx, st, opts), tappd = tappd_service(ctx, st),
    worker = worker_service(ctx, st) }
end

return M
