-- SPDX-License-Identifier: Apache-2.0
-- Port mapping for the process backend: a CVM run as a process tree lives in a network
-- namespace of its own (loopback only; run_in_netns starts it there), so its app may listen on
-- 0.0.0.0:<vm_port> without taking the host's port, and only the mapping reaches it. The VMM
-- maps host_address:host_port to the CVM's 127.0.0.1:vm_port by creating, per connection, a
-- socket *inside* the CVM's namespace (moonstack.netns) and relaying bytes on the loop
-- (portmap/tcp.lua, portmap/udp.lua): no process of the VMM runs in the CVM, nothing of the
-- CVM listens on the host but the mapped ports. `forwards` are the other direction (guest ->
-- host, like QEMU's guestfwd): a listener inside the CVM on vm_address:vm_port relayed to
-- host_address:host_port, e.g. for the agent to reach a KMS on the host's loopback.
--
--   local pm = assert(portmap.new({ netns = pid | '/proc/PID/ns/net' | path,
--     ports = { { protocol = 'tcp'|'udp', host_address = '127.0.0.1', host_port = N,
--                 vm_port = M [, vm_address = '127.0.0.1'] }, ... },
--     forwards = { { protocol, vm_address, vm_port, host_address, host_port }, ... },
--     connect_timeout_ms = 5000, idle_timeout_ms = 0 (none), udp_idle_timeout_ms = 30000,
--     max_connections = 1024 (per port), max_flows = 256 (per UDP port), backlog = 128 }))
--   pm:start()  -> true | nil, 'CODE: msg', CODE: EADDRINUSE naming the address, EPERM when
--                  namespaces are not available, EINVAL when the namespace is the host's own
--                  (never a fallback to the host's ports); all or nothing
--   pm:ports()  -> the mappings with the host ports actually bound (host_port 0: any free one)
--   pm:stats()  -> { connections, active, refused, failed, timeouts, bytes_in, bytes_out,
--                    datagrams_in, datagrams_out, dropped, queued, ports = { per mapping } }
--   pm:stop()   -- idempotent: closes the listeners, every connection and the namespace
--   portmap.run_in_netns(spawn_opts [, timeout_ms])  (inside a task) moonstack.core.process
--                  .spawn, the process started in a new network namespace with its loopback up
-- The namespace is opened once by start() and held until stop(): a CVM restarted in a new
-- namespace needs a new mapping; a VMM restarted while its CVMs run maps again by their pids.
-- No socket file is needed (opts.dir of a unix-socket design is not used).
local uv = require('luv')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')
local process = require('moonstack.core.process')
local netns = require('moonstack.netns')
local tcp = require('moonstack.vmm.portmap.tcp')
local udp = require('moonstack.vmm.portmap.udp')
local log = require('moonstack.core.log').new('vmm')

local M = {}

local DEFAULTS = { connect_timeout_ms = 5000, idle_timeout_ms = 0, udp_idle_timeout_ms = 30000,
  max_connections = 1024, max_flows = 256, backlog = 128 }

local COUNTERS = { 'connections', 'refused', 'failed', 'timeouts', 'bytes_in', 'bytes_out',
  'datagrams_in', 'datagrams_out', 'dropped' }

local function port_ok(v, min)
  return type(v) == 'number' and v % 1 == 0 and v >= min and v <= 65535
end

local function address_ok(v)
  -- numeric only: never a name lookup
  return type(v) == 'string' and uv.getaddrinfo(v, nil, { numerichost = true }) ~= nil
end

local function bracket(a)
  return a:find(':', 1, true) and ('[' .. a .. ']') or a
end

-- Check one mapping; returns a normalized copy or nil, 'EINVAL: <where>: ...'.
local function check_entry(e, where, forward)
  if type(e) ~= 'table' then
    return errors.fail('EINVAL', where .. ': expected a table')
  end
  local out = { protocol = e.protocol or 'tcp', host_address = e.host_address or '127.0.0.1',
    host_port = e.host_port, vm_address = e.vm_address or '127.0.0.1', vm_port = e.vm_port }
  if out.protocol ~= 'tcp' and out.protocol ~= 'udp' then
    return errors.fail('EINVAL', ('%s.protocol: expected tcp or udp, got %s'):format(where,
      tostring(out.protocol)))
  end
  for _, k in ipairs({ 'host_address', 'vm_address' }) do
    if not address_ok(out[k]) then
      return errors.fail('EINVAL', ('%s.%s: not an IP address: %s'):format(where, k,
        tostring(out[k])))
    end
  end
  -- the listening side may be 0 (any free port); the connecting side may not
  local listen_port = forward and 'vm_port' or 'host_port'
  for _, k in ipairs({ 'host_port', 'vm_port' }) do
    if not port_ok(out[k], k == listen_port and 0 or 1) then
      return errors.fail('EINVAL', ('%s.%s: expected a port number, got %s'):format(where, k,
        tostring(out[k])))
    end
  end
  return out
end

local function check_list(list, name, forward)
  local out = {}
  if list == nil then
    return out
  end
  if type(list) ~= 'table' then
    return errors.fail('EINVAL', name .. ': expected a list')
  end
  for i, e in ipairs(list) do
    local entry, err, code = check_entry(e, ('%s[%d]'):format(name, i), forward)
    if not entry then
      return nil, err, code
    end
    out[i] = entry
  end
  return out
end

local PortMap = {}
PortMap.__index = PortMap

--- A port mapping (not started). Returns it, or nil, 'EINVAL: ports[i].field: ...' for a bad
--- mapping. Misuse (opts not a table, no netns) raises.
function M.new(opts)
  if type(opts) ~= 'table' then
    error('portmap.new: opts must be a table', 2)
  end
  if opts.netns == nil then
    error('portmap.new: opts.netns (a pid or a namespace path) is required', 2)
  end
  local ports, err, code = check_list(opts.ports, 'ports', false)
  if not ports then
    return nil, err, code
  end
  local forwards
  forwards, err, code = check_list(opts.forwards, 'forwards', true)
  if not forwards then
    return nil, err, code
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do
    o[k] = opts[k] == nil and v or opts[k]
    if type(o[k]) ~= 'number' or o[k] < 0 then
      return errors.fail('EINVAL', ('%s: expected a number >= 0'):format(k))
    end
  end
  return setmetatable({ spec = opts.netns, ports_cfg = ports, forwards_cfg = forwards, opts = o,
    listeners = {}, state = 'new' }, PortMap)
end

local function zero()
  local t = {}
  for _, k in ipairs(COUNTERS) do
    t[k] = 0
  end
  return t
end

-- The routes of the config: inbound (host -> CVM) then forwards (CVM -> host).
function PortMap:_routes()
  local routes = {}
  for _, p in ipairs(self.ports_cfg) do
    routes[#routes + 1] = { entry = p, protocol = p.protocol,
      listen = { address = p.host_address, port = p.host_port },
      connect = { ns = self.ns, address = p.vm_address, port = p.vm_port },
      listen_name = ('%s:%d (%s)'):format(bracket(p.host_address), p.host_port, p.protocol),
      label = ('%s:%d -> vm %d/%s'):format(bracket(p.host_address), p.host_port, p.vm_port,
        p.protocol) }
  end
  for _, f in ipairs(self.forwards_cfg) do
    routes[#routes + 1] = { entry = f, protocol = f.protocol, forward = true,
      listen = { ns = self.ns, address = f.vm_address, port = f.vm_port },
      connect = { address = f.host_address, port = f.host_port },
      listen_name = ('vm %s:%d (%s)'):format(bracket(f.vm_address), f.vm_port, f.protocol),
      label = ('vm %s:%d -> %s:%d/%s'):format(bracket(f.vm_address), f.vm_port,
        bracket(f.host_address), f.host_port, f.protocol) }
  end
  return routes
end

--- Open the CVM's namespace and listen on every mapping (all or nothing). true, or nil, msg,
--- code: EADDRINUSE naming the address, EPERM without namespaces, EINVAL for the host's own
--- namespace, ENOENT when the process is gone. Starting a started mapping is a no-op.
function PortMap:start()
  if self.state == 'running' then
    return true
  end
  if self.state == 'stopped' then
    error('portmap:start: this mapping was stopped; make a new one', 2)
  end
  local ok, err = netns.available()
  if not ok then
    return errors.fail('EPERM', 'port mapping needs network namespaces, which this host does '
      .. 'not allow (the CVM would share the host ports): ' .. tostring(err))
  end
  local ns, code
  ns, err, code = netns.open(self.spec)
  if not ns then
    return nil, err, code
  end
  if netns.is_host(ns) then
    if ns ~= self.spec then
      ns:close()
    end
    return errors.fail('EINVAL', ('the network namespace of %s is the host\'s own: refusing to '
      .. 'map into it'):format(tostring(self.spec)))
  end
  self.ns, self.owns_ns = ns, ns ~= self.spec
  self.totals = zero()
  for _, route in ipairs(self:_routes()) do
    local l
    l, err, code = (route.protocol == 'tcp' and tcp or udp).listen(route, self.totals, self.opts)
    if not l then
      self:_close()
      return nil, err, code
    end
    route.listener = l
    self.listeners[#self.listeners + 1] = l
  end
  self.state = 'running'
  self:_start_sweep()
  log.info('port mapping started', { netns = tostring(self.spec), ports = #self.ports_cfg,
    forwards = #self.forwards_cfg })
  return true
end

function PortMap:_start_sweep()
  local o = self.opts
  local shortest = math.min(o.connect_timeout_ms, o.udp_idle_timeout_ms,
    o.idle_timeout_ms > 0 and o.idle_timeout_ms or math.huge)
  local every = math.max(10, math.min(1000, math.floor(shortest / 4)))
  self.timer = uv.new_timer()
  self.timer:start(every, every, function()
    local now = uv.now()
    for _, l in ipairs(self.listeners) do
      l:sweep(now)
    end
  end)
  self.timer:unref()
end

function PortMap:_close()
  if self.timer and not self.timer:is_closing() then
    self.timer:close()
  end
  self.timer = nil
  for _, l in ipairs(self.listeners) do
    l:close()
  end
  self.listeners = {}
  if self.ns and self.owns_ns then
    self.ns:close()
  end
  self.ns = nil
end

--- Stop: close the listeners, every connection and flow, and the namespace (idempotent).
function PortMap:stop()
  if self.state == 'running' then
    log.info('port mapping stopped', { netns = tostring(self.spec) })
  end
  self:_close()
  self.state = 'stopped'
  return true
end

--- The mappings with their bound addresses: { { protocol, host_address, host_port, vm_port,
--- vm_address, forward = true? } } (host_port / vm_port as bound when 0 was asked).
function PortMap:ports()
  local out = {}
  for _, l in ipairs(self.listeners) do
    local r, b = l.route, l.bound or {}
    local e = {}
    for k, v in pairs(r.entry) do
      e[k] = v
    end
    if r.forward then
      e.vm_port, e.forward = b.port or e.vm_port, true
    else
      e.host_port = b.port or e.host_port
    end
    out[#out + 1] = e
  end
  return out
end

--- Counters since start: connections (TCP accepted, UDP flows opened), active, refused
--- (over max_connections), failed (connect), timeouts, bytes_in (toward the listener's far
--- side: host -> CVM for ports), bytes_out, datagrams_in/out, dropped, queued (bytes waiting
--- in the relay's write queues now); ports = per mapping.
function PortMap:stats()
  local out = self.totals and {} or zero()
  for k, v in pairs(self.totals or {}) do
    out[k] = v
  end
  out.active, out.queued, out.ports = 0, 0, {}
  for i, l in ipairs(self.listeners) do
    local s = { protocol = l.route.protocol, label = l.route.label }
    for k, v in pairs(l.stats) do
      s[k] = v
    end
    out.active = out.active + (l.stats.active or 0)
    out.queued = out.queued + (l.queued and l:queued() or 0)
    out.ports[i] = s
  end
  return out
end

--- The command that runs `file args` in a new network namespace with its loopback up (the
--- hidden `moonstack ns-exec`): returns file', args' for any spawner. opts.mount = true also
--- gives it a private mount namespace.
function M.netns_command(file, args, opts)
  return netns.command({ net = true, mount = opts and opts.mount }, file, args)
end

local function ns_inode(pid)
  local st = uv.fs_stat(('/proc/%d/ns/net'):format(pid))
  return st and st.ino
end

--- Start a process tree in a new network namespace (inside a task): `opts` as
--- moonstack.core.process.spawn (file, args, env, ...; opts.mount = true: private mounts too).
--- Returns the process once it is in its namespace, or nil, msg, code: EPERM where namespaces
--- are not available (nothing is started then), or the failure of the start.
function M.run_in_netns(opts, timeout_ms)
  local ok, err = netns.available()
  if not ok then
    return errors.fail('EPERM', 'a CVM process tree needs a network namespace of its own, which '
      .. 'this host does not allow: ' .. tostring(err))
  end
  local spawn = {}
  for k, v in pairs(opts) do
    spawn[k] = v
  end
  spawn.file, spawn.args = M.netns_command(opts.file, opts.args, opts)
  local proc, code
  proc, err, code = process.spawn(spawn)
  if not proc then
    return nil, err, code
  end
  local host = ns_inode(uv.os_getpid())
  local deadline = uv.now() + (timeout_ms or 5000)
  while true do
    local ino = ns_inode(proc.pid)
    if proc.exited or not ino then
      return errors.fail('EIO', ('%s exited (status %s) before entering its network namespace')
        :format(opts.file, tostring(proc.exit_code)))
    elseif ino ~= host then
      return proc
    elseif uv.now() >= deadline then
      proc:stop(1000)
      return errors.fail('ETIMEDOUT', opts.file .. ' did not enter its network namespace')
    end
    task.sleep(5)
    uv.update_time()
  end
end

return M
