-- SPDX-License-Identifier: Apache-2.0
-- Test helper for the specs that run real wireguard-go devices in network namespaces
-- (wg_device_spec, agent_gateway_spec): why such a spec must be skipped here, commands run in
-- a namespace, processes holding fresh namespaces, a veth pair between two of them, and TCP
-- across them. Everything but why_skip() runs inside a task (moonstack.core.task).
local uv = require('luv')
local netns = require('moonstack.netns')
local process = require('moonstack.core.process')
local task = require('moonstack.core.task')

local M = {}

local ENV = { PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }

--- Why the real devices cannot run on this machine (not root, no /dev/net/tun, no
--- wireguard-go, no network namespaces), or nil when they can.
function M.why_skip()
  if uv.getuid() ~= 0 then
    return 'not root'
  elseif not uv.fs_stat('/dev/net/tun') then
    return '/dev/net/tun is missing'
  elseif not process.which('wireguard-go') then
    return 'wireguard-go is not installed'
  elseif netns.available() ~= true then
    return 'network namespaces are not available'
  end
  return nil
end

--- Run `file args` to completion (10 s at most); returns the result table.
function M.run(file, args)
  return assert(process.run({ file = file, args = args, env = ENV, timeout_ms = 10000 }))
end

--- Run `prog args` in the network namespace at `path`; returns the result table.
function M.ns_run(path, prog, args)
  local file, argv = netns.command({ join = path }, prog, args)
  return M.run(file, argv)
end

--- A process holding a fresh network namespace: { proc, path } (stop it with proc:stop()).
function M.holder()
  local file, args = netns.command({ net = true }, 'sleep', { '600' })
  local p = assert(process.spawn({ service = 'ns-holder', file = file, args = args, env = ENV }))
  local own, path = uv.fs_readlink('/proc/self/ns/net'), ('/proc/%d/ns/net'):format(p.pid)
  for _ = 1, 200 do
    local cur = uv.fs_readlink(path)
    if cur and cur ~= own then
      break
    end
    task.sleep(10)
  end
  assert(uv.fs_readlink(path) ~= own, 'the holder did not get a namespace of its own')
  return { proc = p, path = path }
end

--- Join holders `a` and `b` with a veth pair (<prefix><pid>a, <prefix><pid>b), addressed
--- `a_cidr` and `b_cidr` and up. Returns the two interface names.
function M.veth(a, b, prefix, a_cidr, b_cidr)
  local va = ('%s%da'):format(prefix, a.proc.pid % 100000)
  local vb = ('%s%db'):format(prefix, b.proc.pid % 100000)
  local r = M.run('ip', { 'link', 'add', va, 'netns', tostring(a.proc.pid), 'type', 'veth',
    'peer', 'name', vb, 'netns', tostring(b.proc.pid) })
  assert(r.exit_code == 0, r.stderr)
  for _, s in ipairs({ { a.path, va, a_cidr }, { b.path, vb, b_cidr } }) do
    for _, args in ipairs({ { 'address', 'add', s[3], 'dev', s[2] }, { 'link', 'set', s[2], 'up' } }) do
      r = M.ns_run(s[1], 'ip', args)
      assert(r.exit_code == 0, r.stderr)
    end
  end
  return va, vb
end

--- A listener on host:port (a TCP handle of namespace `ns`, moonstack.netns) that writes
--- `text` to each connection and closes it. Returns the server handle.
function M.serve_text(ns, host, port, text)
  local srv = assert(netns.tcp(ns, host))
  assert(srv:bind(host, port))
  assert(srv:listen(4, function()
    local c = uv.new_tcp()
    srv:accept(c)
    c:write(text, function() c:close() end)
  end))
  return srv
end

--- Connect the TCP handle `cli` to host:port and read until the peer closes. Returns what
--- was read, or nil, error (a failed connect or `timeout_ms`, default 10000). Closes `cli`.
function M.read_all(cli, host, port, timeout_ms)
  local got, err = task.await(function(resume)
    local buf = ''
    cli:connect(host, port, function(cerr)
      if cerr then
        return resume(nil, cerr)
      end
      cli:read_start(function(_, data)
        if data then
          buf = buf .. data
        else
          resume(buf)
        end
      end)
    end)
  end, { timeout = timeout_ms or 10000 })
  cli:close()
  return got, err
end

--- Close what a test left behind (in a task): each of the objects given that is not nil, in
--- order, by its stop() or else its close() method, then the namespace holders' processes.
function M.teardown(holders, ...)
  for i = 1, select('#', ...) do
    local o = select(i, ...)
    if o then
      (o.stop or o.close)(o)
    end
  end
  for _, h in ipairs(holders or {}) do
    h.proc:stop(500)
  end
end

--- In a spec's describe block: when the devices cannot run here (M.why_skip), declare one test
--- (with busted's `it`) that says why and return true; the block then returns.
function M.skipped(it, spec)
  local why = M.why_skip()
  if why then
    it('is skipped: ' .. why, function()
      print(('# SKIP %s: %s'):format(spec, why))
    end)
  end
  return why ~= nil
end

--- Wait (in a task) until pred() is true; false after `ms`.
function M.wait_for(pred, ms)
  local deadline = uv.now() + ms
  while not pred() do
    if uv.now() > deadline then
      return false
    end
    task.sleep(20)
    uv.update_time()
  end
  return true
end

return M
