-- SPDX-License-Identifier: Apache-2.0
-- Test helper: a minimal RFC 6455 websocket client over a raw luv connection (raw_conn),
-- driven synchronously from a spec: the upgrade with a random key and a checked
-- Sec-WebSocket-Accept (SHA-1 from the libcrypto linked into the binary), masked client
-- frames, text/binary/ping/close, fragment reassembly. Independent of lws by design.
local ffi = require('ffi')
local bit = require('bit')
local uv = require('luv')
local raw = require('raw_conn')

local M = {}

local GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

ffi.cdef([[
unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md);
]])

--- SHA-1 of `s` (20 raw bytes).
function M.sha1(s)
  local out = ffi.new('unsigned char[20]')
  ffi.C.SHA1(s, #s, out)
  return ffi.string(out, 20)
end

local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

--- Base64 (with padding) of `s`.
function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for k = 1, 4 do
      local idx = bit.band(bit.rshift(n, (4 - k) * 6), 63)
      chars[k] = B64:sub(idx + 1, idx + 1)
    end
    if not b then
      chars[3], chars[4] = '=', '='
    elseif not c then
      chars[4] = '='
    end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

--- The Sec-WebSocket-Accept value for `key`.
function M.accept_for(key)
  return M.base64(M.sha1(key .. GUID))
end

local function be(n, bytes)
  local t = {}
  for i = bytes, 1, -1 do
    t[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(t)
end

--- Encode one client frame (always masked, as RFC 6455 requires of clients).
function M.encode_frame(opcode, payload, fin)
  local len = #payload
  local head = string.char((fin == false and 0 or 0x80) + opcode)
  if len < 126 then
    head = head .. string.char(0x80 + len)
  elseif len < 65536 then
    head = head .. string.char(0x80 + 126) .. be(len, 2)
  else
    head = head .. string.char(0x80 + 127) .. be(len, 8)
  end
  local mask = uv.random(4)
  local m = { mask:byte(1, 4) }
  local buf = ffi.new('uint8_t[?]', math.max(len, 1))
  ffi.copy(buf, payload, len)
  for i = 0, len - 1 do
    buf[i] = bit.bxor(buf[i], m[i % 4 + 1])
  end
  return head .. mask .. ffi.string(buf, len)
end

--- Decode one server frame at the start of `buf`: frame { fin, opcode, data, masked } and
--- the bytes consumed, or nil if incomplete.
function M.decode_frame(buf)
  if #buf < 2 then
    return nil
  end
  local b1, b2 = buf:byte(1, 2)
  local frame = { fin = b1 >= 128, opcode = b1 % 16, masked = b2 >= 128, rsv = bit.band(b1, 0x70) }
  local len, pos = b2 % 128, 3
  if len == 126 then
    if #buf < 4 then
      return nil
    end
    len, pos = buf:byte(3) * 256 + buf:byte(4), 5
  elseif len == 127 then
    if #buf < 10 then
      return nil
    end
    len = 0
    for i = 3, 10 do
      len = len * 256 + buf:byte(i)
    end
    pos = 11
  end
  if frame.masked then
    pos = pos + 4 -- servers must not mask; reported, not unmasked
  end
  if #buf < pos + len - 1 then
    return nil
  end
  frame.data = buf:sub(pos, pos + len - 1)
  return frame, pos + len - 1
end

local Client = {}
Client.__index = Client

--- Connect and upgrade. opts: host (127.0.0.1), port | unix, path ('/'), protocols (list),
--- headers (extra request lines). Returns the client, or nil, reason, response.
function M.connect(opts)
  local where = opts.unix and { unix = opts.unix } or { host = opts.host or '127.0.0.1', port = opts.port }
  local conn, err = raw.connect(where)
  if not conn then
    return nil, err
  end
  local key = M.base64(uv.random(16))
  local lines = {
    ('GET %s HTTP/1.1'):format(opts.path or '/'),
    'Host: ' .. (opts.host_header or 'localhost'),
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: ' .. key,
    'Sec-WebSocket-Version: 13',
  }
  if opts.protocols then
    lines[#lines + 1] = 'Sec-WebSocket-Protocol: ' .. table.concat(opts.protocols, ', ')
  end
  for _, h in ipairs(opts.headers or {}) do
    lines[#lines + 1] = h
  end
  conn:write(table.concat(lines, '\r\n') .. '\r\n\r\n')
  local resp, rerr = conn:read_response(opts.timeout_ms or 2000)
  if not resp then
    conn:close()
    return nil, rerr
  end
  if resp.status ~= 101 then
    conn:close()
    return nil, ('HTTP %d'):format(resp.status), resp
  end
  if (resp.headers.upgrade or ''):lower() ~= 'websocket' then
    conn:close()
    return nil, 'no Upgrade: websocket in the answer', resp
  end
  if resp.headers['sec-websocket-accept'] ~= M.accept_for(key) then
    conn:close()
    return nil, 'wrong Sec-WebSocket-Accept', resp
  end
  return setmetatable({ conn = conn, response = resp, protocol = resp.headers['sec-websocket-protocol'],
    closed = false }, Client)
end

--- Send a frame with `opcode` (1 text, 2 binary, 8 close, 9 ping, 0 continuation).
function Client:send_frame(opcode, payload, fin)
  return self.conn:write(M.encode_frame(opcode, payload or '', fin))
end

function Client:send_text(s)
  return self:send_frame(1, s)
end

function Client:send_binary(s)
  return self:send_frame(2, s)
end

-- Next complete frame from the buffer, waiting up to timeout_ms.
function Client:next_frame(timeout_ms)
  local frame, used
  self.conn:wait(function(buf)
    frame, used = M.decode_frame(buf)
    return frame ~= nil
  end, timeout_ms)
  if not frame then
    return nil, self.conn.eof and 'closed' or 'timeout'
  end
  self.conn:take(used)
  return frame
end

--- Receive the next message: { type = 'text'|'binary'|'close'|'ping'|'pong', data, code,
--- reason }, or nil, 'closed'|'timeout'. Fragments are reassembled; pings are answered.
function Client:receive(timeout_ms)
  local parts, first = {}, nil
  while true do
    local f, err = self:next_frame(timeout_ms)
    if not f then
      return nil, err
    end
    if f.masked or f.rsv ~= 0 then
      return nil, 'protocol error: masked or RSV bits from the server'
    end
    if f.opcode == 8 then
      self.closed = true
      local msg = { type = 'close', data = f.data }
      if #f.data >= 2 then
        msg.code = f.data:byte(1) * 256 + f.data:byte(2)
        msg.reason = f.data:sub(3)
      end
      if not self.close_sent then
        self.close_sent = true -- answer the server's close, as RFC 6455 requires
        self:send_frame(8, f.data:sub(1, 2))
      end
      return msg
    elseif f.opcode == 9 then
      self:send_frame(10, f.data)
      return { type = 'ping', data = f.data }
    elseif f.opcode == 10 then
      return { type = 'pong', data = f.data }
    end
    if f.opcode ~= 0 then
      first = f.opcode
    end
    parts[#parts + 1] = f.data
    if f.fin then
      return { type = first == 2 and 'binary' or 'text', data = table.concat(parts) }
    end
  end
end

--- Start the closing handshake with `code` and wait for the server's close frame. Returns it
--- (or nil, reason), then closes the connection.
function Client:close(code, reason, timeout_ms)
  local msg, err
  if not self.closed then
    self.close_sent = true
    self:send_frame(8, be(code or 1000, 2) .. (reason or ''))
    repeat
      msg, err = self:receive(timeout_ms or 2000)
    until not msg or msg.type == 'close'
  end
  self.conn:close()
  return msg, err
end

--- Drop the TCP connection without a closing handshake.
function Client:abort()
  self.conn:close()
end

--- Whether the server closed the TCP connection (after waiting up to timeout_ms).
function Client:wait_eof(timeout_ms)
  return self.conn:wait_eof(timeout_ms)
end

return M
