-- SPDX-License-Identifier: Apache-2.0
-- Resource limits of a process-backend CVM (memory in MB, vCPUs): a cgroup per CVM where this
-- VMM may create one — v1 (memory.limit_in_bytes, cpu.cfs_quota_us) or v2 (memory.max,
-- cpu.max) under the VMM's own cgroup — joined by the CVM's first process before it execs
-- anything, so every descendant is counted; otherwise RLIMIT_AS from the memory size (prlimit),
-- which each process of the tree inherits. The cgroup directories are recorded with the
-- process (process.json) and removed once the tree is gone.
local uv = require('luv')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')

local M = {}

--- The CPU period used for quotas (µs).
M.PERIOD_US = 100000

-- The cgroup paths of this process: { [controller] = path } (v1), or { [''] = path } (v2).
local function own_cgroups()
  local text = fs.read_file('/proc/self/cgroup') or ''
  local out = {}
  for line in text:gmatch('[^\n]+') do
    local ctrls, path = line:match('^%d+:([^:]*):(.*)$')
    if ctrls then
      for c in (ctrls == '' and ',' or ctrls):gmatch('[^,]*') do
        if c == '' and ctrls == '' then
          out[''] = path
        elseif c ~= '' then
          out[c] = path
        end
      end
    end
  end
  return out
end

local function writable(dir)
  return uv.fs_access(dir, 'w') == true
end

local function write(path, value)
  local f = io.open(path, 'w')
  if not f then
    return false
  end
  local ok = f:write(value)
  ok = f:close() and ok
  return ok ~= nil and ok ~= false
end

--- What this host offers: { kind = 'v1' | 'v2' | nil, base = { memory = dir, cpu = dir } or
--- { unified = dir } } (the parent directories new CVM cgroups go into), with `why` when none.
function M.probe()
  local own = own_cgroups()
  if own.memory and uv.fs_stat('/sys/fs/cgroup/memory') then
    local base = { memory = ('/sys/fs/cgroup/memory%s'):format(own.memory:gsub('/$', '')) }
    local cpu = own.cpu or own['cpu,cpuacct']
    if cpu and uv.fs_stat('/sys/fs/cgroup/cpu') then
      base.cpu = ('/sys/fs/cgroup/cpu%s'):format(cpu:gsub('/$', ''))
    end
    if writable(base.memory) then
      return { kind = 'v1', base = base }
    end
    return { why = 'the memory cgroup ' .. base.memory .. ' is not writable' }
  end
  if own[''] and uv.fs_stat('/sys/fs/cgroup/cgroup.controllers') then
    local dir = ('/sys/fs/cgroup%s'):format(own['']:gsub('/$', ''))
    if writable(dir) then
      return { kind = 'v2', base = { unified = dir } }
    end
    return { why = 'the cgroup ' .. dir .. ' is not writable' }
  end
  return { why = 'no cgroup controllers found' }
end

--- Set up the limits of CVM `id`: a cgroup under `probe`'s base when it works, else nothing
--- (prefix() then uses RLIMIT_AS). opts = { memory_mb, vcpu }. Returns { cgroups = { dirs },
--- procs = { cgroup.procs files } } or { rlimit_as = bytes }.
function M.create(probe, id, opts)
  local bytes = math.max(1, opts.memory_mb or 0) * 1048576
  local name = 'moonstack-cvm-' .. id
  local out = { cgroups = {}, procs = {} }
  local function add(dir, files)
    local ok = uv.fs_mkdir(dir, 493) or uv.fs_stat(dir)
    for file, value in pairs(files) do
      ok = ok and write(dir .. '/' .. file, value)
    end
    if ok then
      out.cgroups[#out.cgroups + 1] = dir
      out.procs[#out.procs + 1] = dir .. '/cgroup.procs'
    else
      uv.fs_rmdir(dir)
    end
    return ok
  end
  if probe.kind == 'v1' then
    if add(probe.base.memory .. '/' .. name, { ['memory.limit_in_bytes'] = tostring(bytes) })
        and probe.base.cpu and writable(probe.base.cpu) then
      add(probe.base.cpu .. '/' .. name, { ['cpu.cfs_period_us'] = tostring(M.PERIOD_US),
        ['cpu.cfs_quota_us'] = tostring(math.max(1, opts.vcpu or 1) * M.PERIOD_US) })
    end
  elseif probe.kind == 'v2' then
    add(probe.base.unified .. '/' .. name, { ['memory.max'] = tostring(bytes),
      ['cpu.max'] = ('%d %d'):format(math.max(1, opts.vcpu or 1) * M.PERIOD_US, M.PERIOD_US) })
  end
  if #out.cgroups == 0 then
    return { rlimit_as = bytes }
  end
  return out
end

--- The argv prefix that applies `limits` before the CVM's command: a shell that joins the
--- cgroups and execs the rest, or prlimit --as.
function M.prefix(limits)
  if limits.rlimit_as then
    return { 'prlimit', '--as=' .. limits.rlimit_as, '--' }
  end
  local argv = { 'sh', '-c',
    'while [ "$1" != -- ]; do echo $$ >"$1" || exit 125; shift; done; shift; exec "$@"', 'cvm-limits' }
  for _, p in ipairs(limits.procs) do
    argv[#argv + 1] = p
  end
  argv[#argv + 1] = '--'
  return argv
end

--- Remove the cgroups of `limits` once their processes are gone (inside a task it waits up to
--- wait_ms, default 2000, for the last ones to exit). Returns true when all are gone.
function M.remove(limits, wait_ms)
  local deadline = uv.now() + (wait_ms or 2000)
  local all
  repeat
    all = true
    for _, dir in ipairs(limits and limits.cgroups or {}) do
      local ok, _, code = uv.fs_rmdir(dir)
      all = all and (ok or code == 'ENOENT')
    end
    if all or not task.current() then
      break
    end
    task.sleep(20)
    uv.update_time()
  until uv.now() >= deadline
  return all
end

return M
