-- SPDX-License-Identifier: Apache-2.0
-- VMM hosts on etcd (issue M12 item 3), with `cluster = { etcd = { endpoints, prefix,
-- timeout_ms, lease_ttl }, host_id?, url? }` in vmm.lua: each VMM puts, under its lease,
--   <prefix>/vmm/hosts/<host_id>        { host_id, url (its dashboard), api, vms, running, since }
--   <prefix>/vmm/vms/<host_id>/<vm id>  { id, name, status, app_id, instance_id, host_id }
-- updated when a VM's facts change (checked every second), removed with the VM; a host that
-- dies is gone within lease_ttl. The fleet (every host's records, moonstack.etcd.watch) is
-- kept here for the dashboard: `fleet()` { hosts = {...}, vms = {...}, etcd = 'up'|'down' }.
local etcd = require('moonstack.etcd')
local registry = require('moonstack.etcd.registry')
local watch = require('moonstack.etcd.watch')
local task = require('moonstack.core.task')
local methods = require('moonstack.vmm.api.methods')
local uv = require('luv')

local M = {}

--- How often the VMs' facts are compared with what was put (ms).
M.CHECK_MS = 1000

local Cluster = {}
Cluster.__index = Cluster

--- The cluster of `vmm` (cfg.cluster set), registering in the background; or nil, msg, code
--- (the etcd TLS files).
function M.start(vmm)
  local c = vmm.cfg.cluster
  local client, err, code = etcd.from_config(c.etcd)
  if not client then
    return nil, err, code
  end
  local host = c.host_id or (vmm.cfg.node_name ~= '' and vmm.cfg.node_name) or uv.os_gethostname()
  local self = setmetatable({ vmm = vmm, client = client, host_id = host,
    base = c.etcd.prefix:gsub('/$', '') .. '/vmm/', put = {}, fleet_kvs = {}, etcd = 'unknown' },
    Cluster)
  self.reg = registry.new(client, c.etcd.lease_ttl, { name = 'vmm:etcd', log = vmm.log })
  local dash = vmm.dashboard
  self.url = c.url or (dash and ('http://' .. dash.address()) or '')
  self.watch = watch.start(client, self.base, function(events)
    for _, ev in ipairs(events) do
      self.fleet_kvs[ev.key] = ev.type == 'put' and ev.value or nil
    end
  end, { interval_ms = 500, name = 'vmm:etcd-fleet',
    on_error = function() self.etcd = 'down' end, on_ok = function() self.etcd = 'up' end })
  self.timer = uv.new_timer()
  self.timer:start(0, M.CHECK_MS, function()
    if not self.busy then
      self.busy = true
      task.spawn_named('vmm:etcd-sync', function()
        local ok, serr = pcall(self.sync, self)
        if not ok then
          vmm.log.error('etcd sync failed', { error = tostring(serr) })
        end
        self.busy = false
      end)
    end
  end)
  vmm.log.info('registering in etcd', { host_id = host, url = self.url })
  return self
end

-- The facts of `vm` as put in etcd.
local function record(self, vm)
  local info = methods.vm_info(self.vmm, vm, true)
  return { id = vm.id, name = vm.manifest.name, status = info.status, app_id = info.app_id or '',
    instance_id = info.instance_id or '', host_id = self.host_id }
end

--- Put what changed (in a task).
function Cluster:sync()
  local n, running = 0, 0
  local seen = {}
  for id, vm in pairs(self.vmm.vms) do
    n = n + 1
    running = running + (vm:running() and 1 or 0)
    seen[id] = true
    self.reg:set(self.base .. 'vms/' .. self.host_id .. '/' .. id, record(self, vm))
  end
  for id in pairs(self.put) do
    if not seen[id] then
      self.reg:set(self.base .. 'vms/' .. self.host_id .. '/' .. id, nil)
    end
  end
  self.put = seen
  self.reg:set(self.base .. 'hosts/' .. self.host_id, { host_id = self.host_id, url = self.url,
    api = self.vmm:address() or '', vms = n, running = running,
    since = self.vmm.started_at })
  if self.watch.failures == 0 and self.watch.polls > 0 then
    self.etcd = 'up'
  end
end

--- The whole fleet as last seen in etcd: { etcd, host_id (this one), hosts = { records },
--- vms = { records } } (sorted by host, then name).
function Cluster:fleet()
  local cjson = require('cjson.safe')
  local hosts, vms = {}, {}
  for key, value in pairs(self.fleet_kvs) do
    local v = cjson.decode(value)
    if type(v) == 'table' then
      if key:sub(#self.base + 1, #self.base + 6) == 'hosts/' then
        hosts[#hosts + 1] = v
      elseif key:sub(#self.base + 1, #self.base + 4) == 'vms/' then
        vms[#vms + 1] = v
      end
    end
  end
  table.sort(hosts, function(a, b) return tostring(a.host_id) < tostring(b.host_id) end)
  table.sort(vms, function(a, b)
    if a.host_id ~= b.host_id then
      return tostring(a.host_id) < tostring(b.host_id)
    end
    return tostring(a.name) < tostring(b.name)
  end)
  return { etcd = self.etcd, host_id = self.host_id, hosts = hosts, vms = vms }
end

--- Stop (the records go when the lease expires; opts.revoke: at once, in a task).
function Cluster:close(opts)
  if self.timer then
    self.timer:close()
    self.timer = nil
  end
  self.watch:stop()
  self.reg:close(opts)
end

return M
