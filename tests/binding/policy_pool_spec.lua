-- SPDX-License-Identifier: Apache-2.0
-- moonstack.policy.pool: policy worker processes. Calls run in parallel on the workers, queue
-- when all are busy (and fail after the queue timeout), a crashed or killed worker is replaced,
-- a retired pool finishes its calls in flight, close() kills every worker, and no worker
-- outlives the process that started it (not even one stuck in a C call). Workers get only the
-- environment they need.
local pool = require('moonstack.policy.pool')
local task = require('moonstack.core.task')
local fixtures = require('fixtures')
local loop = require('loop')
local uv = require('luv')

local function in_task(fn)
  return function()
    loop.run_task(fn, 30000)
  end
end

local POLICY = [[
return { name = 'p', version = 1, on_auth = function(i)
  if i.busy then local t = 0 for _ = 1, i.busy do t = t + 1 end end
  if i.crash then local f; f = function() return (("x"):gsub("x", f)) end; f() end
  if i.stall then local r = ('a'):rep(28):find(('a?'):rep(28) .. ('a'):rep(28)) end
  print('call', i.n)
  return { allow = true, n = i.n }
end }
]]

local function alive(pid)
  local f = io.open(('/proc/%d/stat'):format(pid))
  if not f then
    return false
  end
  local stat = f:read('*a')
  f:close()
  return stat:match('^%d+ %b() (%a)') ~= 'Z'
end

local function wait_dead(pids, ms)
  local deadline = uv.now() + (ms or 2000)
  while uv.now() < deadline do
    local any = false
    for _, pid in ipairs(pids) do
      any = any or alive(pid)
    end
    if not any then
      return true
    end
    task.sleep(10)
  end
  return false
end

