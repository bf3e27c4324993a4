-- SPDX-License-Identifier: Apache-2.0
-- A Docker engine that only this CVM sees: the docker-compose runner starts it before the app
-- and stops it after (runner.dockerd in the agent config). In a real CVM dockerd runs inside
-- the guest; in the VMM's process backend the agent runs in the CVM's own network namespace,
-- so this engine gets that network (docker's bridge, iptables and published ports stay inside
-- it). Everything of the engine lives under one directory:
--   <dir>/data  --data-root (images, containers: kept across restarts, like a CVM's disk)
--   <dir>/exec  --exec-root (its containerd's state and sockets; containerd refuses socket
--               paths over 104 bytes, so a deep <dir> gets /run/moonstack-docker-<hash of dir>
--               instead, removed with the engine)
--   <dir>/docker.sock, <dir>/docker.pid
-- dockerd runs in a private mount namespace (`moonstack ns-exec --mount`), so its overlay and
-- nsfs mounts never show on the host and vanish with it, and its containers go under a cgroup
-- parent of its own (moonstack-<hash of dir>), so stop() can find whatever a crash left.
--
--   local engine, err, code = dockerd.start({ dir = D, ... })   (inside a task)
--   engine.host ('unix://D/docker.sock'), engine.socket, engine.pid
--   engine:load(image)   a saved image tarball (docker load) or { file = rootfs.tar, tag = T }
--                        (docker import); true or nil, 'EIMAGE: ...'
--   engine:stop()        SIGTERM, then SIGKILL after stop_timeout_ms; then any leftover of the
--                        engine (its containerd, shims, containers, cgroups, mounts) is removed
local uv = require('luv')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')
local process = require('moonstack.core.process')
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local netns = require('moonstack.netns')
local http = require('moonstack.http.client')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- The longest unix socket path (sun_path minus its NUL).
M.MAX_SOCKET_PATH = 107

-- containerd's longest socket under the exec root, and the limit it puts on socket paths
local CONTAINERD_SOCKET = '/containerd/containerd-debug.sock'
local CONTAINERD_MAX_PATH = 104

-- The engine's exec root: <dir>/exec, or a short path of its own when that is too deep.
local function exec_root_of(dir, hash)
  local own = dir .. '/exec'
  if #own + #CONTAINERD_SOCKET <= CONTAINERD_MAX_PATH then
    return own
  end
  local base = uv.fs_access('/run', 'w') and '/run' or (os.getenv('TMPDIR') or '/tmp')
  return base .. '/moonstack-docker-' .. hash
end

local DEFAULTS = { dockerd = 'dockerd', docker = 'docker', network = 'bridge',
  private_mounts = true, ready_timeout_ms = 30000, stop_timeout_ms = 30000,
  shutdown_timeout_s = 5, log_level = 'warn', images_timeout_ms = 120000,
  path = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }

local Engine = {}
Engine.__index = Engine

local function tail_text(lines)
  return table.concat(lines, ' | ')
end

-- dockerd's arguments for the engine.
local function dockerd_args(self, o)
  local args = { '--data-root', self.dir .. '/data', '--exec-root', self.exec_root,
    '-H', self.host, '--pidfile', self.dir .. '/docker.pid', '--cgroup-parent',
    '/' .. self.cgroup_parent, '--shutdown-timeout', tostring(o.shutdown_timeout_s),
    '--log-level', o.log_level }
  if o.network == 'none' then -- no bridge, no iptables: containers use network_mode host/none
    for _, a in ipairs({ '--bridge=none', '--iptables=false', '--ip-masq=false' }) do
      args[#args + 1] = a
    end
  end
  for _, a in ipairs(o.args or {}) do
    args[#args + 1] = a
  end
  return args
end

-- Whether the engine answers GET /_ping.
local function ping(self)
  local r = http.request({ unix = self.socket, path = '/_ping', timeout_ms = 2000 })
  return r and r.status == 200
end

-- An engine's places for `dir` (o: the options with their defaults): not started.
local function layout(dir, o, cgroup_parent)
  dir = dir:gsub('/+$', '')
  local hash = codec.hex(crypto.sha256(dir)):sub(1, 12)
  return setmetatable({ dir = dir, socket = dir .. '/docker.sock', opts = o,
    exec_root = exec_root_of(dir, hash),
    cgroup_parent = cgroup_parent or ('moonstack-' .. hash), lines = {} }, Engine)
end

--- Start an engine (inside a task). opts = { dir (required), dockerd = 'dockerd', docker =
--- 'docker', path = PATH for dockerd and the docker CLI, network = 'bridge' | 'none',
--- private_mounts = true, cgroup_parent = 'moonstack-<hash>', shutdown_timeout_s = 5,
--- log_level = 'warn', args = { extra dockerd args }, ready_timeout_ms = 30000,
--- stop_timeout_ms = 30000, images = { image... } (loaded once ready, see engine:load),
--- images_timeout_ms = 120000, logs = store (service 'dockerd') }. Returns the engine or nil,
--- msg, code: EINVAL (socket path too long), EUNAVAILABLE (dockerd missing or not ready in
--- time, with its last lines), EPERM (no mount namespace), EIMAGE.
function M.start(opts)
  if type(opts) ~= 'table' or type(opts.dir) ~= 'string' or opts.dir == '' then
    error('dockerd.start: opts.dir is required', 2)
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do
    o[k] = opts[k] == nil and v or opts[k]
  end
  o.args, o.images = opts.args, opts.images
  local self = layout(opts.dir, o, opts.cgroup_parent)
  local dir = self.dir
  self.host = 'unix://' .. self.socket
  if #self.socket > M.MAX_SOCKET_PATH then
    return errors.fail('EINVAL', ('the engine socket path %s is longer than %d bytes: give a '
      .. 'shorter dir'):format(self.socket, M.MAX_SOCKET_PATH))
  end
  for _, d in ipairs({ dir, dir .. '/data', self.exec_root }) do
    local ok, err, code = fs.mkdir_p(d, 448)
    if not ok then
      return nil, err, code
    end
  end
  os.remove(self.socket) -- a stale socket of a crashed engine would look ready
  -- and its pid file stops dockerd when that pid runs: in a CVM's PID namespace the new
  -- dockerd often gets the very same pid (the agent makes one engine per CVM, never two)
  os.remove(self.dir .. '/docker.pid')
  -- the same for the containerd it starts: with a stale containerd.pid naming a live pid,
  -- dockerd waits for that "containerd" to answer and gives up (a CVM killed, then started)
  os.remove(self.exec_root .. '/containerd/containerd.pid')
  local file, args = o.dockerd, dockerd_args(self, o)
  if o.private_mounts then
    local ok, err = netns.available() -- the same privilege as a mount namespace
    if not ok then
      return errors.fail('EPERM', 'the engine needs a private mount namespace: ' .. tostring(err))
    end
    file, args = netns.command({ mount = true }, file, args)
  end
  local proc, err = process.spawn({ service = 'dockerd', file = file, args = args,
    env = { PATH = o.path, HOME = dir }, cwd = dir, logs = opts.logs,
    on_output = function(_, data)
      for line in data:gmatch('[^\n]+') do
        table.insert(self.lines, line)
        if #self.lines > 5 then
          table.remove(self.lines, 1)
        end
      end
    end })
  if not proc then
    return errors.fail('EUNAVAILABLE', ('cannot start %s: %s'):format(o.dockerd, tostring(err)))
  end
  self.proc, self.pid = proc, proc.pid
  local deadline = uv.now() + o.ready_timeout_ms
  while not (uv.fs_stat(self.socket) and ping(self)) do
    if proc.exited or uv.now() >= deadline then
      local why = proc.exited and ('exited with status %s'):format(tostring(proc.exit_code))
        or ('not ready within %d ms'):format(o.ready_timeout_ms)
      self:stop()
      return errors.fail('EUNAVAILABLE', ('dockerd %s: %s'):format(why, tail_text(self.lines)))
    end
    task.sleep(50)
    uv.update_time()
  end
  log.info('docker engine ready', { dir = dir, pid = self.pid, network = o.network })
  for _, image in ipairs(o.images or {}) do
    local ok, lerr, lcode = self:load(image)
    if not ok then
      self:stop()
      return nil, lerr, lcode
    end
  end
  return self
end

--- Run the docker CLI against this engine (inside a task): the process.run result or nil,
--- msg, code.
function Engine:docker(args, timeout_ms)
  return process.run({ service = 'docker', file = self.opts.docker, args = args,
    env = { PATH = self.opts.path, HOME = self.dir, DOCKER_HOST = self.host,
      DOCKER_CONFIG = self.dir .. '/cli' }, cwd = self.dir,
    timeout_ms = timeout_ms or self.opts.images_timeout_ms })
end

--- Load an image into the engine (inside a task): a path (a `docker save` tarball: docker
--- load) or { file = rootfs tarball, tag = 'name:tag' } (docker import). true or nil,
--- 'EIMAGE: ...', 'EIMAGE'.
function Engine:load(image)
  local args, what
  if type(image) == 'string' then
    args, what = { 'load', '-i', image }, image
  elseif type(image) == 'table' and type(image.file) == 'string' and type(image.tag) == 'string' then
    args, what = { 'import', image.file, image.tag }, image.file .. ' as ' .. image.tag
  else
    error('engine:load: expected a path or { file, tag }', 2)
  end
  local r, err = self:docker(args)
  if not r or r.exit_code ~= 0 then
    return errors.fail('EIMAGE', ('cannot load %s: %s'):format(what,
      r and (r.stderr:match('[^\n]*[^\n%s]') or ('exit ' .. r.exit_code)) or tostring(err)))
  end
  return true
end

-- Pids whose command line mentions `needle` (a path of this engine).
local function pids_mentioning(needle)
  local out = {}
  local req = uv.fs_scandir('/proc')
  for name in uv.fs_scandir_next, req do
    if name:match('^%d+$') then
      local f = io.open('/proc/' .. name .. '/cmdline', 'rb')
      if f then
        local cmd = f:read('*a') or ''
        f:close()
        if cmd:find(needle, 1, true) then
          out[#out + 1] = tonumber(name)
        end
      end
    end
  end
  return out
end

-- Whether `pid` is alive (not a zombie waiting for its reaper).
local function alive(pid)
  local f = io.open('/proc/' .. pid .. '/stat')
  local stat = f and f:read('*l')
  if f then
    f:close()
  end
  return stat ~= nil and stat:match('^%d+ %b() (%a)') ~= 'Z'
end

-- The cgroup directories of the engine's parent, deepest first, and the live pids in them.
local function cgroups_of(parent)
  local dirs, pids = {}, {}
  local function walk(d)
    local req = uv.fs_scandir(d)
    if not req then
      return
    end
    for name, kind in uv.fs_scandir_next, req do
      if kind == 'directory' then
        walk(d .. '/' .. name)
      end
    end
    dirs[#dirs + 1] = d
    local f = io.open(d .. '/cgroup.procs')
    if f then
      for pid in f:lines() do
        if alive(pid) then
          pids[#pids + 1] = tonumber(pid)
        end
      end
      f:close()
    end
  end
  local req = uv.fs_scandir('/sys/fs/cgroup')
  if req then
    for name, kind in uv.fs_scandir_next, req do
      if kind == 'directory' then
        walk('/sys/fs/cgroup/' .. name .. '/' .. parent)
      end
    end
  end
  walk('/sys/fs/cgroup/' .. parent) -- cgroup v2 (unified at the top)
  return dirs, pids
end

-- Mount points under the engine's dir in this process's mount table, deepest first.
local function mounts_under(dir)
  local out = {}
  local f = io.open('/proc/self/mountinfo')
  for line in f and f:lines() or function() end do
    local point = line:match('^%S+ %S+ %S+ %S+ (%S+)')
    if point and (point == dir or point:sub(1, #dir + 1) == dir .. '/') then
      out[#out + 1] = point
    end
  end
  if f then
    f:close()
  end
  table.sort(out, function(a, b) return #a > #b end)
  return out
end

-- Remove what a crashed or killed engine left: its containerd and shims, its containers
-- (by cgroup), its cgroups and its mounts. Returns a list of what was found.
function Engine:_sweep()
  local found, seen = {}, {}
  local function kill(pid, what)
    if not seen[pid] then
      seen[pid] = true
      found[#found + 1] = what .. ' ' .. pid
    end
    uv.kill(pid, 'sigkill')
  end
  for _, pid in ipairs(pids_mentioning(self.exec_root)) do
    if alive(pid) then
      kill(pid, 'process')
    end
  end
  local deadline = uv.now() + 5000
  local dirs, pids = cgroups_of(self.cgroup_parent)
  while #pids > 0 and uv.now() < deadline do
    for _, pid in ipairs(pids) do
      kill(pid, 'container process')
    end
    task.sleep(50)
    uv.update_time()
    dirs, pids = cgroups_of(self.cgroup_parent)
  end
  for _, d in ipairs(dirs) do
    uv.fs_rmdir(d)
  end
  for _, point in ipairs(mounts_under(self.dir)) do
    found[#found + 1] = 'mount ' .. point
    process.run({ file = 'umount', args = { '-l', point }, env = { PATH = self.opts.path },
      timeout_ms = 5000 })
  end
  return found
end

--- Stop the engine (inside a task; idempotent): SIGTERM to dockerd (it stops its containers
--- within shutdown_timeout_s, then its containerd), SIGKILL after stop_timeout_ms, then remove
--- any leftover. Returns true.
function Engine:stop()
  if self.stopped then
    return true
  end
  self.stopped = true
  if self.proc then
    self.proc:stop(self.opts.stop_timeout_ms)
  end
  self:_clear()
  log.info('docker engine stopped', { dir = self.dir })
  return true
end

-- Sweep what is left (see _sweep), then the socket and a separate exec root.
function Engine:_clear()
  local found = self:_sweep()
  if #found > 0 then
    log.warn('docker engine left processes or mounts behind: removed', { dir = self.dir,
      found = table.concat(found, ', ') })
  end
  os.remove(self.socket)
  os.remove(self.dir .. '/docker.pid')
  if self.exec_root ~= self.dir .. '/exec' then
    fs.remove_tree(self.exec_root)
  end
end

--- Remove whatever the engine of `dir` left after its CVM was killed without stopping it
--- (inside a task): its containerd, shims and containers, their cgroups, its mounts, its
--- socket and exec root. opts.cgroup_parent as given to start(). Returns true.
function M.sweep(dir, opts)
  local o = {}
  for k, v in pairs(DEFAULTS) do
    o[k] = v
  end
  layout(dir, o, opts and opts.cgroup_parent):_clear()
  return true
end

return M
