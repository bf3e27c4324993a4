-- SPDX-License-Identifier: Apache-2.0
-- A TLS connection on a luv TCP handle, driven by the memory-BIO engine of moonstack.native.tls:
-- the same connection carries several exchanges (Atlas's quote request, then the application's
-- traffic), and exposes its peer certificate and its exported keying material (RFC 9266). Reads
-- buffer plaintext (bounded by MAX_BUFFER); the blocking helpers (handshake, wait_for, send)
-- run in a task, with timeouts. on_data switches a connection to push mode for relays.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')

local M = {}

--- The most plaintext held for a reader that has not taken it.
M.MAX_BUFFER = 1024 * 1024

local Conn = {}
Conn.__index = Conn

--- Wrap the connected (or accepted) TCP handle `tcp` with TLS engine `engine` (a client engine
--- starts its handshake at once). Returns the connection.
function M.wrap(tcp, engine, opts)
  local c = setmetatable({ tcp = tcp, e = engine, buf = '', eof = false, ready = false,
    client = opts and opts.client }, Conn)
  tcp:read_start(function(err, data)
    c:_on_read(err, data)
  end)
  if c.client then
    local ok, err = engine:handshake()
    if ok == nil then
      c.err = err
      c.eof = true
    end
    c:_flush()
  end
  return c
end

function Conn:_flush()
  local out = self.e:take()
  if #out > 0 and not self.closed then
    self.tcp:write(out)
  end
end

function Conn:_wake()
  local w = self.waiter
  if w then
    self.waiter = nil
    w()
  end
end

function Conn:_ended(err)
  if not self.eof then
    self.eof = true
    self.err = self.err or err
  end
  if self.on_data then
    local f = self.on_data
    self.on_data = nil
    f(nil)
  end
  self:_wake()
end

function Conn:_on_read(err, data)
  if self.closed then
    return
  end
  if err or not data then
    return self:_ended(err and ('ECONNRESET: ' .. tostring(err)) or nil)
  end
  self.e:feed(data)
  if not self.ready then
    local ok, herr = self.e:handshake()
    self:_flush()
    if ok == nil then
      return self:_ended(herr)
    end
    if not ok then
      return
    end
    self.ready = true
  end
  local plain, rerr = self.e:read()
  self:_flush()
  if plain == false then
    return self:_ended(nil)
  elseif plain == nil then
    return self:_ended(rerr)
  elseif #plain > 0 then
    if self.on_data then
      self.on_data(plain)
    else
      self.buf = self.buf .. plain
      if #self.buf > M.MAX_BUFFER then
        self.tcp:read_stop()
        return self:_ended('EMSGSIZE: more than ' .. M.MAX_BUFFER .. ' bytes unread')
      end
    end
  end
  self:_wake()
end

--- Wait (in a task) until `cond(conn)` holds, at most `timeout_ms` in all (however the bytes
--- trickle in). True, or nil, msg, code (the connection ended: EOF or its TLS error;
--- ETIMEDOUT).
function Conn:wait_for(cond, timeout_ms)
  local deadline = timeout_ms and uv.now() + timeout_ms
  while not cond(self) do
    if self.eof then
      local msg = self.err or 'EOF: the connection was closed'
      return nil, msg, msg:match('^(%u+):') or 'EOF'
    end
    local left = deadline and deadline - uv.now()
    if left and left <= 0 then
      return errors.fail('ETIMEDOUT', 'the peer was too slow')
    end
    local ok, err, code = task.await(function(resume)
      self.waiter = function()
        resume(true)
      end
      return function()
        self.waiter = nil
      end
    end, { timeout = left })
    if not ok then
      return nil, err, code
    end
  end
  return true
end

--- Complete the handshake (in a task). True or nil, msg, code.
function Conn:handshake(timeout_ms)
  return self:wait_for(function(c)
    return c.ready
  end, timeout_ms)
end

--- Send plaintext. True or nil, msg, code.
function Conn:send(data)
  if self.closed then
    return nil, 'EPIPE: the connection is closed', 'EPIPE'
  end
  local ok, err, code = self.e:write(data)
  self:_flush()
  return ok, err, code
end

--- Take `n` bytes (or everything) of the buffered plaintext.
function Conn:take(n)
  n = n or #self.buf
  local out = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return out
end

--- The exported keying material of this session (`label`, `len` bytes), or nil, msg, code.
function Conn:exporter(label, len)
  return self.e:exporter(label, len)
end

--- The peer's leaf certificate (DER), or nil.
function Conn:peer_cert()
  return self.e:peer_cert()
end

--- Our own leaf certificate (DER), or nil.
function Conn:own_cert()
  return self.e:own_cert()
end

--- Send close_notify and close the socket.
function Conn:close()
  if self.closed then
    return
  end
  pcall(function()
    self.e:close_notify()
    self:_flush()
  end)
  self.closed = true
  if not self.tcp:is_closing() then
    self.tcp:shutdown(function()
      if not self.tcp:is_closing() then
        self.tcp:close()
      end
    end)
  end
  self.e:free()
  self:_ended(nil)
end

--- Resolve `host` and connect a TCP handle to `host`:`port` (in a task), at most
--- `timeout_ms`. The handle, or nil, msg, code.
function M.tcp_connect(host, port, timeout_ms)
  local addrs, aerr = task.await(function(resume)
    uv.getaddrinfo(host, tostring(port), { socktype = 'stream' }, function(err, res)
      resume(res, err)
    end)
  end, { timeout = timeout_ms })
  if not addrs or not addrs[1] then
    return errors.fail('EHOSTUNREACH', ('cannot resolve %s: %s'):format(host, tostring(aerr)))
  end
  local tcp = uv.new_tcp()
  local ok, err = task.await(function(resume)
    tcp:connect(addrs[1].addr, tonumber(port), function(cerr)
      if cerr then
        resume(nil, cerr)
      else
        resume(true)
      end
    end)
  end, { timeout = timeout_ms })
  if not ok then
    if not tcp:is_closing() then
      tcp:close()
    end
    local msg = tostring(err)
    local code = msg:match('^(E%u+)') or 'ECONNREFUSED'
    return errors.fail(code, ('cannot connect to %s:%s: %s'):format(host, port, msg))
  end
  return tcp
end

return M
