-- SPDX-License-Identifier: Apache-2.0
-- A VM's log files in its work directory (kms-vmm-gateway.md §4.4, §4.8): serial.log (the
-- CVM's console), stdout.log and stderr.log, each starting every boot with the separator line
-- `===== boot @ <RFC3339> =====`, rotated to <name>.1 .. .N when larger than max_bytes (copy,
-- then truncate in place: the running process keeps appending to the same file) and at each
-- start, and read back as upstream's GET /logs does: the last `lines` lines, then, when
-- following, what is appended (a truncation by rotation starts over at the top), with a
-- `[vmm heartbeat]` line after a minute of silence. ANSI escapes are stripped unless asked.
local uv = require('luv')
local task = require('moonstack.core.task')

local M = {}

--- The channels and their files.
M.CHANNELS = { serial = 'serial.log', stdout = 'stdout.log', stderr = 'stderr.log' }

--- Lines returned when the request names none (upstream's default).
M.DEFAULT_LINES = 10000
--- How often a followed file is checked (ms), and the idle time before a heartbeat (ms).
M.POLL_MS = 200
M.HEARTBEAT_MS = 60000

--- The boot separator line (with its newline) for time `t` (default now).
function M.separator(t)
  return ('===== boot @ %s =====\n'):format(os.date('!%Y-%m-%dT%H:%M:%SZ', t or os.time()))
end

local function size_of(path)
  local st = uv.fs_stat(path)
  return st and st.size or nil
end

--- Rotate `path`: <path>.N-1 → .N ..., a copy of <path> → .1, then <path> truncated in place
--- (a writer with O_APPEND goes on at its new end). Nothing happens to an empty or missing
--- file. max_backups = 0 only truncates. Returns true or nil, msg, code.
function M.rotate(path, max_backups)
  local size = size_of(path)
  if not size or size == 0 then
    return true
  end
  if max_backups > 0 then
    uv.fs_unlink(('%s.%d'):format(path, max_backups))
    for i = max_backups - 1, 1, -1 do
      uv.fs_rename(('%s.%d'):format(path, i), ('%s.%d'):format(path, i + 1))
    end
    local ok, err, code = uv.fs_copyfile(path, path .. '.1')
    if not ok then
      return nil, err, code
    end
  end
  local fd, err, code = uv.fs_open(path, 'r+', 384)
  if not fd then
    return nil, err, code
  end
  uv.fs_ftruncate(fd, 0)
  uv.fs_close(fd)
  return true
end

--- Start a boot in directory `dir`: rotate each channel's file (so max_backups earlier boots
--- stay) and begin it with the separator line. opts = { max_backups }.
function M.begin_boot(dir, opts)
  local sep = M.separator()
  for _, name in pairs(M.CHANNELS) do
    local path = dir .. '/' .. name
    M.rotate(path, opts.max_backups or 3)
    local fd = uv.fs_open(path, 'a', 384)
    if fd then
      uv.fs_write(fd, sep, -1)
      uv.fs_close(fd)
    end
  end
end

--- Rotate every channel file of `dir` larger than max_bytes (0 = never).
function M.check_sizes(dir, opts)
  if (opts.max_bytes or 0) <= 0 then
    return
  end
  for _, name in pairs(M.CHANNELS) do
    local path = dir .. '/' .. name
    local size = size_of(path)
    if size and size > opts.max_bytes then
      M.rotate(path, opts.max_backups or 3)
    end
  end
end

--- `text` without ANSI escape sequences.
function M.strip_ansi(text)
  return (text:gsub('\27%[[%d;?]*[%a@]', ''):gsub('\27%][^\7]*\7', ''):gsub('\27[%(%)][%w]', ''))
end

--- The last `n` lines of file `path` (reading at most the last 16 MiB): the text and the
--- file's size (where following starts), or '', 0 when there is no file.
function M.tail(path, n)
  local size = size_of(path)
  if not size then
    return '', 0
  end
  local fd = uv.fs_open(path, 'r', 0)
  if not fd then
    return '', 0
  end
  local start = math.max(0, size - 16 * 1024 * 1024)
  local data = uv.fs_read(fd, size - start, start) or ''
  uv.fs_close(fd)
  if n and n >= 0 then
    local pos, count = #data, 0
    if data:sub(-1) == '\n' then
      pos = pos - 1
    end
    while pos > 0 do
      if data:byte(pos) == 10 then
        count = count + 1
        if count >= n then
          break
        end
      end
      pos = pos - 1
    end
    data = n == 0 and '' or data:sub(pos + 1)
  end
  return data, size
end

--- Follow `path` from byte `offset` (inside a task): send(chunk) is called with what is
--- appended (a truncation starts over at the top); after heartbeat_ms of silence, send gets
--- '[vmm heartbeat]\n'. Ends when send returns false/nil or alive() does; bounded by nothing
--- else. opts = { poll_ms, heartbeat_ms, alive = fn() -> bool }.
function M.follow(path, offset, send, opts)
  opts = opts or {}
  local poll = opts.poll_ms or M.POLL_MS
  local heartbeat = opts.heartbeat_ms or M.HEARTBEAT_MS
  local idle = 0
  while not opts.alive or opts.alive() do
    task.sleep(poll)
    local size = size_of(path) or 0
    if size < offset then
      offset = 0
    end
    if size > offset then
      local fd = uv.fs_open(path, 'r', 0)
      local data = fd and uv.fs_read(fd, math.min(size - offset, 1024 * 1024), offset) or ''
      if fd then
        uv.fs_close(fd)
      end
      offset = offset + #data
      idle = 0
      if #data > 0 and not send(data) then
        return
      end
    else
      idle = idle + poll
      if idle >= heartbeat then
        idle = 0
        if not send('[vmm heartbeat]\n') then
          return
        end
      end
    end
  end
end

return M
