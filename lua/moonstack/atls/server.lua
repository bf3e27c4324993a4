-- SPDX-License-Identifier: Apache-2.0
-- The attested-TLS front of a CVM (Atlas's server side): terminates TLS; on each connection,
-- while the client sends `POST /tdx_quote {"nonce_hex"}` requests, answers each with a fresh
-- quote whose report_data = SHA-512(nonce || this session's RFC 9266 exporter) plus the event
-- log (moonstack.atls.binding); the first bytes that are not such a request switch the
-- connection to a byte relay to the upstream (HTTP or any TCP protocol; the bytes already read
-- go first). At start it records SHA-256 of its certificate as the RTMR3 runtime event "New
-- TLS Certificate" through the quote source (EmitEvent on the guest agent, or the simulated
-- TD). A gateway `s` (passthrough) route to this listener keeps the TLS session end to end.
local uv = require('luv')
local binding = require('moonstack.atls.binding')
local conn_mod = require('moonstack.atls.conn')
local errors = require('moonstack.core.errors')
local json = require('moonstack.core.json')
local log = require('moonstack.core.log').new('atls')
local task = require('moonstack.core.task')
local tls = require('moonstack.native.tls')
local x509 = require('moonstack.x509')

local M = {}

M.HANDSHAKE_TIMEOUT_MS = 10000
M.REQUEST_TIMEOUT_MS = 30000
M.MAX_HEAD = 16 * 1024
M.MAX_CONNECTIONS = 1024
--- Quotes one connection may ask for (Atlas asks for one); then 429 and the connection closes.
M.MAX_QUOTES_PER_CONNECTION = 16
--- A relayed connection with no bytes either way for this long is closed.
M.RELAY_IDLE_MS = 10 * 60 * 1000

local Server = {}
Server.__index = Server

local PREFIX = 'POST ' .. binding.QUOTE_PATH

-- Does the buffered text still look like (the start of) a quote request?
local function quote_request_start(buf)
  if #buf < #PREFIX + 1 then
    return PREFIX:sub(1, #buf) == buf
  end
  local c = buf:sub(#PREFIX + 1, #PREFIX + 1)
  return buf:sub(1, #PREFIX) == PREFIX and (c == ' ' or c == '?')
end

-- The head (request line + headers) and Content-Length of the request at the start of `buf`.
local function parse_head(buf)
  local stop = buf:find('\r\n\r\n', 1, true)
  if not stop then
    return nil
  end
  local head = buf:sub(1, stop + 3)
  local line = head:match('^([^\r\n]*)')
  if not line:match('^POST /tdx_quote[%?%s][^%s]* ?HTTP/1%.[01]$') and
      not line:match('^POST /tdx_quote HTTP/1%.[01]$') then
    return nil, 'EINVAL: not a /tdx_quote request line'
  end
  local len = 0
  for name, value in head:gmatch('\r\n([^:\r\n]+):[ \t]*([^\r\n]*)') do
    local n = name:lower()
    if n == 'content-length' then
      if not value:match('^%d+%s*$') then
        return nil, 'EINVAL: bad Content-Length'
      end
      len = tonumber(value)
    elseif n == 'transfer-encoding' then
      return nil, 'EINVAL: Transfer-Encoding is not supported on /tdx_quote'
    end
  end
  if len > binding.MAX_REQUEST_BODY then
    return nil, 'EMSGSIZE: the /tdx_quote body is too large'
  end
  return #head, len, head:lower():find('\r\nconnection:%s*close') ~= nil
end

local function reply(c, status, reason, body, close)
  return c:send(('HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n'
    .. 'Connection: %s\r\n\r\n%s'):format(status, reason, #body, close and 'close' or 'keep-alive',
    body))
end

-- Answer one /tdx_quote request `body` on connection `c`.
function Server:_quote(c, body)
  local nonce, err = binding.parse_request(body)
  if not nonce then
    self.counters.bad_requests = self.counters.bad_requests + 1
    return reply(c, 400, 'Bad Request', json.encode({ error = err }))
  end
  local ekm = c:exporter(binding.EXPORTER_LABEL, binding.EXPORTER_LEN)
  if not ekm then
    return reply(c, 500, 'Internal Server Error', '{"error":"no TLS exporter"}', true)
  end
  local q
  q, err = self.source:quote(binding.report_data(nonce, ekm))
  if not q then
    log.warn('no quote', { error = tostring(err) })
    self.counters.quote_errors = self.counters.quote_errors + 1
    return reply(c, 503, 'Service Unavailable', '{"error":"no quote"}', true)
  end
  self.counters.quotes = self.counters.quotes + 1
  return reply(c, 200, 'OK', binding.response_body(q))
end

-- Relay connection `c` to the upstream, the buffered bytes first.
function Server:_relay(c)
  local up, err = conn_mod.tcp_connect(self.upstream.host, self.upstream.port, 10000)
  if not up then
    log.warn('upstream not reached', { upstream = self.upstream.host .. ':' .. self.upstream.port,
      error = tostring(err) })
    c:send('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
    return c:close()
  end
  self.counters.relayed = self.counters.relayed + 1
  local done = false
  local idle = uv.new_timer()
  local function finish()
    if done then
      return
    end
    done = true
    if not idle:is_closing() then
      idle:close()
    end
    if not up:is_closing() then
      up:close()
    end
    c:close()
  end
  local function active()
    if not done then
      idle:start(M.RELAY_IDLE_MS, 0, function()
        finish()
      end)
    end
  end
  active()
  local first = c:take()
  if #first > 0 then
    up:write(first)
  end
  c.on_data = function(data)
    if data then
      active()
      up:write(data)
    elseif not up:is_closing() then
      up:shutdown()
    end
  end
  if c.eof then
    c.on_data(nil)
  end
  up:read_start(function(rerr, data)
    if rerr or not data then
      return finish()
    end
    active()
    if not c:send(data) then
      finish()
    end
  end)
  -- this connection's task lives as long as the relay (the connection count stays true)
  task.await(function(resume)
    if done then
      return resume(true)
    end
    local prev = finish
    finish = function()
      prev()
      resume(true)
    end
  end)
end

-- Serve one accepted connection (in its task).
function Server:_serve(c)
  local ok, err = c:handshake(M.HANDSHAKE_TIMEOUT_MS)
  if not ok then
    log.debug('handshake failed', { error = tostring(err) })
    return c:close()
  end
  local quotes = 0
  while true do
    ok = c:wait_for(function(cc)
      return #cc.buf > 0 and (not quote_request_start(cc.buf) or cc.buf:find('\r\n\r\n', 1, true)
        or #cc.buf > M.MAX_HEAD)
    end, M.REQUEST_TIMEOUT_MS)
    if not ok then
      return c:close()
    end
    if not quote_request_start(c.buf) then
      return self:_relay(c)
    end
    local head_len, body_len, close = parse_head(c.buf)
    if not head_len then
      self.counters.bad_requests = self.counters.bad_requests + 1
      reply(c, 400, 'Bad Request', '{"error":"bad /tdx_quote request"}', true)
      return c:close()
    end
    ok = c:wait_for(function(cc)
      return #cc.buf >= head_len + body_len
    end, M.REQUEST_TIMEOUT_MS)
    if not ok then
      return c:close()
    end
    c:take(head_len)
    quotes = quotes + 1
    if quotes > M.MAX_QUOTES_PER_CONNECTION then
      reply(c, 429, 'Too Many Requests', '{"error":"too many quotes on this connection"}', true)
      return c:close()
    end
    self:_quote(c, c:take(body_len))
    if close then
      return c:close()
    end
  end
end

--- Start the front. opts: listen = { host, port }, upstream = { host, port }, cert, key (PEM
--- text; the certificate chain leaf first), source (an object with :quote(report_data) ->
--- GetQuoteResponse JSON text and :emit_event(name, payload); moonstack.gateway.acme_info's),
--- emit (default true: record the certificate event at start). Returns the server (fields
--- port, cert_der, cert_hash; :close(), :stats()) or nil, msg, code.
function M.start(opts)
  assert(type(opts) == 'table' and opts.listen and opts.upstream and opts.source,
    'atls.server.start: listen, upstream and source are required')
  local ctx, err, code = tls.context({ mode = 'server', cert = opts.cert, key = opts.key })
  if not ctx then
    return nil, err, code
  end
  local leaf = x509.cert(opts.cert)
  if not leaf then
    return errors.fail('EINVAL', 'cert: not a PEM certificate')
  end
  local self = setmetatable({ ctx = ctx, source = opts.source, upstream = opts.upstream,
    cert_der = leaf.der, cert_hash = binding.cert_event_payload(leaf.der), live = 0,
    counters = { connections = 0, quotes = 0, quote_errors = 0, relayed = 0, bad_requests = 0,
      refused = 0 } }, Server)
  if opts.emit ~= false then
    local ok
    ok, err, code = self.source:emit_event(binding.CERT_EVENT, self.cert_hash)
    if not ok then
      return nil, 'certificate event: ' .. tostring(err), code
    end
  end
  local tcp = uv.new_tcp()
  local rc, berr = tcp:bind(opts.listen.host, opts.listen.port)
  if rc then
    rc, berr = tcp:listen(128, function(lerr)
      if lerr then
        return
      end
      local client = uv.new_tcp()
      if not tcp:accept(client) then
        return client:close()
      end
      if self.live >= M.MAX_CONNECTIONS then
        self.counters.refused = self.counters.refused + 1
        return client:close()
      end
      self.live = self.live + 1
      self.counters.connections = self.counters.connections + 1
      local c = conn_mod.wrap(client, self.ctx:engine())
      task.spawn_named('atls-conn', function()
        local ok, serr = pcall(self._serve, self, c)
        if not ok then
          log.warn('connection failed', { error = tostring(serr) })
          c:close()
        end
        self.live = self.live - 1
      end)
    end)
  end
  if not rc then
    tcp:close()
    return errors.fail('EADDRINUSE', ('cannot listen on %s:%d: %s'):format(opts.listen.host,
      opts.listen.port, tostring(berr)))
  end
  self.tcp = tcp
  self.port = tcp:getsockname().port
  return self
end

--- Counters: connections, quotes, quote_errors, relayed, bad_requests, refused.
function Server:stats()
  return self.counters
end

--- Stop listening.
function Server:close()
  if self.tcp and not self.tcp:is_closing() then
    self.tcp:close()
  end
end

return M
