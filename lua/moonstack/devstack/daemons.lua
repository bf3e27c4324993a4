-- SPDX-License-Identifier: Apache-2.0
-- The dev stack's daemons as child processes of `moonstack dev up`: each `moonstack <daemon> -c
-- <config>` in a session of its own (so a Ctrl-C reaches `dev up`, which stops them in order:
-- VMM first, whose CVMs stop with it, then the gateway, then the KMS), its output appended to
-- logs/<daemon>.log, ready when it logs its ready line. Their identities (pid + start time) go
-- to daemons.json, so `moonstack dev down` can stop them even when `dev up` is gone; and
-- leftovers() walks /proc for anything still naming the state directory.
local uv = require('luv')
local cjson = require('cjson.safe')
local process = require('moonstack.core.process')
local procfs = require('moonstack.core.procfs')
local task = require('moonstack.core.task')
local fs = require('moonstack.core.fs')

local M = {}

--- The line each daemon logs once it serves.
M.READY = { kms = 'KMS ready', gateway = 'gateway ready', vmm = 'VMM ready' }
--- The order they start in (and stop in reverse).
M.ORDER = { 'kms', 'gateway', 'vmm' }

local function file_size(path)
  local st = uv.fs_stat(path)
  return st and st.size or 0
end

local function tail(path, from, n)
  local text = fs.read_file(path) or ''
  text = text:sub(from + 1)
  local lines = {}
  for line in text:gmatch('[^\n]+') do
    lines[#lines + 1] = line
  end
  return table.concat(lines, '\n', math.max(1, #lines - n + 1))
end

--- Start daemon `name` with config `config`, output to `log_path`; wait (in a task) up to
--- `timeout_ms` for its ready line. Returns { name, proc, ready = the ready log line (JSON
--- fields decoded when it is a JSON record) } or nil, msg (with the end of its log).
function M.start(name, config, log_path, timeout_ms)
  local from = file_size(log_path)
  local proc, err = process.spawn({ service = 'dev-' .. name, file = uv.exepath(),
    args = { '--log-json', name, '-c', config }, detached = true,
    files = { stdout = log_path, stderr = log_path } })
  if not proc then
    return nil, err
  end
  local deadline = uv.now() + (timeout_ms or 60000)
  while uv.now() < deadline do
    local text = (fs.read_file(log_path) or ''):sub(from + 1)
    for line in text:gmatch('[^\n]+') do
      if line:find(M.READY[name], 1, true) then
        return { name = name, proc = proc, ready = cjson.decode(line) or { msg = line } }
      end
    end
    if proc.exited then
      return nil, ('the %s exited at start (%s):\n%s'):format(name, log_path, tail(log_path, from, 15))
    end
    task.sleep(100)
  end
  proc:stop(2000)
  return nil, ('the %s was not ready within %d s (%s):\n%s'):format(name,
    math.floor((timeout_ms or 60000) / 1000), log_path, tail(log_path, from, 15))
end

--- Stop a started daemon (in a task): SIGTERM, up to `grace_ms` (default 20 s), then SIGKILL.
function M.stop(d, grace_ms)
  if d and d.proc and not d.proc.exited then
    d.proc:stop(grace_ms or 20000)
  end
end

--- Record the running daemons' identities in `path` ({ name = { pid, start_time, boot_id } }).
function M.record(path, running)
  local out = {}
  for name, d in pairs(running) do
    out[name] = procfs.identity(d.proc.pid)
  end
  return fs.write_atomic(path, cjson.encode(out) .. '\n', tonumber('600', 8))
end

--- Stop the daemons recorded in `path` that still run (in a task; `dev down` when `dev up`
--- is gone): SIGTERM to each group in reverse start order, then SIGKILL after `grace_ms`.
--- Returns the names stopped.
function M.stop_recorded(path, grace_ms)
  local rec = cjson.decode(fs.read_file(path) or '') or {}
  local stopped = {}
  for i = #M.ORDER, 1, -1 do
    local name = M.ORDER[i]
    local id = rec[name]
    if type(id) == 'table' and procfs.alive(id) then
      uv.kill(-id.pid, 'sigterm')
      local deadline = uv.now() + (grace_ms or 20000)
      while procfs.alive(id) and uv.now() < deadline do
        task.sleep(100)
      end
      if procfs.alive(id) then
        uv.kill(-id.pid, 'sigkill')
      end
      stopped[#stopped + 1] = name
    end
  end
  os.remove(path)
  return stopped
end

--- The live processes (not zombies) whose command line or working directory names `dir` (or
--- whose command line names one of `also`, e.g. the WireGuard interface its wireguard-go
--- serves), except this process and its ancestors (the shell or `timeout` that started it)
--- and `moonstack dev` commands (a `dev down` waiting for this one): { { pid, cmd } }.
function M.leftovers(dir, also)
  local out = {}
  local mine = {}
  local pid = uv.os_getpid()
  while pid and pid > 1 and not mine[pid] do
    mine[pid] = true
    local st = procfs.stat(pid)
    pid = st and st.ppid
  end
  local req = uv.fs_scandir('/proc')
  while req do
    local name = uv.fs_scandir_next(req)
    if not name then
      break
    end
    local p = tonumber(name)
    if p and not mine[p] then
      local st = procfs.stat(p)
      local cmd = (fs.read_file('/proc/' .. p .. '/cmdline') or ''):gsub('%z', ' ')
      local cwd = uv.fs_readlink('/proc/' .. p .. '/cwd') or ''
      local hit = (cmd .. ' ' .. cwd):find(dir, 1, true)
      for _, needle in ipairs(also or {}) do
        hit = hit or cmd:find(needle, 1, true)
      end
      local dev_cmd = cmd:find(' dev down', 1, true) or cmd:find(' dev status', 1, true)
        or cmd:find(' dev up', 1, true)
      if st and st.state ~= 'Z' and hit and not dev_cmd then
        out[#out + 1] = { pid = p, cmd = cmd }
      end
    end
  end
  return out
end

return M
