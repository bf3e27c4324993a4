-- SPDX-License-Identifier: Apache-2.0
-- The app's log store: what each service (a runner's process or container) wrote on stdout
-- and stderr, split into lines, kept in a bounded in-memory ring per service (oldest records
-- dropped first) and optionally appended to <dir>/<service>.log as JSON lines
-- {"time":…,"channel":…,"message":…} (rotated to .1 at max_file_bytes). It is the context's
-- `logs` provider (moonstack.agent.context):
--   store:list()                  -> { { name, status, exit_code?, signal?, started_at?,
--                                        exited_at? } } sorted by name
--   store:read(name, opts)        -> { { time, channel, message } } or nil, 'ENOENT: ...'
--                                    opts: since, ['until'] (unix seconds, 0/nil = open),
--                                    tail (last n after filtering; nil/negative = all)
--   store:follow(name, fn)        -> subscription with :close(); fn(record) for each new
--                                    record, fn(nil) once the service has ended
--   store:text(name, opts)        -> the messages concatenated (opts.timestamps prefixes each
--                                    with an RFC 3339 time, as `docker logs -t`)
-- A record's message keeps its trailing newline (as Docker log frames do); a line longer than
-- max_line bytes is cut into several records. time is unix seconds with microseconds.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local cjson = require('cjson.safe')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- Longest message of one record (bytes).
M.MAX_LINE = 16 * 1024

local Store = {}
Store.__index = Store

