-- SPDX-License-Identifier: Apache-2.0
-- The VMM's pRPC methods (kms-vmm-gateway.md §4.1; upstream vmm_rpc.proto) over a running VMM:
-- CreateVm, StartVm, StopVm, ShutdownVm, RemoveVm, UpdateVm and UpgradeApp (the app-id quirk),
-- ResizeVm, GetComposeHash, Status (ids, brief, keyword, page, page_size), GetInfo,
-- ListImages, GetAppEnvEncryptPubKey (proxied to the KMS), Version, GetMeta, ReloadVms,
-- SvList/SvStop/SvRemove, ListGpus (none here). Each is { input, output, call } for
-- moonstack.core.prpc; failures are nil, 'CODE: <field>: why' (a 400 naming the field).
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local images = require('moonstack.vmm.images')
local lifecycle = require('moonstack.vmm.lifecycle')
local manifest_mod = require('moonstack.vmm.manifest')
local msg = require('moonstack.vmm.api.messages')

local M = {}

--- The order VMs are listed in (Status, the dashboard): by creation time, then by id.
function M.by_creation(x, y)
  local cx, cy = x.manifest.created_at_ms or 0, y.manifest.created_at_ms or 0
  if cx ~= cy then
    return cx < cy
  end
  return x.id < y.id
end

local function m(input, output, call)
  return { input = input, output = output, call = call }
end

--- The VmConfiguration message of `vm`: its manifest and shared files.
function M.configuration(vm)
  local mf = vm.manifest
  local portlist = {}
  for i, p in ipairs(mf.port_map) do
    portlist[i] = { protocol = p.protocol, host_port = p.from, vm_port = p.to, host_address = p.address }
  end
  return { name = mf.name, image = mf.image, compose_file = vm.wd:read_shared('app_compose') or '',
    vcpu = mf.vcpu or 0, memory = mf.memory or 0, disk_size = mf.disk_size or 0, ports = portlist,
    encrypted_env = vm.wd:read_shared('encrypted_env') or '', app_id = mf.app_id,
    user_config = vm.wd:read_shared('user_config') or '', hugepages = mf.hugepages == true,
    pin_numa = mf.pin_numa == true, gpus = { gpus = {}, attach_mode = 'listed' },
    kms_urls = mf.kms_urls, gateway_urls = mf.gateway_urls, stopped = not vm.started,
    no_tee = mf.no_tee == true, networks = {}, simulated_tee = mf.simulated_tee }
end

-- The instance id (hex) the guest reported for `vm`, or ''.
local function instance_id(vm)
  local text = vm.wd:read_shared('instance_info', 10 * 1024) or ''
  return text:match('"instance_id"%s*:%s*"(%x+)"') or ''
end

-- The app URL of `vm` (only when its compose enables the gateway and its instance id is known).
local function app_url(vmm, vm, iid)
  if iid == '' then
    return nil
  end
  local compose = vm.wd:read_shared('app_compose') or ''
  if not (compose:find('"gateway_enabled"%s*:%s*true') or compose:find('"tproxy_enabled"%s*:%s*true')) then
    return nil
  end
  local gw = vmm.cfg.gateway
  local host, port = gw.base_domain, gw.port
  local custom = vm.manifest.gateway_urls[1]
  if custom then
    host = custom:match('^%a+://([^:/]+)') or host
    port = tonumber(custom:match('^%a+://[^:/]+:(%d+)')) or 443
  end
  return ('https://%s-%d.%s%s'):format(iid, gw.agent_port, host, port == 443 and '' or (':' .. port))
end

--- The VmInfo of `vm` (brief: without its configuration).
function M.vm_info(vmm, vm, brief)
  local iid = instance_id(vm)
  local info = vm:info({ brief = brief, configuration = M.configuration, instance_id = iid })
  info.app_url = app_url(vmm, vm, iid)
  return info
end

-- Whether `vm` matches the keyword (case-insensitive, in its name, id or app id).
local function matches(vm, keyword)
  if keyword == '' then
    return true
  end
  keyword = keyword:lower()
  for _, s in ipairs({ vm.manifest.name, vm.id, vm.manifest.app_id }) do
    if tostring(s):lower():find(keyword, 1, true) then
      return true
    end
  end
  return false
end

