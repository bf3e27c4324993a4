-- SPDX-License-Identifier: Apache-2.0
-- The UDP side of the port mapping (moonstack.vmm.portmap): a socket bound on one side of a
-- network-namespace boundary and, per client address (a flow), a socket on the other side
-- connected to the target, so replies find their way back to the client that sent the request.
-- Datagrams are relayed as they come (try_send: a datagram that cannot be sent at once is
-- dropped, as UDP may); a flow idle for udp_idle_timeout_ms is closed by the owner's sweep, and
-- at most max_flows live at once (a datagram that would open one more is dropped).
-- route = { listen = { ns?, address, port }, connect = { ns?, address, port }, label }.
local uv = require('luv')
local netns = require('moonstack.netns')
local socket = require('moonstack.vmm.portmap.socket')
local log = require('moonstack.core.log').new('vmm')

local M = {}

local close = socket.close

local Listener = {}
Listener.__index = Listener

function Listener:_count(field, n)
  socket.count(self, field, n)
end

function Listener:_close_flow(key)
  local flow = self.flows[key]
  if flow then
    self.flows[key] = nil
    self.nflows = self.nflows - 1
    self.stats.flows = self.nflows
    close(flow.sock)
  end
end

-- A new flow for client `addr`: a socket on the connect side, connected to the target.
function Listener:_flow(key, addr)
  if self.nflows >= self.opts.max_flows then
    self:_count('dropped', 1)
    return nil
  end
  local c = self.route.connect
  local sock, err = netns.udp(c.ns, c.address)
  if not sock then
    log.warn('port mapping: cannot open a UDP flow', { route = self.route.label, error = err })
    self:_count('dropped', 1)
    return nil
  end
  local ok, cerr = sock:connect(c.address, c.port)
  if not ok then
    close(sock)
    log.warn('port mapping: cannot connect a UDP flow', { route = self.route.label, error = cerr })
    self:_count('dropped', 1)
    return nil
  end
  local flow = { sock = sock, last = uv.now() }
  self.flows[key] = flow
  self.nflows = self.nflows + 1
  self.stats.flows = self.nflows
  self:_count('connections', 1)
  sock:recv_start(function(rerr, data)
    if rerr or not data or self.closed then
      return
    end
    flow.last = uv.now()
    if self.server:try_send(data, addr.ip, addr.port) then
      self:_count('bytes_out', #data)
      self:_count('datagrams_out', 1)
    else
      self:_count('dropped', 1)
    end
  end)
  return flow
end

function Listener:_received(err, data, addr)
  if err then
    log.debug('port mapping: UDP receive error', { route = self.route.label, error = err })
    return
  end
  if not data or not addr or self.closed then
    return
  end
  local key = addr.ip .. '|' .. addr.port
  local flow = self.flows[key] or self:_flow(key, addr)
  if not flow then
    return
  end
  flow.last = uv.now()
  if flow.sock:try_send(data, nil, nil) then -- connected: luv 1.44 wants the nils spelled out
    self:_count('bytes_in', #data)
    self:_count('datagrams_in', 1)
  else
    self:_count('dropped', 1)
  end
end

--- Close the flows idle for longer than udp_idle_timeout_ms (the owner's sweep).
function Listener:sweep(now)
  for key, flow in pairs(self.flows) do
    if now - flow.last > self.opts.udp_idle_timeout_ms then
      self:_close_flow(key)
    end
  end
end

--- Close the socket and every flow.
function Listener:close()
  self.closed = true
  close(self.server)
  for key in pairs(self.flows) do
    self:_close_flow(key)
  end
end

--- Bind for `route`. shared: the totals to add to; opts: { max_flows, udp_idle_timeout_ms }.
--- Returns the listener (listener.bound: { ip, port }) or nil, 'EADDRINUSE: <address> ...'
--- (or another code).
function M.listen(route, shared, opts)
  local server, bound, code = socket.open('udp', route)
  if not server then
    return nil, bound, code
  end
  local self = setmetatable({ route = route, server = server, shared = shared, opts = opts,
    flows = {}, nflows = 0, bound = bound,
    stats = { connections = 0, flows = 0, dropped = 0, bytes_in = 0, bytes_out = 0,
      datagrams_in = 0, datagrams_out = 0 } }, Listener)
  server:recv_start(function(rerr, data, addr)
    self:_received(rerr, data, addr)
  end)
  return self
end

return M
