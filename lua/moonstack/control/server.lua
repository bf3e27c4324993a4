-- SPDX-License-Identifier: Apache-2.0
-- The control socket: a unix socket (mode 0600) on which a daemon evaluates Lua lines in its
-- main state (the REPL). Protocol, per connection, one request per line:
--   text mode (default): each reply is a frame `STATUS LENGTH\n` + LENGTH bytes of body, with
--     STATUS one of `ok`, `error`, `more` (the chunk is incomplete: send the next line) and
--     `bye` (the server closes the connection). Bodies are pretty-printed values.
--   JSON mode (`\json`): each reply is one JSON line, {"ok":true,"results":[...]} or
--     {"ok":false,"error":"..."}, plus "output" when the chunk printed something.
-- Commands: \help, \json, \text, \reset (drop a pending multi-line chunk), \quit,
-- \complete TEXT (the names completing TEXT's last name: one per line of an `ok` body, or
-- {"ok":true,"results":[[...]]}), \interrupt (no reply: stops the evaluation in flight, with
-- the error `EINTR: evaluation interrupted`; ignored when none is).
-- An evaluation runs in a task (a helper may wait on I/O); lines that come meanwhile wait
-- their turn, so replies keep the order of the requests. A chunk that computes is stopped at
-- its CPU-time limit, or by `\interrupt`, which it notices by peeking at its connection
-- (moonstack.control.guard): the loop is not running then, so nobody else reads it.
local uv = require('luv')
local ffi = require('ffi')
local cjson = require('cjson.safe').new()
local eval = require('moonstack.control.eval')
local complete = require('moonstack.control.complete')
local pretty = require('moonstack.control.pretty')
local grid = require('moonstack.control.grid')
local socket_path = require('moonstack.control.socket_path')
local log = require('moonstack.core.log').new('control')

local errors = require('moonstack.core.errors')
local tables = require('moonstack.core.tables')

local M = {}

M.MAX_LINE = 1024 * 1024 -- default limit on a request line, in bytes
M.TIMEOUT = 30 -- default CPU-time limit on one evaluation, in seconds
M.MAX_CLIENTS = 16
local WRITE_HIGH_WATER = 8 * 1024 * 1024 -- stop reading a client whose replies pile up
local QUEUE_HIGH_WATER = 64 -- stop reading a client whose lines wait behind an evaluation

-- umask only: the socket file must be created with mode 0600, never wider. recv: to peek at a
-- connection for `\interrupt` while an evaluation holds the loop.
pcall(ffi.cdef, 'unsigned int umask(unsigned int mask);')
pcall(ffi.cdef, 'long recv(int fd, void *buf, size_t len, int flags);')
local C = ffi.C
local MSG_PEEK, MSG_DONTWAIT = 2, 64
local peek_buf = ffi.new('char[?]', 512)

local function fail(code, fmt, ...)
  return errors.fail(code, fmt:format(...))
end

local HELP = [[
Each line is Lua, evaluated in the daemon: as an expression first (`1+1`), then as a
statement (`x = 5`). Assignments stay in this REPL's environment; `_G` is the daemon's.
Text mode continues an incomplete chunk on the next line. print() goes to the reply.
Commands:
  \help    this text
  \json    JSON mode: one JSON line per reply, {"ok":...,"results":[...]|"error":...}
  \text    back to text mode
  \reset   drop a pending multi-line chunk
  \complete TEXT   the names that complete TEXT (what Tab asks)
  \interrupt       stop the running evaluation (what Ctrl-C sends; no reply)
  \quit    close this connection
Call help() for the daemon's helpers.
]]

local Conn = {}
Conn.__index = Conn

