-- SPDX-License-Identifier: Apache-2.0
-- Tasks: coroutines over the luv loop. A task runs a function that may block on sleeps,
-- callbacks turned into calls (await), other tasks (join) and timeouts, without blocking the
-- loop.
--
-- Semantics, in short:
-- * task.spawn(fn, ...) runs fn at once, up to its first wait, and returns the task object.
-- * Blocking functions (sleep, await, join, timeout) raise when called outside a task.
-- * Cancellation unwinds: t:cancel(reason) makes the task's pending wait (or its next one)
--   raise an error object with code ECANCELED. The task may catch it with pcall to clean up;
--   every later wait raises again, so a cancelled task cannot keep waiting. A cancelled task
--   ends in state 'cancelled' and is not logged as an error.
-- * An error raised in a task ends it in state 'failed'. It is logged with its traceback
--   (log.error, component 'task') on the next loop iteration unless someone joined the task
--   by then; join returns nil, message, code.
-- * Every timer a wait creates is closed when the wait ends, however it ends.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local log = require('moonstack.core.log')

local M = {}

local Task = {}
Task.__index = Task

local by_co = setmetatable({}, { __mode = 'k' }) -- coroutine -> task
local live = {} -- task -> true, for every task not finished yet
local CANCEL = {} -- resume marker: the wait was cancelled
local TIMEOUT = {} -- resume marker: the wait timed out
local OK = {} -- resume marker: the wait was resumed with results
local counter = 0 -- for default task names

local function pack(...)
  return { n = select('#', ...), ... }
end

local function current_task()
  local co = coroutine.running()
  return co and by_co[co]
end

local function need_task(fname)
  local t = current_task()
  if not t then
    error(('%s: not inside a task (run the code with task.spawn)'):format(fname), 3)
  end
  return t
end

function Task.__tostring(t)
  return ('task<%s, %s>'):format(t.name, t.state)
end

-- Ends the wait `w`: marks it done and closes its timer. Returns false if it was done.
local function end_wait(w)
  if w.done then
    return false
  end
  w.done = true
  if w.timer then
    w.timer:close()
    w.timer = nil
  end
  if w.task.wait == w then
    w.task.wait = nil
  end
  return true
end

local function run_abort(w)
  if w.abort then
    local ok, err = pcall(w.abort)
    if not ok then
      log.emit('error', 'task', 'abort function of a wait failed', { task = w.task.name,
        error = tostring(err) })
    end
  end
end

local finish

-- Resume the task's coroutine with `...` and handle what it does next.
local function step(t, ...)
  t.state = 'running'
  local r = pack(coroutine.resume(t.co, ...))
  if coroutine.status(t.co) == 'dead' then
    finish(t, r)
  elseif t.wait == nil or r[2] ~= t.wait then
    -- coroutine.yield called directly inside the task: nothing would ever resume it
    finish(t, { n = 3, true, false, { err = 'coroutine.yield called outside moonstack.core.task waits',
      tb = 'task ' .. t.name } })
  else
    t.state = 'waiting'
  end
end

local function log_failure(t)
  if t.joined then
    return
  end
  local timer = uv.new_timer()
  timer:start(0, 0, function()
    timer:close()
    if not t.joined then
      log.emit('error', 'task', ('task %s failed: %s'):format(t.name, t.traceback or t.message),
        { task = t.name, code = t.code })
    end
  end)
end

-- Record the outcome of a dead coroutine: r = {resume ok, xpcall ok, results or error}.
finish = function(t, r)
  live[t] = nil
  by_co[t.co] = nil
  local err
  if not r[1] then
    err = { err = r[2], tb = debug.traceback(t.co, tostring(r[2])) }
  elseif not r[2] then
    err = r[3]
  end
  if err == nil then
    t.state = 'done'
    t.results = { n = r.n - 2, unpack(r, 3, r.n) }
  else
    local e = errors.wrap(err.err, 'EINTERNAL')
    t.code = e.code
    t.message = ('%s: %s'):format(e.code, e.msg)
    t.error = err.err
    t.traceback = err.tb
    if t.cancelled and errors.is(err.err, 'ECANCELED') then
      t.state = 'cancelled'
      log.emit('debug', 'task', 'task cancelled', { task = t.name, reason = t.cancelled })
    else
      t.state = 'failed'
      log_failure(t)
    end
  end
  local waiters = t.waiters
  t.waiters = {}
  for _, resume in ipairs(waiters) do
    resume()
  end
