-- SPDX-License-Identifier: Apache-2.0
-- Test helper: drive the runtime's loop from a spec (specs run before the main loop starts).
local uv = require('luv')

local M = {}

--- Run the loop until `done()` returns true or `timeout_ms` passes. Returns true if done.
function M.run_until(done, timeout_ms)
  timeout_ms = timeout_ms or 5000
  local deadline = uv.now() + timeout_ms
  local timer = uv.new_timer()
  -- a short repeating timer keeps the loop from blocking forever without work
  timer:start(10, 10, function() end)
  while not done() do
    if uv.now() >= deadline then
      break
    end
    uv.run('once')
    uv.update_time()
  end
  timer:close()
  uv.run('nowait')
  return done() and true or false
end

local function pack(...)
  return { n = select('#', ...), ... }
end

--- Run `fn` as a moonstack task (so it may use moonstack.core.task waits) and drive the loop
--- until it finishes. Re-raises its error; returns its results.
function M.run_task(fn, timeout_ms)
  local task = require('moonstack.core.task')
  local results, err, finished
  task.spawn(function()
    local packed = pack(xpcall(fn, debug.traceback))
    finished = true
    if packed[1] then
      results = { n = packed.n - 1, unpack(packed, 2, packed.n) }
    else
      err = packed[2]
    end
  end)
  if not M.run_until(function() return finished end, timeout_ms) then
    error(('task did not finish within %d ms'):format(timeout_ms or 5000), 2)
  end
  if err then
    error(err, 2)
  end
  return unpack(results, 1, results.n)
end

--- Let the loop turn for `ms` milliseconds (default 30): deferred closes and teardowns finish.
function M.settle(ms)
  M.run_until(function() return false end, ms or 30)
end

--- Number of libuv handles still alive, excluding those in `except` (a set of handles).
--- Counts every handle on the loop, libwebsockets' included (luv's walk cannot see those).
function M.live_handles(except)
  return require('uv_handles').count(except)
end

return M
