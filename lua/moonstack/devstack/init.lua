-- SPDX-License-Identifier: Apache-2.0
-- The local dev stack (`moonstack dev up|down|status`): a KMS with Lua policy auth, a gateway
-- (proxy + WireGuard hub), a VMM (qemu or process backend: moonstack.devstack.backend)
-- serving the dashboard, the example app deployed as a VM through them and followed until it
-- answers through the gateway. Everything lives in one state directory
-- (moonstack.devstack.layout); a second `up` reuses what the first built (keys, certificates,
-- images, the VM) and is up in seconds. up() stays in the foreground until Ctrl-C, SIGTERM or
-- `moonstack dev down`, then stops the daemons in order (the VMM first, which stops its VMs)
-- and checks that nothing of the stack is left.
local uv = require('luv')
local cjson = require('cjson.safe')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')
local process = require('moonstack.core.process')
local procfs = require('moonstack.core.procfs')
local crypto = require('moonstack.crypto')
local layout = require('moonstack.devstack.layout')
local ports_mod = require('moonstack.devstack.ports')
local configs = require('moonstack.devstack.configs')
local certs = require('moonstack.devstack.certs')
local daemons = require('moonstack.devstack.daemons')
local app = require('moonstack.devstack.app')
local prereq = require('moonstack.devstack.prereq')
local backend = require('moonstack.devstack.backend')

local M = {}

local PRIVATE = tonumber('600', 8)

-- A progress printer: each line prefixed with the seconds since `t0` (uv.hrtime()).
local function progress(t0, out)
  out = out or io.stdout
  return function(fmt, ...)
    local line = select('#', ...) > 0 and fmt:format(...) or fmt
    out:write(('[%5.1fs] %s\n'):format((uv.hrtime() - t0) / 1e9, line))
    out:flush()
  end
end

-- A secret kept in `path` (0600): read, else `make()` written there.
local function kept_secret(path, make)
  local s = fs.read_file(path)
  if s and s:match('%S') then
    return (s:gsub('%s+$', ''))
  end
  s = make()
  assert(fs.write_atomic(path, s .. '\n', PRIVATE))
  return s
end

-- The pid recorded in dev.pid if that process still runs, else nil.
local function running_pid(paths)
  local rec = cjson.decode(fs.read_file(paths.pid) or '')
  if type(rec) == 'table' and procfs.alive(rec) then
    return rec.pid
  end
  return nil
end

-- Where the source tree is (examples/): $MOONSTACK_SRC, the current directory, or two levels
-- above this binary (build/runtime/moonstack).
function M.source_dir()
  local exe = uv.exepath():gsub('/[^/]+$', '')
  local candidates = { os.getenv('MOONSTACK_SRC') or '', uv.cwd(), exe .. '/../..',
    exe .. '/../share/moonstack' }
  for _, d in ipairs(candidates) do
    if d ~= '' and uv.fs_stat(d .. '/examples/policies/dev-stack.lua') then
      return (uv.fs_realpath(d) or d)
    end
  end
  return nil
end

local function absolute(p)
  if p:sub(1, 1) ~= '/' then
    p = uv.cwd() .. '/' .. p
  end
  return uv.fs_realpath(p) or p
end

-- The interface name of the WireGuard hub for state dir `dir`: ms + 8 hex of its path, so two
-- stacks on one host do not collide (15 characters at most).
local function wg_interface(dir)
  return 'msdev' .. crypto.hex(crypto.sha256(dir)):sub(1, 8)
end