end

local function cancel_error(t)
  return errors.new('ECANCELED', t.cancelled)
end

-- Block the current task until `setup(resume)` leads to resume(...). See M.await.
local function wait(fname, setup, opts)
  local t = need_task(fname)
  if t.cancelled then
    error(cancel_error(t), 0)
  end
  local w = { task = t, done = false, yielded = false }
  local resume = function(...)
    if w.done then
      return
    end
    if not w.yielded then
      end_wait(w)
      w.early = pack(...)
      return
    end
    end_wait(w)
    step(t, OK, ...)
  end
  local ok, abort = pcall(setup, resume)
  if not ok then
    end_wait(w)
    error(abort, 0)
  end
  if w.early then
    return unpack(w.early, 1, w.early.n)
  end
  if type(abort) == 'function' then
    w.abort = abort
  end
  local ms = opts and opts.timeout
  if ms then
    w.timer = assert(uv.new_timer())
    uv.update_time() -- see sleep(): timeouts count from now, not from the turn's start
    w.timer:start(ms, 0, function()
      if end_wait(w) then
        run_abort(w)
        step(t, TIMEOUT)
      end
    end)
  end
  t.wait = w
  w.yielded = true
  local r = pack(coroutine.yield(w))
  if r[1] == CANCEL then
    error(cancel_error(t), 0)
  elseif r[1] == TIMEOUT then
    return errors.fail('ETIMEDOUT', ('%s timed out after %d ms'):format(opts.what or fname, ms))
  end
  return unpack(r, 2, r.n)
end

--- Start a task running `fn(...)`. The task runs at once until its first wait; spawn then
--- returns the task object. Returns the task even if fn already finished or failed.
---@return table task with :cancel(), :join(), :status() and fields name, state
function M.spawn(fn, ...)
  return M.spawn_named(nil, fn, ...)
end

--- Same as spawn, with a name used in logs and tostring().
function M.spawn_named(name, fn, ...)
  if type(fn) ~= 'function' and not (getmetatable(fn) or {}).__call then
    error('task.spawn: fn must be a function', 2)
  end
  local t = setmetatable({ state = 'running', waiters = {} }, Task)
  counter = counter + 1
  t.name = name ~= nil and tostring(name) or ('task#%d'):format(counter)
  t.co = coroutine.create(function(...)
    return xpcall(fn, function(e)
      return { err = e, tb = debug.traceback(tostring(e), 2) }
    end, ...)
  end)
  by_co[t.co] = t
  live[t] = true
  step(t, ...)
  return t
end

--- The task running the caller, or nil outside a task.
function M.current()
  return current_task()
end

