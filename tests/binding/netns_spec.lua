-- SPDX-License-Identifier: Apache-2.0
-- moonstack.native.netns and moonstack.netns on the real kernel: a namespace created without
-- moving the caller (its loopback up, its ports apart from the host's), sockets created inside
-- it, opening by pid and path, the host's own namespace recognized, clear errors for what is
-- not a namespace, and `moonstack ns-exec` (new netns / private mounts / join, refusals with
-- exit 126 and EPERM when CAP_SYS_ADMIN is gone).
local uv = require('luv')
local loop = require('tests.helpers.loop')
local native = require('moonstack.native.netns')
local netns = require('moonstack.netns')
local process = require('moonstack.core.process')

local MOONSTACK = os.getenv('MOONSTACK') or uv.exepath()
local ENV = { PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }

local function run(file, args)
  return loop.run_task(function()
    return assert(process.run({ file = file, args = args, env = ENV, timeout_ms = 10000 }))
  end, 15000)
end

-- Listen on 127.0.0.1:0 with `h`; returns the port.
local function listen(h)
  assert(h:bind('127.0.0.1', 0))
  assert(h:listen(8, function() end))
  return h:getsockname().port
end

local function can_connect(ns, port)
  local h = assert(netns.tcp(ns, '127.0.0.1'))
  local result
  h:connect('127.0.0.1', port, function(err)
    result = err == nil
  end)
  loop.run_until(function() return result ~= nil end, 3000)
  h:close()
  loop.settle()
  return result
end

describe('moonstack.netns', function()
  local ok_ns = netns.available()

  it('creates a namespace without moving the caller; its sockets live there', function()
    assert.is_true(ok_ns)
    local self_ino = native.self_inode()
    local ns = assert(netns.create())
    assert.are.equal(self_ino, native.self_inode())
    assert.is_false(netns.is_host(ns))
    assert.matches('^netns<net:%[%d+%]>$', tostring(ns))
    -- a listener inside the namespace: reachable from inside, not from the host
    local server = assert(netns.tcp(ns, '127.0.0.1'))
    local port = listen(server)
    assert.is_true(can_connect(ns, port))
    assert.is_false(can_connect(nil, port))
    -- and a host listener is not reachable from inside
    local host = uv.new_tcp()
    local hport = listen(host)
    assert.is_false(can_connect(ns, hport))
    assert.is_true(can_connect(nil, hport))
    server:close()
    host:close()
    ns:close()
    ns:close() -- idempotent
    assert.has_error(function() ns:socket('tcp') end, 'netns:socket: the namespace is closed')
    loop.settle()
  end)

  it('opens a namespace by pid and by path, and knows the host\'s own', function()
    local me = assert(netns.open(uv.os_getpid()))
    assert.is_true(netns.is_host(me))
    me:close()
    local byp = assert(netns.open('/proc/self/ns/net'))
    assert.are.equal(native.self_inode(), byp:inode())
    byp:close()
    local ns, err, code = netns.open('/etc/hostname')
    assert.is_nil(ns)
    assert.are.equal('EINVAL', code)
    assert.matches('/etc/hostname is not a network namespace', err)
    ns, err, code = netns.open('/nonexistent/ns')
    assert.is_nil(ns)
    assert.are.equal('ENOENT', code)
    assert.matches('/nonexistent/ns', err)
    ns, err, code = netns.open(999999999)
    assert.is_nil(ns)
    assert.are.equal('ENOENT', code)
    assert.matches('/proc/999999999/ns/net', err)
    assert.has_error(function() netns.open({}) end,
      'netns.open: expected a pid, a path or a namespace')
  end)

  it('ns-exec runs a program in a new netns with lo up, private mounts, or a joined netns', function()
    local r = run(MOONSTACK, { 'ns-exec', '--net', '--', 'cat', '/proc/net/dev' })
    assert.are.equal(0, r.exit_code)
    local ifaces = {}
    for name in r.stdout:gmatch('\n%s*([%w_.-]+):') do
      ifaces[#ifaces + 1] = name
    end
    assert.are.same({ 'lo' }, ifaces)
    r = run(MOONSTACK, { 'ns-exec', '--net', '--', 'readlink', '/proc/self/ns/net' })
    assert.are_not.equal(('net:[%d]\n'):format(native.self_inode()), r.stdout)
    r = run(MOONSTACK, { 'ns-exec', '--net-join', '/proc/self/ns/net', '--', 'readlink',
      '/proc/self/ns/net' })
    assert.are.equal(('net:[%d]\n'):format(native.self_inode()), r.stdout)
    r = run(MOONSTACK, { 'ns-exec', '--mount', '--', 'sh', '-c',
      'mount -t tmpfs none /mnt && grep -c " /mnt " /proc/self/mountinfo' })
    assert.are.equal('1\n', r.stdout)
    local f = assert(io.open('/proc/self/mountinfo'))
    assert.is_nil(f:read('*a'):find(' /mnt tmpfs none', 1, true))
    f:close()
  end)

  it('ns-exec refuses clearly: no namespace (126, EPERM), no program (127), misuse (2)', function()
    local r = run(MOONSTACK, { 'ns-exec', '--net', '--', '/nonexistent/prog' })
    assert.are.equal(127, r.exit_code)
    assert.matches('ENOENT: cannot execute /nonexistent/prog', r.stderr)
    r = run(MOONSTACK, { 'ns-exec', '--net-join', '/etc/hostname', '--', 'true' })
    assert.are.equal(126, r.exit_code)
    assert.matches('EINVAL: /etc/hostname is not a network namespace', r.stderr)
    r = run(MOONSTACK, { 'ns-exec', '--net' })
    assert.are.equal(2, r.exit_code)
    -- without CAP_SYS_ADMIN (setpriv drops it from the bounding set before the exec)
    r = run('setpriv', { '--bounding-set', '-sys_admin', MOONSTACK, 'ns-exec', '--net', '--',
      'true' })
    assert.are.equal(126, r.exit_code)
    assert.matches('EPERM: cannot create a network namespace', r.stderr)
    r = run('setpriv', { '--bounding-set', '-sys_admin', MOONSTACK, '-e',
      'print(select(3, require("moonstack.netns").available()))' })
    assert.are.equal('EPERM\n', r.stdout)
  end)
end)
