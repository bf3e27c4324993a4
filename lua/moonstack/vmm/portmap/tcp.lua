-- SPDX-License-Identifier: Apache-2.0
-- The TCP side of the port mapping (moonstack.vmm.portmap): a listener on one side of a
-- network-namespace boundary and, per accepted connection, a socket connected on the other
-- side, with bytes relayed both ways on the loop (luv streams: Lua sees each chunk once; the
-- C proxy of M10 will take this data path over).
--   * half-close: an EOF from one side becomes a shutdown (FIN) toward the other once the
--     queued bytes are written; the other direction goes on until it ends too;
--   * bounded buffers: when more than HIGH_WATER bytes wait to be written to one side, reading
--     from the other stops until the queue drains under LOW_WATER;
--   * timeouts: connect (connect_timeout_ms) and idle (idle_timeout_ms, 0 = none), checked by
--     the owner's sweep; max_connections accepted at once, the rest closed at accept;
--   * an error on either side closes both; every handle is closed once (no fd outlives it).
-- route = { listen = { ns?, address, port }, connect = { ns?, address, port }, label }.
local uv = require('luv')
local netns = require('moonstack.netns')
local socket = require('moonstack.vmm.portmap.socket')
local log = require('moonstack.core.log').new('vmm')

local M = {}

--- Bytes queued toward one side above which reading from the other side stops.
M.HIGH_WATER = 256 * 1024
--- Queue size under which reading resumes.
M.LOW_WATER = 64 * 1024

local Conn = {}
Conn.__index = Conn

local close = socket.close

--- Close both sides (once) and leave the listener's table.
function Conn:close(reason)
  if self.closed then
    return
  end
  self.closed = true
  close(self.a)
  close(self.b)
  local l = self.listener
  l.conns[self] = nil
  l.active = l.active - 1
  l.stats.active = l.stats.active - 1
  if reason then
    log.debug('port mapping connection closed', { route = l.route.label, reason = reason })
  end
end

local DIR = { a = 'bytes_in', b = 'bytes_out' }

-- Relay src -> dst; `side` names src ('a' = the accepted side, 'b' = the connected side).
function Conn:pump(src, dst, side)
  local stat = DIR[side]
  local l = self.listener
  local on_read
  local function drained(err)
    if self.closed then
      return
    end
    if err then
      return self:close('write: ' .. tostring(err))
    end
    if self.paused[side] and dst:get_write_queue_size() < M.LOW_WATER then
      self.paused[side] = false
      src:read_start(on_read)
    end
  end
  on_read = function(err, data)
    if self.closed then
      return
    end
    if err then
      return self:close('read: ' .. tostring(err))
    end
    self.last = uv.now()
    if data then
      socket.count(l, stat, #data)
      local ok, werr = dst:write(data, drained)
      if not ok then
        return self:close('write: ' .. tostring(werr))
      end
      if dst:get_write_queue_size() > M.HIGH_WATER then
        self.paused[side] = true
        src:read_stop()
      end
      return
    end
    -- EOF from src: FIN toward dst after what is queued; the other direction goes on
    src:read_stop()
    local ok = dst:shutdown(function()
      self.shut[side] = true
      if self.shut.a and self.shut.b then
        self:close()
      end
    end)
    if not ok then
      self:close('shutdown failed')
    end
  end
  src:read_start(on_read)
end

function Conn:connected(err)
  if self.closed then
    return
  end
  if err then
    socket.count(self.listener, 'failed', 1)
    return self:close('connect: ' .. tostring(err))
  end
  self.state = 'open'
  self.last = uv.now()
  self:pump(self.a, self.b, 'a')
  self:pump(self.b, self.a, 'b')
end

local Listener = {}
Listener.__index = Listener

function Listener:accept()
  local client = uv.new_tcp()
  local ok, err = self.server:accept(client)
  if not ok then
    close(client)
    log.warn('port mapping: accept failed', { route = self.route.label, error = err })
    return
  end
  if self.active >= self.opts.max_connections then
    socket.count(self, 'refused', 1)
    close(client)
    return
  end
  socket.count(self, 'connections', 1)
  local c = self.route.connect
  local conn = setmetatable({ listener = self, a = client, state = 'connecting', started = uv.now(),
    last = uv.now(), paused = {}, shut = {} }, Conn)
  self.conns[conn] = true
  self.active = self.active + 1
  self.stats.active = self.stats.active + 1
  local up, uerr = netns.tcp(c.ns, c.address)
  if not up then
    socket.count(self, 'failed', 1)
    return conn:close('socket: ' .. tostring(uerr))
  end
  conn.b = up
  local req, cerr = up:connect(c.address, c.port, function(e)
    conn:connected(e)
  end)
  if not req then
    conn:connected(cerr or 'connect failed')
  end
end

--- Close connections over their connect or idle timeout (called by the owner's sweep).
function Listener:sweep(now)
  local o = self.opts
  for conn in pairs(self.conns) do
    if conn.state == 'connecting' and now - conn.started > o.connect_timeout_ms then
      socket.count(self, 'failed', 1)
      conn:close('connect timeout')
    elseif conn.state == 'open' and o.idle_timeout_ms > 0 and now - conn.last > o.idle_timeout_ms then
      socket.count(self, 'timeouts', 1)
      conn:close('idle timeout')
    end
  end
end

--- Bytes waiting in the mapping's write queues now (bounded by HIGH_WATER + one read per
--- direction and connection).
function Listener:queued()
  local n = 0
  for conn in pairs(self.conns) do
    for _, h in ipairs({ conn.a, conn.b }) do
      if h and not h:is_closing() then
        n = n + h:get_write_queue_size()
      end
    end
  end
  return n
end

--- Stop listening and close every connection.
function Listener:close()
  close(self.server)
  for conn in pairs(self.conns) do
    conn:close()
  end
end

--- Listen for `route` (see the top). shared: the totals to add to; opts: { backlog,
--- max_connections, connect_timeout_ms, idle_timeout_ms }. Returns the listener or nil,
--- 'EADDRINUSE: <address> ...' (or another code) naming the address. listener.bound is the
--- bound address { ip, port } (port 0 asked: the one the kernel chose).
function M.listen(route, shared, opts)
  local server, bound, code = socket.open('tcp', route, opts.backlog, function(lerr)
    if lerr then
      log.warn('port mapping: listen error', { route = route.label, error = lerr })
      return
    end
    route.listener:accept()
  end)
  if not server then
    return nil, bound, code
  end
  local self = setmetatable({ route = route, server = server, shared = shared, opts = opts,
    conns = {}, active = 0, bound = bound,
    stats = { connections = 0, active = 0, refused = 0, failed = 0, timeouts = 0, bytes_in = 0,
      bytes_out = 0 } }, Listener)
  route.listener = self
  return self
end

return M
