-- SPDX-License-Identifier: Apache-2.0
-- dstack's VersionedAttestation (the `attestation` of a dstack-verifier request, RA-TLS
-- extension 1.8): V0, SCALE-encoded (guest-and-attestation.md §5.6). Decoded into
--   { version = 0, platform = 'tdx', quote (binary), event_log = {TdxEvent tables},
--     runtime_events = { {event, payload} }, report_data (64 bytes), config (string) }
-- V1 (MessagePack) is recognised and refused with a clear message.
local bit = require('bit')
local eventlog = require('moonstack.tdx.eventlog')
local errors = require('moonstack.core.errors')

local M = {}

local MAX_SIZE = 10 * 1024 * 1024
local PLATFORMS = { [0] = 'tdx', [1] = 'gcp-tdx', [2] = 'nitro-enclave', [3] = 'sev-snp',
  [4] = 'aws-nitro-tpm' }

local Reader = {}
Reader.__index = Reader

function Reader:fail(msg)
  error({ attestation_error = ('%s at offset %d'):format(msg, self.pos - 1) }, 0)
end

function Reader:take(n, what)
  if n < 0 or self.pos + n - 1 > #self.data then
    self:fail(('truncated: %s needs %d bytes, %d left'):format(what, n, #self.data - self.pos + 1))
  end
  local s = self.data:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return s
end

function Reader:u8(what)
  return self:take(1, what):byte()
end

function Reader:u32(what)
  local a, b, c, d = self:take(4, what):byte(1, 4)
  return a + b * 0x100 + c * 0x10000 + d * 0x1000000
end

-- SCALE compact integer (lengths): modes 00 (1 byte), 01 (2), 10 (4), 11 (big).
function Reader:compact(what)
  local first = self:u8(what)
  local mode = bit.band(first, 3)
  if mode == 0 then
    return bit.rshift(first, 2)
  elseif mode == 1 then
    local second = self:u8(what)
    return bit.rshift(first + second * 0x100, 2)
  elseif mode == 2 then
    self.pos = self.pos - 1
    return math.floor(self:u32(what) / 4)
  end
  local n = bit.rshift(first, 2) + 4
  if n > 6 then
    self:fail(what .. ': length too large')
  end
  local v, mul = 0, 1
  for _ = 1, n do
    v = v + self:u8(what) * mul
    mul = mul * 0x100
  end
  return v
end

function Reader:bytes(what)
  local n = self:compact(what)
  return self:take(n, what)
end

function Reader:vec(what, item)
  local n = self:compact(what)
  if n > #self.data - self.pos + 1 then
    self:fail(('%s: %d items cannot fit'):format(what, n))
  end
  local out = {}
  for i = 1, n do
    out[i] = item(self, ('%s[%d]'):format(what, i))
  end
  return out
end

local function tdx_event(r, what)
  return {
    imr = r:u32(what .. '.imr'),
    event_type = r:u32(what .. '.event_type'),
    digest = r:bytes(what .. '.digest'),
    event = r:bytes(what .. '.event'),
    event_payload = r:bytes(what .. '.event_payload'),
    version = 1, -- V0 cannot carry V2 events
  }
end

local function runtime_event(r, what)
  return { event = r:bytes(what .. '.event'), payload = r:bytes(what .. '.payload') }
end

--- Decode attestation bytes (binary). Returns the table above or nil,
--- 'EATTESTATION: <what> at offset N', 'EATTESTATION'.
---@param data string
function M.decode(data)
  if type(data) ~= 'string' then
    error('attestation.decode: data must be a string', 2)
  end
  if #data == 0 then
    return errors.fail('EATTESTATION', 'empty attestation')
  end
  if #data > MAX_SIZE then
    return errors.fail('EATTESTATION', ('attestation is %d bytes (at most %d)'):format(#data, MAX_SIZE))
  end
  local first = data:byte(1)
  if (first >= 0x80 and first <= 0x8f) or first == 0xde or first == 0xdf then
    return errors.fail('EATTESTATION', 'V1 (MessagePack) attestations are not supported; send '
      .. 'the quote, event_log and vm_config fields instead')
  end
  if first ~= 0 then
    return errors.fail('EATTESTATION', ('unknown attestation version byte 0x%02x'):format(first))
  end
  local r = setmetatable({ data = data, pos = 2 }, Reader)
  local ok, res = pcall(function()
    local platform = r:u8('platform')
    if platform ~= 0 then
      r:fail(('platform %s is not supported (only DstackTdx)'):format(PLATFORMS[platform]
        or tostring(platform)))
    end
    local out = { version = 0, platform = 'tdx' }
    out.quote = r:bytes('quote')
    out.event_log = r:vec('event_log', tdx_event)
    out.runtime_events = r:vec('runtime_events', runtime_event)
    out.report_data = r:take(64, 'report_data')
    out.config = r:bytes('config')
    if r.pos <= #data then
      r:fail(('%d trailing bytes'):format(#data - r.pos + 1))
    end
    return out
  end)
  if not ok then
    if type(res) == 'table' and res.attestation_error then
      return errors.fail('EATTESTATION', res.attestation_error)
    end
    error(res, 0)
  end
  return res
end

--- The event log to verify: the attestation's TdxEvents, plus its runtime events as RTMR3
--- events when the log itself carries none (digests computed).
function M.events(att)
  local events, has_runtime = {}, false
  for i, e in ipairs(att.event_log or {}) do
    events[i] = e
    has_runtime = has_runtime or e.event_type == eventlog.RUNTIME_EVENT_TYPE
  end
  if not has_runtime then
    for _, re in ipairs(att.runtime_events or {}) do
      local ev, err, code = eventlog.runtime_event(re.event, re.payload, 1)
      if not ev then
        return nil, err, code
      end
      events[#events + 1] = ev
    end
  end
  return events
end

return M
