-- SPDX-License-Identifier: Apache-2.0
-- The WebSocket -> TCP bridge for browser aTLS clients (Atlas's atlas-proxy): a browser opens
-- ws[s]://PROXY/?target=HOST:PORT and its binary messages are piped as bytes to that TCP target
-- and back; the TLS (and the attestation) stay end to end between the browser and the CVM. The
-- allowlist is required and matched exactly (HOST:PORT as written, no wildcard, no default:
-- never an open proxy); a target outside it is refused before the upgrade. Limits, per client
-- address: new connections per second (a token bucket) and open connections; in all: open
-- connections; per connection: bytes per second from the browser. Counters for /metrics.
local uv = require('luv')
local log = require('moonstack.core.log').new('atls-proxy')
local util = require('moonstack.http.util')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

M.DEFAULTS = { rate = 20, burst = 40, max_conns = 256, per_client = 32,
  bytes_per_sec = 4 * 1024 * 1024 }

--- Client addresses remembered at most (buckets of idle clients are dropped beyond this).
M.MAX_CLIENTS = 4096

--- Parse an allowlist "host:port[,host:port]": a set, or nil, 'EINVAL: ...'. Empty entries,
--- wildcards and entries without a port are refused.
function M.parse_allowlist(text)
  if type(text) ~= 'string' or text:match('^%s*$') then
    return nil, 'EINVAL: the allowlist is required (host:port[,host:port])', 'EINVAL'
  end
  local set, n = {}, 0
  for entry in (text .. ','):gmatch('([^,]*),') do
    entry = entry:match('^%s*(.-)%s*$')
    local host, port = entry:match('^(%[?[%w%.%-:]-%]?):(%d+)$')
    port = tonumber(port)
    if not host or host == '' or entry:find('*', 1, true) or not port or port < 1 or port > 65535 then
      return nil, ('EINVAL: allowlist entry %q is not host:port'):format(entry), 'EINVAL'
    end
    set[entry] = true
    n = n + 1
  end
  return set, n
end

local Proxy = {}
Proxy.__index = Proxy

--- A proxy over `allow` (parse_allowlist's set); opts: rate and burst (new connections per
--- second per client), max_conns (in all), per_client (open per client), bytes_per_sec.
function M.new(allow, opts)
  local o = {}
  for k, v in pairs(M.DEFAULTS) do
    o[k] = opts and opts[k] or v
  end
  return setmetatable({ allow = allow, o = o, clients = {}, nclients = 0, live = 0,
    pipes = {}, counters = { accepted = 0, refused_target = 0,
      refused_rate = 0, refused_full = 0, connect_errors = 0, bytes_up = 0, bytes_down = 0,
      throttled = 0 } }, Proxy)
end

-- The state of client address `peer`: { tokens, last, open }.
function Proxy:_client(peer)
  local c = self.clients[peer]
  if c then
    return c
  end
  if self.nclients >= M.MAX_CLIENTS then -- forget the idle ones
    for k, v in pairs(self.clients) do
      if v.open == 0 then
        self.clients[k] = nil
        self.nclients = self.nclients - 1
      end
    end
  end
  c = { tokens = self.o.burst, last = uv.now(), open = 0 }
  self.clients[peer] = c
  self.nclients = self.nclients + 1
  return c
end

-- Take a token of `client`'s connection-rate bucket.
function Proxy:_token(client)
  local now = uv.now()
  client.tokens = math.min(self.o.burst, client.tokens + (now - client.last) * self.o.rate / 1000)
  client.last = now
  if client.tokens < 1 then
    return false
  end
  client.tokens = client.tokens - 1
  return true
end

-- The allowlisted target of a query string, or nil.
function Proxy:_target(query)
  local target = util.parse_query(query or '').target
  if type(target) == 'string' and self.allow[target] then
    return target
  end
end

--- The upgrade check (moonstack.http.server authorize): true only for an allowlisted target
--- within the limits of the client (req.peer) and of the proxy.
function Proxy:authorize(req)
  local target = req.args and req.args.target
  if type(target) ~= 'string' or not self.allow[target] then
    self.counters.refused_target = self.counters.refused_target + 1
    log.warn('refused: the target is not in the allowlist', { target = tostring(target),
      peer = req.peer })
    return false
  end
  local client = self:_client(req.peer or '')
  if self.live >= self.o.max_conns or client.open >= self.o.per_client then
    self.counters.refused_full = self.counters.refused_full + 1
    return false
  end
  if not self:_token(client) then
    self.counters.refused_rate = self.counters.refused_rate + 1
    return false
  end
  return true
end

--- A websocket opened: connect its TCP target.
function Proxy:on_open(ws)
  local target = self:_target(ws:query()) -- checked again: the upgrade's own query
  if not target then
    return ws:close(1008, 'target not allowed')
  end
  local client = self:_client(ws:peer())
  client.open = client.open + 1
  self.live = self.live + 1
  self.counters.accepted = self.counters.accepted + 1
  local host, port = target:match('^%[?(.-)%]?:(%d+)$')
  local p = { ws = ws, queue = {}, tcp = nil, window = uv.now(), bytes = 0, client = client }
  self.pipes[ws:id()] = p
  uv.getaddrinfo(host, port, { socktype = 'stream' }, function(err, res)
    if err or not res or not res[1] or p.closed then
      self.counters.connect_errors = self.counters.connect_errors + 1
      return self:_close(p, 1011, 'cannot resolve the target')
    end
    local tcp = uv.new_tcp()
    p.tcp = tcp
    tcp:connect(res[1].addr, tonumber(port), function(cerr)
      if cerr or p.closed then
        self.counters.connect_errors = self.counters.connect_errors + 1
        return self:_close(p, 1011, 'cannot connect to the target')
      end
      p.connected = true
      for _, d in ipairs(p.queue) do
        tcp:write(d)
      end
      p.queue = {}
      tcp:read_start(function(rerr, data)
        if rerr or not data then
          return self:_close(p, 1000, 'target closed')
        end
        self.counters.bytes_down = self.counters.bytes_down + #data
        ws:send(data, true)
      end)
    end)
  end)
end

-- Per-connection byte budget: true when `n` more bytes fit this second.
function Proxy:_budget(p, n)
  local now = uv.now()
  if now - p.window >= 1000 then
    p.window, p.bytes = now, 0
  end
  p.bytes = p.bytes + n
  return p.bytes <= self.o.bytes_per_sec
end

--- A message from the browser: bytes for the target.
function Proxy:on_message(ws, data)
  local p = self.pipes[ws:id()]
  if not p then
    return
  end
  if not self:_budget(p, #data) then
    self.counters.throttled = self.counters.throttled + 1
    return self:_close(p, 1008, 'rate limit')
  end
  self.counters.bytes_up = self.counters.bytes_up + #data
  if p.connected then
    p.tcp:write(data)
  else
    p.queue[#p.queue + 1] = data
  end
end

--- The browser went away.
function Proxy:on_close(ws)
  local p = self.pipes[ws:id()]
  if p then
    self:_close(p)
  end
end

function Proxy:_close(p, status, reason)
  if p.closed then
    return
  end
  p.closed = true
  self.live = self.live - 1
  p.client.open = p.client.open - 1
  self.pipes[p.ws:id()] = nil
  if p.tcp and not p.tcp:is_closing() then
    p.tcp:close()
  end
  if status and p.ws:is_open() then
    p.ws:close(status, reason)
  end
end

--- Prometheus text of the counters.
function Proxy:metrics()
  local lines = { '# TYPE atls_proxy_open gauge', 'atls_proxy_open ' .. self.live }
  local names = sorted_keys(self.counters)
  for _, k in ipairs(names) do
    lines[#lines + 1] = ('# TYPE atls_proxy_%s_total counter'):format(k)
    lines[#lines + 1] = ('atls_proxy_%s_total %d'):format(k, self.counters[k])
  end
  return table.concat(lines, '\n') .. '\n'
end

--- Mount the proxy on a moonstack.http.server (before listen): websocket at '/', GET /metrics.
function Proxy:mount(server)
  server:websocket('/', {
    authorize = function(req)
      return self:authorize(req)
    end,
    on_open = function(ws)
      self:on_open(ws)
    end,
    on_message = function(ws, data)
      self:on_message(ws, data)
    end,
    on_close = function(ws)
      self:on_close(ws)
    end,
  })
  server:get('/metrics', function()
    return 200, self:metrics(), { ['content-type'] = 'text/plain; version=0.0.4' }
  end)
  return server
end


return M
