-- SPDX-License-Identifier: Apache-2.0
-- How others talk to a guest agent (the agent service's client module). The VMM: the guest
-- API of a CVM it runs (guest_api(transport): Info, SysInfo, NetworkInfo, ListContainers,
-- Shutdown at /api/<Method>; transport { unix = PATH } with the process backend, vsock later).
-- The KMS's own CVM, through its guest agent (the dstack API on a unix socket, by default
-- /var/run/dstack.sock): how a KMS running as an app on TDX attests itself (Attest: its RPC
-- certificate's .1.8 attestation, its RA-TLS client certificate when it onboards) and gets a
-- secret bound to its measurements (GetKey: the sealing key of moonstack.kms.seal). The agent
-- answers for the app it runs: its quotes carry this CVM's measurements, and its keys derive
-- from the app keys the key provider released to exactly this app. Call from a task.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local client = require('moonstack.http.client')

local M = {}

M.DEFAULT_SOCKET = '/var/run/dstack.sock'

local Guest = {}
Guest.__index = Guest

--- The guest agent at unix socket `socket` (default DEFAULT_SOCKET); opts.timeout_ms (10 s).
function M.new(socket, opts)
  return setmetatable({ socket = socket or M.DEFAULT_SOCKET,
    timeout_ms = opts and opts.timeout_ms or 10000 }, Guest)
end

-- POST the JSON `body` to the agent's `method`; the decoded answer or nil, 'EGUEST: ...'.
function Guest:call(method, body)
  local r, err = client.request({ unix = self.socket, path = '/' .. method, method = 'POST',
    json = body, timeout_ms = self.timeout_ms })
  if not r then
    return nil, ('EGUEST: cannot reach the guest agent at %s (%s): %s'):format(self.socket,
      method, tostring(err)), 'EGUEST'
  end
  local answer = cjson.decode(r.body)
  if r.status ~= 200 or type(answer) ~= 'table' then
    return nil, ('EGUEST: the guest agent at %s answered %s with HTTP %d: %s'):format(self.socket,
      method, r.status, r.body:sub(1, 200)), 'EGUEST'
  end
  return answer
end

-- The hex field `name` of `answer` as bytes, at least `min` long, or nil, 'EGUEST: ...'.
local function field_bytes(self, method, answer, name, min)
  local v = type(answer[name]) == 'string' and crypto.unhex(answer[name])
  if not v or #v < min then
    return nil, ('EGUEST: the guest agent at %s answered %s without a usable %s'):format(
      self.socket, method, name), 'EGUEST'
  end
  return v
end

--- The VersionedAttestation of this CVM over the 64-byte `report_data` (Attest). `form` is
--- accepted for the evidence interface of moonstack.tdx.evidence (the agent decides the
--- event-log form). Returns the bytes or nil, msg, code.
function Guest:attestation(report_data, form) -- luacheck: ignore 212/form
  assert(type(report_data) == 'string' and #report_data == 64, 'guest:attestation: 64 bytes of report_data')
  local a, err, code = self:call('Attest', { report_data = crypto.hex(report_data) })
  if not a then
    return nil, err, code
  end
  return field_bytes(self, 'Attest', a, 'attestation', 1)
end

--- GetQuote over the 64-byte `report_data`: { quote (hex), event_log (JSON text), report_data
--- (hex), vm_config } as the agent answered (checked for types), or nil, msg, code.
function Guest:quote(report_data)
  assert(type(report_data) == 'string' and #report_data == 64, 'guest:quote: 64 bytes of report_data')
  local a, err, code = self:call('GetQuote', { report_data = crypto.hex(report_data) })
  if not a then
    return nil, err, code
  end
  local q
  q, err, code = field_bytes(self, 'GetQuote', a, 'quote', 48)
  if not q then
    return nil, err, code
  end
  if type(a.event_log) ~= 'string' then
    return nil, ('EGUEST: the guest agent at %s answered GetQuote without an event_log'):format(
      self.socket), 'EGUEST'
  end
  return { quote = crypto.hex(q), event_log = a.event_log, report_data = crypto.hex(report_data),
    vm_config = type(a.vm_config) == 'string' and a.vm_config or '' }
end

--- GetKey(path, purpose): the 32-byte key the agent derives for this app, or nil, msg, code.
function Guest:key(path, purpose)
  local a, err, code = self:call('GetKey', { path = path, purpose = purpose })
  if not a then
    return nil, err, code
  end
  return field_bytes(self, 'GetKey', a, 'key', 32)
end

--- EmitEvent(event, payload): extend RTMR3 with a runtime event of this CVM. True or nil,
--- msg, code.
function Guest:emit_event(event, payload)
  local a, err, code = self:call('EmitEvent', { event = event, payload = crypto.hex(payload) })
  if not a then
    return nil, err, code
  end
  return true
end

local GuestApi = {}
GuestApi.__index = GuestApi

--- The prefix of the report_data of the guest API's GetQuote: SHA-512(prefix .. nonce).
M.GUEST_QUOTE_PREFIX = 'vmm-quote:'

--- The report_data (64 bytes) of a quote the guest API's GetQuote makes over `nonce`.
function M.guest_quote_report_data(nonce)
  return crypto.sha512(M.GUEST_QUOTE_PREFIX .. nonce)
end

--- The guest API of a CVM over `transport` ({ unix = PATH }); opts.timeout_ms (5000).
function M.guest_api(transport, opts)
  if type(transport) ~= 'table' or type(transport.unix) ~= 'string' then
    error('agent.client.guest_api: transport { unix = PATH } required', 2)
  end
  return setmetatable({ transport = transport, timeout_ms = opts and opts.timeout_ms or 5000 },
    GuestApi)
end

--- Forward a request to guest API method `method` (body as given, JSON or protobuf by
--- `content_type`): the response { status, body, headers } or nil, 'EGUEST: ...', 'EGUEST'.
function GuestApi:request(method, body, content_type, query)
  local path = '/api/' .. method .. (query and query ~= '' and ('?' .. query) or '')
  local r, err = client.request({ unix = self.transport.unix, path = path, method = 'POST',
    body = body or '', headers = { ['content-type'] = content_type or 'application/json' },
    timeout_ms = self.timeout_ms, want_headers = { 'content-type' } })
  if not r then
    return nil, ('EGUEST: the guest API is not reachable (%s): %s'):format(method, tostring(err)),
      'EGUEST'
  end
  return r
end

--- Call guest API method `method` with the JSON `body`: the decoded answer or nil, msg, code.
function GuestApi:call(method, body)
  local r, err, code = self:request(method, cjson.encode(body or {}))
  if not r then
    return nil, err, code
  end
  local answer = cjson.decode(r.body)
  if r.status ~= 200 or type(answer) ~= 'table' then
    return nil, ('EGUEST: the guest answered %s with HTTP %d: %s'):format(method, r.status,
      r.body:sub(1, 200)), 'EGUEST'
  end
  return answer
end

return M
