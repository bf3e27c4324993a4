-- SPDX-License-Identifier: Apache-2.0
-- What /proc says about processes, for supervisors that must tell a process they started from
-- another one that reuses its pid: a process is identified by its pid AND its start time
-- (/proc/<pid>/stat field 22, clock ticks since boot) AND the boot (boot_id), never by its pid
-- alone. Also the process tree (children by parent pid), killing a whole tree (stopped first so
-- nothing forks away while it is walked), and a process's resident memory and open fds.
-- Linux only; every function answers nil (not a raise) for a process that is gone.
local uv = require('luv')

local M = {}

local function read(path)
  local f = io.open(path, 'rb')
  if not f then
    return nil
  end
  local data = f:read('*a')
  f:close()
  return data
end

--- The fields of /proc/<pid>/stat: { pid, comm, state ('R', 'S', 'Z'...), ppid, pgrp, session,
--- start_time (field 22: clock ticks after boot) }, or nil when there is no such process.
function M.stat(pid)
  local text = read(('/proc/%d/stat'):format(pid))
  if not text then
    return nil
  end
  -- comm may hold spaces and parentheses: the fields resume after the last ')'
  local comm_end = text:match('^.*()%)')
  if not comm_end then
    return nil
  end
  local comm = text:match('^%d+ %((.*)%)', 1)
  local fields = {}
  for f in text:sub(comm_end + 2):gmatch('%S+') do
    fields[#fields + 1] = f
  end
  -- fields[1] is field 3 (state): field n is fields[n - 2]
  return { pid = pid, comm = comm, state = fields[1], ppid = tonumber(fields[2]),
    pgrp = tonumber(fields[3]), session = tonumber(fields[4]), start_time = tonumber(fields[20]) }
end

--- This boot's id (/proc/sys/kernel/random/boot_id), '' when unknown.
function M.boot_id()
  local id = read('/proc/sys/kernel/random/boot_id')
  return id and id:match('^%s*(.-)%s*$') or ''
end

--- The identity of a live process: { pid, start_time, boot_id }, or nil when it is gone.
function M.identity(pid)
  local st = M.stat(pid)
  if not st or st.state == 'Z' or st.state == 'X' then
    return nil
  end
  return { pid = pid, start_time = st.start_time, boot_id = M.boot_id() }
end

--- Whether the process recorded as `id` ({ pid, start_time, boot_id? }) still runs: the same
--- pid, the same start time, this boot, and not a zombie.
function M.alive(id)
  if type(id) ~= 'table' or type(id.pid) ~= 'number' or id.pid <= 1 then
    return false
  end
  if id.boot_id and id.boot_id ~= '' and id.boot_id ~= M.boot_id() then
    return false
  end
  local st = M.stat(id.pid)
  return st ~= nil and st.state ~= 'Z' and st.state ~= 'X' and st.start_time == id.start_time
end

--- The pids listed under `root` (default '/proc'; another directory laid out as /proc, for
--- tests), in increasing order.
function M.pids(root)
  local pids = {}
  local h = uv.fs_scandir(root or '/proc')
  while h do
    local name = uv.fs_scandir_next(h)
    if not name then
      break
    end
    local pid = tonumber(name)
    if pid then
      pids[#pids + 1] = pid
    end
  end
  table.sort(pids)
  return pids
end

--- Every live process as { [pid] = ppid }.
function M.parents()
  local out = {}
  for _, pid in ipairs(M.pids()) do
    local st = M.stat(pid)
    if st and st.state ~= 'Z' then
      out[pid] = st.ppid
    end
  end
  return out
end

--- The live descendants of `pid` (children, grandchildren...), a list.
function M.descendants(pid)
  local children = {}
  for p, pp in pairs(M.parents()) do
    children[pp] = children[pp] or {}
    table.insert(children[pp], p)
  end
  local out, queue = {}, { pid }
  while #queue > 0 do
    local p = table.remove(queue)
    for _, c in ipairs(children[p] or {}) do
      out[#out + 1] = c
      queue[#queue + 1] = c
    end
  end
  return out
end

--- Kill the process `id` ({ pid, start_time }) and every descendant: each is stopped
--- (SIGSTOP) as it is found, the tree walked again until nothing new appears, then all get
--- SIGKILL. A process whose identity does not match is left alone. Returns the number of
--- processes killed.
function M.kill_tree(id)
  if not M.alive(id) then
    return 0
  end
  local seen, order = { [id.pid] = true }, { id.pid }
  uv.kill(id.pid, 'sigstop')
  for _ = 1, 20 do
    local found = false
    for _, p in ipairs(M.descendants(id.pid)) do
      if not seen[p] then
        seen[p], found = true, true
        order[#order + 1] = p
        uv.kill(p, 'sigstop')
      end
    end
    if not found then
      break
    end
  end
  for _, p in ipairs(order) do
    uv.kill(p, 'sigkill')
  end
  return #order
end

--- The resident memory of `pid` in KiB (VmRSS), or nil.
function M.rss_kb(pid)
  local text = read(('/proc/%d/status'):format(pid))
  return text and tonumber(text:match('VmRSS:%s*(%d+)'))
end

--- The number of open file descriptors of `pid`, or nil.
function M.fd_count(pid)
  local h = uv.fs_scandir(('/proc/%d/fd'):format(pid))
  if not h then
    return nil
  end
  local n = 0
  while uv.fs_scandir_next(h) do
    n = n + 1
  end
  return n
end

return M
