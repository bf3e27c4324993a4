-- SPDX-License-Identifier: Apache-2.0
-- moonstack.qemu over moonstack.native.qemu: the launch command line from Lua (fields named in
-- refusals, unknown fields refused), the argv accepted by the real QEMU 7.2 under TCG (the probe
-- guest as kernel, user net with restrict + hostfwd, 9p, virtio-serial, QMP); the QMP client
-- against a real QEMU (-M none: capabilities, query-status, stop/cont with STOP/RESUME events,
-- errors as EQMP, arguments, quit -> on_close) and against fake servers (garbage, over-long and
-- split lines, deep nesting, unknown ids, a peer that closes, close while pending, no greeting);
-- the accelerator probe (TCG here, within its deadline; TDX from a fake sysfs).
local uv = require('luv')
local cjson = require('cjson')
local loop = require('tests.helpers.loop')
local fixtures = require('tests.helpers.fixtures')
local process = require('moonstack.core.process')
local task = require('moonstack.core.task')
local native = require('moonstack.native.qemu')
local qemu = require('moonstack.qemu')

local QEMU = '/usr/bin/qemu-system-x86_64'
local ENV = { PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

local function write_file(path, data)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
end

-- Start QEMU with `args`; returns the process.
local function start_qemu(args)
  return loop.run_task(function()
    return assert(process.spawn({ service = 'qemu-spec', file = QEMU, args = args, env = ENV }))
  end)
end

local function stop(p)
  if p and not p.exited then
    loop.run_task(function() p:stop(2000) end, 5000)
  end
end

describe('moonstack.qemu.argv', function()
  local base = {
    qemu = QEMU, accel = 'tcg', vm_id = 'vm-123', vcpu = 1, memory_mb = 256,
    kernel = '/img/vmlinux', cmdline = 'console=ttyS0', serial_log = '/wd/serial.log',
    nics = { { restrict = true } },
    ports = { { protocol = 'tcp', host_address = '127.0.0.1', host_port = 18080, vm_port = 8080 } },
  }
  local function with(changes)
    local d = {}
    for k, v in pairs(base) do
      d[k] = v
    end
    for k, v in pairs(changes) do
      d[k] = v
    end
    return d
  end

  it('builds the TCG command line as a Lua array', function()
    local argv = assert(qemu.argv(base))
    assert.are.same({ QEMU, '-accel', 'tcg', '-nographic', '-nodefaults',
      '-chardev', 'file,id=com0,path=/wd/serial.log,append=on', '-serial', 'chardev:com0',
      '-kernel', '/img/vmlinux',
      '-netdev', 'user,id=net0,restrict=yes,hostfwd=tcp:127.0.0.1:18080-:8080',
      '-device', 'virtio-net-pci,netdev=net0,mac=96:b1:d8:b9:08:e6',
      '-machine', 'pc', '-smp', '1', '-m', '256M', '-append', 'console=ttyS0' }, argv)
    assert.are.equal('96:b1:d8:b9:08:e6', qemu.mac_address('vm-123', 0))
    assert.are.equal('c6:74:2c:65:14:b9', qemu.mac_address('vm-123', 1))
    assert.are.equal('52:54:00:97:b1:d8', qemu.mac_address('vm-123', 0, '52:54:00'))
  end)

  it('builds the TDX form with its object, and the MAC prefix from a hex string', function()
    local argv = assert(qemu.argv(with({ accel = 'tdx', mrconfigid = 'AAAA', qgs_port = 4050,
      mac_prefix = '0a0b', pci_hole64_size = 2 ^ 40, hotplug_off = true, vsock_cid = 1000,
      share = { mode = '9p', path = '/wd/shared', readonly = true } })))
    local s = table.concat(argv, ' ')
    assert.are.equal(QEMU .. ' -accel kvm -cpu host -nographic', s:sub(1, #QEMU + 32))
    assert.matches('mac=0a:0b:97:b1:d8:b9', s, 1, true)
    assert.matches('-global q35-pcihost.pci-hole64-size=0x10000000000', s, 1, true)
    assert.matches('readonly=on,security_model=mapped,id=virtfs0', s, 1, true)
    assert.are.equal('{"qom-type":"tdx-guest","id":"tdx","mrconfigid":"AAAA",' ..
      '"quote-generation-socket":{"type":"vsock","cid":"2","port":"4050"}}', argv[#argv - 6])
  end)

  it('refuses bad input naming the field', function()
    local cases = {
      { { ports = { base.ports[1], { protocol = 'tcp', host_port = 70000, vm_port = 1 } } },
        'EINVAL: ports[2].host_port: must be 1..65535' },
      { { ports = { base.ports[1], { protocol = 'tcp', host_port = 1.5, vm_port = 1 } } },
        'EINVAL: ports[2].host_port: must be an integer' },
      { { ports = { { protocol = 'tcp', host_port = '80', vm_port = 1 } } },
        'EINVAL: ports[1].host_port: must be an integer' },
      { { ports = { { protocol = 'tcp', host_port = 80, vm_port = 1, bind = 'x' } } },
        'EINVAL: ports[1].bind: unknown field' },
      { { ports = { [2] = base.ports[1] } }, 'EINVAL: ports: must be an array' },
      { { ports = 'tcp:80' }, 'EINVAL: ports: must be an array' },
      { { nics = { 'user' } }, 'EINVAL: nics[1]: must be a table' },
      { { nics = { { mode = 'vde' } } }, 'EINVAL: nics[1].mode: must be user, tap or bridge' },
      { { nics = { { restrict = 'yes' } } }, 'EINVAL: nics[1].restrict: must be a boolean' },
      { { accel = 'hvf' }, 'EINVAL: accel: must be tdx, kvm or tcg' },
      { { accel = false }, 'EINVAL: accel: must be a string' },
      { { cmdline = 'console=ttyS0\ninit=/bin/sh' }, 'EINVAL: cmdline: control character 0x0a' },
      { { kernel = 'vmlinux' }, 'EINVAL: kernel: must be an absolute path' },
      { { kernel = '/img/vm\0linux' }, 'EINVAL: kernel: contains a NUL byte' },
      { { volumes = { '/a\0b' } }, 'EINVAL: volumes[1]: contains a NUL byte' },
      { { nics = { { net = '10.0.2.0/24\0,hostfwd=tcp::22-:22' } } },
        'EINVAL: nics[1].net: contains a NUL byte' },
      { { vcpu = -1 }, 'EINVAL: vcpu: must be an integer' },
      { { vcpu = 0 }, 'EINVAL: vcpu: must be 1..512' },
      { { memory = 512 }, 'EINVAL: memory: unknown field' },
      { { [1] = 'x' }, 'EINVAL: desc: has a key that is not a field name' },
      { { share = { mode = 'virtiofs', path = '/x' } }, 'EINVAL: share.mode: must be 9p, vvfat or vhd' },
      { { share = { mode = '9p', path = '/x', tag = 'y' } }, 'EINVAL: share.tag: unknown field' },
      { { mac_prefix = '52:54:00:01' }, 'EINVAL: mac_prefix: at most 3 bytes' },
      { { mac_prefix = 'zz' }, 'EINVAL: mac_prefix: must be hex bytes' },
      { { volumes = { '/a', 7 } }, 'EINVAL: volumes[2]: must be a string' },
      { { serial_ports = { { name = 'a', path = '/s', server = true, extra = 1 } } },
        'EINVAL: serial_ports[1].extra: unknown field' },
      { { serial_ports = { { name = 'a,b', path = '/s' } } },
        'EINVAL: serial_ports[1].name: character 0x2c' },
      { { qmp_socket = '/' .. ('s'):rep(107) }, 'EINVAL: qmp_socket: longer than 107 bytes' },
      { { mrconfigid = 'AAAA' }, 'EINVAL: mrconfigid: only for accel tdx' },
      { { nics = { {}, {}, {}, {}, {}, {}, {}, {}, {} } }, 'EINVAL: nics: more than 8' },
    }
    for _, c in ipairs(cases) do
      local argv, err, code = qemu.argv(with(c[1]))
      assert.is_nil(argv, c[2])
      assert.are.equal('EINVAL', code)
      assert.are.equal(c[2], err:sub(1, #c[2]), 'got: ' .. tostring(err))
    end
    assert.has_error(function() qemu.argv('x') end, 'qemu.argv: desc must be a table')
    assert.has_error(function() qemu.mac_address('vm\0x', 0) end)
  end)
end)

describe('moonstack.qemu with a real QEMU', function()
  local dir
  before_each(function()
    dir = fixtures.tmpdir('qemu', true)
  end)
  after_each(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  it('drives QMP: capabilities, query-status, stop/cont and their events, errors, quit', function()
    local sock = dir .. '/qmp-' .. uv.hrtime() .. '.sock' -- unique per launch
    local p = start_qemu({ '-M', 'none', '-nodefaults', '-display', 'none',
      '-qmp', 'unix:' .. sock .. ',server=on,wait=off' })
    local events, closed = {}, nil
    loop.run_task(function()
      local qmp = assert(qemu.qmp_connect(sock, { timeout_ms = 5000,
        on_event = function(ev) events[#events + 1] = ev end,
        on_close = function(err, code) closed = { err = err, code = code } end }))
      assert.matches('^%d+%.%d+%.%d+$', qmp.version)
      assert.are.equal(qmp.version, qemu.version(QEMU))
      assert.is_table(qmp.greeting.QMP.capabilities)
      local st = assert(qmp:execute('query-status'))
      assert.are.equal('running', st.status)
      assert.same({}, assert(qmp:execute('stop')))
      assert.are.equal('paused', assert(qmp:execute('query-status')).status)
      assert.same({}, assert(qmp:execute('cont', {})))
      assert.is_true(assert(qmp:execute('query-status')).running)
      local r, err, code = qmp:execute('no-such-command')
      assert.is_nil(r)
      assert.are.equal('EQMP', code)
      assert.matches('^EQMP: CommandNotFound: ', err)
      r, err, code = qmp:execute('query-status', { unexpected = 1 })
      assert.is_nil(r)
      assert.are.equal('EQMP', code)
      assert.matches('^EQMP: GenericError: ', err)
      local out = assert(qmp:execute('human-monitor-command', { ['command-line'] = 'info version' }))
      assert.matches(qmp.version, out, 1, true)
      r, err, code = qmp:execute('stop', { 1, 2 })
      assert.is_nil(r)
      assert.are.equal('EINVAL', code, err)
      -- requests in flight together are matched by id
      local results = {}
      for i = 1, 5 do
        assert(qmp:execute_cb(i % 2 == 1 and 'query-status' or 'query-kvm', nil, function(res)
          results[i] = res
        end))
      end
      assert.same({}, assert(qmp:execute('quit')))
      assert.is_true(qmp:wait_close(3000))
      for i = 1, 5 do
        assert.is_table(results[i])
      end
      assert.are.equal('running', results[1].status)
      assert.is_boolean(results[2].present)
      r, err, code = qmp:execute('query-status')
      assert.is_nil(r)
      assert.are.equal('EPIPE', code, err)
      assert.is_true(p:wait(5000))
    end, 15000)
    assert.are.equal(0, p.exit_code)
    assert.are.equal('ECLOSED', closed.code)
    local names = {}
    for _, ev in ipairs(events) do
      names[#names + 1] = ev.event
      assert.is_table(ev.timestamp)
    end
    assert.are.same({ 'STOP', 'RESUME', 'SHUTDOWN' }, names)
    assert.is_false(exists(sock)) -- QEMU unlinks it: one path per launch
  end)

  it('launches the argv it builds under TCG (user net with hostfwd, 9p, virtio-serial)', function()
    local kernel = dir .. '/probe.bin'
    assert(native.probe_write_payload(kernel))
    write_file(dir .. '/hda.img', ('\0'):rep(1024 * 1024))
    assert(uv.fs_mkdir(dir .. '/shared', 448))
    local port = fixtures.free_port()
    local argv = assert(qemu.argv({ qemu = QEMU, accel = 'tcg', vm_id = 'spec', vcpu = 1,
      memory_mb = 64, kernel = kernel, cmdline = 'probe', serial_log = dir .. '/serial.log',
      qmp_socket = dir .. '/qmp.sock', data_disk = dir .. '/hda.img', data_disk_format = 'raw',
      share = { mode = '9p', path = dir .. '/shared', security_model = 'none' },
      nics = { { restrict = true, net = '10.0.2.0/24', dhcp_start = '10.0.2.15' } },
      ports = { { protocol = 'tcp', host_address = '127.0.0.1', host_port = port, vm_port = 8080 } },
      serial_ports = { { name = 'org.moonstack.test', path = dir .. '/vs.sock', server = true } },
      no_reboot = true }))
    local p = start_qemu({ unpack(argv, 2) })
    loop.run_task(function()
      local qmp, err = qemu.qmp_connect(dir .. '/qmp.sock', { timeout_ms = 5000 })
      assert(qmp, err)
      assert.are.equal('running', assert(qmp:execute('query-status')).status)
      local labels = {}
      for _, c in ipairs(assert(qmp:execute('query-chardev'))) do
        labels[c.label] = c.filename
      end
      assert.is_string(labels.com0)
      assert.is_string(labels.ch0)
      local blocks = {}
      for _, b in ipairs(assert(qmp:execute('query-block'))) do
        blocks[b.device] = b
      end
      assert.is_table(blocks.hd1)
      -- the forward listens on the host
      local connected = task.await(function(resume)
        local c = uv.new_tcp()
        c:connect('127.0.0.1', port, function(e)
          c:close()
          resume(e == nil)
        end)
      end, { timeout = 3000 })
      assert.is_true(connected)
      assert(qmp:execute('quit'))
      assert.is_true(qmp:wait_close(3000))
      assert.is_true(p:wait(5000))
    end, 20000)
    assert.are.equal(0, p.exit_code)
    assert.is_true(exists(dir .. '/serial.log'))
    stop(p)
  end)
end)

-- A fake QMP server on a unix socket: greets (unless greeting is false), answers
-- qmp_capabilities, then hands each request to on_request(client, msg). Returns the server.
local function fake_qmp(path, opts)
  local server = uv.new_pipe(false)
  assert(server:bind(path))
  local clients = {}
  assert(server:listen(8, function()
    local c = uv.new_pipe(false)
    server:accept(c)
    clients[#clients + 1] = c
    if opts.on_connect then
      opts.on_connect(c)
    end
    if opts.greeting ~= false then
      c:write(opts.greeting or ('{"QMP": {"version": {"qemu": {"major": 9, "minor": 1, ' ..
        '"micro": 0}}, "capabilities": []}}\r\n'))
    end
    local buf = ''
    c:read_start(function(_, data)
      if not data then
        if not c:is_closing() then
          c:close()
        end
        return
      end
      buf = buf .. data
      for line in buf:gmatch('([^\n]*)\n') do
        local msg = cjson.decode(line)
        if msg.execute == 'qmp_capabilities' then
          c:write(opts.caps_answer and opts.caps_answer(msg) or
            ('{"return": {}, "id": %d}\r\n'):format(msg.id))
        elseif opts.on_request then
          opts.on_request(c, msg)
        end
      end
      buf = buf:match('[^\n]*$')
    end)
  end))
  return {
    close = function()
      for _, c in ipairs(clients) do
        if not c:is_closing() then
          c:close()
        end
      end
      server:close()
    end,
  }
end

describe('the QMP client against fake servers', function()
  local dir, server, baseline
  before_each(function()
    dir = fixtures.tmpdir('qmp', true)
    baseline = loop.live_handles()
  end)
  after_each(function()
    if server then
      server.close()
      server = nil
    end
    loop.settle(50)
    assert.are.equal(baseline, loop.live_handles(), 'every handle closed')
    os.execute(('rm -rf %q'):format(dir))
  end)

  -- Connect (in a task); returns qmp or nil, err, code, plus what on_close got.
  local function connect(opts)
    local closed = {}
    opts = opts or {}
    opts.on_close = function(err, code)
      closed.err, closed.code, closed.called = err, code, (closed.called or 0) + 1
    end
    local qmp, err, code = qemu.qmp_connect(dir .. '/q.sock', opts)
    return qmp, err, code, closed
  end

  it('refuses a peer that is not QMP (garbage, NUL bytes, another object first)', function()
    for _, greeting in ipairs({ 'hello there\n', 'SSH-2.0-OpenSSH_9.2\r\n\0\1\2\n',
      '{"return": {}}\n', '{"QMP": {}} trailing\n', ('['):rep(100000) .. '\n' }) do
      server = fake_qmp(dir .. '/q.sock', { greeting = greeting })
      loop.run_task(function()
        local qmp, err, code, closed = connect({ timeout_ms = 2000 })
        assert.is_nil(qmp)
        assert.are.equal('EPROTO', code, err)
        assert.is_nil(closed.called) -- on_close is for sessions that became ready
      end)
      server.close()
      server = nil
      loop.settle(20)
    end
  end)

  it('times out without a socket or a greeting, and reports capabilities refused', function()
    loop.run_task(function()
      local t0 = uv.hrtime()
      local qmp, err, code = connect({ timeout_ms = 300 })
      assert.is_nil(qmp)
      assert.are.equal('ETIMEDOUT', code)
      assert.matches('no QMP socket at .* within 300 ms', err)
      assert.is_true((uv.hrtime() - t0) / 1e6 < 1500)
    end)
    server = fake_qmp(dir .. '/q.sock', { greeting = false })
    loop.run_task(function()
      local qmp, err, code = connect({ timeout_ms = 300 })
      assert.is_nil(qmp)
      assert.are.equal('ETIMEDOUT', code)
      assert.matches('no QMP greeting within 300 ms', err)
    end)
    server.close()
    server = fake_qmp(dir .. '/q.sock', { caps_answer = function(msg)
      return ('{"error": {"class": "CommandNotFound", "desc": "no"}, "id": %d}\n'):format(msg.id)
    end })
    loop.run_task(function()
      local qmp, err, code = connect()
      assert.is_nil(qmp)
      assert.are.equal('EQMP', code, err)
    end)
  end)

  it('connects to a socket that appears late (QEMU creates it after exec)', function()
    local t = uv.new_timer()
    t:start(150, 0, function()
      t:close()
      server = fake_qmp(dir .. '/q.sock', {})
    end)
    loop.run_task(function()
      local qmp = assert(connect({ timeout_ms = 3000 }))
      assert.are.equal('9.1.0', qmp.version)
      qmp:close()
      assert.is_true(qmp:wait_close(1000))
    end)
  end)

  it('frames split lines, interleaved events, unknown and missing ids', function()
    server = fake_qmp(dir .. '/q.sock', { on_request = function(c, msg)
      local answer = ('{"return": {"n": %d}, "id": %d}\r\n'):format(msg.id * 10, msg.id)
      local bytes = '{"return": {}, "id": 99999}\n' .. -- nobody asked
        '{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n' .. -- no id
        '{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\n' ..
        '\n \r\n' .. answer
      for i = 1, #bytes do -- one byte per write
        c:write(bytes:sub(i, i))
      end
    end })
    loop.run_task(function()
      local events = {}
      local qmp = assert(connect({ on_event = function(ev) events[#events + 1] = ev.event end }))
      local r1 = assert(qmp:execute('a'))
      local r2 = assert(qmp:execute('b', { x = { 1, 2 }, s = 'a/b\n"c"' }))
      assert.are.equal(r1.n + 10, r2.n)
      assert.same({ 'STOP', 'STOP' }, events)
      qmp:close()
      qmp:wait_close(1000)
    end)
  end)

  it('closes on an over-long line, on garbage after the greeting, on a peer close', function()
    local scenarios = {
      { send = function(c) -- 2 MiB without a newline, in pieces
        local chunk = ('a'):rep(64 * 1024)
        for _ = 1, 32 do
          c:write(chunk)
        end
      end, code = 'EPROTO', msg = 'longer than 1048576 bytes' },
      { max_line = 4096, send = function(c)
        c:write('{"return": "' .. ('x'):rep(5000) .. '", "id": 2}\n')
      end, code = 'EPROTO', msg = 'longer than 4096 bytes' },
      { send = function(c) c:write('{"return": {}, "id": 2} junk\n') end, code = 'EPROTO',
        msg = 'not one JSON object' },
      { send = function(c) c:write('\0\0\0\n') end, code = 'EPROTO', msg = 'not one JSON object' },
      { send = function(c) c:write('{"a": ' .. ('['):rep(70) .. (']'):rep(70) .. '}\n') end,
        code = 'EPROTO', msg = 'not one JSON object' },
      { send = function(c) c:close() end, code = 'ECLOSED', msg = 'QEMU closed the QMP connection' },
    }
    for _, s in ipairs(scenarios) do
      server = fake_qmp(dir .. '/q.sock', { on_request = function(c) s.send(c) end })
      loop.run_task(function()
        local qmp, _, _, closed = connect({ max_line = s.max_line })
        assert(qmp)
        local r, err, code = qmp:execute('query-status')
        assert.is_nil(r)
        assert.are.equal(s.code, code, err)
        assert.matches(s.msg, err, 1, true)
        assert.is_true(qmp:wait_close(1000))
        assert.are.equal(s.code, closed.code)
        assert.are.equal(1, closed.called)
        assert.is_true(qmp.closed)
        _, err, code = qmp:execute('query-status')
        assert.are.equal('EPIPE', code, err)
      end)
      server.close()
      server = nil
      loop.settle(20)
    end
  end)

  it('fails what is pending when the caller closes; times out an unanswered command', function()
    server = fake_qmp(dir .. '/q.sock', { on_request = function() end }) -- never answers
    loop.run_task(function()
      local qmp, _, _, closed = connect()
      local r, err, code = qmp:execute('query-status', nil, { timeout_ms = 100 })
      assert.is_nil(r)
      assert.are.equal('ETIMEDOUT', code, err)
      local got
      assert(qmp:execute_cb('query-status', nil, function(res, e, c) got = { res, e, c } end))
      qmp:close()
      qmp:close() -- idempotent
      assert.is_true(qmp:wait_close(1000))
      assert.is_nil(got[1])
      assert.are.equal('ECANCELED', got[3])
      assert.are.equal(1, closed.called)
      assert.is_nil(closed.err) -- closed by the caller
    end)
  end)

  it('closes the connection when the connecting task is cancelled', function()
    local t = task.spawn(function()
      connect({ timeout_ms = 5000 }) -- no socket: keeps retrying
    end)
    loop.settle(50)
    t:cancel('test')
    loop.settle(50)
    assert.are.equal('cancelled', t:status())
  end)
end)

describe('moonstack.qemu.probe_accel', function()
  it('runs the probe guest to its end under TCG', function()
    loop.run_task(function()
      local ok, ms = qemu.probe_guest({ accel = 'tcg', timeout_ms = 10000, qemu = QEMU })
      assert.is_true(ok, ms)
      assert.is_true(ms < 10000)
    end, 15000)
  end)

  it('answers tcg here within its deadline (KVM present but unable to run a guest)', function()
    loop.run_task(function()
      local t0 = uv.hrtime()
      local accel, reason = qemu.probe_accel({ qemu = QEMU, timeout_ms = 1500 })
      local ms = (uv.hrtime() - t0) / 1e6
      assert.is_true(ms < 1500 + 3000, 'took ' .. ms .. ' ms')
      local pvm = exists('/sys/module/kvm_pvm')
      if pvm or not exists('/dev/kvm') then
        assert.are.equal('tcg', accel)
        assert.matches('^kvm: ', reason)
      else
        assert.is_truthy(accel == 'kvm' or accel == 'tcg')
      end
      print(('# probe_accel: %s (%s) in %d ms'):format(accel, reason, ms))
    end, 10000)
  end)

  it('reports tdx from the host switch, tcg without a usable /dev/kvm or QEMU', function()
    local root = fixtures.tmpdir('sysfs', true)
    os.execute(('mkdir -p %q'):format(root .. '/sys/module/kvm_intel/parameters'))
    write_file(root .. '/sys/module/kvm_intel/parameters/tdx', 'Y\n')
    loop.run_task(function()
      local accel, reason = qemu.probe_accel({ sysfs_root = root })
      assert.are.equal('tdx', accel)
      assert.matches('TDX', reason)
      write_file(root .. '/sys/module/kvm_intel/parameters/tdx', 'N\n')
      accel, reason = qemu.probe_accel({ sysfs_root = root, kvm_device = root .. '/kvm' })
      assert.are.equal('tcg', accel)
      assert.matches('kvm: .*/kvm is not usable', reason)
      if exists('/dev/kvm') then
        accel, reason = qemu.probe_accel({ sysfs_root = root, qemu = '/nonexistent/qemu' })
        assert.are.equal('tcg', accel)
        assert.matches('^kvm: ', reason)
      end
    end, 10000)
    os.execute(('rm -rf %q'):format(root))
  end)
end)
