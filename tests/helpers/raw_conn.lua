-- SPDX-License-Identifier: Apache-2.0
-- Test helper: a raw stream connection over luv (TCP or unix socket) driven synchronously
-- from a spec with loop.run_until, and a strict HTTP/1.1 response reader, to check what a
-- server really puts on the wire. Not for use inside loop callbacks or tasks.
local uv = require('luv')
local loop = require('loop')

local M = {}

local Conn = {}
Conn.__index = Conn

--- Connect to { host = '127.0.0.1', port = N } or { unix = PATH }. Returns the connection,
--- or nil, error name (e.g. 'ECONNREFUSED').
function M.connect(where, timeout_ms)
  local self = setmetatable({ parts = {}, size = 0, eof = false, closed = false }, Conn)
  local handle = where.unix and uv.new_pipe(false) or uv.new_tcp()
  self.handle = handle
  local done, err = false, nil
  local function on_connect(e)
    done, err = true, e
  end
  if where.unix then
    handle:connect(where.unix, on_connect)
  else
    handle:connect(where.host or '127.0.0.1', where.port, on_connect)
  end
  if not loop.run_until(function() return done end, timeout_ms or 2000) then
    self:close()
    return nil, 'ETIMEDOUT'
  end
  if err then
    self:close()
    return nil, err
  end
  handle:read_start(function(rerr, chunk)
    if rerr then
      self.read_error = rerr
      self.eof = true
    elseif chunk then
      self.parts[#self.parts + 1] = chunk -- joined on demand: big bodies come in many reads
      self.size = self.size + #chunk
    else
      self.eof = true
    end
  end)
  return self
end

--- Queue `data` for writing; runs the loop until it is written. Returns true or nil, err.
function Conn:write(data)
  local done, err = false, nil
  local ok, e = pcall(self.handle.write, self.handle, data, function(werr)
    done, err = true, werr
  end)
  if not ok then
    return nil, tostring(e)
  end
  loop.run_until(function() return done end, 2000)
  if err then
    return nil, err
  end
  return done or nil, 'write did not complete'
end

--- Half-close: shut down the write side (the peer reads EOF) and keep reading.
function Conn:shutdown()
  local done = false
  self.handle:shutdown(function() done = true end)
  loop.run_until(function() return done end, 2000)
  return done
end

--- Everything received and not taken yet, as one string.
function Conn:data()
  if #self.parts ~= 1 then
    self.parts = { table.concat(self.parts) }
  end
  return self.parts[1]
end

--- Run the loop until `pred(data)` holds or the peer closes. Returns pred's value (or false).
function Conn:wait(pred, timeout_ms)
  local result
  loop.run_until(function()
    result = pred(self:data())
    return result or self.eof
  end, timeout_ms or 2000)
  return result or pred(self:data()) or false
end

--- Run the loop until `n` bytes are buffered or the peer closes. Returns true if they are.
function Conn:wait_bytes(n, timeout_ms)
  loop.run_until(function() return self.size >= n or self.eof end, timeout_ms or 2000)
  return self.size >= n
end

--- Run the loop until the peer closes. Returns true if it did within `timeout_ms`.
function Conn:wait_eof(timeout_ms)
  return loop.run_until(function() return self.eof end, timeout_ms or 2000)
end

--- Remove and return the first `n` bytes of the buffer.
function Conn:take(n)
  local all = self:data()
  self.parts = { all:sub(n + 1) }
  self.size = #self.parts[1]
  return all:sub(1, n)
end

function Conn:close()
  if not self.closed then
    self.closed = true
    if not self.handle:is_closing() then
      self.handle:close()
    end
  end
end

--- Parse one HTTP/1.1 response at the start of `buf`. Returns the response
--- { status, reason, head, headers = {name = value}, header_list = {{name, value}}, body } and
--- the bytes consumed; nil if incomplete; or false, reason if malformed. `head_only` for HEAD.
function M.parse_response(buf, head_only)
  local head_end = buf:find('\r\n\r\n', 1, true)
  if not head_end then
    return nil
  end
  local head = buf:sub(1, head_end - 1)
  local status_line, rest = head:match('^([^\r\n]*)\r\n?(.*)$')
  status_line = status_line or head
  local status, reason = status_line:match('^HTTP/1%.[01] (%d%d%d) ?(.*)$')
  if not status then
    return false, 'bad status line: ' .. status_line
  end
  local r = { status = tonumber(status), reason = reason, head = head, headers = {}, header_list = {} }
  for line in (rest or ''):gmatch('[^\r\n]+') do
    local name, value = line:match('^([^:]+):%s*(.-)%s*$')
    if not name then
      return false, 'bad header line: ' .. line
    end
    name = name:lower()
    r.header_list[#r.header_list + 1] = { name, value }
    r.headers[name] = r.headers[name] and (r.headers[name] .. ', ' .. value) or value
  end
  local body_start = head_end + 4
  if r.headers['transfer-encoding'] then
    return false, 'unexpected Transfer-Encoding: ' .. r.headers['transfer-encoding']
  end
  local len = tonumber(r.headers['content-length'])
  if head_only or r.status == 204 or r.status == 304 or r.status < 200 then
    len = 0
  end
  if not len then
    return false, 'no Content-Length'
  end
  if #buf - body_start + 1 < len then
    return nil
  end
  r.body = buf:sub(body_start, body_start + len - 1)
  return r, body_start + len - 1
end

--- Read one response from the connection (consuming it). Returns the response, or nil, reason.
function Conn:read_response(timeout_ms, head_only)
  local parsed, consumed
  -- the head first, then the body by its length, without re-parsing on every read
  local head_end = self:wait(function(buf) return buf:find('\r\n\r\n', 1, true) end, timeout_ms)
  if head_end then
    local len = tonumber(self:data():sub(1, head_end):lower():match('\ncontent%-length:%s*(%d+)'))
    if len then
      self:wait_bytes(head_end + 3 + len, timeout_ms)
    end
  end
  self:wait(function(buf)
    parsed, consumed = M.parse_response(buf, head_only)
    return parsed ~= nil
  end, timeout_ms)
  if parsed == nil then
    return nil, self.eof and 'connection closed before a full response' or 'timed out'
  end
  if parsed == false then
    return nil, consumed
  end
  self:take(consumed)
  return parsed
end

--- One request on a fresh connection: send `raw` and read the response. Returns it and the
--- connection (still open unless the server closed it), or nil, reason.
function M.request(where, raw, timeout_ms)
  local c, err = M.connect(where)
  if not c then
    return nil, err
  end
  c:write(raw)
  local r, rerr = c:read_response(timeout_ms)
  if not r then
    c:close()
    return nil, rerr
  end
  return r, c
end

return M