--- Every task that has not finished yet (an array; order unspecified).
function M.running()
  local list = {}
  for t in pairs(live) do
    list[#list + 1] = t
  end
  return list
end

--- Suspend the current task for `ms` milliseconds (0 yields to the loop). Returns true.
function M.sleep(ms)
  if type(ms) ~= 'number' or ms < 0 then
    error('task.sleep: ms must be a non-negative number', 2)
  end
  local t = need_task('task.sleep')
  if t.cancelled then
    error(cancel_error(t), 0)
  end
  local w = { task = t, done = false, yielded = true }
  w.timer = assert(uv.new_timer())
  -- The loop's clock is cached at the start of each turn: refresh it so that work done since
  -- does not shorten the sleep.
  uv.update_time()
  w.timer:start(ms, 0, function()
    if end_wait(w) then
      step(t, OK, true)
    end
  end)
  t.wait = w
  local r = pack(coroutine.yield(w))
  if r[1] == CANCEL then
    error(cancel_error(t), 0)
  end
  return true
end

--- Turn a callback API into a blocking call inside a task. `setup(resume)` starts the
--- operation and arranges for `resume(...)` to be called once; await returns the values
--- given to resume (later calls are ignored; a call during setup works too).
--- `opts.timeout` (ms): after that long, returns nil, 'ETIMEDOUT: ...', 'ETIMEDOUT' (so give
--- resume results in the nil, msg, code style to tell them apart). If setup returns a
--- function, it is called when the wait is abandoned (timeout or cancellation) to stop the
--- operation, e.g. close its handle.
---@param setup fun(resume: function): function|nil
---@param opts table|nil { timeout = ms, what = 'name used in the timeout message' }
function M.await(setup, opts)
  if type(setup) ~= 'function' then
    error('task.await: setup must be a function', 2)
  end
  if opts ~= nil and (type(opts) ~= 'table' or (opts.timeout ~= nil and
      (type(opts.timeout) ~= 'number' or opts.timeout < 0))) then
    error('task.await: opts.timeout must be a non-negative number', 2)
  end
  return wait('task.await', setup, opts)
end

--- Run fn(...) in a child task and wait at most `ms` for it. Returns fn's results; nil,
--- 'ETIMEDOUT: ...', 'ETIMEDOUT' on timeout (the child is cancelled first); nil, msg, code if
--- fn raised. If the calling task is cancelled meanwhile, the child is cancelled too.
function M.timeout(ms, fn, ...)
  if type(ms) ~= 'number' or ms < 0 then
    error('task.timeout: ms must be a non-negative number', 2)
  end
  local parent = need_task('task.timeout')
  local child = M.spawn_named(parent.name .. '/timeout', fn, ...)
  local r = pack(pcall(child.join, child, ms))
  if not r[1] then
    child:cancel('parent cancelled')
    error(r[2], 0)
  end
  if r[2] then
    return unpack(r, 3, r.n)
  end
  if child.state == 'running' or child.state == 'waiting' then
    child:cancel(('timed out after %d ms'):format(ms))
    return errors.fail('ETIMEDOUT', ('task.timeout: timed out after %d ms'):format(ms))
  end
  return nil, r[3], r[4]
end

--- Cancel the task: its pending wait (or next wait) raises an ECANCELED error object. A
--- waiting task is unwound before cancel returns. Returns false if it had already finished.
function Task:cancel(reason)
  if self.state == 'done' or self.state == 'failed' or self.state == 'cancelled' then
    return false
  end
  if not self.cancelled then
    self.cancelled = reason ~= nil and tostring(reason) or 'task cancelled'
  end
  local w = self.wait
  if w and coroutine.status(self.co) == 'suspended' and end_wait(w) then
    run_abort(w)
    step(self, CANCEL)
  end
  return true
end

--- Wait for the task to finish (from another task), at most `timeout` ms if given.
--- Returns true, ...results; or nil, msg, code if it failed or was cancelled; or nil,
--- 'ETIMEDOUT: ...', 'ETIMEDOUT' on timeout (the task keeps running).
function Task:join(timeout)
  local me = need_task('task.join')
  if me == self then
    error('task.join: a task cannot join itself', 2)
  end
  self.joined = true
  if self.state == 'running' or self.state == 'waiting' then
    local r = pack(wait('task.join', function(resume)
      self.waiters[#self.waiters + 1] = resume
    end, { timeout = timeout, what = 'join of ' .. self.name }))
    if r.n > 0 then
      return unpack(r, 1, r.n)
    end
  end
  if self.state == 'done' then
    return true, unpack(self.results, 1, self.results.n)
  end
  return nil, self.message, self.code
end

--- 'running', 'waiting', 'done', 'failed' or 'cancelled'.
function Task:status()
  return self.state
end

return M
