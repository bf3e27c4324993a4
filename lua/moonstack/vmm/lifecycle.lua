-- SPDX-License-Identifier: Apache-2.0
-- The VM operations behind the API (kms-vmm-gateway.md §4.1), each checked completely before it
-- changes anything and serialised per VM:
--   create   a new VM: manifest (moonstack.vmm.manifest), ports free, the work directory
--            assembled aside and renamed into place (moonstack.vmm.workdir), then started
--            unless `stopped`; a start that fails removes it again (nothing half-created)
--   start    desired state started, then launched (never a second copy); the restart budget
--            starts afresh
--   stop     desired state stopped, hard stop; shutdown: stopped, then the guest asked
--   remove   marked .removing, stopped, host API closed, the backend's state and the work dir
--            removed (a VMM killed meanwhile finishes it at its next start)
--   update   UpdateVm/UpgradeApp (compose, env, user config, ports, URLs, resources): returns
--            upstream's quirk, the app id of the new compose when it was replaced, else ''
--   resize   vcpu/memory/disk/image of a stopped VM
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local manifest_mod = require('moonstack.vmm.manifest')
local ports = require('moonstack.vmm.ports')
local workdir = require('moonstack.vmm.workdir')
local vm_mod = require('moonstack.vmm.vm')

local M = {}

local function fail(msg)
  return errors.fail('EINVAL', msg)
end

-- A random UUIDv4 string.
local function uuid4()
  local b = { crypto.random(16):byte(1, 16) }
  b[7] = b[7] % 16 + 64
  b[9] = b[9] % 64 + 128
  local h = {}
  for i = 1, 16 do
    h[i] = ('%02x'):format(b[i])
  end
  local s = table.concat(h)
  return ('%s-%s-%s-%s-%s'):format(s:sub(1, 8), s:sub(9, 12), s:sub(13, 16), s:sub(17, 20), s:sub(21))
end
M.uuid4 = uuid4

--- CreateVm (inside a task). Returns the new id or nil, 'EINVAL: <field>: ...', code.
function M.create(vmm, req)
  if req.vcpu == nil then
    req.vcpu = 1
  end
  req.memory = req.memory or 0
  local id = uuid4()
  local manifest, err, code = manifest_mod.from_request(req, vmm.cfg, id)
  if not manifest then
    return nil, err, code
  end
  local ok
  ok, err, code = ports.check_free(manifest.port_map, vmm:port_maps())
  if not ok then
    return nil, err, code
  end
  local files = { app_compose = req.compose_file, user_config = req.user_config,
    instance_info = ('{"app_id":"%s"}'):format(manifest.app_id) }
  if #req.encrypted_env > 0 then
    files.encrypted_env = req.encrypted_env
  end
  local wd
  wd, err = workdir.create(vmm.cfg.run_dir, id, { manifest = manifest,
    started = not req.stopped, shared = files })
  if not wd then
    return nil, 'EIO: cannot create the VM directory: ' .. tostring(err), 'EIO'
  end
  local vm = vm_mod.new(wd, manifest, { event_buffer_size = vmm.cfg.event_buffer_size,
    image = vmm:image_of({ manifest = manifest }) })
  vmm.vms[id] = vm
  vm:event('vmm.created', manifest.name)
  if req.stopped then
    ok, err, code = vmm:open_host_api(vm)
  else
    ok, err, code = vm:locked(function() return vmm.sup:launch(vm) end)
  end
  if not ok then -- nothing half-created: the VM goes again
    vmm.vms[id] = nil
    vmm:close_host_api(vm)
    vmm.backend:cleanup(vm)
    wd:remove()
    return nil, err, code
  end
  vmm.log.info('VM created', { id = id, name = manifest.name, app_id = manifest.app_id,
    started = not req.stopped })
  return id
end

--- StartVm (inside a task). True or nil, msg, code.
function M.start(vmm, id)
  local vm, err, code = vmm:find(id)
  if not vm then
    return nil, err, code
  end
  return vm:locked(function()
    if vm.removing then
      return fail('id: VM ' .. id .. ' is being removed')
    end
    vm.started = true
    vm.wd:set_started(true)
    vm.restart = { retries = 0 }
    return vmm.sup:launch(vm)
  end)
end

--- StopVm (hard) or, with `graceful`, ShutdownVm (inside a task). True or nil, msg, code.
function M.stop(vmm, id, graceful)
  local vm, err, code = vmm:find(id)
  if not vm then
    return nil, err, code
  end
  return vm:locked(function()
    vm.started = false
    vm.wd:set_started(false)
    if graceful then
      return vmm.sup:shutdown(vm)
    end
    return vmm.sup:stop(vm)
  end)
end

--- Remove what is left of a work directory whose removal was interrupted.
function M.finish_removal(vmm, wd)
  local rec = wd:process()
  if rec then
    local h = vmm.backend:adopt({ id = wd.id, wd = wd, manifest = { port_map = {} } }, rec,
      function() end)
    if h then
      vmm.backend:stop(h)
    end
  end
  vmm.backend:cleanup({ id = wd.id, wd = wd })
  wd:remove()
end

