-- SPDX-License-Identifier: Apache-2.0
-- The VMs as supervised children of the VMM (on moonstack.core.process, through the backend):
--   launch   a start: .sys-config.json rewritten (moonstack.cvm.sys_config), the logs begun
--            with the boot separator, the backend's launch, process.json recorded (pid + start
--            time + boot id)
--   adopt    at VMM start: a VM whose recorded process still runs (that very process: pid,
--            start time and boot all match) is found again, never started twice
--   exit     the process ended: recorded (status exited, exited_at, an event)
--   stop     hard (the whole tree, SIGKILL); shutdown asks the guest (guest API Shutdown) and
--            falls back to a hard stop after shutdown_timeout
--   tick     polls adopted VMs (not our children: no exit callback), restarts VMs whose desired
--            state is started but which are not running with upstream's backoff (§4.3
--            [cvm.auto_restart]: initial_backoff doubling up to max_backoff, max_retries, the
--            count reset after reset_window seconds of health; an exhausted VM says so in its
--            events: vmm.auto_restart.exhausted, also on the event bus), rotates big logs
-- and what the guest reports (host API Notify): boot.progress, boot.error, shutdown.progress,
-- instance.info (kept in shared/.instance_info).
local uv = require('luv')
local cjson = require('cjson.safe')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')
local shared_folder = require('moonstack.cvm.shared_folder')
local sys_config = require('moonstack.cvm.sys_config')
local logs = require('moonstack.vmm.logs')

local M = {}

local Sup = {}
Sup.__index = Sup

--- The supervisor of VMM `vmm` ({ cfg, backend, vms, log }).
function M.new(vmm)
  return setmetatable({ vmm = vmm, cfg = vmm.cfg, backend = vmm.backend, log = vmm.log }, Sup)
end

-- Append a line to the VM's stdout.log (the host side's notes on its process).
local function note(vm, text)
  local fd = uv.fs_open(vm.wd:path('stdout.log'), 'a', 384)
  if fd then
    uv.fs_write(fd, ('[vmm %s] %s\n'):format(os.date('!%Y-%m-%dT%H:%M:%SZ'), text), -1)
    uv.fs_close(fd)
  end
end
M.note = note

--- The .sys-config.json of `vm` (rewritten at every start).
function Sup:sys_config(vm)
  local m, cfg = vm.manifest, self.cfg
  local t = self.backend:transports(vm)
  local kms_urls = #m.kms_urls > 0 and m.kms_urls or cfg.kms_urls
  local gateway_urls = #m.gateway_urls > 0 and m.gateway_urls or cfg.gateway_urls
  if self.backend.guest_urls then -- as the CVM reaches them (a QEMU guest: 10.0.2.2)
    kms_urls, gateway_urls = self.backend:guest_urls(kms_urls), self.backend:guest_urls(gateway_urls)
  end
  return sys_config.build({
    kms_urls = kms_urls,
    gateway_urls = gateway_urls,
    pccs_url = cfg.pccs_url, docker_registry = cfg.docker_registry,
    host_api_url = t.host_api.unix and ('unix:' .. t.host_api.unix) or '',
    vm_config = sys_config.vm_config({ os_image_hash = vm.image and vm.image.digest or '',
      cpu_count = m.vcpu, memory_mb = m.memory, image = m.image }),
  })
end

function Sup:_on_exit(vm, h, info)
  if vm.handle ~= h then
    return
  end
  vm.exited_at = os.time()
  vm.wd:clear_process()
  local how = info.signal and ('signal ' .. tostring(info.signal))
    or ('exit code ' .. tostring(info.exit_code))
  note(vm, 'process ' .. h.pid .. ' ended (' .. how .. ')')
  vm:event('vmm.exited', how)
  self.log.info('VM process ended', { id = vm.id, pid = h.pid, how = how, started = vm.started })
end

--- Start `vm` (inside a task, the VM locked by the caller). Returns true or nil, msg, code.
function Sup:launch(vm)
  if vm:running() then
    return true -- never a second copy
  end
  local img, err, code = self.vmm:image_of(vm)
  if not img then
    vm.boot_error = tostring(err):gsub('^E%u+: ', '')
    return nil, err, code
  end
  vm.image = img
  local ok
  ok, err, code = vm.wd:write_shared('sys_config', self:sys_config(vm))
  if not ok then
    return nil, err, code
  end
  ok, err, code = self.vmm:open_host_api(vm)
  if not ok then
    return nil, err, code
  end
  logs.begin_boot(vm.wd.dir, self.cfg.log)
  vm.boot_progress, vm.boot_error, vm.shutdown_progress = '', '', ''
  vm.exited_at = nil
  vm:save_runtime()
  local h
  h, err, code = self.backend:launch(vm, function(hh, info) self:_on_exit(vm, hh, info) end)
  if not h then
    vm.boot_error = tostring(err):gsub('^E%u+: ', '')
    note(vm, 'start failed: ' .. vm.boot_error)
    return nil, err, code
  end
  vm.handle = h
  if not h.exited then
    vm.wd:set_process(h.record)
  end
  vm.restart.healthy_since = os.time()
  note(vm, ('started: pid %d%s'):format(h.pid, h.argv and (' (' .. table.concat(h.argv, ' ') .. ')') or ''))
  vm:event('vmm.start', 'pid ' .. h.pid)
  return true
end

