-- SPDX-License-Identifier: Apache-2.0
-- Policy worker pools (DESIGN.md §5.2): one operator policy loaded into N worker processes
-- (`moonstack policy-worker`, runtime/src/rt_policyvm_worker.c: the policy VM with its memory
-- cap, instruction budget, read-only globals and no bytecode), so that a policy that crashes
-- (a C stack overflow through string.gsub) or stalls in a C call (a backtracking pattern)
-- takes down only a worker. The daemon's loop never waits: a call is a frame written to a
-- pipe, and its task sleeps until the answer. Each call has a wall-clock deadline (the VM's
-- time limit + GRACE_MS); a worker that misses it is killed with SIGKILL and the call fails
-- with ETIMEDOUT; a worker that dies fails its call with ECRASH. Either way a replacement is
-- spawned (backing off while replacements fail to load). Workers die with the daemon (they
-- read the end of their stdin, and the kernel kills them with PR_SET_PDEATHSIG).
--
--   local pool, info, output = pool.start({ source = src, chunkname = '@p.lua', limits = {...},
--     size = 2 })                     -- in a task: the first worker loaded the policy
--   local result, output = pool:call('on_auth', input)   -- in a task; or nil, msg, code, output
--   pool:grow([size]) start the other workers (size in all)
--   pool:retire()     end each worker once it is done (calls in flight and queued finish)
--   pool:close()      kill every worker now; queued calls fail with ECANCELED
local uv = require('luv')
local pvm = require('moonstack.native.policyvm')
local task = require('moonstack.core.task')
local log = require('moonstack.core.log').new('policy')

local M = {}

--- Added to the VM's time limit before a worker is killed, in milliseconds: the VM's own
--- deadline catches policy code, this one a C call the VM cannot interrupt.
M.GRACE_MS = 100
--- From spawning a worker to its "ready" frame, in milliseconds.
M.START_TIMEOUT_MS = 5000
--- Added to a load's deadline for compiling the source (the VM's clock starts after it).
M.COMPILE_MS = 2000
--- How long a call waits for a free worker before it fails, in milliseconds.
M.QUEUE_TIMEOUT_MS = 2000
--- Calls waiting for a free worker, at most (more fail with EBUSY).
M.MAX_QUEUE = 1024
--- Largest pool.
M.MAX_WORKERS = 32

local SIGNALS = { [4] = 'SIGILL', [6] = 'SIGABRT', [7] = 'SIGBUS', [8] = 'SIGFPE', [9] = 'SIGKILL',
  [11] = 'SIGSEGV', [15] = 'SIGTERM' }
local OPTIONS = { memory_limit = '--memory', instruction_limit = '--instructions',
  time_limit_ms = '--time-ms', max_depth = '--depth', max_items = '--items', max_string = '--string',
  max_bytes = '--bytes' }
local ENV = { 'ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'MOONSTACK_LOG_LEVEL',
  'MOONSTACK_LOG_JSON' }

local Worker = {}
Worker.__index = Worker

local Pool = {}
Pool.__index = Pool

local function close(h)
  if h and not h:is_closing() then
    h:close()
  end
end

