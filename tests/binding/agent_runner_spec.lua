-- SPDX-License-Identifier: Apache-2.0
-- The agent's runners on the real loop with real processes: the bash runner's environment
-- (the allowed env and PATH/HOME only, pre-launch exports), log capture (channels, tail,
-- since/until, follow, bounds, files), exit status reporting, stopping the whole process
-- tree (SIGTERM, then SIGKILL), init and pre-launch failures, the docker-compose runner's
-- engine probe, and a full boot + launch reaching 'running' then 'exited'.
local uv = require('luv')
local cjson = require('cjson.safe')
local loop = require('tests.helpers.loop')
local fixtures = require('tests.helpers.fixtures')
local task = require('moonstack.core.task')
local logs = require('moonstack.agent.runner.logs')
local process = require('moonstack.core.process')
local launch = require('moonstack.agent.runner.launch')
local bash = require('moonstack.agent.runner.bash')
local docker = require('moonstack.agent.runner.docker_compose')

local CFG = { path = '/usr/local/bin:/usr/bin:/bin', stop_grace_ms = 300, docker_probe_timeout_ms = 3000 }

local function start_app(script, opts)
  opts = opts or {}
  local dir = fixtures.tmpdir('agent-runner', true)
  local store = assert(logs.new({ dir = opts.files and (dir .. '/logs') or nil,
    buffer_bytes = opts.buffer_bytes }))
  local app, err, code = loop.run_task(function()
    return bash.start({ app_compose = { bash_script = script, pre_launch_script = opts.pre },
      env = opts.env or {}, work_dir = dir, logs = store, config = CFG })
  end, 10000)
  return app, store, dir, err, code
end

local function stop(app)
  loop.run_task(function() app:stop() end, 10000)
end

local function wait_text(store, name, pattern, ms)
  return loop.run_until(function()
    local t = store:text(name)
    return t and t:find(pattern) ~= nil
  end, ms or 5000)
end

local function alive(pid)
  return uv.kill(pid, 0) == 0
end