function Conn:send(data)
  if self.closed then
    return
  end
  self.handle:write(data, function(err)
    if err then
      log.debug('write failed', { client = self.id, error = err })
    end
    if self.paused and not self.closed and self.handle:get_write_queue_size() <
      WRITE_HIGH_WATER / 2 then
      self.paused = false
      if not self.held then
        self.handle:read_start(self.on_read)
      end
    end
  end)
  if not self.paused and self.handle:get_write_queue_size() > WRITE_HIGH_WATER then
    self.paused = true
    self.handle:read_stop()
  end
end

function Conn:frame(status, body)
  self:send(('%s %d\n%s'):format(status, #body, body))
end

function Conn:json(ok, field, value, output)
  local parts = { '{"ok":', ok and 'true' or 'false', ',"', field, '":', value }
  if output and output ~= '' then
    parts[#parts + 1] = ',"output":' .. cjson.encode(output)
  end
  parts[#parts + 1] = '}\n'
  self:send(table.concat(parts))
end

-- Reply to an evaluation result (see eval.Session:eval) in the connection's mode.
function Conn:reply(r)
  if self.mode == 'json' then
    if r.status == 'ok' then
      local items = {}
      for i = 1, r.values.n do
        local v = r.values[i]
        local text = v == nil and 'null' or cjson.encode(pretty.jsonable(v))
        items[i] = text or cjson.encode(pretty.format(v))
      end
      self:json(true, 'results', '[' .. table.concat(items, ',') .. ']', r.output)
    else
      self:json(false, 'error', cjson.encode(r.error), r.output)
    end
  elseif r.status == 'ok' then
    local body = r.output or ''
    if r.values.n > 0 then
      body = body .. grid.format_results(r.values, r.values.n) .. '\n'
    end
    self:frame('ok', body)
  elseif r.status == 'more' then
    self:frame('more', '')
  else
    self:frame('error', (r.output or '') .. r.error .. '\n')
  end
end

function Conn:reply_error(msg)
  self:reply({ status = 'error', error = msg, output = '' })
end

function Conn:command(cmd, arg)
  if cmd == '\\help' or cmd == '\\?' then
    if self.mode == 'json' then
      self:json(true, 'results', '[' .. cjson.encode(HELP) .. ']')
    else
      self:frame('ok', HELP)
    end
  elseif cmd == '\\json' then
    self.mode = 'json'
    self.session:reset()
    self:json(true, 'mode', '"json"')
  elseif cmd == '\\text' then
    self.mode = 'text'
    self:frame('ok', '')
  elseif cmd == '\\reset' then
    self.session:reset()
    self:reply({ status = 'ok', values = { n = 0 }, output = '' })
  elseif cmd == '\\complete' then
    local words = complete.candidates(arg or '', eval.layers(self.server.env))
    if self.mode == 'json' then
      self:json(true, 'results', '[' .. cjson.encode(pretty.jsonable(words)) .. ']')
    else
      self:frame('ok', #words > 0 and table.concat(words, '\n') .. '\n' or '')
    end
  elseif cmd == '\\quit' or cmd == '\\q' then
    if self.mode == 'json' then
      self:json(true, 'bye', 'true')
    else
      self:frame('bye', '')
    end
    self:close()
  else
    self:reply_error(("unknown command '%s' (try \\help)"):format(cmd))
  end
end

-- Whether the client asked to interrupt (peeking, not reading: the line is read later and
-- ignored) or went away. Called by the guard while an evaluation holds the loop.
function Conn:interrupt_pending()
  if self.closed then
    return true
  end
  if self.unread and self.unread:find('\\interrupt', self.unread_from, true) then
    return true -- it came in the same read as the line being evaluated
  end
  local ok, fd = pcall(self.handle.fileno, self.handle)
  if not ok or type(fd) ~= 'number' then
    return false
  end
  local n = tonumber(C.recv(fd, peek_buf, 512, MSG_PEEK + MSG_DONTWAIT))
  if n == 0 then
    return true -- the client closed the connection: nobody waits for the answer
  end
  return n > 0 and ffi.string(peek_buf, n):find('\\interrupt', 1, true) ~= nil
end

-- Evaluate a line in a task; lines that come meanwhile wait in the queue.
function Conn:evaluate(line)
  self.busy = true
  local conn = self
  local t = self.session:start(line, self.mode == 'text', function(r)
    conn.busy, conn.task = false, nil
    if conn.closed then
      return
    end
    conn:reply(r)
    conn:drain()
  end, { interrupted = function() return conn:interrupt_pending() end })
  if self.busy then
    self.task = t
  end
end

-- Serve the lines that waited for an evaluation, until one more waits.
function Conn:drain()
  while not self.busy and not self.closed and #self.queue > 0 do
    local line = table.remove(self.queue, 1)
    self:line(line)
  end
  if self.held and #self.queue < QUEUE_HIGH_WATER / 2 and not self.closed then
    self.held = false
    if not self.paused then
      self.handle:read_start(self.on_read)
    end
  end
end

function Conn:line(line)
  line = line:gsub('\r$', '')
  if line:match('^\\interrupt%s*$') then
    if self.task then
      self.task:cancel('evaluation interrupted')
    end
    return
  end
  if self.busy then
    self.queue[#self.queue + 1] = line
    if #self.queue >= QUEUE_HIGH_WATER and not self.held then
      self.held = true
      self.handle:read_stop()
    end
    return
  end
  if line:match('^\\[%a?]') then
    return self:command(line:match('^(%S+)'), line:match('^%S+%s(.*)$'))
  end
  if self.mode == 'text' and line:match('^%s*$') and not self.session.pending then
    return self:frame('ok', '')
  end
  self:evaluate(line)
end

-- Split the byte stream into lines; a line over the limit gets one error reply and is
-- skipped up to its end.
function Conn:data(data)
  local start = 1
  while not self.closed do
    local nl = data:find('\n', start, true)
    if not nl then
      if not self.discarding and start <= #data then
        self.partial[#self.partial + 1] = data:sub(start)
        self.partial_len = self.partial_len + #data - start + 1
        if self.partial_len > self.server.max_line then
          self.partial, self.partial_len, self.discarding = {}, 0, true
          self:reply_error(('ETOOBIG: line longer than %d bytes'):format(self.server.max_line))
        end
      end
      return
    end
    local piece = data:sub(start, nl - 1)
    start = nl + 1
    if self.discarding then
      self.discarding = false
    else
      self.partial[#self.partial + 1] = piece
      local line = table.concat(self.partial)
      self.partial, self.partial_len = {}, 0
      if #line > self.server.max_line then
        self:reply_error(('ETOOBIG: line longer than %d bytes'):format(self.server.max_line))
      else
        self.unread, self.unread_from = data, start
        self:line(line)
        self.unread = nil
      end
    end
  end
end

function Conn:close()
  if self.closed then
    return
  end
  self.closed = true
  self.server.conns[self] = nil
  if self.task then
    self.task:cancel('the client went away')
  end
  log.debug('control client disconnected', { path = self.server.path, client = self.id })
  local h = self.handle
  if not h:is_closing() then
    h:read_stop()
    -- flush queued replies, then close
    local ok = h:shutdown(function()
      if not h:is_closing() then
        h:close()
      end
    end)
    if not ok and not h:is_closing() then
      h:close()
    end
  end
end

local Server = {}
Server.__index = Server

function Server:accept(err)
  if err then
    log.warn('control socket accept failed', { path = self.path, error = err })
    return
  end
  local h = uv.new_pipe(false)
  local ok, aerr = self.handle:accept(h)
  if not ok then
    log.warn('control socket accept failed', { path = self.path, error = aerr })
    h:close()
    return
  end
  self.next_id = self.next_id + 1
  local conn = setmetatable({
    server = self, handle = h, id = self.next_id, mode = 'text', partial = {}, partial_len = 0,
    queue = {},
    session = eval.session({ env = self.env, timeout = self.timeout }),
  }, Conn)
  if self:clients() >= self.max_clients then
    log.warn('control socket: too many clients', { path = self.path })
    conn:reply_error(('EBUSY: too many clients (%d)'):format(self.max_clients))
    conn:close()
    return
  end
  self.conns[conn] = true
  log.debug('control client connected', { path = self.path, client = conn.id })
  conn.on_read = function(rerr, data)
    if rerr or data == nil then
      return conn:close()
    end
    conn:data(data)
  end
  h:read_start(conn.on_read)
end

--- Number of connected clients.
function Server:clients()
  return tables.count(self.conns)
end

--- Stop listening, disconnect every client and remove the socket file. Idempotent.
function Server:close()
  if self.closed then
    return
  end
  self.closed = true
  for conn in pairs(self.conns) do
    conn:close()
  end
  if not self.handle:is_closing() then
    self.handle:close()
  end
  socket_path.unlink_ours(self.path, self.ino)
  log.debug('control socket closed', { path = self.path })
end

function Server:__tostring()
  return ('control.server: %s%s'):format(self.path, self.closed and ' (closed)' or '')
end

--- Whether listen(path) can work, without touching anything (moonstack.control.socket_path).
M.check = socket_path.check

--- Listen on the unix socket `path` (created with mode 0600). Refuses a path where a live
--- process answers, or that is not a socket; removes a stale socket file.
--- opts: env (table of helpers visible as globals in REPL chunks), timeout (CPU seconds
--- per evaluation, default 30, 0 = none), max_line (bytes, default 1 MiB), max_clients
--- (default 16), backlog (default 16).
--- Returns the server (`:close()`, `:clients()`, `.path`), or nil, message, code
--- (EADDRINUSE, EEXIST, ENAMETOOLONG, or a libuv code).
function M.listen(path, opts)
  if type(path) ~= 'string' or path == '' then
    error('control.listen: path must be a non-empty string', 2)
  end
  if opts ~= nil and type(opts) ~= 'table' then
    error('control.listen: opts must be a table', 2)
  end
  opts = opts or {}
  local ready, perr, pcode = socket_path.prepare(path)
  if not ready then
    return nil, perr, pcode
  end
  local handle = uv.new_pipe(false)
  -- The socket file must never exist with a wider mode: create it under umask 0177.
  local old = C.umask(tonumber('177', 8))
  local ok, err, code = handle:bind(path)
  C.umask(old)
  if not ok then
    handle:close()
    return fail(code or 'EIO', 'cannot bind the control socket %s: %s', path,
      (tostring(err):gsub('^%u+: ', '')))
  end
  local bound = uv.fs_lstat(path)
  if not bound or bit.band(bound.mode, tonumber('777', 8)) ~= tonumber('600', 8) then
    handle:close()
    uv.fs_unlink(path)
    return fail('EPERM', 'control socket %s was not created with mode 0600', path)
  end
  local self = setmetatable({
    path = path, handle = handle, ino = bound.ino, conns = {}, next_id = 0,
    env = eval.new_env(opts.env), timeout = opts.timeout == nil and M.TIMEOUT or opts.timeout,
    max_line = opts.max_line or M.MAX_LINE, max_clients = opts.max_clients or M.MAX_CLIENTS,
  }, Server)
  -- If the server is never closed, remove the socket file when the state closes.
  local guard = newproxy(true)
  getmetatable(guard).__gc = function()
    if not self.closed then
      socket_path.unlink_ours(path, self.ino)
    end
  end
  self.guard = guard
  ok, err, code = handle:listen(opts.backlog or 16, function(lerr)
    self:accept(lerr)
  end)
  if not ok then
    self.closed = true
    handle:close()
    socket_path.unlink_ours(path, self.ino)
    return nil, err, code
  end
  log.debug('control socket listening', { path = path })
  return self
end

return M
