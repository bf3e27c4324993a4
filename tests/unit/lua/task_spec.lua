-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.task: tasks over the real luv loop (sleep, await, timeout, cancel, join,
-- errors) and no libuv handle left behind.
local uv = require('luv')
local loop = require('loop')
local task = require('moonstack.core.task')
local errors = require('moonstack.core.errors')
local log = require('moonstack.core.log')

-- Run fn in a task and drive the loop until it ends; returns the task.
local function run(fn, ms)
  local t = task.spawn(fn)
  local finished = loop.run_until(function()
    return t.state ~= 'running' and t.state ~= 'waiting'
  end, ms or 3000)
  assert(finished, 'task did not finish: ' .. tostring(t))
  return t
end

-- Capture records passed to log.emit while fn runs (and the loop turns once more).
local function capture_logs(fn)
  local records = {}
  local orig = log.emit
  log.emit = function(level, component, msg, fields)
    records[#records + 1] = { level = level, component = component, msg = msg, fields = fields }
  end
  local ok, err = pcall(fn)
  log.emit = orig
  assert(ok, err)
  return records
end

describe('core.task', function()
  local baseline

  before_each(function()
    uv.run('nowait')
    baseline = loop.live_handles()
  end)

  after_each(function()
    uv.run('nowait')
    assert.are.equal(baseline, loop.live_handles(), 'libuv handles leaked')
    assert.are.same({}, task.running())
  end)

  it('spawn runs the function at once until its first wait', function()
    local trace = {}
    local t = task.spawn(function(a, b)
      trace[#trace + 1] = 'start ' .. a .. b
      task.sleep(1)
      trace[#trace + 1] = 'after sleep'
      return a + b
    end, 1, 2)
    trace[#trace + 1] = 'spawned'
    assert.are.same({ 'start 12', 'spawned' }, trace)
    assert.are.equal('waiting', t:status())
    assert.is_true(loop.run_until(function() return t.state == 'done' end, 2000))
    assert.are.same({ 'start 12', 'spawned', 'after sleep' }, trace)
    assert.are.same({ n = 1, 3 }, t.results)
  end)

  it('sleeps wake in deadline order and take about the time asked', function()
    local order = {}
    local start = uv.hrtime()
    local tasks = {}
    for _, ms in ipairs({ 60, 10, 30 }) do
      tasks[#tasks + 1] = task.spawn(function()
        task.sleep(ms)
        order[#order + 1] = ms
      end)
    end
    assert.is_true(loop.run_until(function() return #order == 3 end, 2000))
    assert.are.same({ 10, 30, 60 }, order)
    local elapsed = (uv.hrtime() - start) / 1e6
    assert.is_true(elapsed >= 55, 'elapsed ' .. elapsed)
  end)

  it('current() is the running task, nil outside; running() lists unfinished tasks', function()
    assert.is_nil(task.current())
    local seen
    local t = task.spawn(function()
      seen = task.current()
      task.sleep(5)
    end)
    assert.are.equal(t, seen)
    assert.are.same({ t }, task.running())
    assert.is_true(loop.run_until(function() return t.state == 'done' end))
    assert.are.same({}, task.running())
  end)

  it('blocking calls outside a task raise a clear error', function()
    assert.has_error(function() task.sleep(1) end,
      'task.sleep: not inside a task (run the code with task.spawn)')
    assert.has_error(function() task.await(function() end) end,
      'task.await: not inside a task (run the code with task.spawn)')
    assert.has_error(function() task.timeout(10, function() end) end,
      'task.timeout: not inside a task (run the code with task.spawn)')
    -- a foreign coroutine is not a task either
    local co = coroutine.create(function() task.sleep(1) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches('not inside a task', err)
    assert.has_error(function() task.spawn(42) end, 'task.spawn: fn must be a function')
  end)

  it('await turns a luv callback into a call and returns its values', function()
    local path = os.getenv('MOONSTACK_SRC') .. '/lua/moonstack/core/task.lua'
    local st, size
    run(function()
      local err
      err, st = task.await(function(resume) uv.fs_stat(path, resume) end)
      assert(err == nil, err)
      size = st.size
    end)
    assert.are.equal('file', st.type)
    local f = assert(io.open(os.getenv('MOONSTACK_SRC') .. '/lua/moonstack/core/task.lua', 'rb'))
    assert.are.equal(#f:read('*a'), size)
    f:close()
  end)

  it('await handles a resume during setup, and ignores a second resume', function()
    local got, n
    run(function()
      got = { task.await(function(resume)
        resume('a', nil, 'c')
        resume('second')
      end) }
      n = select('#', task.await(function(resume) resume(1, nil) end))
    end)
    assert.are.same({ 'a', nil, 'c' }, got)
    assert.are.equal(2, n)
    local late, extra
    local t = run(function()
      late = task.await(function(resume)
        local timer = uv.new_timer()
        timer:start(5, 0, function()
          timer:close()
          resume('first')
          resume('again')
        end)
      end)
      extra = task.sleep(10)
    end)
    assert.are.equal('done', t.state)
    assert.are.equal('first', late)
    assert.is_true(extra)
  end)

  it('await with a timeout returns ETIMEDOUT, calls the abort function and closes its timer',
    function()
      local r, aborted, handle
      run(function()
        r = { task.await(function(_)
          handle = uv.new_timer() -- an operation that never completes
          return function()
            aborted = true
            handle:close()
          end
        end, { timeout = 20, what = 'fake op' }) }
      end)
      assert.is_true(aborted)
      assert.is_true(handle:is_closing())
      assert.are.same({ nil, 'ETIMEDOUT: fake op timed out after 20 ms', 'ETIMEDOUT' }, r)
      -- resumed before the deadline: no timeout, no abort
      local aborted2
      run(function()
        r = { task.await(function(resume)
          local timer = uv.new_timer()
          timer:start(5, 0, function()
            timer:close()
            resume('ok')
          end)
          return function() aborted2 = true end
        end, { timeout = 500 }) }
      end)
      assert.are.same({ 'ok' }, r)
      assert.is_nil(aborted2)
    end)

  it('rejects a bad timeout', function()
    local r
    run(function()
      r = { task.spawn(function() task.await(function() end, { timeout = 'soon' }) end):join() }
    end)
    assert.is_nil(r[1])
    assert.matches('opts.timeout must be a non%-negative number', r[2])
  end)

  it('cancel unwinds a waiting task at once with ECANCELED and frees its timers', function()
    local reached, caught
    local t = task.spawn(function()
      local ok, err = pcall(task.sleep, 10000)
      caught = err
      assert(not ok)
      task.sleep(1) -- cancellation is sticky: this raises again
      reached = true
    end)
    assert.are.equal(baseline + 1, loop.live_handles())
    assert.is_true(t:cancel('shutting down'))
    assert.are.equal('cancelled', t.state)
    assert.is_true(errors.is(caught, 'ECANCELED'))
    assert.are.equal('shutting down', caught.msg)
    assert.is_nil(reached)
    assert.are.equal('ECANCELED: shutting down', t.message)
    assert.are.equal(baseline, loop.live_handles())
    assert.is_false(t:cancel())
  end)

  it('cancel of a running task takes effect at its next wait', function()
    local after
    local t = run(function()
      task.current():cancel()
      after = 'still running'
      task.sleep(1)
      after = 'not reached'
    end)
    assert.are.equal('still running', after)
    assert.are.equal('cancelled', t.state)
    assert.are.equal('ECANCELED', t.code)
  end)

  it('join returns results, errors, cancellation and times out', function()
    local r = {}
    run(function()
      local worker = task.spawn(function(x)
        task.sleep(10)
        return x * 2, 'two'
      end, 21)
      r.ok = { worker:join() }
      r.again = { worker:join() }
      local bad = task.spawn(function()
        task.sleep(5)
        errors.raise('EDENIED', 'no way')
      end)
      r.bad = { bad:join() }
      local str = task.spawn(function() error('plain') end)
      r.str = { str:join() }
      local slow = task.spawn(function() task.sleep(10000) end)
      r.timeout = { slow:join(10) }
      r.slow_state = slow.state
      slow:cancel('enough')
      r.cancelled = { slow:join() }
      r.self = { pcall(function() task.current():join() end) }
    end)
    assert.are.same({ true, 42, 'two' }, r.ok)
    assert.are.same({ true, 42, 'two' }, r.again)
    assert.are.same({ nil, 'EDENIED: no way', 'EDENIED' }, r.bad)
    assert.are.equal('EINTERNAL', r.str[3])
    assert.matches('^EINTERNAL: .*task_spec.lua:%d+: plain$', r.str[2])
    assert.is_nil(r.timeout[1])
    assert.matches('^ETIMEDOUT: join of task#%d+ timed out after 10 ms$', r.timeout[2])
    assert.are.equal('ETIMEDOUT', r.timeout[3])
    assert.are.equal('waiting', r.slow_state)
    assert.are.same({ nil, 'ECANCELED: enough', 'ECANCELED' }, r.cancelled)
    assert.is_false(r.self[1])
    assert.matches('a task cannot join itself', r.self[2])
  end)

  it('several tasks can join the same task', function()
    local got = {}
    local target = task.spawn(function()
      task.sleep(10)
      return 'v'
    end)
    for i = 1, 3 do
      task.spawn(function()
        local ok, v = target:join()
        got[i] = ok and v
      end)
    end
    assert.is_true(loop.run_until(function() return #got == 3 end, 2000))
    assert.are.same({ 'v', 'v', 'v' }, got)
  end)

  it('timeout returns the results, or ETIMEDOUT after cancelling the work', function()
    local r, cleaned = {}, false
    run(function()
      r.fast = { task.timeout(500, function(a)
        task.sleep(5)
        return a, 'b'
      end, 'a') }
      r.slow = { task.timeout(20, function()
        local ok, err = pcall(task.sleep, 10000)
        cleaned = not ok and errors.is(err, 'ECANCELED')
        error(err, 0)
      end) }
      r.fails = { task.timeout(500, function() errors.raise('EINVAL', 'bad') end) }
    end)
    assert.are.same({ 'a', 'b' }, r.fast)
    assert.are.same({ nil, 'ETIMEDOUT: task.timeout: timed out after 20 ms', 'ETIMEDOUT' }, r.slow)
    assert.is_true(cleaned)
    assert.are.same({ nil, 'EINVAL: bad', 'EINVAL' }, r.fails)
  end)

  it('cancelling a task waiting in timeout() cancels the child too', function()
    local child_cancelled
    local t = task.spawn(function()
      task.timeout(10000, function()
        local ok, err = pcall(task.sleep, 10000)
        child_cancelled = not ok and err.code
        error(err, 0)
      end)
    end)
    t:cancel('stop')
    assert.are.equal('cancelled', t.state)
    assert.are.equal('ECANCELED', child_cancelled)
  end)

  it('an error in an unjoined task is logged with its traceback and the loop goes on', function()
    local later
    local records = capture_logs(function()
      local t = task.spawn_named('boomer', function()
        task.sleep(1)
        error('kaboom')
      end)
      local other = task.spawn(function()
        task.sleep(30)
        later = 'ran'
      end)
      assert.is_true(loop.run_until(function() return other.state == 'done' end, 2000))
      assert.are.equal('failed', t.state)
    end)
    assert.are.equal('ran', later)
    local found
    for _, rec in ipairs(records) do
      if rec.level == 'error' and rec.component == 'task' then
        found = rec
      end
    end
    assert.is_not_nil(found, 'no error record')
    assert.matches('^task boomer failed: .*kaboom', found.msg)
    assert.matches('stack traceback:', found.msg)
    assert.are.equal('boomer', found.fields.task)
  end)

  it('an error in a joined task is not logged; a cancellation is never logged as an error',
    function()
      local got
      local records = capture_logs(function()
        run(function()
          local t = task.spawn(function() error('handled') end)
          got = { t:join() }
          local c = task.spawn(function() task.sleep(1000) end)
          c:cancel()
        end)
        loop.settle(20)
      end)
      assert.matches('handled', got[2])
      for _, rec in ipairs(records) do
        assert.are_not.equal('error', rec.level, rec.msg)
      end
    end)

  it('a stray coroutine.yield fails the task instead of hanging it', function()
    local t = task.spawn(function() coroutine.yield('x') end)
    t.joined = true
    assert.are.equal('failed', t.state)
    assert.matches('coroutine.yield called outside', t.message)
  end)

  it('many tasks and waits leave no handle behind', function()
    local done = 0
    for i = 1, 50 do
      task.spawn(function()
        task.sleep(i % 5)
        task.await(function(resume) resume() end, { timeout = 100 })
        task.await(function(resume)
          local tm = uv.new_timer()
          tm:start(1, 0, function()
            tm:close()
            resume()
          end)
        end, { timeout = 100 })
        done = done + 1
      end)
    end
    assert.is_true(loop.run_until(function() return done == 50 end, 3000))
  end)
end)
