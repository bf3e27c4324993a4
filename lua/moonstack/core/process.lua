-- SPDX-License-Identifier: Apache-2.0
-- Supervised processes (the agent's runners, the VMM's process backend): spawn a command in its
-- own session (process group = its pid, so stopping it reaches the whole tree it started), feed
-- its stdout/stderr into a log store (moonstack.agent.runner.logs) under a service name, or
-- straight into files (a child that must outlive this process), record its exit status and
-- report it (on_exit), and stop it with SIGTERM to the group, then SIGKILL after a grace
-- period. The environment is exactly the one given (nothing inherited from the agent).
--
--   local p = assert(process.spawn({ service = 'app', file = 'bash', args = { script },
--     env = { PATH = '/usr/bin:/bin', KEY = 'v' }, cwd = dir, logs = store,
--     on_exit = function(p) ... end }))
--   p.pid, p.status ('running'|'exited'|'failed'|'stopped'), p.exit_code, p.signal
--   p:wait(ms)   inside a task: wait for the exit (nil, 'ETIMEDOUT...' after ms)
--   p:stop(grace_ms)  inside a task: SIGTERM the group, SIGKILL after grace_ms; true
local uv = require('luv')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')
local log = require('moonstack.core.log').new('agent')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

local Proc = {}
Proc.__index = Proc

function Proc:__tostring()
  return ('process<%s pid %s, %s>'):format(self.service, tostring(self.pid), self.status)
end

--- An env table { KEY = value } as a sorted list of "KEY=value" strings.
function M.env_list(env)
  local keys = sorted_keys(env)
  local out = {}
  for i, k in ipairs(keys) do
    out[i] = k .. '=' .. env[k]
  end
  return out
end

local function close(h)
  if h and not h:is_closing() then
    h:close()
  end
end

-- Pipes and the exit are done: finish the service in the log store once.
function Proc:_maybe_finish()
  if self.exited and self.open_pipes == 0 and not self.finished then
    self.finished = true
    if self.logs then
      self.logs:finish(self.service)
    end
  end
end