--- Find `vm`'s process again after a VMM restart: adopted when it still runs; else its record
--- is dropped. Returns true when adopted.
function Sup:adopt(vm)
  local rec = vm.wd:process()
  if not rec then
    return false
  end
  local h = self.backend:adopt(vm, rec, function(hh, info) self:_on_exit(vm, hh, info) end)
  if not h then
    vm.wd:clear_process()
    note(vm, ('process %d is gone (not adopted)'):format(rec.pid))
    return false
  end
  vm.handle = h
  vm.restart.healthy_since = os.time()
  note(vm, ('adopted by a restarted VMM: pid %d'):format(h.pid))
  vm:event('vmm.adopted', 'pid ' .. h.pid)
  return true
end

--- Hard stop of `vm`'s process tree (inside a task). Waits until it is gone.
function Sup:stop(vm)
  local h = vm.handle
  if h and not h.exited then
    self.backend:stop(h)
  end
  return true
end

--- Graceful shutdown (inside a task): the backend's powerdown (a VM's power button) or else the
--- guest API's Shutdown, then at most shutdown_timeout
--- for the process to end, then a hard stop. Returns true, or nil, msg, code when the guest
--- could not be asked (the hard stop happened anyway).
function Sup:shutdown(vm)
  local h = vm.handle
  if not h or h.exited then
    return true
  end
  vm.shutdown_progress = 'shutting down'
  local ok, err
  if self.backend.powerdown then -- a VM: its power button, which the guest acts on
    ok, err = self.backend:powerdown(h)
  else -- a process tree: the guest API's Shutdown
    ok, err = self.vmm:guest(vm):call('Shutdown', {})
  end
  local deadline = uv.now() + self.cfg.shutdown_timeout * 1000
  while ok and not h.exited and self.backend:alive(h) and uv.now() < deadline do
    task.sleep(50)
    uv.update_time()
  end
  if not h.exited and self.backend:alive(h) then
    vm:event('vmm.shutdown', ok and 'the guest did not stop in time: hard stop'
      or ('the guest could not be asked (%s): hard stop'):format(tostring(err)))
    self.backend:stop(h)
  end
  return true
end

--- What the guest reports (host API Notify): an event name and its payload (≤ 4 KiB).
--- True or nil, 'EINVAL: ...'.
function Sup:report(vm, event, payload) -- luacheck: ignore 212/self
  if #payload > 4096 then
    return errors.fail('EINVAL', 'payload: larger than 4096 bytes')
  end
  if event == 'boot.progress' then
    vm.boot_progress = payload
  elseif event == 'boot.error' then
    vm.boot_error = payload
  elseif event == 'shutdown.progress' then
    vm.shutdown_progress = payload
    if payload == 'powering off' and vm.started then
      vm.started = false
      vm.wd:set_started(false)
    end
  elseif event == 'instance.info' then
    local info = type(cjson.decode(payload)) == 'table' and shared_folder.parse_instance_info(payload)
    if not info then
      return errors.fail('EINVAL', 'payload: not instance info JSON')
    end
    local ok, err, code = vm.wd:write_shared('instance_info', payload)
    if not ok then
      return nil, err, code
    end
  end
  vm:event(event, payload)
  vm:save_runtime()
  return true
end

-- The auto-restart of one VM that should run and does not.
function Sup:_auto_restart(vm, now)
  local a, r = self.cfg.auto_restart, vm.restart
  if r.exhausted then
    return
  end
  if r.retries >= a.max_retries then
    r.exhausted = true
    local why = ('gave up after %d automatic restarts'):format(r.retries)
    vm:event('vmm.auto_restart.exhausted', why)
    self.log.warn('VM auto-restart exhausted', { id = vm.id, retries = r.retries })
    return
  end
  if not r.next_at then
    r.next_at = now + math.min(a.initial_backoff * 2 ^ r.retries, a.max_backoff)
    return
  end
  if now < r.next_at then
    return
  end
  r.next_at = nil
  r.retries = r.retries + 1
  task.spawn_named('vmm:auto-restart', function()
    vm:locked(function()
      if vm.started and not vm:running() and not vm.removing then
        vm:event('vmm.auto_restart', ('attempt %d of %d'):format(r.retries, a.max_retries))
        local ok, err = self:launch(vm)
        if not ok then
          self.log.warn('VM auto-restart failed', { id = vm.id, error = err })
        end
      end
    end)
  end)
end

--- One supervision round: adopted VMs polled, auto-restart, healthy VMs' counts reset.
function Sup:tick(with_restart)
  local now = uv.now() / 1000
  local a = self.cfg.auto_restart
  for _, vm in pairs(self.vmm.vms) do
    local h = vm.handle
    if h and h.adopted and not h.exited and not self.backend:alive(h) then
      h.exited = true
      self:_on_exit(vm, h, {})
    end
    local r = vm.restart
    if vm:running() then
      r.next_at = nil
      if r.retries > 0 and r.healthy_since and os.time() - r.healthy_since >= a.reset_window then
        r.retries, r.exhausted = 0, nil
      end
    elseif with_restart and a.enabled and vm.started and not vm.removing and not vm.lock_owner then
      self:_auto_restart(vm, now)
    end
  end
end

--- Rotate the logs of every VM that grew past log.max_bytes.
function Sup:check_logs()
  for _, vm in pairs(self.vmm.vms) do
    if vm:running() then
      logs.check_sizes(vm.wd.dir, self.cfg.log)
    end
  end
end

return M