--- RemoveVm (inside a task): processes, ports, host API, backend state, work dir. True or nil,
--- msg, code.
function M.remove(vmm, id)
  local vm, err, code = vmm:find(id)
  if not vm then
    return nil, err, code
  end
  return vm:locked(function()
    if vm.removing then
      return true
    end
    vm.removing = true
    vm.wd:set_removing()
    vm.started = false
    vmm.sup:stop(vm)
    vmm:close_host_api(vm)
    vmm.backend:cleanup(vm)
    local ok, rerr, rcode = vm.wd:remove()
    vmm.vms[id] = nil
    if not ok then
      vmm.log.error('VM removal left files behind', { id = id, error = rerr })
      return nil, 'EIO: cannot remove the work directory: ' .. tostring(rerr), rcode
    end
    vmm.log.info('VM removed', { id = id })
    return true
  end)
end

-- The checked changes of an UpdateVmRequest/ResizeVmRequest `req` to `vm`: a table of what to
-- apply, or nil, 'EINVAL: ...'.
local function plan_update(vmm, vm, req)
  local p = { manifest = {} }
  local ok, err, code = manifest_mod.check_resources(req, vmm.cfg)
  if not ok then
    return nil, err, code
  end
  local resources = req.vcpu ~= nil or req.memory ~= nil or req.disk_size ~= nil or req.image ~= nil
  if resources then
    if vm:running() then
      return fail('id: VM ' .. vm.id .. ' must be stopped before its resources change')
    end
    if req.disk_size ~= nil and req.disk_size < (vm.manifest.disk_size or 0) then
      return fail('disk_size: cannot shrink the disk')
    end
    if req.image ~= nil then
      ok, err, code = manifest_mod.check_image(vmm.cfg, req.image)
      if not ok then
        return nil, err, code
      end
    end
    for _, k in ipairs({ 'vcpu', 'memory', 'disk_size', 'image' }) do
      p.manifest[k] = req[k]
    end
  end
  if (req.compose_file or '') ~= '' then
    ok, err, code = manifest_mod.check_compose(req.compose_file)
    if not ok then
      return nil, err, code
    end
    p.compose = req.compose_file
  end
  if req.encrypted_env and #req.encrypted_env > manifest_mod.MAX_ENCRYPTED_ENV then
    return fail('encrypted_env: larger than 256 KiB')
  end
  if req.update_ports then
    p.manifest.port_map, err, code = ports.parse(req.ports, vmm.cfg.port_mapping)
    if not p.manifest.port_map then
      return nil, err, code
    end
    ok, err, code = ports.check_free(p.manifest.port_map, vmm:port_maps(vm.id))
    if not ok then
      return nil, err, code
    end
  end
  for _, f in ipairs({ 'kms_urls', 'gateway_urls' }) do
    if req['update_' .. f] then
      ok, err, code = manifest_mod.check_urls(req[f], f)
      if not ok then
        return nil, err, code
      end
      p.manifest[f] = req[f]
    end
  end
  if req.no_tee ~= nil then
    p.manifest.no_tee = req.no_tee
  end
  return p
end

--- UpdateVm / UpgradeApp / ResizeVm (inside a task). Returns the id quirk of UpdateVm (the app
--- id of the new compose when it was replaced, else '') or nil, msg, code.
function M.update(vmm, req)
  local vm, err, code = vmm:find(req.id)
  if not vm then
    return nil, err, code
  end
  return vm:locked(function()
    local p, perr, pcode = plan_update(vmm, vm, req)
    if not p then
      return nil, perr, pcode
    end
    local writes = {}
    if p.compose then
      writes[#writes + 1] = { 'app_compose', p.compose }
    end
    if req.encrypted_env and #req.encrypted_env > 0 then
      writes[#writes + 1] = { 'encrypted_env', req.encrypted_env }
    end
    if (req.user_config or '') ~= '' then
      writes[#writes + 1] = { 'user_config', req.user_config }
    end
    for _, w in ipairs(writes) do
      local ok, werr, wcode = vm.wd:write_shared(w[1], w[2])
      if not ok then
        return nil, werr, wcode
      end
    end
    if next(p.manifest) then
      local m = {}
      for k, v in pairs(vm.manifest) do
        m[k] = v
      end
      for k, v in pairs(p.manifest) do
        m[k] = v
      end
      local ok, werr, wcode = vm.wd:put_manifest(m)
      if not ok then
        return nil, werr, wcode
      end
      vm.manifest = m
    end
    vm:event('vmm.updated', #writes .. ' file(s), '
      .. (next(p.manifest) and 'manifest' or 'no manifest change'))
    return p.compose and manifest_mod.app_id_of(p.compose) or ''
  end)
end

--- ReloadVms: VMs of run_dir not known yet are loaded, known ones whose directory is gone are
--- dropped, the others' manifests read again. Returns { loaded, updated, removed }.
function M.reload(vmm)
  local out = { loaded = 0, updated = 0, removed = 0 }
  for id, vm in pairs(vmm.vms) do
    local m = workdir.check(vm.wd)
    if not m then
      if not vm:running() then
        vmm:close_host_api(vm)
        vmm.vms[id] = nil
        out.removed = out.removed + 1
      end
    else
      vm.manifest = m
      vm.started = vm.wd:started()
      out.updated = out.updated + 1
    end
  end
  out.loaded = vmm:_scan().loaded
  return out
end

return M
