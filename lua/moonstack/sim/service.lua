-- SPDX-License-Identifier: Apache-2.0
-- The simulated quote service a VMM runs for each VM whose guest has no TDX: the host side of
-- the `sim-remote` TEE backend (moonstack.sim.remote). As a real TD asks the host's QGS for
-- its quotes and the TDX module for RTMR extensions, the guest asks this service over its
-- channel (moonstack.channel), so the simulator's attestation key never enters the guest. The
-- service holds the VM's simulated TD (moonstack.sim, CVM name = the VM id) with the launch
-- values the VMM derived from the image (MRTD, RTMR0-2) and answers JSON over HTTP:
--
--   POST /tee/GetQuote      { report_data = hex (<= 64 bytes) }  -> { quote = hex }
--   POST /tee/ExtendRtmr    { index = 2 | 3, digest = hex (48 bytes) } -> {}
--   POST /tee/Measurements  {} -> { mrtd, rtmr0, rtmr1, rtmr2, rtmr3, ... = hex }
--   POST /tee/BootEvents    {} -> { event_log = TdxEvent JSON text }: the launch events whose
--                           replay gives RTMR0-2 (what a real guest reads from its CCEL)
--
-- Only RTMR2 and RTMR3 can be extended by a guest, as on TDX (TDG.MR.RTMR.EXTEND); bodies are
-- small and strictly checked.
local cjson = require('cjson.safe')
local codec = require('moonstack.core.codec')
local eventlog = require('moonstack.tdx.eventlog')

local M = {}

--- Largest request body accepted.
M.MAX_BODY = 1024

local function bad(msg)
  return 400, { error = msg }
end

local function hex_field(obj, name, max_bytes, exact)
  local v = obj[name]
  if type(v) ~= 'string' or not v:match('^[0-9a-fA-F]*$') or #v % 2 ~= 0 then
    return nil, name .. ': expected hex'
  end
  if exact and #v ~= 2 * exact then
    return nil, ('%s: expected %d bytes'):format(name, exact)
  end
  if max_bytes and #v > 2 * max_bytes then
    return nil, ('%s: at most %d bytes'):format(name, max_bytes)
  end
  return codec.unhex(v)
end

-- The handlers, by method: fn(backend, obj) -> status, body.
local METHODS = {
  GetQuote = function(tee, obj)
    local rd, err = hex_field(obj, 'report_data', 64)
    if not rd then
      return bad(err)
    end
    local quote, qerr = tee:get_quote(rd)
    if not quote then
      return 500, { error = tostring(qerr) }
    end
    return 200, { quote = codec.hex(quote) }
  end,
  ExtendRtmr = function(tee, obj)
    if obj.index ~= 2 and obj.index ~= 3 then
      return bad('index: a guest extends RTMR2 or RTMR3 only')
    end
    local digest, err = hex_field(obj, 'digest', nil, 48)
    if not digest then
      return bad(err)
    end
    local ok, eerr = tee:extend_rtmr(obj.index, digest)
    if not ok then
      return 500, { error = tostring(eerr) }
    end
    return 200, {}
  end,
  BootEvents = function(_, _, opts)
    return 200, '{"event_log":' .. cjson.encode(eventlog.to_json(opts.boot_events or {})) .. '}'
  end,
  Measurements = function(tee)
    local td, err = tee:measurements()
    if not td then
      return 500, { error = tostring(err) }
    end
    local out = {}
    for k, v in pairs(td) do
      out[k] = type(v) == 'string' and codec.hex(v) or v
    end
    return 200, out
  end,
}

--- Route the service's methods on HTTP server `srv` (moonstack.http.server) over TEE backend
--- `tee` (a `sim` backend of the VM). opts.boot_events: the launch events (TdxEvent tables).
--- Returns srv.
function M.attach(srv, tee, opts)
  opts = opts or {}
  srv:post('/tee/:method', function(req)
    local fn = METHODS[req.params.method]
    if not fn then
      return 404, { error = 'unknown method ' .. tostring(req.params.method) }
    end
    if #(req.body or '') > M.MAX_BODY then
      return bad('body too large')
    end
    local obj = cjson.decode(req.body ~= '' and req.body or '{}')
    if type(obj) ~= 'table' then
      return bad('body: expected a JSON object')
    end
    return fn(tee, obj, opts)
  end)
  return srv
end

return M
