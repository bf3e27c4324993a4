-- SPDX-License-Identifier: Apache-2.0
-- The `process` backend (moonstack.vmm.backend): a CVM as a supervised local process tree.
-- What runs is the image's moonstack binary as the guest agent (`moonstack agent -c
-- <wd>/agent.lua`, config written here) on the sim TEE (the VMM's process.sim_dir, CVM name =
-- the VM id): shared_dir = the work dir's shared/, its state in <wd>/state, its sockets
-- (dstack.sock, tappd.sock, the guest API guest.sock) in the work dir, the host API it reports
-- to at <wd>/host-api.sock, and the app as its child (bash runner) or on a Docker engine of
-- the CVM's own (docker-compose runner: moonstack.cvm.dockerd under <wd>/docker, images from
-- process.docker_images). The tree starts in its own session, under the VM's resource limits
-- (moonstack.vmm.backend.limits), in a PID namespace of its own when the VMM may create one
-- (root: `unshare --pid --fork --kill-child --mount-proc`: nothing of it outlives a stop), and
-- in a network namespace of its own (`moonstack ns-exec --net`) when it has port mappings or a
-- Docker engine (or process.network = 'netns'), its ports mapped by moonstack.vmm.portmap and
-- the KMS/gateway on the host's loopback forwarded into it; port mappings without one are
-- refused, never put on the host's ports. Its stdout goes to serial.log (the console: the
-- agent echoes the app's output there), its stderr (the agent's log) to stderr.log, straight
-- into the files: a CVM outlives a VMM restart. The process is known by pid + start time +
-- boot id (process.json), never by pid.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local procfs = require('moonstack.core.procfs')
local process = require('moonstack.core.process')
local task = require('moonstack.core.task')
local limits_mod = require('moonstack.vmm.backend.limits')
local dockerd = require('moonstack.cvm.dockerd')
local netns = require('moonstack.vmm.backend.netns')
local ports = require('moonstack.vmm.ports')

local M = {}

local Backend = {}
Backend.__index = Backend

--- The files of a CVM's work directory this backend uses (relative names).
M.FILES = { config = 'agent.lua', state = 'state', dstack = 'dstack.sock', tappd = 'tappd.sock',
  guest = 'guest.sock', host_api = 'host-api.sock' }

--- A process backend over the VMM config `cfg` (opts = { cfg, log }).
function M.new(opts)
  local cfg = opts.cfg
  local self = setmetatable({ name = 'process', cfg = cfg, pcfg = cfg.process, log = opts.log,
    root = uv.getuid() == 0 }, Backend)
  self.cgroups = self.pcfg.cgroup ~= false and limits_mod.probe() or { why = 'process.cgroup = false' }
  local can = netns.available()
  self.can_pidns = self.root and can.pid
  self.can_netns = can.net
  local pidns = self.pcfg.pid_namespace
  self.pidns = pidns == true or (pidns == 'auto' and self.can_pidns)
  if pidns == true and not self.can_pidns then
    return errors.fail('EINVAL', 'process.pid_namespace = true needs root and unshare(1)')
  end
  if self.pcfg.network == 'netns' and not self.can_netns then
    return errors.fail('EINVAL', "process.network = 'netns': this host does not let the VMM "
      .. 'create network namespaces')
  end
  local ok, err, code = fs.mkdir_p(self.pcfg.sim_dir)
  if not ok then
    return nil, 'process.sim_dir: ' .. tostring(err), code
  end
  return self
end

--- What this host lets the backend do.
function Backend:status()
  return { name = self.name, root = self.root, pid_namespace = self.pidns,
    network = self.pcfg.network, netns_available = self.can_netns,
    cgroup = self.cgroups.kind or false, cgroup_why = self.cgroups.why, sim_dir = self.pcfg.sim_dir }
end

--- Where the host API and the guest API of `vm` listen.
function Backend:transports(vm) -- luacheck: ignore 212/self
  return { host_api = { unix = vm.wd:path(M.FILES.host_api) },
    guest_api = { unix = vm.wd:path(M.FILES.guest) } }
end

-- Whether `vm` runs in a network namespace of its own.
function Backend:own_netns(vm)
  local mode = self.pcfg.network
  if mode == 'host' then
    return false
  end
  return mode == 'netns' or ((#vm.manifest.port_map > 0 or self:dockerized(vm)) and self.can_netns)
end

-- Whether `vm`'s app runs on a Docker engine (the docker-compose runner): it gets one of its
-- own, in its own network namespace, so that no CVM sees another's containers.
function Backend:dockerized(vm) -- luacheck: ignore 212/self
  local f = io.open(vm.wd:path('shared/app-compose.json'), 'rb')
  local text = f and f:read('*a')
  if f then
    f:close()
  end
  local ok, compose = pcall(require('cjson').decode, text or '')
  return ok and type(compose) == 'table' and compose.runner == 'docker-compose'
end

--- Whether this VM's port mappings can be carried out. True or nil, 'ENOTSUP: ...'.
function Backend:check_ports(vm)
  if self:dockerized(vm) and not self:own_netns(vm) then
    return errors.fail('ENOTSUP', 'compose_file: a docker-compose app needs a Docker engine and '
      .. 'a network namespace of its own, which this VMM cannot create (root needed): refused '
      .. "rather than sharing the host's engine")
  end
  if #vm.manifest.port_map == 0 then
    return true
  end
  if not self:own_netns(vm) then
    return errors.fail('ENOTSUP', ('ports: port mapping needs a network namespace per CVM, which '
      .. 'this VMM cannot create (%s): refused rather than sharing the host\'s ports'):format(
      self.pcfg.network == 'host' and "process.network = 'host'" or 'the host does not allow it'))
  end
  local mapper, why = ports.mapper()
  if not mapper then
    return errors.fail('ENOTSUP', 'ports: ' .. why)
  end
  return true
end

-- The agent.lua of `vm` (a Lua chunk; every value quoted with %q).
function Backend:agent_config(vm, own_net)
  local wd = vm.wd
  local q = function(s) return ('%q'):format(s) end
  local public = own_net and "{ host = '0.0.0.0', port = 8090 }" or 'false'
  return table.concat({
    '-- Written by the VMM at each start of VM ' .. vm.id .. ' (moonstack.vmm.backend.process).',
    'return {',
    '  shared_dir = ' .. q(wd:path('shared')) .. ',',
    '  state_dir = ' .. q(wd:path(M.FILES.state)) .. ',',
    '  tee = { name = \'sim\', dir = ' .. q(self.pcfg.sim_dir) .. ', cvm = ' .. q(vm.id) .. ',',
    '    runtime_log_dir = ' .. q(wd:path(M.FILES.state .. '/runtime-events')) .. ' },',
    '  listen = {',
    '    dstack = { unix = ' .. q(wd:path(M.FILES.dstack)) .. ' },',
    '    tappd = { unix = ' .. q(wd:path(M.FILES.tappd)) .. ' },',
    '    guest = { unix = ' .. q(wd:path(M.FILES.guest)) .. ' },',
    '    public = ' .. public .. ',',
    '  },',
    '  host_api = { unix = ' .. q(wd:path(M.FILES.host_api)) .. ' },',
    '  runner = { stop_grace_ms = 2000, echo = true,' .. self:dockerd_config(vm),
    -- the API sockets are in the work dir, not at /var/run: tell the app where (the SDKs'
    -- endpoint variables), so an app using an SDK runs unchanged
    '    env = { DSTACK_SIMULATOR_ENDPOINT = ' .. q(wd:path(M.FILES.dstack)) .. ',',
    '      TAPPD_SIMULATOR_ENDPOINT = ' .. q(wd:path(M.FILES.tappd)) .. ' } },',
    '  code_reload = false,',
    '}',
    '',
  }, '\n')
end

-- The runner.dockerd part of agent.lua for a docker-compose VM ('' for others): an engine of
-- its own under the work dir, the configured image tarballs loaded before the app.
function Backend:dockerd_config(vm)
  if not self:dockerized(vm) then
    return ''
  end
  local q = function(v) return ('%q'):format(v) end
  local images = {}
  for i, f in ipairs(self.pcfg.docker_images) do
    images[i] = q(f)
  end
  return table.concat({ '', '    dockerd = { dir = ' .. q(vm.wd:path('docker')) .. ',',
    '      dockerd = ' .. q(self.pcfg.dockerd) .. ', shutdown_timeout_s = 2,',
    '      images = { ' .. table.concat(images, ', ') .. ' } },', '  ' }, '\n')
end

-- The argv of `vm`'s tree: limits, namespaces, then the agent.
function Backend:argv(vm, lim, own_net)
  local argv = limits_mod.prefix(lim)
  if self.pidns or own_net then
    for _, a in ipairs(netns.unshare_prefix({ pid = self.pidns, net = own_net })) do
      argv[#argv + 1] = a
    end
  end
  argv[#argv + 1] = vm.image.agent
  for _, a in ipairs(self.pcfg.agent_args) do
    argv[#argv + 1] = a
  end
  for _, a in ipairs({ 'agent', '-c', vm.wd:path(M.FILES.config) }) do
    argv[#argv + 1] = a
  end
  return argv
end

-- A handle for the process `id` ({ pid, start_time, boot_id }).
local function handle_of(id, extra)
  local h = { pid = id.pid, start_time = id.start_time, boot_id = id.boot_id,
    started_at = extra.started_at or os.time(), netns = extra.netns, docker_dir = extra.docker_dir }
  h.record = { pid = id.pid, start_time = id.start_time, boot_id = id.boot_id, backend = 'process',
    started_at = h.started_at, cgroups = extra.cgroups, netns = extra.netns,
    docker_dir = extra.docker_dir }
  return h
end

-- The guest -> host forwards of a CVM in its own network namespace: the KMS and gateway URLs
-- on the host's loopback stay reachable at the same address from inside (TCP), and so do the
-- UDP services of process.udp_forwards (the gateway's WireGuard endpoint: the CVM's
-- dstack-wg0 sends to it from inside, the relay's flow carries the hub's answers back).
function Backend:forwards()
  local out, seen = {}, {}
  local urls = {}
  for _, list in ipairs({ self.cfg.kms_urls or {}, self.cfg.gateway_urls or {} }) do
    for _, u in ipairs(list) do
      urls[#urls + 1] = u
    end
  end
  for _, u in ipairs(urls) do
    local host, port = tostring(u):match('^%a+://([%d%.]+):(%d+)')
    if not host then
      host = tostring(u):match('^%a+://(localhost):') and '127.0.0.1'
      port = tostring(u):match('^%a+://localhost:(%d+)')
    end
    port = tonumber(port)
    if host and host:match('^127%.') and port and not seen[host .. ':' .. port] then
      seen[host .. ':' .. port] = true
      out[#out + 1] = { protocol = 'tcp', vm_address = host, vm_port = port, host_address = host,
        host_port = port }
    end
  end
  for _, u in ipairs(self.pcfg.udp_forwards or {}) do
    local host, port = u:match('^([%d%.]+):(%d+)$')
    port = tonumber(port)
    if host and port and port >= 1 and port <= 65535 and not seen['udp:' .. u] then
      seen['udp:' .. u] = true
      out[#out + 1] = { protocol = 'udp', vm_address = host, vm_port = port, host_address = host,
        host_port = port }
    end
  end
  return out
end

-- Start the port mapper of a CVM in its own network namespace (pid = its first process): its
-- port mappings, and the forwards to the KMS and gateway on the host's loopback.
function Backend:start_ports(vm, h)
  local forwards = h.netns and self:forwards() or {}
  if #vm.manifest.port_map == 0 and #forwards == 0 then
    return true
  end
  local mapper, why = ports.mapper()
  if not mapper then
    return errors.fail('ENOTSUP', 'ports: ' .. why)
  end
  local path, err, code = netns.wait_path(h.pid)
  if not path then
    return nil, err, code
  end
  local pm
  pm, err, code = mapper.new({ netns = path, ports = ports.mapper_ports(vm.manifest.port_map),
    forwards = forwards })
  if not pm then
    return nil, 'ports: ' .. tostring(err), code
  end
  local ok
  ok, err, code = pm:start()
  if not ok then
    return nil, 'ports: ' .. tostring(err), code
  end
  h.portmap = pm
  return true
end

--- Start `vm` (its work dir ready). on_exit(handle, { exit_code, signal }) once it ends.
--- Returns the handle or nil, msg, code (nothing left running).
function Backend:launch(vm, on_exit)
  if vm.image.kind ~= 'process' or not vm.image.agent then
    return errors.fail('EINVAL', ('image: %s is not a process image'):format(vm.image.name))
  end
  local ok, err, code = self:check_ports(vm)
  if not ok then
    return nil, err, code
  end
  local own_net = self:own_netns(vm)
  ok, err, code = fs.write_atomic(vm.wd:path(M.FILES.config), self:agent_config(vm, own_net), 384)
  if not ok then
    return nil, err, code
  end
  for _, s in ipairs({ 'dstack', 'tappd', 'guest' }) do
    uv.fs_unlink(vm.wd:path(M.FILES[s])) -- a previous boot's (the agent refuses a live one)
  end
  local lim = limits_mod.create(self.cgroups, vm.id, { memory_mb = vm.manifest.memory,
    vcpu = vm.manifest.vcpu })
  local argv = self:argv(vm, lim, own_net)
  local h
  local p
  p, err, code = process.spawn({ service = 'cvm-' .. vm.id, file = argv[1],
    args = { unpack(argv, 2) }, cwd = vm.wd.dir,
    env = { PATH = os.getenv('PATH') or '/usr/sbin:/usr/bin:/sbin:/bin', HOME = vm.wd.dir },
    files = { stdout = vm.wd:path('serial.log'), stderr = vm.wd:path('stderr.log') },
    on_exit = function(proc)
      if h and not h.exited then
        h.exited = true
        on_exit(h, { exit_code = proc.exit_code, signal = proc.signal })
      end
    end })
  if not p then
    limits_mod.remove(lim)
    return nil, err, code
  end
  local id = procfs.identity(p.pid) or { pid = p.pid, start_time = -1, boot_id = procfs.boot_id() }
  h = handle_of(id, { cgroups = lim.cgroups, netns = own_net or nil,
    docker_dir = self:dockerized(vm) and vm.wd:path('docker') or nil })
  h.proc, h.limits, h.argv = p, lim, argv
  if p.exited then
    h.exited = true
  end
  ok, err, code = self:start_ports(vm, h)
  if not ok then
    self:stop(h)
    return nil, err, code
  end
  return h
end

--- Find again a CVM a previous VMM started (record = process.json). Returns the handle when
--- that very process still runs (pid, start time and boot all match), else nil.
function Backend:adopt(vm, record, on_exit)
  if not procfs.alive(record) then
    limits_mod.remove({ cgroups = record.cgroups })
    return nil
  end
  local h = handle_of(record, { started_at = record.started_at, cgroups = record.cgroups,
    netns = record.netns, docker_dir = record.docker_dir })
  h.adopted, h.on_exit = true, on_exit
  h.limits = { cgroups = record.cgroups or {} }
  local ok, err = self:start_ports(vm, h)
  if not ok then
    self.log.warn('adopted CVM: its port mappings could not be restored', { id = vm.id, error = err })
  end
  return h
end

--- Whether the CVM of handle `h` still runs.
function Backend:alive(h) -- luacheck: ignore 212/self
  return require('moonstack.vmm.backend').alive(h)
end

--- Hard stop (inside a task): the whole tree gets SIGKILL (stopped first so nothing forks
--- away), the mappings and cgroups go; on_exit follows once the process is gone.
function Backend:stop(h) -- luacheck: ignore 212/self
  if h.portmap then
    h.portmap:stop()
    h.portmap = nil
  end
  procfs.kill_tree(h)
  if h.proc then
    h.proc:wait(3000)
  else
    local deadline = uv.now() + 3000
    while procfs.alive(h) and uv.now() < deadline do
      task.sleep(20)
      uv.update_time()
    end
    if not h.exited then
      h.exited = true
      if h.on_exit then
        h.on_exit(h, { signal = 'sigkill' })
      end
    end
  end
  if h.docker_dir then -- the engine died with the tree: what it leaves outside goes too
    dockerd.sweep(h.docker_dir)
  end
  limits_mod.remove(h.limits)
end

--- The VMM stops and leaves the CVM running: stop watching it (its port mappings, which live
--- in this process, end with it; a restarted VMM adopts the CVM and maps its ports again).
function Backend:release(h) -- luacheck: ignore 212/self
  if h.portmap then
    h.portmap:stop()
    h.portmap = nil
  end
  if h.proc then
    h.proc:release()
  end
end

--- RemoveVm: the sim TEE's state of the CVM, and what its Docker engine left outside.
function Backend:cleanup(vm)
  if uv.fs_stat(vm.wd:path('docker')) then
    dockerd.sweep(vm.wd:path('docker'))
  end
  require('moonstack.vmm.backend').remove_sim_cvm(self.pcfg.sim_dir, vm.id)
end

return M
