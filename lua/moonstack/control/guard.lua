-- SPDX-License-Identifier: Apache-2.0
-- The limits of running REPL evaluations: one debug hook shared by every evaluation in flight
-- (LuaJIT's hook is global, not per coroutine) that stops a chunk past its CPU-time limit or
-- once its client asked to interrupt it (Ctrl-C). An evaluation runs in its own coroutine (a
-- task: it may wait on I/O, and other code runs meanwhile); the hook acts only while that
-- coroutine runs, so the rest of the daemon pays one cheap call per COUNT interpreted
-- instructions while an evaluation is in flight, and nothing once none is.
local M = {}

--- Instructions between two calls of the hook.
M.COUNT = 1000
--- CPU seconds between two interrupt checks of one evaluation (each check is a system call).
M.POLL_S = 0.02

local MAIN = {} -- the key of an evaluation on the main coroutine (coroutine.running() is nil)
local active = {} -- coroutine (or MAIN) -> entry
local count = 0 -- entries in `active`
local saved -- the hook set before the first entry: { fn, mask, count }, restored after the last
local hook

local function key()
  return coroutine.running() or MAIN
end

-- Set the hook's count: every instruction while a stopped chunk still runs (so a chunk that
-- caught the error with pcall gets it again at once), else every COUNT.
local function arm()
  local every = M.COUNT
  for _, e in pairs(active) do
    if e.stopped then
      every = 1
      break
    end
  end
  debug.sethook(hook, '', every)
end

hook = function()
  local e = active[key()]
  if not e or e.in_handler then
    return
  end
  if e.stopped then
    error(e.stopped, 0)
  end
  local now = os.clock()
  if e.deadline and now > e.deadline then
    e.stopped = ('ETIMEDOUT: evaluation took more than %g s of CPU time'):format(e.timeout)
  elseif e.interrupted and now >= e.next_poll then
    e.next_poll = now + M.POLL_S
    if e.interrupted() then
      e.stopped = 'EINTR: evaluation interrupted'
    end
  end
  if e.stopped then
    arm()
    error(e.stopped, 0)
  end
end

--- Guard the evaluation running on the current coroutine until leave(). opts: timeout (CPU
--- seconds from now; nil or 0: none), interrupted (function() -> true when the client asked
--- to stop; polled every POLL_S CPU seconds). Returns the entry (set entry.in_handler while
--- the error handler runs, so the hook leaves it alone), or nil when there is nothing to
--- guard.
function M.enter(opts)
  local timeout = tonumber(opts and opts.timeout)
  if timeout and timeout <= 0 then
    timeout = nil
  end
  local interrupted = opts and opts.interrupted
  if not timeout and not interrupted then
    return nil
  end
  local k = key()
  if active[k] then
    error('control.guard.enter: this coroutine is already guarded', 2)
  end
  local now = os.clock()
  local e = { key = k, timeout = timeout, deadline = timeout and now + timeout,
    interrupted = interrupted, next_poll = now + M.POLL_S }
  if count == 0 then
    local fn, mask, n = debug.gethook()
    saved = fn and { fn, mask, n } or nil
  end
  active[k] = e
  count = count + 1
  arm()
  return e
end

--- Stop guarding `entry` (from enter). The previous hook is back once no evaluation is left.
function M.leave(entry)
  if not entry or active[entry.key] ~= entry then
    return
  end
  active[entry.key] = nil
  count = count - 1
  if count > 0 then
    arm()
  elseif saved then
    debug.sethook(saved[1], saved[2], saved[3])
    saved = nil
  else
    debug.sethook()
  end
end

--- How many evaluations are guarded now (tests).
function M.active()
  return count
end

return M