describe('agent bash runner', function()
  it('runs bash_script with the allowed env and a minimal PATH/HOME only', function()
    uv.os_setenv('MOONSTACK_AGENT_LEAK', 'agent-only')
    local app, store, dir = start_app('env; echo DONE', { env = { GOOD = 'yes', TWO = 'a b' },
      pre = 'export FROM_PRE=1' })
    uv.os_unsetenv('MOONSTACK_AGENT_LEAK')
    assert(app)
    assert.is_true(wait_text(store, 'app', 'DONE'))
    local seen = {}
    for line in store:text('app'):gmatch('[^\n]+') do
      local k, v = line:match('^([%w_]+)=(.*)$')
      if k then
        seen[k] = v
      end
    end
    -- bash itself exports PWD, SHLVL and _
    seen.PWD, seen.SHLVL, seen._ = nil, nil, nil
    assert.are.same({ GOOD = 'yes', TWO = 'a b', FROM_PRE = '1', PATH = CFG.path, HOME = dir }, seen)
    stop(app)
  end)

  it('captures stdout/stderr lines with tail, since/until and follow', function()
    local app, store = start_app("echo one; sleep 0.05; echo two >&2; sleep 0.05; "
      .. "printf thr; printf 'ee\\n'; sleep 0.3; echo four; printf five")
    assert(app)
    local got, ended = {}, false
    local sub = assert(store:follow('app', function(r)
      if r then
        got[#got + 1] = r.message
      else
        ended = true
      end
    end))
    assert.is_true(loop.run_until(function() return ended end, 5000))
    sub:close()
    local all = store:read('app')
    local msgs, channels = {}, {}
    for i, r in ipairs(all) do
      msgs[i], channels[i] = r.message, r.channel
    end
    -- a line is a record once complete; a last partial line is flushed at the exit
    assert.are.same({ 'one\n', 'two\n', 'three\n', 'four\n', 'five' }, msgs)
    assert.are.same({ 'stdout', 'stderr', 'stdout', 'stdout', 'stdout' }, channels)
    -- followers saw what arrived after they subscribed, in order
    assert.are.same({ 'four\n', 'five' }, { got[#got - 1], got[#got] })
    local tail = store:read('app', { tail = 2 })
    assert.are.same({ 'four\n', 'five' }, { tail[1].message, tail[2].message })
    local t4 = all[4].time
    assert.is_true(t4 - all[2].time >= 0.25)
    local since = store:read('app', { since = t4 - 0.05 })
    assert.are.equal(2, #since)
    local till = store:read('app', { ['until'] = t4 - 0.05 })
    assert.are.equal(3, #till)
    assert.are.equal('one\ntwo\nthree\nfour\nfive', store:text('app'))
    assert.matches('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z one\n',
      store:text('app', { timestamps = true }))
    local none, err, code = store:read('nope')
    assert.is_nil(none)
    assert.are.equal('ENOENT', code)
    assert.matches('no such service', err)
  end)

  it('records the exit status and reports it', function()
    for _, case in ipairs({ { 'exit 3', 'failed', 3 }, { 'true', 'exited', 0 } }) do
      local app, store = start_app(case[1])
      local state, info
      app:watch(function(s, i) state, info = s, i end)
      assert.is_true(loop.run_until(function() return state ~= nil end, 5000))
      assert.are.equal(case[2], state)
      assert.are.equal(case[3], info.exit_code)
      local list = store:list()
      assert.are.equal('app', list[1].name)
      assert.are.equal(case[2], list[1].status)
      assert.are.equal(case[3], list[1].exit_code)
    end
  end)

  it('stop ends the whole process tree: SIGTERM, then SIGKILL for what ignores it', function()
    local app, store, dir = start_app(table.concat({
      'sleep 300 & echo $! > kids',
      "bash -c 'trap \"\" TERM; echo $$ >> kids; while :; do sleep 0.05; done' &",
      'echo started; wait',
    }, '\n'))
    assert.is_true(wait_text(store, 'app', 'started'))
    assert.is_true(loop.run_until(function()
      local f = io.open(dir .. '/kids')
      local n = f and select(2, f:read('*a'):gsub('\n', '')) or 0
      if f then f:close() end
      return n >= 2
    end, 5000))
    local pids = {}
    for p in fixtures.read(dir .. '/kids'):gmatch('%d+') do
      pids[#pids + 1] = tonumber(p)
    end
    pids[#pids + 1] = app.proc.pid
    for _, p in ipairs(pids) do
      assert.is_true(alive(p))
    end
    local t0 = uv.hrtime()
    stop(app)
    local ms = (uv.hrtime() - t0) / 1e6
    assert.is_true(ms >= 250, 'SIGKILL came after the grace period')
    assert.is_true(loop.run_until(function()
      for _, p in ipairs(pids) do
        if alive(p) then return false end
      end
      return true
    end, 3000))
    assert.are.equal('stopped', app.proc.status)
    assert.are.equal('stopped', store:list()[1].status)
  end)

  it('a failing pre_launch_script fails the start with its stderr', function()
    local app, _, _, err, code = start_app('echo never', { pre = 'echo nope >&2; false' })
    assert.is_nil(app)
    assert.are.equal('EPRELAUNCH', code)
    assert.matches('pre_launch_script failed %(exit 1%): nope', err)
    app, _, _, err, code = start_app('')
    assert.is_nil(app)
    assert.are.equal('EINVAL', code)
    assert.matches('needs bash_script', err)
  end)

  it('runs init scripts in order; a failure is an error naming it', function()
    local dir = fixtures.tmpdir('agent-init', true)
    local store = assert(logs.new())
    local env = launch.base_env(CFG, { X = '1' }, dir)
    local ok = loop.run_task(function()
      return launch.run_init({ scripts = { 'echo first$X', 'echo second' }, env = env,
        work_dir = dir, logs = store })
    end)
    assert.is_true(ok)
    assert.are.equal('first1\nsecond\n', store:text('init'))
    local err, code
    ok, err, code = loop.run_task(function()
      return launch.run_init({ scripts = { 'echo boom >&2; exit 7' }, env = env, work_dir = dir,
        logs = assert(logs.new()) })
    end)
    assert.is_nil(ok)
    assert.are.equal('EINIT', code)
    assert.matches('init_script failed %(exit 7%): boom', err)
  end)
end)

describe('agent log store', function()
  it('keeps a bounded ring, splits long lines, writes and rotates files', function()
    local dir = fixtures.tmpdir('agent-logs', true)
    local store = assert(logs.new({ buffer_bytes = 2048, dir = dir, max_file_bytes = 4096,
      max_line = 100 }))
    for i = 1, 200 do
      store:append('svc', 'stdout', ('line %03d\n'):format(i))
    end
    local recs = store:read('svc')
    assert.is_true(#recs < 200 and #recs > 10)
    assert.are.equal('line 200\n', recs[#recs].message)
    store:append('svc', 'stderr', ('x'):rep(250) .. '\n')
    recs = store:read('svc', { tail = 3 })
    assert.are.same({ 100, 100, 51 }, { #recs[1].message, #recs[2].message, #recs[3].message })
    store:finish('svc')
    assert.is_truthy(uv.fs_stat(dir .. '/svc.log.1'))
    local last = fixtures.read(dir .. '/svc.log'):match('[^\n]+\n$')
    local obj = cjson.decode(last)
    assert.are.equal('stderr', obj.channel)
    assert.are.equal(('x'):rep(50) .. '\n', obj.message)
    assert.is_true(math.abs(obj.time - logs.now()) < 60)
    assert.are.same({ { name = 'svc', status = 'created' } }, store:list())
  end)
end)

describe('agent process', function()
  it('runs a command to completion and times out a hung one', function()
    local r = loop.run_task(function()
      return process.run({ file = 'sh', args = { '-c', 'echo out; echo err >&2; exit 4' },
        env = { PATH = CFG.path }, timeout_ms = 5000 })
    end)
    assert.are.same({ exit_code = 4, stdout = 'out\n', stderr = 'err\n' }, r)
    local ok, err, code = loop.run_task(function()
      return process.run({ file = 'sleep', args = { '30' }, env = { PATH = CFG.path },
        timeout_ms = 100 })
    end)
    assert.is_nil(ok)
    assert.are.equal('ETIMEDOUT', code)
    assert.matches('did not finish within 100 ms', err)
    local p
    p, err, code = process.spawn({ service = 'x', file = '/nonexistent/prog', env = {} })
    assert.is_nil(p)
    assert.are.equal('ENOENT', code)
    assert.matches('cannot start /nonexistent/prog', err)
  end)

  it('kills the command when the task running it is cancelled', function()
    local dir = fixtures.tmpdir('agent-run-cancel', true)
    local pidfile = dir .. '/pid'
    local joined, msg, still_running = loop.run_task(function()
      local t = task.spawn(function()
        return process.run({ file = 'sh', args = { '-c', 'echo $$ > ' .. pidfile .. '; exec sleep 30' },
          env = { PATH = CFG.path }, timeout_ms = 60000 })
      end)
      for _ = 1, 100 do
        local f = io.open(pidfile)
        if f and f:read('*n') then
          f:close()
          break
        end
        task.sleep(20)
      end
      t:cancel('test')
      local ok, err = t:join()
      task.sleep(200)
      local f = assert(io.open(pidfile))
      local pid = f:read('*n')
      f:close()
      local st = io.open('/proc/' .. pid .. '/stat')
      local state = st and st:read('*a'):match('^%d+ %b() (%a)')
      if st then
        st:close()
      end
      return ok, err, state ~= nil and state ~= 'Z'
    end)
    assert.is_nil(joined)
    assert.matches('ECANCELED', msg)
    assert.is_false(still_running)
  end)
end)

describe('agent docker-compose runner', function()
  it('refuses clearly without a Docker engine', function()
    local dir = fixtures.tmpdir('agent-docker', true)
    for _, prog in ipairs({ '/bin/false', '/nonexistent/docker' }) do
      local cfg = { path = CFG.path, docker = prog, docker_probe_timeout_ms = 3000 }
      local app, err, code = loop.run_task(function()
        return docker.start({ app_compose = { docker_compose_file = 'services: {}\n' }, env = {},
          work_dir = dir, logs = assert(logs.new()), config = cfg })
      end)
      assert.is_nil(app)
      assert.are.equal('EUNAVAILABLE', code)
      assert.matches('the docker%-compose runner needs a Docker engine', err)
    end
    local app, err, code = loop.run_task(function()
      return docker.start({ app_compose = {}, env = {}, work_dir = dir, logs = assert(logs.new()),
        config = CFG })
    end)
    assert.is_nil(app)
    assert.are.equal('EINVAL', code)
    assert.matches('needs docker_compose_file', err)
  end)

  it('points the bind mounts of the guest API sockets where runner.env says they are', function()
    local text = table.concat({ 'services:', '  a:', '    volumes:',
      '      - /var/run/dstack.sock:/var/run/dstack.sock',
      '      - "/var/run/tappd.sock:/var/run/tappd.sock:ro"',
      '      - type: bind', '        source: /var/run/dstack.sock', '        target: /x',
      '      - /var/run/dstack.sockets:/y', '      - /data:/var/run/dstack.sock', '' }, '\n')
    local out = docker.map_sockets(text, { DSTACK_SIMULATOR_ENDPOINT = '/w/100%/dstack.sock',
      TAPPD_SIMULATOR_ENDPOINT = '/w/tappd.sock' })
    assert.are.equal(table.concat({ 'services:', '  a:', '    volumes:',
      '      - /w/100%/dstack.sock:/var/run/dstack.sock',
      '      - "/w/tappd.sock:/var/run/tappd.sock:ro"',
      '      - type: bind', '        source: /w/100%/dstack.sock', '        target: /x',
      '      - /var/run/dstack.sockets:/y', '      - /data:/var/run/dstack.sock', '' }, '\n'), out)
    -- in a CVM (no variables, or the standard paths): untouched
    assert.are.equal(text, docker.map_sockets(text, {}))
    assert.are.equal(text, docker.map_sockets(text, { DSTACK_SIMULATOR_ENDPOINT = '/var/run/dstack.sock' }))
  end)
end)

describe('agent boot + launch', function()
  it('boots from a shared folder and runs the bash app: starting, running, exited', function()
    local config = require('moonstack.agent.config')
    local boot = require('moonstack.agent.boot')
    local base = fixtures.tmpdir('agent-launch', true)
    os.execute(('mkdir -p %q/shared'):format(base))
    local f = assert(io.open(base .. '/shared/app-compose.json', 'w'))
    f:write(cjson.encode({ manifest_version = 2, name = 'demo', runner = 'bash',
      init_script = 'echo init > init-ran', bash_script = 'cat init-ran; echo app-done' }))
    f:close()
    f = assert(io.open(base .. '/shared/.sys-config.json', 'w'))
    f:write('{}')
    f:close()
    local cfg = assert(config.validate({ shared_dir = base .. '/shared', state_dir = base .. '/state',
      tee = { name = 'sim', dir = base .. '/sim', cvm = 'c' }, runner = { wait_sockets_ms = 0 },
      listen = { dstack = false, tappd = false, public = false } }))
    local states = {}
    local served
    local ctx = loop.run_task(function()
      return assert(boot.run(cfg, { serve = function(c)
        served = c.state
        c.events:on('state', function(s) states[#states + 1] = s end)
        return true
      end }))
    end, 10000)
    assert.are.equal('starting', served)
    assert.is_true(loop.run_until(function() return ctx.state == 'exited' end, 5000))
    assert.are.same({ 'running', 'exited' }, states)
    assert.are.equal('init\napp-done\n', ctx.logs:text('app'))
    assert.are.equal('exited', ctx.logs:list()[1].status)
    loop.run_task(function() ctx:close() end)
    assert.are.equal('stopped', ctx.state)
    assert.is_truthy(uv.fs_stat(base .. '/state/logs/app.log'))
    assert(task)
  end)
end)
