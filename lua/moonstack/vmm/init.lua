-- SPDX-License-Identifier: Apache-2.0
-- The VMM service (kms-vmm-gateway.md §4), in the service shape: start (the backend, the VMs of
-- run_dir loaded — interrupted creations removed, unreadable directories reported and skipped,
-- interrupted removals finished, running CVMs adopted by pid + start time, the ones that should
-- run started — the API listener, each VM's host API, the supervision timers), stop (the CVMs
-- keep running unless stop_vms_on_exit), status, reload (auth and auto_restart in place, the
-- rest ERESTART) and rebind (adopt a swapped copy of the VMM's code). The VM operations are
-- moonstack.vmm.lifecycle's, the supervision moonstack.vmm.supervisor's, the API
-- moonstack.vmm.api's.
local uv = require('luv')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')
local http = require('moonstack.http.server')
local backend_mod = require('moonstack.vmm.backend')
local images = require('moonstack.vmm.images')
local workdir = require('moonstack.vmm.workdir')
local vm_mod = require('moonstack.vmm.vm')
local supervisor = require('moonstack.vmm.supervisor')

local M = {}

--- The version reported by Version and X-App-Version.
M.VERSION = '0.1.0'

--- How often adopted VMs are polled (ms).
M.POLL_MS = 250

local Vmm = {}
Vmm.__index = Vmm
M.Vmm = Vmm

--- The image of `vm` (re-read: images may change on disk), or nil, msg, code.
function Vmm:image_of(vm)
  return images.get(self.cfg.image_dir, vm.manifest.image)
end

--- The VM `id`, or nil, 'EINVAL: id: unknown VM ...', 'EINVAL'.
function Vmm:find(id)
  local vm = type(id) == 'string' and self.vms[id]
  if not vm then
    return nil, ('EINVAL: id: unknown VM %q'):format(tostring(id)), 'EINVAL'
  end
  return vm
end

--- The guest API of `vm` (agent.client).
function Vmm:guest(vm)
  return require('moonstack.agent.client').guest_api(self.backend:transports(vm).guest_api)
end

--- Open `vm`'s host API listener (idempotent). True or nil, msg, code.
function Vmm:open_host_api(vm)
  if vm.host_api then
    return true
  end
  local t = self.backend:transports(vm).host_api
  local srv = http.new({ name = 'vmm-host-api', listen = { unix = t.unix, mode = 384 },
    max_body = 64 * 1024, headers = { ['x-app-version'] = M.VERSION } })
  srv:route('*', '/*', function(req) return self.host_handler(vm, req) end)
  local ok, err, code = srv:listen()
  if not ok then
    return nil, 'host API: ' .. tostring(err), code
  end
  vm.host_api = srv
  return true
end

--- Close `vm`'s host API listener.
function Vmm:close_host_api(vm) -- luacheck: ignore 212/self
  if vm.host_api then
    vm.host_api:close()
    vm.host_api = nil
  end
end

--- Other VMs' port maps (for conflicts): { { id, port_map } } without `except`.
function Vmm:port_maps(except)
  local out = {}
  for id, vm in pairs(self.vms) do
    if id ~= except then
      out[#out + 1] = { id = id, port_map = vm.manifest.port_map }
    end
  end
  return out
end

-- Load the VM of directory `id` (reporting and skipping what is unusable). Returns the VM,
-- or nil and why.
function Vmm:_load(id)
  local wd = workdir.new(self.cfg.run_dir, id)
  if wd:removing() then
    return nil, 'removing'
  end
  local manifest, err = workdir.check(wd)
  if not manifest then
    return nil, err
  end
  local vm = vm_mod.new(wd, manifest, { event_buffer_size = self.cfg.event_buffer_size,
    image = images.get(self.cfg.image_dir, manifest.image) or nil })
  self.vms[id] = vm
  self:open_host_api(vm)
  self.sup:adopt(vm)
  return vm
end

-- Scan run_dir: leftovers of interrupted creations removed, interrupted removals finished,
-- the rest loaded. Returns { loaded, broken = { { id, error } } }.
function Vmm:_scan()
  local s = workdir.scan(self.cfg.run_dir)
  for _, name in ipairs(s.leftovers) do
    self.log.warn('removing an interrupted VM creation (never acknowledged)', { dir = name })
    fs.remove_tree(self.cfg.run_dir .. '/' .. name)
  end
  local out = { loaded = 0, broken = {} }
  for _, id in ipairs(s.ids) do
    if not self.vms[id] then
      local vm, why = self:_load(id)
      if vm then
        out.loaded = out.loaded + 1
      elseif why == 'removing' then
        self.log.warn('finishing an interrupted removal', { id = id })
        require('moonstack.vmm.lifecycle').finish_removal(self, workdir.new(self.cfg.run_dir, id))
      else
        self.log.error('VM directory skipped: half-written or damaged (left as it is)',
          { id = id, error = why })
        out.broken[#out.broken + 1] = { id = id, error = tostring(why) }
      end
    end
  end
  self.broken = out.broken
  return out
end

-- Build the handlers from the VMM's code as it is now (at start and after a code swap).
function Vmm:_bind()
  local api = require('moonstack.vmm.api')
  self.methods = api.methods(self)
  self.handler = api.handler(self)
  self.host_handler = api.host_handler(self)
end

--- Adopt a swapped copy of the VMM's code (moonstack.daemon.code).
function M.rebind(vmm)
  setmetatable(vmm, Vmm)
  vmm.sup = supervisor.new(vmm) -- it keeps no state of its own
  vmm:_bind()
end

-- The supervision timers: adopted VMs and auto-restart, log sizes.
function Vmm:_timers()
  local interval = self.cfg.auto_restart.interval * 1000
  local since = 0
  self.tick_timer = uv.new_timer()
  self.tick_timer:start(M.POLL_MS, math.min(M.POLL_MS, interval), function()
    since = since + math.min(M.POLL_MS, interval)
    local restart = since >= interval
    if restart then
      since = 0
    end
    self.sup:tick(restart)
  end)
  self.log_timer = uv.new_timer()
  local every = math.floor(self.cfg.log.check_interval * 1000)
  self.log_timer:start(every, every, function() self.sup:check_logs() end)
end

--- Start the VMM from a validated config (moonstack.vmm.config), inside a task. Returns the
--- Vmm or nil, msg, code (nothing left listening).
function M.start(cfg, log)
  log = log or require('moonstack.core.log').new('vmm')
  for _, dir in ipairs({ cfg.run_dir, cfg.image_dir }) do
    local ok, err, code = fs.mkdir_p(dir)
    if not ok then
      return nil, ('cannot create %s: %s'):format(dir, tostring(err)), code
    end
  end
  local self = setmetatable({ cfg = cfg, log = log, vms = {}, started_at = os.time() }, Vmm)
  local err, code
  self.backend, err, code = backend_mod.create(cfg.backend, { cfg = cfg, log = log })
  if not self.backend then
    return nil, 'backend: ' .. tostring(err), code
  end
  if cfg.auth.enabled then
    self.creds, err, code = require('moonstack.http.auth').credentials({ tokens = cfg.auth.tokens,
      token_file = cfg.auth.token_file, htpasswd_file = cfg.auth.htpasswd_file,
      env = { 'DSTACK_VMM_AUTH_TOKEN' }, what = 'auth' })
    if not self.creds then
      return nil, 'auth: ' .. tostring(err), code
    end
    self.login_limit = require('moonstack.http.login_limit').new(cfg.auth.failed_logins)
  end
  self.sup = supervisor.new(self)
  self:_bind()
  local ok
  ok, err, code = self:_listen()
  if ok and cfg.dashboard then
    self.dashboard, err, code = require('moonstack.vmm.dashboard').start(self)
    ok = self.dashboard ~= nil
  end
  if not ok then
    self:stop()
    return nil, err, code
  end
  local scan = self:_scan()
  self:_timers()
  self.boot_task = task.spawn_named('vmm:start-vms', function()
    for _, vm in pairs(self.vms) do
      if vm.started and not vm:running() then
        vm:locked(function() self.sup:launch(vm) end)
      end
    end
  end)
  if cfg.cluster then -- this host and its VMs in etcd; the fleet for the dashboard
    self.cluster, err, code = require('moonstack.vmm.cluster').start(self)
    if not self.cluster then
      self:stop()
      return nil, 'cluster: ' .. tostring(err), code
    end
  end
  log.info('VMM ready', { address = self.server:address(), backend = cfg.backend,
    dashboard = self.dashboard and self.dashboard.address() or nil,
    vms = scan.loaded, broken = #scan.broken, run_dir = cfg.run_dir,
    backend_status = self.backend:status() })
  return self
end

-- Open the API listener. True or nil, msg, code.
function Vmm:_listen()
  local l = self.cfg.listen
  local srv = http.new({ name = 'vmm', max_body = self.cfg.max_body,
    listen = l.unix and { unix = l.unix, mode = l.mode or 384 } or { host = l.host or '127.0.0.1',
      port = l.port }, headers = { ['x-app-version'] = M.VERSION } })
  srv:route('*', '/*', function(req, res) return self.handler(req, res) end)
  local ok, err, code = srv:listen()
  if not ok then
    return nil, 'listen: ' .. tostring(err), code
  end
  self.server = srv
  return true
end

--- "host:port" or "unix:PATH" of the API listener.
function Vmm:address()
  return self.server and self.server:address()
end

--- The bound TCP port of the API listener (nil on a unix socket).
function Vmm:port()
  return self.server and self.server:port()
end

-- Config keys a running VMM applies in place.
local LIVE = { auto_restart = true, control = true, log = true, shutdown_timeout = true,
  event_buffer_size = true, node_name = true }

--- Reload: auto_restart, log, shutdown_timeout and a few display keys apply in place; any
--- other changed key answers ERESTART (the running config stays). True or nil, msg, code.
function Vmm:reload(cfg, changed)
  local restart = {}
  for _, k in ipairs(changed or {}) do
    if not LIVE[k] then
      restart[#restart + 1] = k
    end
  end
  if #restart > 0 then
    return nil, ('ERESTART: %s changed: restart the VMM to apply'):format(
      table.concat(restart, ', ')), 'ERESTART'
  end
  if cfg and #(changed or {}) > 0 then
    self.cfg = cfg
    self.sup.cfg = cfg
  end
  return true
end

--- A snapshot for the REPL.
function Vmm:status()
  local n, running = 0, 0
  for _, vm in pairs(self.vms) do
    n = n + 1
    running = running + (vm:running() and 1 or 0)
  end
  return { address = self:address(), run_dir = self.cfg.run_dir, vms = n, running = running,
    broken = self.broken, backend = self.backend:status() }
end

--- Stop the API and the timers. The CVMs keep running (a restarted VMM adopts them) unless
--- stop_vms_on_exit. Idempotent; inside a task when VMs are to be stopped.
function Vmm:stop()
  if self.cluster then
    self.cluster:close()
    self.cluster = nil
  end
  for _, t in ipairs({ 'tick_timer', 'log_timer' }) do
    if self[t] then
      self[t]:close()
      self[t] = nil
    end
  end
  if self.server then
    self.server:close()
    self.server = nil
  end
  if self.dashboard then
    self.dashboard.close()
    self.dashboard = nil
  end
  for _, vm in pairs(self.vms) do
    if vm.handle and not vm.handle.exited then
      if self.cfg.stop_vms_on_exit and task.current() then
        self.sup:stop(vm)
      else
        self.backend:release(vm.handle)
      end
    end
    self:close_host_api(vm)
  end
end

return M