describe('moonstack.policy.pool', function()
  it('loads the policy in its first worker and reports what it printed', in_task(function()
    local p, info, output = pool.start({ source = 'print("hello") ' .. POLICY, chunkname = '=p' })
    assert.truthy(p, info)
    assert.same({ on_auth = true }, info.hooks)
    assert.equal('p', info.fields.name)
    assert.same({ 'hello' }, output)
    local r, out = p:call('on_auth', { n = 7 })
    assert.same({ allow = true, n = 7 }, r)
    assert.same({ 'call\t7' }, out)
    p:close()
  end))

  it('fails to start on a policy that does not load, crashes or stalls', in_task(function()
    local cases = {
      { 'return {', 'EPOLICY' },
      { 'local f; f = function() return (("x"):gsub("x", f)) end; f() return {}', 'ECRASH' },
      { "local r = ('a'):rep(28):find(('a?'):rep(28) .. ('a'):rep(28)) return {}", 'ETIMEDOUT' },
    }
    for _, case in ipairs(cases) do
      local p, err, code = pool.start({ source = case[1], chunkname = '=bad' })
      assert.is_nil(p)
      assert.equal(case[2], code, err)
      assert.matches('^' .. case[2] .. ': ', err)
    end
    assert.has_error(function() pool.start({ source = POLICY, size = 0 }) end)
    assert.has_error(function() pool.start({ source = POLICY, limits = { memry = 1 } }) end)
  end))

  it('runs calls in parallel on its workers and queues the rest', in_task(function()
    local p = assert(pool.start({ source = POLICY, size = 2 }))
    p:grow()
    task.sleep(100)
    assert.equal(2, p:status().live)
    -- two calls stuck in a C call (killed at 150 ms each) run side by side, a third one waits
    -- for a worker (the replacement of a killed one) and then answers
    local t0, ends, results = uv.hrtime(), {}, {}
    local tasks = {}
    for n = 1, 3 do
      tasks[n] = task.spawn(function()
        results[n] = { p:call('on_auth', { stall = n < 3, n = n }) }
        ends[n] = (uv.hrtime() - t0) / 1e6
      end)
    end
    for _, t in ipairs(tasks) do
      assert.is_true((t:join(10000)))
    end
    assert.equal('ETIMEDOUT', results[1][3])
    assert.equal('ETIMEDOUT', results[2][3])
    assert.is_true(ends[1] < 290 and ends[2] < 290, ('the stalls ended at %.1f and %.1f ms')
      :format(ends[1], ends[2]))
    assert.same({ allow = true, n = 3 }, results[3][1])
    assert.is_true(ends[3] >= 140, ('the queued call answered at %.1f ms'):format(ends[3]))
    assert.equal(0, p:status().queued)
    p:close()
  end))

  it('replaces a crashed or killed worker and keeps answering', in_task(function()
    local p = assert(pool.start({ source = POLICY, size = 2 }))
    p:grow()
    local _, err, code = p:call('on_auth', { crash = true })
    assert.equal('ECRASH', code)
    assert.matches('crashed %(signal %d+, SIG%u+%)', err)
    local t0 = uv.hrtime()
    _, err, code = p:call('on_auth', { stall = true })
    local ms = (uv.hrtime() - t0) / 1e6
    assert.equal('ETIMEDOUT', code)
    assert.matches('did not answer within 150 ms and was killed', err)
    assert.is_true(ms >= 140 and ms < 1000, ('killed after %.1f ms'):format(ms))
    for n = 1, 20 do
      assert.same({ allow = true, n = n }, (p:call('on_auth', { n = n })))
    end
    local st = p:status()
    assert.equal(1, st.crashes)
    assert.equal(1, st.kills)
    assert.is_true(st.spawned >= 4)
    assert.equal(2, st.live)
    p:close()
  end))

  it('fails a call that waits too long for a worker, and one that cannot be encoded', in_task(function()
    local p = assert(pool.start({ source = POLICY, size = 1, queue_timeout_ms = 50 }))
    local slow = task.spawn(function()
      return p:call('on_auth', { stall = true })
    end)
    local _, err, code = p:call('on_auth', { n = 1 })
    assert.equal('ETIMEDOUT', code)
    assert.matches('no policy worker was free within 50 ms', err)
    slow:join(2000)
    _, err, code = p:call('on_auth', { f = print })
    assert.equal('EINVAL', code)
    assert.matches('input.f: a function value cannot be copied', err)
    p:close()
  end))

  it('finishes the calls of a retired pool, then its workers exit', in_task(function()
    local p = assert(pool.start({ source = POLICY, size = 2 }))
    p:grow()
    task.sleep(50)
    local pids = p:status().pids
    assert.equal(2, #pids)
    local results = {}
    local tasks = {}
    for n = 1, 4 do
      tasks[n] = task.spawn(function()
        results[n] = p:call('on_auth', { busy = 1e6, n = n })
      end)
    end
    p:retire()
    for _, t in ipairs(tasks) do
      t:join(5000)
    end
    for n = 1, 4 do
      assert.same({ allow = true, n = n }, results[n])
    end
    assert.is_true(wait_dead(pids), 'the retired workers exited')
    assert.equal(0, p:status().live)
  end))

  it('kills every worker on close(); queued calls fail with ECANCELED', in_task(function()
    local p = assert(pool.start({ source = POLICY, size = 1 }))
    local pids = p:status().pids
    local first = task.spawn(function()
      return p:call('on_auth', { stall = true })
    end)
    local queued = task.spawn(function()
      return p:call('on_auth', { n = 2 })
    end)
    p:close()
    p:close()
    local _, _, _, code = first:join(1000)
    assert.equal('ECANCELED', code)
    _, _, _, code = queued:join(1000)
    assert.equal('ECANCELED', code)
    assert.is_true(wait_dead(pids))
    assert.equal('ECANCELED', select(3, p:call('on_auth', {})))
  end))

  it('gives workers only the environment they need', in_task(function()
    local p = assert(pool.start({ source = POLICY }))
    local f = assert(io.open(('/proc/%d/environ'):format(p:status().pids[1]), 'rb'))
    local env = f:read('*a')
    f:close()
    for entry in env:gmatch('[^%z]+') do
      local k = entry:match('^([^=]+)=')
      assert.is_true(k == 'ASAN_OPTIONS' or k == 'UBSAN_OPTIONS' or k == 'LSAN_OPTIONS'
        or k == 'MOONSTACK_LOG_LEVEL' or k == 'MOONSTACK_LOG_JSON', entry)
    end
    p:close()
  end))

  it('leaves no worker behind when its process dies, even one stuck in a C call', function()
    local dir = fixtures.tmpdir('policy-pool', true)
    local script = dir .. '/owner.lua'
    local f = assert(io.open(script, 'w'))
    f:write([[
local task = require('moonstack.core.task')
local pool = require('moonstack.policy.pool')
task.spawn(function()
  local p = assert(pool.start({ source = arg[1], size = 2 }))
  p:grow()
  task.sleep(200)
  io.stdout:write(table.concat(p:status().pids, ' '), '\n')
  io.stdout:flush()
  p:call('on_auth', { stall = true }) -- in flight when the owner is killed
end)
]])
    f:close()
    local out = uv.new_pipe(false)
    local buf = ''
    local child = uv.spawn(uv.exepath(), { args = { 'run', script, POLICY:gsub("%('a'%):rep%(28%)",
      "('a'):rep(34)") }, stdio = { nil, out, 2 } }, function() end)
    out:read_start(function(_, data)
      buf = buf .. (data or '')
    end)
    assert.is_true(loop.run_until(function() return buf:find('\n') ~= nil end, 10000))
    local pids = {}
    for pid in buf:gmatch('%d+') do
      pids[#pids + 1] = tonumber(pid)
    end
    assert.equal(2, #pids)
    loop.settle(100) -- the stalling call is in flight
    child:kill('sigkill')
    local gone = loop.run_task(function()
      return wait_dead(pids, 3000)
    end, 5000)
    assert.is_true(gone, 'workers outlived their owner')
    out:close()
    child:close()
    os.execute(('rm -rf %q'):format(dir))
  end)
end)