-- How to run this binary from the current directory: `moonstack` when that is on $PATH and is
-- this file, else its path (relative when under the current directory).
local function command_name()
  local exe = uv.exepath()
  local on_path = process.which('moonstack')
  if on_path and uv.fs_realpath(on_path) == uv.fs_realpath(exe) then
    return 'moonstack'
  end
  local cwd = uv.cwd() .. '/'
  if exe:sub(1, #cwd) == cwd then
    return exe:sub(#cwd + 1)
  end
  return exe
end

--- The URLs of a running stack: { dashboard?, app, gateway_port, repl, curl, app_host }.
function M.urls(paths, ports, app_id, app_port, login_token, dir_is_default)
  local host = ('%s-%d.%s'):format(app_id, app_port, configs.BASE_DOMAIN)
  local u = {
    app = ('https://%s:%d/'):format(host, ports.gateway_proxy),
    app_host = host,
    gateway_port = ports.gateway_proxy,
    repl = dir_is_default and (command_name() .. ' repl')
      or ('MOONSTACK_DEV_DIR=%s %s repl'):format(paths.dir, command_name()),
    curl = ('curl --cacert %s --resolve %s:%d:127.0.0.1 https://%s:%d/'):format(
      paths.gateway .. '/ca.pem', host, ports.gateway_proxy, host, ports.gateway_proxy),
  }
  if login_token then
    u.dashboard = ('http://127.0.0.1:%d/dashboard/login?once=%s'):format(ports.dashboard, login_token)
  end
  return u
end

-- Stop the running daemons in reverse order (in a task), saying so.
local function stop_all(running, say)
  for i = #daemons.ORDER, 1, -1 do
    local name = daemons.ORDER[i]
    local d = running[name]
    if d and not d.proc.exited then
      say('stopping the %s', name)
      daemons.stop(d, name == 'vmm' and 40000 or 15000)
    end
    running[name] = nil
  end
end

-- After a stop: kill what still names the state dir, and report it. Returns the count.
local function sweep(paths, say)
  local left = daemons.leftovers(paths.dir, { ' ' .. wg_interface(paths.dir) })
  for _, p in ipairs(left) do
    say('left running, killed: pid %d %s', p.pid, p.cmd:sub(1, 100))
    uv.kill(p.pid, 'sigkill')
  end
  return #left
end

-- What every command starts from: the progress printer, the state dir and its paths.
local function begin(opts)
  return progress(uv.hrtime()), layout.dir(opts.dir)
end

--- Bring the stack up (in a task) and keep it running until a signal or `dev down`.
--- opts = { dir, app (dir), name = the app dir's name, app_port = 8080, dashboard = true,
--- timeout_s, backend = 'auto' | 'qemu' | 'process' (moonstack.devstack.backend) }.
--- Returns the exit code.
function M.up(opts)
  local t0 = uv.hrtime()
  local say, dir = begin(opts)
  local paths = layout.paths(dir)
  say('state directory %s', dir)
  local ok, err = prereq.check()
  if not ok then
    io.stderr:write('moonstack dev up: ', err, '\n')
    return 1
  end
  assert(fs.mkdir_p(dir, tonumber('700', 8)))
  for _, d in ipairs({ paths.sim, paths.kms, paths.gateway, paths.vmm, paths.app, paths.logs }) do
    assert(fs.mkdir_p(d, tonumber('700', 8)))
  end
  local other = running_pid(paths)
  if other then
    io.stderr:write(('moonstack dev up: a dev stack already runs from %s (pid %d): ' ..
      '`moonstack dev down` stops it\n'):format(dir, other))
    return 1
  end
  local stale = daemons.stop_recorded(paths.dir .. '/daemons.json', 5000)
  if #stale > 0 then
    say('stopped daemons an earlier run left: %s', table.concat(stale, ', '))
  end
  assert(fs.write_atomic(paths.pid, cjson.encode(procfs.identity(uv.os_getpid())) .. '\n',
    tonumber('644', 8)))

  local src = M.source_dir()
  local app_dir = opts.app and absolute(opts.app) or (src and src .. '/examples/apps/hello')
  if not src or not app_dir or not uv.fs_stat(app_dir) then
    io.stderr:write('moonstack dev up: cannot find the source tree (examples/): run it from ',
      'the moonstack checkout, or set MOONSTACK_SRC\n')
    os.remove(paths.pid)
    return 1
  end
  local running, stopping = {}, false
  local code = 0
  local function fail(msg)
    io.stderr:write('moonstack dev up: ', tostring(msg):gsub('^E[A-Z0-9_]+: ', ''), '\n')
    code = 1
    return false
  end

  local signals = {}
  local wake, bringer -- what a stop signal ends: the wait while serving, or the bring-up
  for _, sig in ipairs({ 'sigint', 'sigterm' }) do
    local h = uv.new_signal()
    h:start(sig, function()
      if stopping then
        io.stderr:write('moonstack dev up: stopping already; once more kills everything\n')
        for _, d in pairs(running) do
          d.proc:kill('sigkill')
        end
        return
      end
      stopping = true
      io.stdout:write('\n')
      say('%s: stopping the stack', sig == 'sigint' and 'Ctrl-C' or 'SIGTERM')
      if bringer then
        -- a boot or a build may be waited on for minutes: end the wait now
        bringer:cancel('stopping')
      end
      if wake then
        wake()
      end
    end)
    signals[#signals + 1] = h
  end

  local function bring_up()
    -- start daemon `name`, recorded in daemons.json; false when it failed (said) or a stop
    -- signal came meanwhile
    local function launch(name)
      local d, derr = daemons.start(name, paths[name .. '_config'], paths[name .. '_log'], 60000)
      if not d then
        return fail(derr)
      end
      running[name] = d
      daemons.record(paths.dir .. '/daemons.json', running)
      return not stopping
    end
    kept_secret(paths.admin_token, function() return crypto.hex(crypto.random(32)) end)
    local ports, perr = ports_mod.allocate(paths.ports)
    if not ports then
      return fail(perr)
    end
    if not uv.fs_stat(paths.sim .. '/platform.conf') then
      say('making the simulated TDX platform (sim/)')
      local r = process.run({ file = uv.exepath(), args = { 'sim', 'init', paths.sim }, timeout_ms = 60000 })
      if not r or r.exit_code ~= 0 then
        return fail('moonstack sim init: ' .. (r and r.stderr or 'did not run'))
      end
    end
    local gw_app = kept_secret(paths.gateway .. '/app_id', function()
      return crypto.hex(crypto.random(20))
    end)
    local template = assert(fs.read_file(src .. '/examples/policies/dev-stack.lua'))
    local ok1, e1 = configs.policy(paths, template, gw_app)
    if not ok1 then
      return fail(e1)
    end
    local eth = opts.kms_auth and opts.kms_auth.kind == 'eth' and opts.kms_auth
    assert(configs.kms(paths, ports, opts.kms_auth))
    say('starting the KMS (https://127.0.0.1:%d, %s)', ports.kms, eth and ('eth auth: DstackKms %s on %s')
      :format(eth.kms_contract, eth.rpc_url) or 'policy kms/policy.lua')
    if not launch('kms') then
      return false
    end

    local proxy_certs, cerr = certs.proxy(paths.gateway, configs.BASE_DOMAIN)
    local rpc_certs
    if proxy_certs then
      rpc_certs, cerr = certs.gateway_rpc(paths.gateway, paths.kms .. '/keys', gw_app)
    end
    if not rpc_certs then
      return fail(cerr)
    end
    kept_secret(paths.gateway .. '/wg.key', function()
      local r = process.run({ file = 'wg', args = { 'genkey' }, timeout_ms = 10000 })
      assert(r and r.exit_code == 0, 'wg genkey failed')
      return (r.stdout:gsub('%s+$', ''))
    end)
    assert(configs.gateway(paths, ports, { proxy = proxy_certs, rpc = rpc_certs }, wg_interface(dir)))
    say('starting the gateway (proxy 127.0.0.1:%d, WireGuard %s on udp %d)', ports.gateway_proxy,
      wg_interface(dir), ports.wireguard)
    if not launch('gateway') then
      return false
    end

    local be, be_err = backend.prepare(opts.backend or 'auto', { images_dir = paths.vmm .. '/images',
      log = paths.logs .. '/image-build.log', say = say })
    if not be then
      return fail(be_err)
    end
    say(be.built and 'built the guest image (vmm/images/%s%s)' or 'reusing the guest image (%s)',
      be.image, be.build_s and (', %.0f s'):format(be.build_s) or '')
    local name = opts.name or app_dir:match('([^/]+)/*$')
    local app_state = paths.app .. '/' .. name
    local runner, rerr = app.runner(app_dir)
    if not runner then
      return fail(rerr)
    end
    local images = {}
    if runner == 'docker-compose' then
      local tarball, fresh = app.image(app_dir, app_state .. '/image', src)
      if not tarball then
        return fail(fresh)
      end
      say(fresh and 'built the app image %s' or 'reusing the app image %s', tarball)
      images[1] = tarball
    end
    local login
    if opts.dashboard ~= false then
      login = assert(require('moonstack.ui.login').issue(paths.login_token))
    end
    assert(configs.vmm(paths, ports, rpc_certs.kms_ca, images,
      opts.dashboard ~= false and {} or nil, { name = be.name, accel = be.accel, retry_denied = eth }))
    say('backend: %s (%s)', be.name, be.reason)
    say('starting the VMM%s', login and
      (' (dashboard http://127.0.0.1:%d/dashboard/)'):format(ports.dashboard) or '')
    if not launch('vmm') then
      return false
    end

    local client = assert(require('moonstack.vmm.client').new('unix:' .. paths.vmm_sock))
    local env, eerr = app.env(app_dir)
    if not env then
      return fail(eerr)
    end
    local compose, merr = app.compose(app_dir, name, env)
    if not compose then
      return fail(merr)
    end
    local vm, verr = app.deploy(client, name, compose, env, { image = be.image, state_dir = app_state,
      memory = be.name == 'qemu' and 2048 or 1024, say = function(l) say('%s', l) end,
      app_id = eth and eth.app_id or nil })
    if not vm then
      return fail(verr)
    end
    say('%s VM %s (%s, app id %s)', vm.reused and 'starting the existing' or 'deployed', name,
      vm.id, vm.app_id)
    local booted, berr = app.wait_boot(client, vm.id, { timeout_ms = (opts.timeout_s or 300) * 1000,
      retry_denied = eth and { app_id = vm.app_id, compose = compose },
      say = function(l) say('  boot:%s', l) end })
    if not booted then
      return fail(berr)
    end
    if stopping then
      return false
    end
    local urls = M.urls(paths, ports, vm.app_id, opts.app_port or 8080, login,
      dir == layout.dir(layout.DEFAULT_DIR))
    say('waiting for the app to answer through the gateway (%s)', urls.app_host)
    local res, werr = app.wait_reachable(urls.app_host, ports.gateway_proxy, paths.gateway .. '/ca.pem',
      (opts.timeout_s or 300) * 1000)
    if not res then
      return fail(werr)
    end
    assert(fs.write_atomic(paths.urls, require('moonstack.core.json').encode({
      dashboard = urls.dashboard, app = urls.app, gateway_port = urls.gateway_port,
      repl = urls.repl }) .. '\n', PRIVATE))
    say('app reachable in %.1f s', (uv.hrtime() - t0) / 1e9)
    io.stdout:write('\n',
      urls.dashboard and ('  dashboard   %s\n              (a one-time login link: it stops working ' ..
        'once opened)\n'):format(urls.dashboard) or '',
      ('  app         %s\n'):format(urls.app),
      ('  curl        %s\n'):format(urls.curl),
      ('  REPL        %s          (vm.list(), help())\n'):format(urls.repl),
      ('  logs        %s/*.log\n'):format(paths.logs),
      ('  state       %s (urls.json for scripts)\n'):format(dir),
      '  stop        Ctrl-C here, or `moonstack dev down`\n\n')
    io.stdout:flush()
    return true
  end

  bringer = task.spawn_named('dev:bring-up', bring_up)
  local joined, up_ok = bringer:join()
  if not joined and not stopping then -- it raised: say so, then stop what it started
    fail(up_ok)
  end
  bringer = nil
  up_ok = joined and up_ok
  if up_ok and not stopping then
    -- serve until a signal, or until a daemon ends on its own
    task.await(function(cb)
      wake = cb
      local check = uv.new_timer()
      check:start(500, 500, function()
        for name, d in pairs(running) do
          if d.proc.exited then
            io.stderr:write(('moonstack dev up: the %s exited (%s); see %s\n'):format(name,
              tostring(d.proc.exit_code or d.proc.signal), paths[name .. '_log']))
            code = 1
            check:close()
            if wake then
              wake = nil
              cb()
            end
            return
          end
        end
        if stopping then
          check:close()
        end
      end)
    end)
  end
  stop_all(running, say)
  os.remove(paths.dir .. '/daemons.json')
  local left = sweep(paths, say)
  for _, h in ipairs(signals) do
    h:close()
  end
  os.remove(paths.pid)
  os.remove(paths.urls)
  os.remove(paths.login_token)
  if up_ok or stopping then
    say('stopped%s', left == 0 and ': nothing of the stack is left running' or '')
  end
  return code
end

--- Stop a running stack (in a task): signal its `dev up`, wait for it; else stop the daemons
--- it left; then kill anything still naming the state dir. opts = { dir }. Returns the code.
function M.down(opts)
  local say, dir = begin(opts)
  local paths = layout.paths(dir)
  if not uv.fs_stat(dir) then
    say('no dev stack state in %s: nothing to stop', dir)
    return 0
  end
  local pid = running_pid(paths)
  if pid then
    local id = procfs.identity(pid)
    say('stopping the dev stack (pid %d)', pid)
    uv.kill(pid, 'sigterm')
    local deadline = uv.now() + 90000
    while procfs.alive(id) and uv.now() < deadline do
      task.sleep(100)
      uv.update_time()
    end
    if procfs.alive(id) then
      say('it did not stop in 90 s: killing it')
      uv.kill(pid, 'sigkill')
    end
  end
  local stopped = daemons.stop_recorded(paths.dir .. '/daemons.json', 15000)
  if #stopped > 0 then
    say('stopped daemons left behind: %s', table.concat(stopped, ', '))
  end
  local left = sweep(paths, say)
  os.remove(paths.pid)
  os.remove(paths.urls)
  say(left == 0 and 'the dev stack is down' or 'the dev stack is down (%d leftovers killed)', left)
  return 0
end

--- What runs (no task needed): prints the stack's state. opts = { dir, json }. Returns the
--- code: 0 when it runs, 3 when it does not.
function M.status(opts)
  local dir = layout.dir(opts.dir)
  local paths = layout.paths(dir)
  local pid = running_pid(paths)
  local urls = cjson.decode(fs.read_file(paths.urls) or '')
  local rec = cjson.decode(fs.read_file(paths.dir .. '/daemons.json') or '') or {}
  local st = { dir = dir, running = pid ~= nil, pid = pid, urls = urls, daemons = {} }
  for _, name in ipairs(daemons.ORDER) do
    st.daemons[name] = type(rec[name]) == 'table' and procfs.alive(rec[name]) and rec[name].pid or false
  end
  if opts.json then
    io.stdout:write(cjson.encode(st), '\n')
  else
    io.stdout:write(('dev stack %s: %s\n'):format(dir,
      pid and ('running (pid %d)'):format(pid) or 'not running'))
    for _, name in ipairs(daemons.ORDER) do
      local p = st.daemons[name]
      io.stdout:write(('  %-8s %s\n'):format(name, p and ('pid ' .. p) or '-'))
    end
    if type(urls) == 'table' then
      for _, k in ipairs({ 'dashboard', 'app', 'repl' }) do
        if urls[k] then
          io.stdout:write(('  %-8s %s\n'):format(k, urls[k]))
        end
      end
    end
  end
  return pid and 0 or 3
end

return M