-- The worker's environment: only what the sanitizers and the log need. A policy that overflows
-- the C stack is an expected crash: under AddressSanitizer the worker leaves that signal to the
-- kernel (ASan's report of it runs past the deadline and only turns the crash into a timeout).
local function worker_env()
  local env = {}
  for _, k in ipairs(ENV) do
    local v = os.getenv(k)
    if v then
      env[#env + 1] = k .. '=' .. v .. (k == 'ASAN_OPTIONS' and ':handle_segv=0' or '')
    end
  end
  return env
end

-- Wait for the answer to the request in flight: cb(reply) or cb(nil, msg, code) after `ms`.
function Worker:_expect(ms, cb)
  self.pending = cb
  self.timer:start(ms, 0, function()
    self:kill('ETIMEDOUT', ('the policy worker did not answer within %d ms and was killed'):format(ms))
  end)
end

-- Hand the answer (or the failure) to the request in flight, once.
function Worker:_answer(...)
  local cb = self.pending
  self.pending = nil
  if not self.timer:is_closing() then
    self.timer:stop()
  end
  if cb then
    cb(...)
  end
end

-- One frame's payload from the worker.
function Worker:_frame(payload)
  local reply, err = pvm.decode_reply(payload, self.pool.limits)
  if not reply then
    return self:kill('EPROTO', err)
  end
  self:_answer(reply)
end

function Worker:_read(_, data)
  if self.state == 'dead' then
    return
  end
  if not data then
    -- end of output: the exit callback tells why
    close(self.stdout)
    return
  end
  local c = self.chunks
  c[#c + 1] = data
  self.have = self.have + #data
  while true do
    if not self.need then
      if self.have < 4 then
        return
      end
      if #c[1] < 4 then
        c = { table.concat(c) }
        self.chunks = c
      end
      local b1, b2, b3, b4 = c[1]:byte(1, 4)
      self.need = b1 + b2 * 256 + b3 * 65536 + b4 * 16777216
      if self.need > self.pool.frame_max then
        return self:kill('EPROTO', ('the policy worker sent a frame of %d bytes'):format(self.need))
      end
    end
    if self.have < 4 + self.need then
      return
    end
    local all = #c == 1 and c[1] or table.concat(c)
    local payload, rest = all:sub(5, 4 + self.need), all:sub(5 + self.need)
    c = { rest ~= '' and rest or nil }
    self.chunks, self.have, self.need = c, #rest, nil
    self:_frame(payload)
    if self.state == 'dead' then
      return
    end
  end
end

--- Kill the worker now (SIGKILL): its request in flight fails with `code`, `msg`.
function Worker:kill(code, msg)
  if self.state == 'dead' then
    return
  end
  self.state = 'dead'
  self.killed = true
  if self.handle and not self.handle:is_closing() then
    self.handle:kill('sigkill')
  end
  close(self.stdin)
  close(self.stdout)
  self:_answer(nil, code .. ': ' .. msg, code)
  self.pool:_lost(self, code)
end

function Worker:_exited(status, signal)
  close(self.handle)
  close(self.timer)
  if self.state == 'dead' then
    return
  end
  local finishing = self.state == 'finishing'
  self.state = 'dead'
  close(self.stdin)
  close(self.stdout)
  if finishing then
    return self.pool:_lost(self, 'EXIT')
  end
  local msg
  if signal and signal ~= 0 then
    msg = ('the policy worker crashed (signal %d, %s)'):format(signal, SIGNALS[signal] or '?')
  else
    msg = ('the policy worker exited with status %d'):format(status)
  end
  self:_answer(nil, 'ECRASH: ' .. msg, 'ECRASH')
  self.pool:_lost(self, 'ECRASH')
end

--- End the worker gracefully: it exits when it reads the end of its stdin.
function Worker:finish()
  if self.state ~= 'dead' then
    self.state = 'finishing'
    close(self.stdin)
  end
end

--- Send one request; cb(reply) or cb(nil, msg, code) within `ms`.
function Worker:request(frame, ms, cb)
  self:_expect(ms, cb)
  self.stdin:write(frame)
end

-- Spawn a worker; on_load(w, reply | nil, msg, code) once it loaded the policy or failed to.
function Pool:_spawn(on_load)
  local args = { 'policy-worker', '--parent', tostring(uv.os_getpid()) }
  for k, v in pairs(self.limits) do
    args[#args + 1] = OPTIONS[k]
    args[#args + 1] = ('%d'):format(v)
  end
  local stdin, stdout = uv.new_pipe(false), uv.new_pipe(false)
  local w = setmetatable({ pool = self, state = 'starting', chunks = {}, have = 0,
    stdin = stdin, stdout = stdout, timer = uv.new_timer() }, Worker)
  local handle, pid = uv.spawn(uv.exepath(), { args = args, stdio = { stdin, stdout, 2 },
    env = self.env, cwd = '/' }, function(status, signal)
    w:_exited(status, signal)
  end)
  if not handle then
    close(stdin)
    close(stdout)
    close(w.timer)
    return nil, 'EAGAIN: cannot start a policy worker: ' .. tostring(pid), 'EAGAIN'
  end
  w.handle, w.pid = handle, pid
  self.stats.spawned = self.stats.spawned + 1
  self.workers[w] = true
  self.live = self.live + 1
  for _, h in ipairs({ handle, stdin, stdout }) do
    h:unref() -- idle workers do not keep the loop alive; a request's timer does
  end
  stdout:read_start(function(err, data)
    w:_read(err, data)
  end)
  w:request(self.load_frame, M.START_TIMEOUT_MS, function(ready, err, code)
    if not ready then
      return on_load(w, nil, err, code)
    end
    -- the load request is already in the pipe: the deadline counts from now (compiling a
    -- source of up to 1 MiB is not counted by the VM's clock)
    w:_expect(self.hard_ms + M.COMPILE_MS, function(reply, lerr, lcode)
      if reply and reply.ok then
        w.state, w.loaded = 'idle', true
      elseif reply then
        w:kill(reply.code or 'EPOLICY', 'the policy did not load')
      end
      on_load(w, reply, lerr, lcode)
    end)
  end)
  return w
end

-- A replacement worker: idle once loaded; a failed load backs off before the next try.
function Pool:_replace()
  if self.closed or self.live >= self.size or (self.retired and #self.queue == 0) then
    return
  end
  local ok, err = self:_spawn(function(w, reply, lerr)
    if reply and reply.ok then
      self.failures = 0
      self:_idle(w)
    elseif not self.closed then
      self.failures = self.failures + 1
      log.warn('a replacement policy worker failed to load the active policy', { pool = self.label,
        error = reply and reply.error or lerr, failures = self.failures })
      self:_backoff()
    end
  end)
  if not ok then
    self.failures = self.failures + 1
    log.error('cannot start a policy worker', { pool = self.label, error = err })
    self:_backoff()
  end
end

function Pool:_backoff()
  if self.closed or self.backoff_timer then
    return
  end
  local ms = math.min(100 * 2 ^ math.min(self.failures - 1, 6), 5000)
  self.backoff_timer = uv.new_timer()
  self.backoff_timer:start(ms, 0, function()
    close(self.backoff_timer)
    self.backoff_timer = nil
    while not self.closed and self.live < self.size and self:_replace_one() do
    end
  end)
end

function Pool:_replace_one()
  local before = self.live
  self:_replace()
  return self.live > before
end

-- A worker is gone (killed, crashed, finished): forget it and replace it.
function Pool:_lost(w, why)
  if not self.workers[w] then
    return
  end
  self.workers[w] = nil
  self.live = self.live - 1
  for i, x in ipairs(self.idle) do
    if x == w then
      table.remove(self.idle, i)
      break
    end
  end
  if why == 'ECRASH' then
    self.stats.crashes = self.stats.crashes + 1
  elseif why == 'ETIMEDOUT' then
    self.stats.kills = self.stats.kills + 1
  end
  -- a worker that never loaded is its loader's business (start() fails, _replace() backs off)
  if why == 'EXIT' or self.closed or not w.loaded then
    return
  end
  if self.failures > 0 then
    self:_backoff()
  else
    self:_replace()
  end
end

-- A worker is free: run the next queued call, or park it (or end it, once retired).
function Pool:_idle(w)
  if w.state == 'dead' or w.state == 'finishing' then
    return
  end
  while #self.queue > 0 do
    local job = table.remove(self.queue, 1)
    if not job.done then
      close(job.timer)
      return self:_run(w, job)
    end
  end
  if self.retired or self.closed then
    return w:finish()
  end
  w.state = 'idle'
  self.idle[#self.idle + 1] = w
end

function Pool:_run(w, job)
  w.state = 'busy'
  w:request(job.frame, self.hard_ms, function(reply, err, code)
    job.done = true
    if not reply then
      job.resume(nil, err, code)
    elseif reply.ok then
      job.resume(reply.result, reply.output)
    else
      job.resume(nil, ('%s: %s'):format(reply.code, reply.error), reply.code, reply.output)
    end
    self:_idle(w)
  end)
end

--- Run `hook` with `input` (a table) in a worker. Call from a task. Returns the result table
--- and the lines the policy printed, or nil, message, code (EPOLICY, ETIMEDOUT, ENOMEM,
--- EINVAL, ENOENT from the VM; ETIMEDOUT when killed at the deadline; ECRASH; EBUSY,
--- ECANCELED) and the printed lines.
function Pool:call(hook, input)
  if self.closed then
    return nil, 'ECANCELED: the policy pool is closed', 'ECANCELED'
  end
  local frame, err, code = pvm.request_call(hook, input, self.limits)
  if not frame then
    return nil, err, code
  end
  local job = { frame = frame }
  return task.await(function(resume)
    job.resume = resume
    local w = table.remove(self.idle)
    if w then
      return self:_run(w, job)
    end
    if #self.queue >= M.MAX_QUEUE then
      job.done = true
      return resume(nil, 'EBUSY: too many policy calls waiting for a worker', 'EBUSY')
    end
    self.queue[#self.queue + 1] = job
    job.timer = uv.new_timer()
    job.timer:start(self.queue_timeout_ms, 0, function()
      close(job.timer)
      if not job.done then
        job.done = true
        resume(nil, ('ETIMEDOUT: no policy worker was free within %d ms'):format(self.queue_timeout_ms),
          'ETIMEDOUT')
      end
    end)
    if self.live < self.size and not self.backoff_timer then
      self:_replace()
    end
    return function()
      job.done = true
      close(job.timer)
    end
  end)
end

--- Start the other workers, up to the pool's size (in the background); `size` (optional)
--- sets a new size first.
function Pool:grow(size)
  if size then
    assert(type(size) == 'number' and size >= 1 and size <= M.MAX_WORKERS, 'pool:grow: bad size')
    self.size = size
  end
  while not self.closed and self.live < self.size and self:_replace_one() do
  end
end

--- End the workers once their calls (those in flight and those queued) are done.
function Pool:retire()
  self.retired = true
  for _, w in ipairs(self.idle) do
    w:finish()
  end
  self.idle = {}
end

--- Kill every worker now; queued calls fail with ECANCELED. Idempotent.
function Pool:close()
  if self.closed then
    return
  end
  self.closed = true
  close(self.backoff_timer)
  for _, job in ipairs(self.queue) do
    if not job.done then
      job.done = true
      close(job.timer)
      job.resume(nil, 'ECANCELED: the policy pool is closed', 'ECANCELED')
    end
  end
  self.queue, self.idle = {}, {}
  local list = {}
  for w in pairs(self.workers) do
    list[#list + 1] = w
  end
  for _, w in ipairs(list) do
    w:kill('ECANCELED', 'the policy pool is closed')
  end
end

--- { size, live, idle, queued, spawned, crashes, kills, pids }
function Pool:status()
  local pids = {}
  for w in pairs(self.workers) do
    pids[#pids + 1] = w.pid
  end
  table.sort(pids)
  return { size = self.size, live = self.live, idle = #self.idle, queued = #self.queue,
    spawned = self.stats.spawned, crashes = self.stats.crashes, kills = self.stats.kills, pids = pids }
end

--- Start a pool and load the policy in its first worker. Call from a task. opts: source,
--- chunkname ('=policy'), limits (policy VM limits, moonstack.native.policyvm.new's options),
--- size (workers in all, 1..MAX_WORKERS, default 1), label (for logs), grace_ms, queue_timeout_ms.
--- Returns pool, info ({ fields, hooks }), output (lines printed while loading); or nil,
--- message, code, output (the policy did not load: EPOLICY, ETIMEDOUT, ENOMEM, EINVAL,
--- ECRASH...).
function M.start(opts)
  local size = opts.size or 1
  if type(size) ~= 'number' or size < 1 or size > M.MAX_WORKERS or size % 1 ~= 0 then
    error(('policy.pool.start: size must be an integer in [1, %d]'):format(M.MAX_WORKERS), 2)
  end
  local limits = {}
  for k, v in pairs(opts.limits or {}) do
    if not OPTIONS[k] then
      error(("policy.pool.start: unknown limit '%s'"):format(tostring(k)), 2)
    end
    limits[k] = v
  end
  local frame_max = pvm.frame_max(limits) -- also validates the limits
  local self = setmetatable({ label = opts.label or 'policy', limits = limits, size = size,
    frame_max = frame_max, env = worker_env(), workers = {}, live = 0, idle = {}, queue = {},
    failures = 0, queue_timeout_ms = opts.queue_timeout_ms or M.QUEUE_TIMEOUT_MS,
    hard_ms = (limits.time_limit_ms or pvm.defaults.time_limit_ms) + (opts.grace_ms or M.GRACE_MS),
    load_frame = pvm.request_load(opts.source, opts.chunkname or '=policy'),
    stats = { spawned = 0, crashes = 0, kills = 0 } }, Pool)
  local reply, err, code = task.await(function(resume)
    local w, serr, scode = self:_spawn(function(_, ...)
      resume(...)
    end)
    if not w then
      resume(nil, serr, scode)
    end
  end)
  if not reply or not reply.ok then
    self:close()
    if reply then
      return nil, ('%s: %s'):format(reply.code, reply.error), reply.code, reply.output
    end
    return nil, err, code, {}
  end
  for w in pairs(self.workers) do
    self:_idle(w)
  end
  return self, reply.info, reply.output
end

return M