function Proc:_read(pipe, channel)
  self.open_pipes = self.open_pipes + 1
  self.pipes[#self.pipes + 1] = pipe
  pipe:read_start(function(err, data)
    if data then
      if self.logs then
        self.logs:append(self.service, channel, data)
      end
      if self.on_output then
        self.on_output(channel, data)
      end
      return
    end
    if err then
      log.warn('reading process output failed', { service = self.service, error = err })
    end
    close(pipe)
    self.open_pipes = self.open_pipes - 1
    self:_maybe_finish()
  end)
end

-- The stdio entry of `channel`: a pipe read into the log store, or the fd of opts.files[channel]
-- opened for appending (0600), kept in `opened` to close once the child has it.
local function output(self, opts, channel, stdio, opened)
  local index = channel == 'stdout' and 2 or 3
  local path = opts.files and opts.files[channel]
  if not path then
    local p = uv.new_pipe(false)
    stdio[index] = p
    return p
  end
  local fd, err, code = uv.fs_open(path, 'a', 384)
  if not fd then
    return nil, ('cannot open %s: %s'):format(path, tostring(err)), code
  end
  opened[#opened + 1] = fd
  stdio[index] = fd
  self.files = true
  return false
end

--- Spawn. opts = { service = name (log service), file = program, args = { ... }, env =
--- { KEY = value }, cwd = dir?, logs = store?, on_exit = fn(proc)?, on_output = fn(channel,
--- data)?, extra_fds = n (pipes at fds 3.., read with proc.fds[i]), files = { stdout = path?,
--- stderr = path? } (appended to directly: the child keeps writing there if this process
--- dies), detached = true (own session and process group) }. Returns the process or nil,
--- 'CODE: cannot start ...', code.
function M.spawn(opts)
  if type(opts) ~= 'table' or type(opts.file) ~= 'string' or type(opts.service) ~= 'string' then
    error('process.spawn: opts.file and opts.service are required', 2)
  end
  local self = setmetatable({ service = opts.service, logs = opts.logs, on_exit = opts.on_exit,
    on_output = opts.on_output, status = 'starting', open_pipes = 0, waiters = {}, fds = {}, pipes = {} },
    Proc)
  local stdio, opened = {}, {}
  local out, oerr, ocode = output(self, opts, 'stdout', stdio, opened)
  local err_pipe, eerr, ecode
  if out ~= nil then
    err_pipe, eerr, ecode = output(self, opts, 'stderr', stdio, opened)
  end
  local function release()
    close(out or nil)
    close(err_pipe or nil)
    for _, fd in ipairs(opened) do
      uv.fs_close(fd)
    end
  end
  if out == nil or err_pipe == nil then
    release()
    return errors.fail(ocode or ecode or 'EIO', oerr or eerr)
  end
  for i = 1, opts.extra_fds or 0 do
    self.fds[i] = uv.new_pipe(false)
    stdio[3 + i] = self.fds[i]
  end
  if self.logs then
    self.logs:service(self.service)
  end
  local handle, pid_or_err, code = uv.spawn(opts.file, {
    args = opts.args or {}, env = M.env_list(opts.env or {}), cwd = opts.cwd, stdio = stdio,
    detached = opts.detached ~= false,
  }, function(exit_code, signal)
    self:_on_exit(exit_code, signal)
  end)
  for _, fd in ipairs(opened) do
    uv.fs_close(fd) -- the child has its copy
  end
  opened = {}
  if not handle then
    release()
    for _, p in ipairs(self.fds) do
      close(p)
    end
    if self.logs then
      self.logs:set_status(self.service, 'failed', { error = pid_or_err })
      self.logs:finish(self.service)
    end
    return errors.fail(code or 'EIO', ('cannot start %s: %s'):format(opts.file, tostring(pid_or_err)))
  end
  self.handle, self.pid, self.status = handle, pid_or_err, 'running'
  self.started_at = os.time()
  if self.logs then
    self.logs:set_status(self.service, 'running', { started_at = self.started_at, pid = self.pid })
  end
  if out then
    self:_read(out, 'stdout')
  end
  if err_pipe then
    self:_read(err_pipe, 'stderr')
  end
  return self
end

--- Let go of the process without stopping it (it keeps running, e.g. a VM that outlives its
--- supervisor's restart): the exit is no longer reported and the output pipes are closed.
function Proc:release()
  self.on_exit = nil
  for _, p in ipairs(self.pipes) do
    close(p)
  end
  for _, p in ipairs(self.fds) do
    close(p)
  end
  close(self.handle)
end

function Proc:_on_exit(exit_code, signal)
  self.exited = true
  self.exit_code, self.signal = exit_code, signal ~= 0 and signal or nil
  self.exited_at = os.time()
  if self.stopping then
    self.status = 'stopped'
  elseif exit_code == 0 and not self.signal then
    self.status = 'exited'
  else
    self.status = 'failed'
  end
  close(self.handle)
  if self.logs then
    self.logs:set_status(self.service, self.status, { exit_code = exit_code, signal = self.signal,
      exited_at = self.exited_at })
  end
  log.info('process ended', { service = self.service, pid = self.pid, exit_code = exit_code,
    signal = self.signal, status = self.status })
  self:_maybe_finish()
  local waiters = self.waiters
  self.waiters = {}
  for _, resume in ipairs(waiters) do
    resume(true)
  end
  if self.on_exit then
    local ok, err = pcall(self.on_exit, self)
    if not ok then
      log.error('on_exit callback failed', { service = self.service, error = tostring(err) })
    end
  end
end

--- Wait (inside a task) until the process exits, at most `ms` (nil = no limit). Returns true
--- or nil, 'ETIMEDOUT: ...', 'ETIMEDOUT'.
function Proc:wait(ms)
  if self.exited then
    return true
  end
  return task.await(function(resume)
    self.waiters[#self.waiters + 1] = resume
  end, { timeout = ms, what = 'wait for ' .. self.service })
end

-- Whether any process of the group is alive.
local function group_alive(pid)
  return uv.kill(-pid, 0) == 0
end

--- Send `signal` to the process group.
function Proc:kill(sig)
  if self.pid then
    uv.kill(-self.pid, sig)
  end
end

--- Stop the process tree (inside a task): SIGTERM to the group, wait up to grace_ms for the
--- process and the rest of its group, then SIGKILL the group. Closes the output pipes.
function Proc:stop(grace_ms)
  grace_ms = grace_ms or 5000
  if not self.pid then
    return true
  end
  self.stopping = true
  if not self.exited or group_alive(self.pid) then
    self:kill('sigterm')
    local deadline = uv.now() + grace_ms
    while (not self.exited or group_alive(self.pid)) and uv.now() < deadline do
      if not self.exited then
        self:wait(math.max(1, math.min(50, deadline - uv.now())))
      else
        task.sleep(20)
      end
      uv.update_time()
    end
    if not self.exited or group_alive(self.pid) then
      log.warn('process did not stop in time: SIGKILL', { service = self.service, pid = self.pid })
      self:kill('sigkill')
      self:wait(2000)
    end
  end
  for _, p in ipairs(self.fds) do
    close(p)
  end
  -- let the output drain; something outside the group may still hold a pipe: close it then
  local drain = uv.now() + 500
  while self.open_pipes > 0 and uv.now() < drain do
    task.sleep(10)
    uv.update_time()
  end
  for _, p in ipairs(self.pipes) do
    if not p:is_closing() then
      close(p)
      self.open_pipes = self.open_pipes - 1
    end
  end
  self:_maybe_finish()
  return true
end

--- Run a command to completion (inside a task) and capture its output. opts = { file, args,
--- env, cwd, timeout_ms }. Returns { exit_code, signal, stdout, stderr } or nil, msg, code
--- (cannot start; ETIMEDOUT after timeout_ms, the process group killed). When the calling task
--- is cancelled meanwhile, the process group is killed too.
function M.run(opts)
  local out = { stdout = {}, stderr = {} }
  local p, err, code = M.spawn({ service = opts.service or 'command', file = opts.file,
    args = opts.args, env = opts.env, cwd = opts.cwd,
    on_output = function(channel, data)
      local t = out[channel]
      t[#t + 1] = data
    end })
  if not p then
    return nil, err, code
  end
  local waited, ok = pcall(p.wait, p, opts.timeout_ms)
  if not waited then
    -- the calling task was cancelled: the command (its process group) goes with it
    p:kill('sigkill')
    error(ok, 0)
  end
  if not ok then
    p:stop(500)
    return errors.fail('ETIMEDOUT', ('%s did not finish within %d ms'):format(opts.file,
      opts.timeout_ms))
  end
  -- the output may still be in flight after the exit
  local drain = uv.now() + 1000
  while p.open_pipes > 0 and uv.now() < drain do
    task.sleep(5)
    uv.update_time()
  end
  return { exit_code = p.exit_code, signal = p.signal, stdout = table.concat(out.stdout),
    stderr = table.concat(out.stderr) }
end

--- The path of program `prog` found on $PATH (or `prog` itself when it names a path that is
--- executable), or nil.
function M.which(prog)
  if prog:find('/', 1, true) then
    return uv.fs_access(prog, 'x') and prog or nil
  end
  for dir in (os.getenv('PATH') or '/usr/bin:/bin'):gmatch('[^:]+') do
    if uv.fs_access(dir .. '/' .. prog, 'x') then
      return dir .. '/' .. prog
    end
  end
  return nil
end

return M
