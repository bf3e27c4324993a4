-- SPDX-License-Identifier: Apache-2.0
-- The attested-TLS client (Atlas's protocol, moonstack.atls.binding): TLS handshake (the
-- server's certificate checked against --ca or the system roots, as Atlas does with its
-- bundled roots), then on THE SAME connection POST /tdx_quote with a fresh nonce; the quote is
-- verified with moonstack.verifier under the policy (Atlas's JSON, grace_period included), its
-- report_data must be SHA-512(nonce || this session's exporter) and the event log's last "New
-- TLS Certificate" event must carry SHA-256 of the certificate this connection was served.
-- Only then is the connection handed out for requests. Run in a task.
--
--   local a, err, code = atls.connect({ host, port, server_name?, ca = PEM?, policy = table,
--     verifier = { root_ca?, collateral?, pccs? }, timeout_ms? })
--   a.report (the verifier's result), a:request({ method, path, headers, body }) -> { status,
--   headers, body } | nil, msg, code;  a:close()
--
-- Refusals: ETLS (handshake/certificate), EQUOTE (no usable answer), the verifier's code for
-- a quote or policy that does not hold (ESIMULATED, ETCB, EPOLICY, EEVENTLOG, ...), ESESSION
-- (the quote is not bound to this TLS session: relayed or replayed), ECERT (the event log does
-- not bind the served certificate).
local binding = require('moonstack.atls.binding')
local conn_mod = require('moonstack.atls.conn')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local json = require('moonstack.core.json')
local tls = require('moonstack.native.tls')
local verifier = require('moonstack.verifier')

local M = {}

M.TIMEOUT_MS = 30000
M.MAX_RESPONSE = 16 * 1024 * 1024
M.MAX_HEAD = 64 * 1024

local Atls = {}
Atls.__index = Atls

-- Parse the status line and headers of `head` (text before the blank line).
local function parse_head(head)
  local status = head:match('^HTTP/1%.[01] (%d%d%d)')
  if not status then
    return nil
  end
  local headers = {}
  for name, value in head:gmatch('\r\n([^:\r\n]+):[ \t]*([^\r\n]*)') do
    headers[name:lower()] = value
  end
  return tonumber(status), headers
end

-- Decode a complete chunked body at the start of `s`: body, bytes used; or nil (need more),
-- or false (malformed).
local function dechunk(s)
  local out, pos = {}, 1
  while true do
    local line_end = s:find('\r\n', pos, true)
    if not line_end then
      return nil
    end
    local size = tonumber((s:sub(pos, line_end - 1):match('^(%x+)')), 16)
    if not size then
      return false
    end
    if size == 0 then
      local trailer_end = s:find('\r\n\r\n', line_end, true)
      if s:sub(line_end, line_end + 3) == '\r\n\r\n' then
        trailer_end = line_end
      end
      if not trailer_end then
        return nil
      end
      return table.concat(out), trailer_end + 3
    end
    if #s < line_end + 1 + size + 2 then
      return nil
    end
    out[#out + 1] = s:sub(line_end + 2, line_end + 1 + size)
    pos = line_end + 2 + size + 2
  end
end

--- Read one HTTP/1.1 response from connection `c` (in a task): { status, headers, body } or
--- nil, msg, code. A response without length ends with the connection.
function M.read_response(c, timeout_ms, max)
  max = max or M.MAX_RESPONSE
  local ok, err, code = c:wait_for(function(cc)
    return cc.buf:find('\r\n\r\n', 1, true) or #cc.buf > M.MAX_HEAD
  end, timeout_ms)
  if not ok then
    return nil, err, code
  end
  local stop = c.buf:find('\r\n\r\n', 1, true)
  local status, headers
  if stop then
    status, headers = parse_head(c.buf:sub(1, stop - 1))
  end
  if not status then
    return errors.fail('EPROTO', 'the answer is not an HTTP/1.1 response')
  end
  c:take(stop + 3)
  local len = headers['content-length'] and tonumber(headers['content-length']:match('^%d+'))
  if len then
    if len > max then
      return errors.fail('EMSGSIZE', ('a %d-byte answer (at most %d)'):format(len, max))
    end
    ok, err, code = c:wait_for(function(cc)
      return #cc.buf >= len
    end, timeout_ms)
    if not ok then
      return nil, err, code
    end
    return { status = status, headers = headers, body = c:take(len) }
  end
  if (headers['transfer-encoding'] or ''):lower():find('chunked') then
    local body, used
    ok, err, code = c:wait_for(function(cc)
      body, used = dechunk(cc.buf)
      return body ~= nil or #cc.buf > max
    end, timeout_ms)
    if not ok or not body then
      return nil, err or 'EPROTO: a malformed or too large chunked answer', code or 'EPROTO'
    end
    c:take(used)
    return { status = status, headers = headers, body = body }
  end
  c:wait_for(function(cc)
    return cc.eof or #cc.buf > max
  end, timeout_ms)
  return { status = status, headers = headers, body = c:take() }
end

-- Send one request on `c` and read the answer.
local function exchange(c, req, timeout_ms, max)
  local lines = { ('%s %s HTTP/1.1'):format(req.method or 'GET', req.path or '/'),
    'Host: ' .. req.host }
  local body = req.body or ''
  for k, v in pairs(req.headers or {}) do
    lines[#lines + 1] = k .. ': ' .. v
  end
  if #body > 0 or (req.method or 'GET') == 'POST' then
    lines[#lines + 1] = 'Content-Length: ' .. #body
  end
  lines[#lines + 1] = 'Connection: keep-alive'
  local ok, err, code = c:send(table.concat(lines, '\r\n') .. '\r\n\r\n' .. body)
  if not ok then
    return nil, err, code
  end
  return M.read_response(c, timeout_ms, max)
end

--- Connect, attest and bind (see the top). Returns the attested connection or nil, msg, code.
function M.connect(opts)
  assert(type(opts) == 'table' and opts.host and opts.port and opts.policy,
    'atls.connect: host, port and policy are required')
  local timeout = opts.timeout_ms or M.TIMEOUT_MS
  local name = opts.server_name or opts.host
  local vopts = { policy = opts.policy }
  for k, v in pairs(opts.verifier or {}) do
    vopts[k] = v
  end
  local v, err, code = verifier.new(vopts)
  if not v then
    return nil, err, code
  end
  local ctx
  ctx, err, code = tls.context({ mode = 'client', ca = opts.ca })
  if not ctx then
    return nil, err, code
  end
  local tcp
  tcp, err, code = conn_mod.tcp_connect(opts.host, opts.port, timeout)
  if not tcp then
    return nil, err, code
  end
  local c = conn_mod.wrap(tcp, ctx:engine(name), { client = true })
  local self = setmetatable({ c = c, host = name, timeout_ms = timeout }, Atls)
  local function refuse(msg, ecode)
    c:close()
    return nil, msg, ecode or msg:match('^(E[%u%d_]+):')
  end
  local ok
  ok, err = c:handshake(timeout)
  if not ok then
    return refuse('ETLS: handshake with ' .. name .. ': ' .. tostring(err):gsub('^ETLS: ', ''),
      'ETLS')
  end
  local peer = c:peer_cert()
  local ekm = c:exporter(binding.EXPORTER_LABEL, binding.EXPORTER_LEN)
  if not peer or not ekm then
    return refuse('ETLS: no peer certificate or exporter on this session', 'ETLS')
  end
  local nonce = crypto.random(binding.NONCE_LEN)
  local resp
  resp, err = exchange(c, { method = 'POST', path = binding.QUOTE_PATH, host = name,
    headers = { ['Content-Type'] = 'application/json' }, body = binding.request_body(nonce) },
    timeout, 4 * 1024 * 1024)
  if not resp then
    return refuse('EQUOTE: POST /tdx_quote: ' .. tostring(err), 'EQUOTE')
  end
  if resp.status ~= 200 then
    return refuse(('EQUOTE: POST /tdx_quote answered HTTP %d'):format(resp.status), 'EQUOTE')
  end
  local ans
  ans, err = binding.parse_response(resp.body)
  if not ans then
    return refuse(err, 'EQUOTE')
  end
  -- 1. the quote and its event log, under the policy
  local res, verr, vcode = v:check_quote(ans.quote, ans.event_log, { vm_config = ans.vm_config })
  if not res then
    return refuse(verr, vcode)
  end
  -- 2. bound to this TLS session (not relayed from another one)
  local want = binding.report_data(nonce, ekm)
  local got = res.report and res.report.report_data
  if got ~= crypto.hex(want) then
    return refuse(('ESESSION: the quote is not bound to this TLS session: report_data %s, '
      .. 'SHA-512(nonce || exporter) is %s (a quote relayed or replayed from another session)')
      :format(tostring(got), crypto.hex(want)), 'ESESSION')
  end
  -- 3. the event log (verified by the replay above) names the certificate we were served
  local events = json.decode(ans.event_log)
  local logged = type(events) == 'table' and binding.logged_cert_hash(events)
  local served = binding.cert_event_payload(peer)
  if logged ~= served then
    return refuse(('ECERT: the event log does not bind the served certificate: its last "%s" '
      .. 'event carries %s, the served certificate hashes to %s'):format(binding.CERT_EVENT,
      logged and ('"' .. logged .. '"') or 'nothing (no such event)', served), 'ECERT')
  end
  self.report = res
  self.cert_der = peer
  return self
end

--- One HTTP/1.1 request on the attested connection: req = { method, path, headers, body }.
--- Returns { status, headers, body } or nil, msg, code.
function Atls:request(req)
  local r = {}
  for k, val in pairs(req) do
    r[k] = val
  end
  r.host = r.host or self.host
  return exchange(self.c, r, self.timeout_ms, req.max_response)
end

--- Close the connection.
function Atls:close()
  self.c:close()
end

return M