local function status(vmm, a)
  local want
  if #a.ids > 0 then
    want = {}
    for _, id in ipairs(a.ids) do
      want[id] = true
    end
  end
  local list = {}
  for id, vm in pairs(vmm.vms) do
    if (not want or want[id]) and matches(vm, a.keyword) then
      list[#list + 1] = vm
    end
  end
  table.sort(list, M.by_creation)
  local total, first, last = #list, 1, #list
  local size = a.page_size or 0
  if size > 0 then
    first = (math.max(1, a.page or 1) - 1) * size + 1
    last = math.min(total, first + size - 1)
  end
  local vms = {}
  for i = first, last do
    vms[#vms + 1] = M.vm_info(vmm, list[i], a.brief)
  end
  return { vms = vms, port_mapping_enabled = vmm.cfg.port_mapping.enabled, total = total }
end

local function id_only(fn)
  return m(msg.Id, msg.Empty, function(a)
    local ok, err, code = fn(a.id)
    if not ok then
      return nil, err, code
    end
    return {}
  end)
end

-- The supervisor's view of the VMs (SvList): one process per VM.
local function sv_list(vmm)
  local out = {}
  for id, vm in pairs(vmm.vms) do
    local h = vm.handle
    local st = vm:running() and 'running' or (h and h.exited and vm.exited_at and 'exited(0)') or 'stopped'
    out[#out + 1] = { id = id, name = vm.manifest.name, status = st, pid = vm:running() and h.pid or nil,
      command = h and h.argv and table.concat(h.argv, ' ') or '',
      note = '{"kind":"cvm","backend":"' .. vmm.backend.name .. '"}' }
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return { processes = out }
end

--- The method table over a running VMM `vmm` (moonstack.vmm).
function M.methods(vmm)
  local t = {}
  t.CreateVm = m(msg.VmConfiguration, msg.Id, function(a)
    local id, err, code = lifecycle.create(vmm, a)
    if not id then
      return nil, err, code
    end
    return { id = id }
  end)
  t.StartVm = id_only(function(id) return lifecycle.start(vmm, id) end)
  t.StopVm = id_only(function(id) return lifecycle.stop(vmm, id, false) end)
  t.ShutdownVm = id_only(function(id) return lifecycle.stop(vmm, id, true) end)
  t.RemoveVm = id_only(function(id) return lifecycle.remove(vmm, id) end)
  t.UpdateVm = m(msg.UpdateVmRequest, msg.Id, function(a)
    local id, err, code = lifecycle.update(vmm, a)
    if not id then
      return nil, err, code
    end
    return { id = id }
  end)
  t.UpgradeApp = t.UpdateVm
  t.ResizeVm = m(msg.ResizeVmRequest, msg.Empty, function(a)
    if a.vcpu == nil and a.memory == nil and a.disk_size == nil and (a.image or '') == '' then
      return nil, 'EINVAL: resize request contains no updates (vcpu, memory, disk_size, image)'
    end
    if a.image == '' then
      return nil, 'EINVAL: image: must not be empty'
    end
    local ok, err, code = lifecycle.update(vmm, a)
    if not ok then
      return nil, err, code
    end
    return {}
  end)
  t.GetComposeHash = m(msg.VmConfiguration, msg.ComposeHash, function(a)
    local ok, err, code = manifest_mod.check_name(a.name)
    if ok then
      ok, err, code = manifest_mod.check_compose(a.compose_file)
    end
    if not ok then
      return nil, err, code
    end
    return { hash = crypto.hex(crypto.sha256(a.compose_file)) }
  end)
  t.Status = m(msg.StatusRequest, msg.StatusResponse, function(a) return status(vmm, a) end)
  t.GetInfo = m(msg.Id, msg.GetInfoResponse, function(a)
    local vm = vmm.vms[a.id]
    if not vm then
      return { found = false }
    end
    return { found = true, info = M.vm_info(vmm, vm, false) }
  end)
  t.ListImages = m(msg.Empty, msg.ImageListResponse, function()
    local out = {}
    for i, img in ipairs(images.list(vmm.cfg.image_dir)) do
      out[i] = { name = img.name, description = img.metadata_text, version = img.version,
        is_dev = img.is_dev }
    end
    return { images = out }
  end)
  t.GetAppEnvEncryptPubKey = m(msg.AppId, msg.PublicKeyResponse, function(a)
    return require('moonstack.vmm.api.kms').env_pubkey(vmm, a.app_id)
  end)
  t.Version = m(msg.Empty, msg.VersionResponse, function()
    return { version = require('moonstack.vmm').VERSION, rev = 'moonstack' }
  end)
  t.GetMeta = m(msg.Empty, msg.GetMetaResponse, function()
    local cfg = vmm.cfg
    return { kms = { url = cfg.kms_url or '', urls = cfg.kms_urls },
      gateway = { url = cfg.gateway_urls[1] or '', base_domain = cfg.gateway.base_domain,
        port = cfg.gateway.port, agent_port = cfg.gateway.agent_port, urls = cfg.gateway_urls },
      resources = { max_cvm_number = cfg.max_cvm_number, max_allocable_vcpu = cfg.max_allocable_vcpu,
        max_allocable_memory_in_mb = cfg.max_allocable_memory_in_mb },
      networking = { supported_modes = { 'user' }, default_mode = 'user', default_bridge = '' } }
  end)
  t.ListGpus = m(msg.Empty, msg.ListGpusResponse, function()
    return { gpus = {}, allow_attach_all = false }
  end)
  t.ReloadVms = m(msg.Empty, msg.ReloadVmsResponse, function() return lifecycle.reload(vmm) end)
  t.SvList = m(msg.Empty, msg.SvListResponse, function() return sv_list(vmm) end)
  t.SvStop = id_only(function(id) return lifecycle.stop(vmm, id, false) end)
  t.SvRemove = id_only(function(id)
    local vm, err, code = vmm:find(id)
    if not vm then
      return nil, err, code
    end
    if vm:running() then
      return errors.fail('EINVAL', 'id: the process of VM ' .. id .. ' still runs (SvStop first)')
    end
    return true
  end)
  return t
end

return M