--- A new store. opts = { buffer_bytes = 1 MiB per service, dir = nil (no files),
--- max_file_bytes = 8 MiB, max_line = M.MAX_LINE, echo = file (io.stdout: every record is
--- also written there as `<service>: <message>`, a CVM's console) }.
function M.new(opts)
  opts = opts or {}
  if opts.dir then
    local ok, err, code = fs.mkdir_p(opts.dir)
    if not ok then
      return nil, err, code
    end
  end
  return setmetatable({ services = {}, buffer_bytes = opts.buffer_bytes or 1024 * 1024,
    dir = opts.dir, max_file_bytes = opts.max_file_bytes or 8 * 1024 * 1024,
    max_line = opts.max_line or M.MAX_LINE, echo = opts.echo }, Store)
end

local function now()
  local sec, usec = uv.gettimeofday()
  return sec + usec / 1e6
end
M.now = now

local function valid_name(name)
  return type(name) == 'string' and name:match('^[%w][%w_.-]*$') ~= nil and #name <= 128
end

--- Declare a service (idempotent). Returns its entry.
function Store:service(name)
  if not valid_name(name) then
    error(('logs:service: invalid service name %s'):format(tostring(name)), 2)
  end
  local s = self.services[name]
  if not s then
    s = { name = name, status = 'created', records = {}, first = 1, last = 0, bytes = 0,
      partial = {}, followers = {} }
    self.services[name] = s
  end
  return s
end

function Store:_file(s)
  if not self.dir then
    return nil
  end
  if not s.file then
    local path = ('%s/%s.log'):format(self.dir, s.name)
    local fd = uv.fs_open(path, 'a', 384) -- 0600
    if not fd then
      return nil
    end
    s.file, s.file_path = fd, path
    local st = uv.fs_fstat(fd)
    s.file_bytes = st and st.size or 0
  end
  return s.file
end

function Store:_write_file(s, rec)
  local fd = self:_file(s)
  if not fd then
    return
  end
  local message = (cjson.encode(rec.message) or '""'):gsub('\\/', '/')
  local line = ('{"time":%.6f,"channel":"%s","message":%s}\n'):format(rec.time, rec.channel,
    message)
  uv.fs_write(fd, line, -1)
  s.file_bytes = s.file_bytes + #line
  if s.file_bytes >= self.max_file_bytes then
    uv.fs_close(fd)
    s.file = nil
    uv.fs_rename(s.file_path, s.file_path .. '.1')
  end
end

function Store:_push(s, channel, message)
  local rec = { time = now(), channel = channel, message = message }
  s.last = s.last + 1
  s.records[s.last] = rec
  s.bytes = s.bytes + #message + 32
  while s.bytes > self.buffer_bytes and s.first < s.last do
    local old = s.records[s.first]
    s.records[s.first] = nil
    s.first = s.first + 1
    s.bytes = s.bytes - #old.message - 32
  end
  self:_write_file(s, rec)
  if self.echo then
    self.echo:write(s.name, ': ', message, message:sub(-1) == '\n' and '' or '\n')
    self.echo:flush()
  end
  for sub in pairs(s.followers) do
    local ok, err = pcall(sub.fn, rec)
    if not ok then
      log.error('log follower failed', { service = s.name, error = tostring(err) })
    end
  end
end

--- Append raw output `data` of `channel` ('stdout'|'stderr'|...) to service `name`: split
--- into lines (a partial last line waits for more data or flush()).
function Store:append(name, channel, data)
  local s = self:service(name)
  local buf = (s.partial[channel] or '') .. data
  local pos = 1
  while true do
    local nl = buf:find('\n', pos, true)
    if not nl then
      break
    end
    while nl - pos + 1 > self.max_line do
      self:_push(s, channel, buf:sub(pos, pos + self.max_line - 1))
      pos = pos + self.max_line
    end
    self:_push(s, channel, buf:sub(pos, nl))
    pos = nl + 1
  end
  local rest = buf:sub(pos)
  while #rest > self.max_line do
    self:_push(s, channel, rest:sub(1, self.max_line))
    rest = rest:sub(self.max_line + 1)
  end
  s.partial[channel] = rest ~= '' and rest or nil
end

--- Emit any partial lines of service `name` as records.
function Store:flush(name)
  local s = self.services[name]
  if not s then
    return
  end
  for channel, rest in pairs(s.partial) do
    s.partial[channel] = nil
    self:_push(s, channel, rest)
  end
end

--- Update a service's status ('created', 'running', 'exited', 'failed', 'stopped'...) and
--- fields (exit_code, signal, started_at, exited_at).
function Store:set_status(name, status, fields)
  local s = self:service(name)
  s.status = status
  for k, v in pairs(fields or {}) do
    s[k] = v
  end
end

--- Mark service `name` ended: flush partial lines, tell followers (fn(nil)), close its file.
function Store:finish(name)
  local s = self.services[name]
  if not s or s.ended then
    return
  end
  self:flush(name)
  s.ended = true
  for sub in pairs(s.followers) do
    s.followers[sub] = nil
    pcall(sub.fn, nil)
  end
  if s.file then
    uv.fs_close(s.file)
    s.file = nil
  end
end

function Store:list()
  local out = {}
  for name, s in pairs(self.services) do
    out[#out + 1] = { name = name, status = s.status, exit_code = s.exit_code, signal = s.signal,
      started_at = s.started_at, exited_at = s.exited_at }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

local function missing(name)
  return errors.fail('ENOENT', ('no such service: %s'):format(tostring(name)))
end

function Store:read(name, opts)
  local s = self.services[name]
  if not s then
    return missing(name)
  end
  opts = opts or {}
  local since, till = tonumber(opts.since) or 0, tonumber(opts['until']) or 0
  local out = {}
  for i = s.first, s.last do
    local r = s.records[i]
    if r.time >= since and (till <= 0 or r.time < till) then
      out[#out + 1] = r
    end
  end
  local tail = tonumber(opts.tail)
  if tail and tail >= 0 and #out > tail then
    local cut = {}
    for i = #out - tail + 1, #out do
      cut[#cut + 1] = out[i]
    end
    out = cut
  end
  return out
end

local Sub = {}
Sub.__index = Sub

function Sub:close()
  if self.service then
    self.service.followers[self] = nil
    self.service = nil
  end
end

function Store:follow(name, fn)
  if type(fn) ~= 'function' then
    error('logs:follow: fn must be a function', 2)
  end
  local s = self.services[name]
  if not s then
    return missing(name)
  end
  local sub = setmetatable({ service = s, fn = fn }, Sub)
  if s.ended then
    sub.service = nil
    fn(nil)
    return sub
  end
  s.followers[sub] = true
  return sub
end

--- RFC 3339 UTC time with nanoseconds, as Docker prints it.
function M.timestamp(t)
  local sec = math.floor(t)
  local usec = math.floor((t - sec) * 1e6 + 0.5)
  if usec >= 1000000 then
    sec, usec = sec + 1, usec - 1000000
  end
  return os.date('!%Y-%m-%dT%H:%M:%S', sec) .. ('.%09dZ'):format(usec * 1000)
end

function Store:text(name, opts)
  local records, err, code = self:read(name, opts)
  if not records then
    return nil, err, code
  end
  local out = {}
  for i, r in ipairs(records) do
    out[i] = (opts and opts.timestamps) and (M.timestamp(r.time) .. ' ' .. r.message) or r.message
  end
  return table.concat(out)
end

--- Close every file and end every follower (the store stays readable).
function Store:close()
  for name in pairs(self.services) do
    self:finish(name)
  end
end

return M
