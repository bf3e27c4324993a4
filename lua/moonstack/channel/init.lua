-- SPDX-License-Identifier: Apache-2.0
-- Host <-> guest channels (kms-vmm-gateway.md §4.7): the host API, the guest API and the
-- simulated quote service travel between a VM and its VMM over one persistent byte stream per
-- service: vsock in production, a virtio-serial port where vsock is missing (QEMU exposes it to
-- the guest as /dev/vportNpM, named by /sys/class/virtio-ports/*/name, and to the host as a
-- unix socket chardev). Both ends keep using plain HTTP clients and servers on local unix
-- sockets; a relay joins them to the stream, one connection at a time. On the stream, bytes go
-- in frames ('D' + 4-byte big-endian length + up to 64 KiB, or 'C' + 0: the connection ended),
-- so each side learns when the other's connection closed (an HTTP client that asked for
-- `Connection: close` waits for that) and a caller that gives up never leaves its answer to
-- the next one:
--
--   channel.serve(stream, path)    listen on unix `path` (0600); each connection accepted is
--                                  bridged to the stream in turn (the next waits until the
--                                  previous one closes): the side that calls over the stream
--   channel.connect(stream, path)  bytes arriving on the stream go to a connection to unix
--                                  `path`, opened when the first bytes come and opened again
--                                  after the server closes it: the side that answers
--
-- `stream` is { serial = NAME } (the guest's virtio-serial port of that name), { unix = PATH }
-- (the host's end: QEMU's chardev socket, reconnected while the relay lives) or { vsock = {
-- cid, port } } (refused here: this runtime has no vsock sockets yet). Both return a relay with
-- :close() and :stats(), or nil, msg, code.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local log = require('moonstack.core.log').new('channel')

local M = {}

--- Where the guest finds its virtio-serial ports: <dir>/<port>/name holds the port's name.
M.VIRTIO_PORTS = '/sys/class/virtio-ports'

--- How long the relay waits before opening a stream again (ms).
M.RETRY_MS = 100

--- Bytes held for a side that is not there yet, at most.
M.MAX_PENDING = 4 * 1024 * 1024

--- The device of the virtio-serial port called `name` ('/dev/vport2p1'), or nil, msg, code.
function M.serial_device(name, dir)
  dir = dir or M.VIRTIO_PORTS
  local req = uv.fs_scandir(dir)
  while req do
    local entry = uv.fs_scandir_next(req)
    if not entry then
      break
    end
    local f = io.open(dir .. '/' .. entry .. '/name')
    local got = f and f:read('*l')
    if f then
      f:close()
    end
    if got == name then
      return '/dev/' .. entry
    end
  end
  return errors.fail('ENOENT', ('no virtio-serial port named %s (in %s)'):format(name, dir))
end

local function describe(stream)
  return stream.serial and ('serial:' .. stream.serial) or stream.unix and ('unix:' .. stream.unix)
    or 'vsock'
end

--- Whether `stream` is a valid stream spec: true or nil, 'EINVAL: ...'.
function M.check(stream)
  if type(stream) ~= 'table' then
    return errors.fail('EINVAL', 'channel: expected { serial = NAME }, { unix = PATH } or { vsock = ... }')
  end
  if stream.vsock then
    return errors.fail('ENOTSUP', 'channel: vsock is not supported by this runtime yet: use a '
      .. 'virtio-serial port ({ serial = NAME })')
  end
  if type(stream.serial) == 'string' and stream.serial:match('^[%w._-]+$') then
    return true
  end
  if type(stream.unix) == 'string' and stream.unix ~= '' then
    return true
  end
  return errors.fail('EINVAL', 'channel: expected { serial = NAME } or { unix = PATH }')
end

-- Open the stream: a luv stream handle, or nil, msg, code. on_ready(handle) is called once it
-- is usable (at once for a serial port, when connected for a unix socket).
local function open_stream(stream, on_ready)
  if stream.serial then
    local dev, err, code = M.serial_device(stream.serial, stream.ports_dir)
    if not dev then
      return nil, err, code
    end
    local fd
    fd, err, code = uv.fs_open(dev, 'r+', 0) -- read and write on one open (the notes: else
    if not fd then                           -- the host's answers may be lost)
      return nil, ('cannot open %s: %s'):format(dev, tostring(err)), code
    end
    local h = uv.new_pipe(false)
    local ok, oerr = h:open(fd)
    if not ok then
      h:close()
      uv.fs_close(fd)
      return errors.fail('EIO', ('cannot use %s as a stream: %s'):format(dev, tostring(oerr)))
    end
    on_ready(h)
    return h
  end
  local h = uv.new_pipe(false)
  h:connect(stream.unix, function(err)
    if err then
      h:close()
      on_ready(nil, err)
    else
      on_ready(h)
    end
  end)
  return h
end

local Relay = {}
Relay.__index = Relay

-- (Re)open the stream until it works or the relay closes.
function Relay:_open_stream()
  if self.closed or self.stream_h then
    return
  end
  local h, err = open_stream(self.stream, function(handle, cerr)
    if self.closed then
      if handle and not handle:is_closing() then
        handle:close()
      end
      return
    end
    if not handle then
      self:_retry(cerr)
      return
    end
    self.stream_h = handle
    self.stats_.opened = self.stats_.opened + 1
    self.rx = ''
    handle:read_start(function(rerr, data)
      if rerr or not data then
        self:_stream_lost(rerr or 'EOF')
      else
        self:_frames(data)
      end
    end)
    self:_flush_to_stream()
  end)
  if not h then
    self:_retry(err)
  end
end

function Relay:_retry(err)
  if self.closed then
    return
  end
  if not self.warned then
    self.warned = true
    log.debug('channel stream not available yet', { stream = describe(self.stream), error = tostring(err) })
  end
  if not self.timer then
    self.timer = uv.new_timer()
  end
  self.timer:start(M.RETRY_MS, 0, function() self:_open_stream() end)
end

function Relay:_stream_lost(why)
  local h = self.stream_h
  self.stream_h = nil
  if h and not h:is_closing() then
    h:close()
  end
  if self.closed then
    return
  end
  log.debug('channel stream closed, opening it again', { stream = describe(self.stream),
    why = tostring(why) })
  self:_on_stream_lost()
  self:_retry(why)
end

local FRAME_MAX = 65536

local function be32(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

-- Parse the frames in `data` (after what a previous read left), dispatching each.
function Relay:_frames(data)
  local buf = self.rx .. data
  local pos = 1
  while #buf - pos + 1 >= 5 do
    local kind = buf:sub(pos, pos)
    local b1, b2, b3, b4 = buf:byte(pos + 1, pos + 4)
    local len = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    if (kind ~= 'D' and kind ~= 'C') or len > FRAME_MAX then
      log.warn('channel: a malformed frame on the stream: reopening it', { stream = describe(self.stream) })
      self.rx = ''
      self:_stream_lost('bad frame')
      return
    end
    if #buf - pos + 1 < 5 + len then
      break
    end
    local payload = buf:sub(pos + 5, pos + 4 + len)
    pos = pos + 5 + len
    if kind == 'D' then
      self.stats_.from_stream = self.stats_.from_stream + len
      self:_from_stream(payload)
    else
      self:_peer_closed()
    end
    if not self.stream_h then
      return -- lost meanwhile
    end
  end
  self.rx = buf:sub(pos)
end

-- Write raw frame bytes to the stream, or hold them until it is open.
function Relay:_write_stream(bytes)
  if self.stream_h then
    self.stream_h:write(bytes)
    return
  end
  self.pending_out = (self.pending_out or '') .. bytes
  if #self.pending_out > M.MAX_PENDING then
    self.pending_out = nil
    log.warn('channel: the stream is not there; bytes dropped', { stream = describe(self.stream) })
  end
end

-- Tell the other side that the connection of this side ended.
function Relay:_send_close()
  self:_write_stream('C' .. be32(0))
end

-- Send bytes of the local connection to the other side.
function Relay:_to_stream(data)
  self.stats_.to_stream = self.stats_.to_stream + #data
  for i = 1, #data, FRAME_MAX do
    local chunk = data:sub(i, i + FRAME_MAX - 1)
    self:_write_stream('D' .. be32(#chunk) .. chunk)
  end
end

function Relay:_flush_to_stream()
  if self.stream_h and self.pending_out then
    self.stream_h:write(self.pending_out)
    self.pending_out = nil
  end
end

--- Counters: opened (stream opens), from_stream, to_stream (bytes), connections.
function Relay:stats()
  local s = {}
  for k, v in pairs(self.stats_) do
    s[k] = v
  end
  return s
end

local function close_handle(h)
  if h and not h:is_closing() then
    h:close()
  end
end

--- Stop relaying: the stream, the listener and every connection close (idempotent).
function Relay:close()
  if self.closed then
    return
  end
  self.closed = true
  close_handle(self.stream_h)
  self.stream_h = nil
  if self.timer then
    self.timer:stop()
    close_handle(self.timer)
  end
  close_handle(self.server)
  close_handle(self.conn)
  for _, c in ipairs(self.waiting or {}) do
    close_handle(c)
  end
  self.waiting = {}
  if self.listen_path then
    uv.fs_unlink(self.listen_path)
  end
end

-- A relay over `stream`: listen_path for serve(), target for connect().
local function new_relay(stream, fields)
  local self = setmetatable({ stream = stream, waiting = {},
    stats_ = { opened = 0, from_stream = 0, to_stream = 0, connections = 0 } }, Relay)
  for k, v in pairs(fields) do
    self[k] = v
  end
  return self
end

-- ---- serve: local clients, one at a time, over the stream ----

local next_client

-- A caller's exchange is over when both sides said their connection ended.
local function serve_end_if_done(self)
  if self.sent_c and self.got_c then
    self.sent_c, self.got_c, self.conn = false, false, nil
    next_client(self)
  end
end

next_client = function(self)
  if self.conn or self.closed then
    return
  end
  local c = table.remove(self.waiting, 1)
  if not c then
    return
  end
  self.conn = c
  c:read_start(function(err, data)
    if err or not data then -- the caller is done (or gave up): the other side closes too
      close_handle(c)
      if self.conn == c and not self.sent_c then
        self.sent_c = true
        self:_send_close()
        serve_end_if_done(self)
      end
    else
      self:_to_stream(data)
    end
  end)
end

-- The answering side's connection ended: the caller's closes once it has every byte (and the
-- other side learns it; the next caller starts once both sides said so).
local function serve_peer_closed(self)
  self.got_c = true
  local c = self.conn
  if c and not self.sent_c then
    c:read_stop()
    if not c:is_closing() then
      c:shutdown(function() close_handle(c) end)
    end
    self.sent_c = true
    self:_send_close()
  end
  serve_end_if_done(self)
end

local function serve_from_stream(self, data)
  if self.conn and not self.conn:is_closing() then
    self.conn:write(data)
  else
    log.debug('channel: bytes from the stream with no caller (dropped)', { bytes = #data })
  end
end

local function serve_stream_lost(self)
  -- the exchange in progress cannot finish: its caller sees the connection close
  close_handle(self.conn)
  self.conn, self.sent_c, self.got_c = nil, false, false
  next_client(self)
end

--- Serve local callers at unix `path` over `stream` (see the file comment).
function M.serve(stream, path)
  local ok, err, code = M.check(stream)
  if not ok then
    return nil, err, code
  end
  local self = new_relay(stream, { _from_stream = serve_from_stream,
    _on_stream_lost = serve_stream_lost, _peer_closed = serve_peer_closed })
  uv.fs_unlink(path) -- a previous relay's
  local server = uv.new_pipe(false)
  local bok, berr = server:bind(path)
  if not bok then
    server:close()
    return errors.fail('EADDRINUSE', ('channel: cannot listen on %s: %s'):format(path, tostring(berr)))
  end
  self.listen_path = path
  uv.fs_chmod(path, 384)
  server:listen(16, function(lerr)
    if lerr then
      return
    end
    local c = uv.new_pipe(false)
    if not server:accept(c) then
      c:close()
      return
    end
    self.stats_.connections = self.stats_.connections + 1
    self.waiting[#self.waiting + 1] = c
    next_client(self)
  end)
  self.server = server
  self:_open_stream()
  return self
end

-- ---- connect: the stream's bytes to a local server ----

local function connect_from_stream(self, data)
  if self.conn and self.conn_ready then
    self.conn:write(data)
    return
  end
  self.pending_in = (self.pending_in or '') .. data
  if #self.pending_in > M.MAX_PENDING then
    self.pending_in = nil
    log.warn('channel: the local server is not there; bytes dropped', { path = self.target })
    return
  end
  if self.conn then
    return -- connecting
  end
  local c = uv.new_pipe(false)
  self.conn, self.conn_ready = c, false
  self.stats_.connections = self.stats_.connections + 1
  c:connect(self.target, function(err)
    if self.conn ~= c then
      close_handle(c)
      return
    end
    if err then
      close_handle(c)
      self.conn, self.pending_in = nil, nil
      log.warn('channel: cannot reach the local server (request dropped)', { path = self.target,
        error = tostring(err) })
      if not self.sent_c then -- the caller sees its connection close at once
        self.sent_c = true
        self:_send_close()
      end
      return
    end
    self.conn_ready = true
    if self.pending_in then
      c:write(self.pending_in)
      self.pending_in = nil
    end
    c:read_start(function(rerr, rdata)
      if rerr or not rdata then
        close_handle(c)
        if self.conn == c then
          self.conn, self.conn_ready = nil, false -- the next bytes open another
          if not self.sent_c then
            self.sent_c = true -- the caller's side answers with its own end
            self:_send_close()
          end
        end
      else
        self:_to_stream(rdata)
      end
    end)
  end)
end

-- The other side's connection ended. If ours ended first, that closes the exchange; else the
-- caller is done (or gave up): ours closes too, never left to the next caller, and we say so.
local function connect_peer_closed(self)
  if self.sent_c then
    self.sent_c = false
    return
  end
  local c = self.conn
  self.conn, self.conn_ready, self.pending_in = nil, false, nil
  if c then
    c:read_stop()
    if not c:is_closing() then
      c:shutdown(function() close_handle(c) end)
    end
  end
  self:_send_close()
end

local function connect_stream_lost(self)
  close_handle(self.conn)
  self.conn, self.conn_ready, self.pending_in, self.sent_c = nil, false, nil, false
end

--- Answer the stream's callers with the local server at unix `path` (see the file comment).
function M.connect(stream, path)
  local ok, err, code = M.check(stream)
  if not ok then
    return nil, err, code
  end
  local self = new_relay(stream, { target = path, _from_stream = connect_from_stream,
    _on_stream_lost = connect_stream_lost, _peer_closed = connect_peer_closed })
  self:_open_stream()
  return self
end

return M
