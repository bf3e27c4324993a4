-- SPDX-License-Identifier: Apache-2.0
-- The VMM's port mapping (moonstack.vmm.portmap) with real CVM-like process trees: an app in a
-- network namespace of its own (portmap.run_in_netns) listening on 0.0.0.0:8080 is reachable
-- through host 127.0.0.1:<free port> and not on the host's 127.0.0.1:8080; two CVMs with the
-- same vm_port on different host ports; a taken host port refused naming it (all or nothing);
-- stop frees the ports, the connections and the fds, and the CVM's processes go with their
-- stop (walking /proc); 20 MB both ways intact (throughput printed as a TAP comment);
-- half-close in both directions; UDP; guest -> host forwards; connect and idle timeouts,
-- max_connections; refusals: EPERM without namespaces, the host's own namespace, bad input.
local uv = require('luv')
local loop = require('tests.helpers.loop')
local fixtures = require('tests.helpers.fixtures')
local portmap = require('moonstack.vmm.portmap')
local process = require('moonstack.core.process')

local MOONSTACK = os.getenv('MOONSTACK') or uv.exepath()
local SRC = os.getenv('MOONSTACK_SRC') or '.'
local ENV = { PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

-- A CVM: the helper app in a new network namespace. Returns { proc, dir, token }.
local function start_vm(token)
  local dir = fixtures.tmpdir('pm-' .. token, true)
  local proc = loop.run_task(function()
    return assert(portmap.run_in_netns({ service = 'vm-' .. token, file = MOONSTACK,
      args = { 'run', SRC .. '/tests/helpers/portmap_server.lua', '8080', token, dir }, env = ENV }))
  end, 10000)
  assert(loop.run_until(function() return exists(dir .. '/ready') end, 10000), 'the app started')
  return { proc = proc, dir = dir, token = token }
end

local function stop_vm(vm)
  if vm and not vm.stopped then
    vm.stopped = true
    loop.run_task(function() vm.proc:stop(2000) end, 5000)
    os.execute(('rm -rf %q'):format(vm.dir))
  end
end

-- A TCP listener of the host on 127.0.0.1:port (0: any); returns it and its port.
local function host_listener(port, on_connection)
  local h = uv.new_tcp()
  assert(h:bind('127.0.0.1', port or 0))
  assert(h:listen(4, function() if on_connection then on_connection(h) end end))
  return h, h:getsockname().port
end

local function fd_count()
  local n = 0
  for _ in uv.fs_scandir_next, uv.fs_scandir('/proc/self/fd') do
    n = n + 1
  end
  return n
end

-- Pids whose command line contains `needle`.
local function pids_with(needle)
  local out = {}
  for name in uv.fs_scandir_next, uv.fs_scandir('/proc') do
    if name:match('^%d+$') then
      local f = io.open('/proc/' .. name .. '/cmdline')
      local cmd = f and f:read('*a') or ''
      if f then
        f:close()
      end
      if cmd:find(needle, 1, true) then
        out[#out + 1] = tonumber(name)
      end
    end
  end
  return out
end

-- Connect to 127.0.0.1:port, send `payload` (flow-controlled), half-close, read to EOF.
-- Returns { data, closed, err, ms } (data nil when the connection was refused).
local function exchange(port, payload, opts)
  opts = opts or {}
  local c = uv.new_tcp()
  local got, done, res = {}, false, {}
  local t0 = uv.hrtime()
  c:connect('127.0.0.1', port, function(err)
    if err then
      res.err, done, res.sent = err, true, true
      return
    end
    c:read_start(function(rerr, data)
      if data then
        got[#got + 1] = data
      else
        res.err, done = rerr, true
      end
    end)
    local pos, size = 1, 64 * 1024
    local function pump()
      while pos <= #payload do
        if c:get_write_queue_size() > 1024 * 1024 then
          return c:write('', pump)
        end
        c:write(payload:sub(pos, pos + size - 1))
        pos = pos + size
      end
      if opts.keep_open then
        res.sent = true
      else
        c:shutdown(function() res.sent = true end)
      end
    end
    if opts.delay_ms then
      local t = uv.new_timer()
      t:start(opts.delay_ms, 0, function() t:close(); pump() end)
    else
      pump()
    end
  end)
  -- until the answer ended and our side is sent (or the connection failed)
  loop.run_until(function() return done and (res.sent or res.err) end, opts.timeout_ms or 30000)
  res.ms = (uv.hrtime() - t0) / 1e6
  res.closed = done
  if not c:is_closing() then
    c:close()
  end
  res.data = table.concat(got)
  return res
end

-- A UDP request/answer through 127.0.0.1:port; the answer or nil.
local function udp_ask(port, text)
  local u = uv.new_udp()
  assert(u:bind('127.0.0.1', 0))
  local answer
  u:recv_start(function(_, data) answer = answer or data end)
  u:send(text, '127.0.0.1', port)
  loop.run_until(function() return answer ~= nil end, 3000)
  u:close()
  return answer
end

local function mapping(vm, ports, extra)
  local opts = { netns = vm.proc.pid, ports = ports }
  for k, v in pairs(extra or {}) do
    opts[k] = v
  end
  local pm = assert(portmap.new(opts))
  local ok, err = pm:start()
  assert(ok, err)
  return pm
end

describe('vmm port mapping', function()
  local a, b
  setup(function()
    a = start_vm('alpha')
    b = start_vm('bravo')
  end)
  teardown(function()
    stop_vm(a)
    stop_vm(b)
  end)

  it('reaches an app on 0.0.0.0:8080 in its netns through a free host port, not host :8080', function()
    local pm = mapping(a, { { protocol = 'tcp', host_address = '127.0.0.1', host_port = 0,
      vm_port = 8080 } })
    local port = pm:ports()[1].host_port
    assert.is_true(port > 0)
    local r = exchange(port, 'ping')
    assert.are.equal('hello alpha\nping\nbye 4\n', r.data)
    local direct = exchange(8080, 'ping', { timeout_ms = 3000 })
    assert.is_nil(direct.data:find('hello alpha', 1, true))
    local s = pm:stats()
    assert.are.equal(1, s.connections)
    assert.are.equal(4, s.bytes_in)
    assert.are.equal(#'hello alpha\nping\nbye 4\n', s.bytes_out)
    pm:stop()
  end)

  it('maps two CVMs with the same vm_port on different host ports', function()
    local pa = mapping(a, { { host_port = 0, vm_port = 8080 } })
    local pb = mapping(b, { { host_port = 0, vm_port = 8080 } })
    assert.matches('^hello alpha\n', exchange(pa:ports()[1].host_port, 'x').data)
    assert.matches('^hello bravo\n', exchange(pb:ports()[1].host_port, 'x').data)
    pa:stop()
    pb:stop()
  end)

  it('refuses a taken host port naming it, and keeps nothing of a failed start', function()
    local taken, port = host_listener(0)
    local probe = uv.new_tcp() -- a free port, to check it is released after the failure
    assert(probe:bind('127.0.0.1', 0))
    local free = probe:getsockname().port
    probe:close()
    loop.settle()
    local pm = assert(portmap.new({ netns = a.proc.pid, ports = {
      { host_port = free, vm_port = 8080 }, { host_port = port, vm_port = 8080 } } }))
    local ok, err, code = pm:start()
    assert.is_nil(ok)
    assert.are.equal('EADDRINUSE', code)
    assert.are.equal(('EADDRINUSE: 127.0.0.1:%d (tcp) is already in use'):format(port), err)
    loop.settle()
    host_listener(free):close()
    taken:close()
    pm:stop()
    loop.settle()
  end)

  it('stop frees the port, the connections and the fds; the CVM tree stops with /proc clean', function()
    local vm = start_vm('charlie')
    finally(function() stop_vm(vm) end) -- also when an assertion fails
    local fds = fd_count()
    local pm = mapping(vm, { { host_port = 0, vm_port = 8080 }, { protocol = 'udp', host_port = 0,
      vm_port = 8080 } })
    local port = pm:ports()[1].host_port
    -- a connection left open across the stop
    local open = uv.new_tcp()
    local greeted
    open:connect('127.0.0.1', port, function()
      open:read_start(function(_, data) greeted = greeted or data end)
    end)
    assert.is_true(loop.run_until(function() return greeted ~= nil end, 5000))
    assert.are.equal('charlie:u', udp_ask(pm:ports()[2].host_port, 'u'))
    assert.are.equal(1, pm:stats().active)
    pm:stop()
    pm:stop() -- idempotent
    local eof
    open:read_start(function(err, data) if not data then eof = err or 'eof' end end)
    assert.is_true(loop.run_until(function() return eof ~= nil end, 5000))
    open:close()
    loop.settle(50)
    assert.are.equal(fds, fd_count())
    host_listener(port):close()
    assert.are.equal(1, #pids_with(vm.dir))
    stop_vm(vm)
    assert.is_true(loop.run_until(function() return #pids_with(vm.dir) == 0 end, 5000))
    assert.has_error(function() pm:start() end,
      'portmap:start: this mapping was stopped; make a new one')
  end)

  it('carries 20 MB both ways intact', function()
    local pm = mapping(a, { { host_port = 0, vm_port = 8080 } })
    local chunks = {}
    local base = ('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/'):rep(1024)
    for i = 1, 320 do -- 320 x 64 KiB = 20 MiB, each chunk numbered and rotated
      local rot = i % 64
      chunks[i] = ('%08d'):format(i) .. (base:sub(rot + 1) .. base:sub(1, rot)):sub(9)
    end
    local payload = table.concat(chunks)
    local r = exchange(pm:ports()[1].host_port, payload, { timeout_ms = 60000 })
    assert.is_true(r.closed)
    local expected = 'hello alpha\n' .. payload .. '\nbye ' .. #payload .. '\n'
    assert.are.equal(#expected, #r.data)
    assert.is_true(expected == r.data, 'the echoed bytes are identical')
    local s = pm:stats()
    assert.are.equal(#payload, s.bytes_in)
    assert.are.equal(#expected, s.bytes_out)
    print(('# portmap: %d MiB each way in %.0f ms: %.0f MiB/s each way (%.0f MiB/s total)')
      :format(#payload / 1048576, r.ms, #payload / 1048576 / (r.ms / 1000),
        2 * #payload / 1048576 / (r.ms / 1000)))
    pm:stop()
  end)

  it('keeps its buffers bounded when the app stops reading', function()
    local pm = mapping(a, { { host_port = 0, vm_port = 8082 } })
    local c = uv.new_tcp()
    local chunk = ('s'):rep(64 * 1024)
    c:connect('127.0.0.1', pm:ports()[1].host_port, function(err)
      assert(not err, err)
      for _ = 1, 640 do -- 40 MiB offered; the app reads none of it
        c:write(chunk)
      end
    end)
    loop.run_until(function() return false end, 1500)
    local s = pm:stats()
    assert.is_true(s.bytes_in > 0)
    print(('# stalled app: %d bytes relayed, %d queued in the mapping'):format(s.bytes_in, s.queued))
    assert.is_true(s.bytes_in < 24 * 1048576, 'relayed ' .. s.bytes_in .. ' bytes to a stalled app')
    local tcp = require('moonstack.vmm.portmap.tcp')
    assert.is_true(s.queued <= tcp.HIGH_WATER + 64 * 1024, 'queued ' .. s.queued)
    assert.is_true(c:get_write_queue_size() > 0) -- the sender is held back, not buffered for
    c:close()
    pm:stop()
    loop.settle()
  end)

  it('half-closes both ways', function()
    local pm = mapping(a, { { host_port = 0, vm_port = 8080 }, { host_port = 0, vm_port = 8081 } })
    local ports = pm:ports()
    -- host -> CVM: the client's FIN reaches the app, whose answer still comes back
    local r = exchange(ports[1].host_port, 'abc')
    assert.are.equal('hello alpha\nabc\nbye 3\n', r.data)
    -- CVM -> host: the app's FIN first; the client's bytes still reach the app afterwards
    os.remove(a.dir .. '/after-fin')
    r = exchange(ports[2].host_port, ('z'):rep(100000), { delay_ms = 100 })
    assert.are.equal('first alpha\n', r.data)
    assert.is_true(loop.run_until(function() return exists(a.dir .. '/after-fin') end, 5000))
    assert.are.equal('100000', fixtures.read(a.dir .. '/after-fin'))
    pm:stop()
  end)

  it('maps UDP, one flow per client, and refuses a taken UDP port', function()
    local pm = mapping(b, { { protocol = 'udp', host_port = 0, vm_port = 8080 } },
      { udp_idle_timeout_ms = 200 })
    local port = pm:ports()[1].host_port
    assert.are.equal('bravo:one', udp_ask(port, 'one'))
    assert.are.equal('bravo:two', udp_ask(port, 'two'))
    local s = pm:stats()
    assert.are.equal(2, s.connections) -- two clients (two source ports): two flows
    assert.are.equal(2, s.datagrams_in)
    assert.are.equal(2, s.datagrams_out)
    assert.is_true(loop.run_until(function() return pm:stats().ports[1].flows == 0 end, 3000))
    local pm2 = assert(portmap.new({ netns = b.proc.pid, ports = { { protocol = 'udp',
      host_port = port, vm_port = 8080 } } }))
    local ok, err, code = pm2:start()
    assert.is_nil(ok)
    assert.are.equal('EADDRINUSE', code)
    assert.are.equal(('EADDRINUSE: 127.0.0.1:%d (udp) is already in use'):format(port), err)
    pm:stop()
    pm2:stop()
  end)

  it('forwards guest -> host: a listener inside the CVM reaches a host service', function()
    local host, hport = host_listener(0, function(h)
      local c = uv.new_tcp()
      h:accept(c)
      c:write('from the host\n', function() c:close() end)
    end)
    local pm = mapping(a, {}, { forwards = { { vm_port = 9443, host_address = '127.0.0.1',
      host_port = hport } } })
    local out = loop.run_task(function()
      return process.run({ file = MOONSTACK, args = { 'ns-exec', '--net-pid', tostring(a.proc.pid),
        '--', 'curl', '-s', '--max-time', '3', 'telnet://127.0.0.1:9443' }, env = ENV,
        timeout_ms = 8000 })
    end, 10000)
    assert.are.equal('from the host\n', out.stdout)
    assert.are.equal(9443, pm:ports()[1].vm_port)
    assert.is_true(pm:ports()[1].forward)
    host:close()
    pm:stop()
  end)

  it('times out idle connections, fails closed connects, and caps connections', function()
    local pm = mapping(a, { { host_port = 0, vm_port = 8080 }, { host_port = 0, vm_port = 8090 } },
      { idle_timeout_ms = 300, max_connections = 1 })
    local ports = pm:ports()
    -- nothing listens on 8090 in the CVM: the client is closed, counted as failed
    local r = exchange(ports[2].host_port, '', { keep_open = true, timeout_ms = 5000 })
    assert.is_true(r.closed)
    assert.are.equal('', r.data)
    assert.are.equal(1, pm:stats().failed)
    -- an idle connection is closed after idle_timeout_ms
    r = exchange(ports[1].host_port, '', { keep_open = true, timeout_ms = 5000 })
    assert.is_true(r.closed)
    assert.are.equal('hello alpha\n', r.data)
    assert.are.equal(1, pm:stats().timeouts)
    -- max_connections = 1: a second one while the first is open is closed at once
    local first = uv.new_tcp()
    local hello
    first:connect('127.0.0.1', ports[1].host_port, function()
      first:read_start(function(_, data) hello = hello or data end)
    end)
    assert.is_true(loop.run_until(function() return hello ~= nil end, 3000))
    r = exchange(ports[1].host_port, '', { keep_open = true, timeout_ms = 3000 })
    assert.is_true(r.closed)
    assert.are.equal('', r.data)
    assert.are.equal(1, pm:stats().refused)
    first:close()
    pm:stop()
  end)

  it('refuses the host\'s own namespace, bad mappings and a gone process', function()
    local pm = assert(portmap.new({ netns = uv.os_getpid(), ports = { { host_port = 0,
      vm_port = 80 } } }))
    local ok, err, code = pm:start()
    assert.is_nil(ok)
    assert.are.equal('EINVAL', code)
    assert.matches("is the host's own: refusing to map into it", err)
    for _, case in ipairs({
      { { { host_port = 70000, vm_port = 80 } }, 'ports%[1%]%.host_port: expected a port number' },
      { { { host_port = 1, vm_port = 0 } }, 'ports%[1%]%.vm_port: expected a port number' },
      { { { protocol = 'sctp', host_port = 1, vm_port = 1 } }, 'ports%[1%]%.protocol: expected tcp or udp' },
      { { {}, { host_address = 'localhost', host_port = 1, vm_port = 1 } },
        'ports%[1%]%.host_port' },
      { { { host_address = 'localhost', host_port = 1, vm_port = 1 } },
        'ports%[1%]%.host_address: not an IP address: localhost' },
    }) do
      local p, perr, pcode = portmap.new({ netns = 1, ports = case[1] })
      assert.is_nil(p)
      assert.are.equal('EINVAL', pcode)
      assert.matches(case[2], perr)
    end
    assert.has_error(function() portmap.new({ ports = {} }) end,
      'portmap.new: opts.netns (a pid or a namespace path) is required')
    pm = assert(portmap.new({ netns = 999999999, ports = {} }))
    ok, err, code = pm:start()
    assert.is_nil(ok)
    assert.are.equal('ENOENT', code)
    assert.matches('/proc/999999999/ns/net', err)
  end)

  it('refuses with EPERM, starting nothing, where namespaces are not allowed', function()
    local script = fixtures.tmpdir('pm-eperm', true) .. '/eperm.lua'
    local f = assert(io.open(script, 'w'))
    f:write([[
local task = require('moonstack.core.task')
local portmap = require('moonstack.vmm.portmap')
task.spawn(function()
  local p, err, code = portmap.run_in_netns({ service = 'x', file = 'sleep', args = { '30' },
    env = { PATH = '/usr/bin:/bin' } })
  print(tostring(p), code, err)
  local pm = assert(portmap.new({ netns = 1, ports = { { host_port = 0, vm_port = 80 } } }))
  print(select(3, pm:start()))
end)
]])
    f:close()
    local r = loop.run_task(function()
      return process.run({ file = 'setpriv', args = { '--bounding-set', '-sys_admin', MOONSTACK,
        'run', script }, env = ENV, timeout_ms = 10000 })
    end, 15000)
    assert.are.equal(0, r.exit_code)
    assert.matches('^nil\tEPERM\tEPERM: a CVM process tree needs a network namespace', r.stdout)
    assert.matches('\nEPERM\n$', r.stdout)
    assert.are.same({}, pids_with(script))
    os.execute(('rm -rf %q'):format(script:match('^(.*)/')))
  end)
end)
