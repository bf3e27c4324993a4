-- SPDX-License-Identifier: Apache-2.0
-- What the VMM's control socket offers in the REPL besides the daemon's own globals (`vmm`,
-- status(), reload.config(), reload.code(), help()): the `vm` table — list(), info(id),
-- logs(id, n), qmp(id, cmd, args), guest(id, method, args), quote(id) (moonstack.vmm.inspect),
-- start(id), stop(id), remove(id) — over the same operations as the API. start/stop/remove
-- run in the background and answer at once (the log and vm.info tell how it went); qmp, guest
-- and quote wait for their answer (Ctrl-C interrupts them).
local task = require('moonstack.core.task')
local lifecycle = require('moonstack.vmm.lifecycle')
local logs = require('moonstack.vmm.logs')
local methods = require('moonstack.vmm.api.methods')
local inspect = require('moonstack.vmm.inspect')
local log = require('moonstack.core.log').new('vmm')

local M = {}

-- Run operation `name` on VM `id` in the background; the answer says it started.
local function background(vmm, name, id, fn)
  local vm, err = vmm:find(id)
  if not vm then
    return nil, err
  end
  task.spawn_named('vmm:repl-' .. name, function()
    local ok, ferr = fn(vmm, id)
    if not ok then
      log.error('REPL ' .. name .. ' failed', { id = id, error = ferr })
    else
      log.info('REPL ' .. name .. ' done', { id = id })
    end
  end)
  return ('%s %s: under way (vm.info(%q) tells how it goes)'):format(name, id, id)
end

--- The REPL globals and their help lines for a running VMM `vmm` (moonstack.vmm).
function M.env(vmm)
  local vm = {
    list = function()
      local out = {}
      for _, v in pairs(vmm.vms) do
        out[#out + 1] = v:summary()
      end
      table.sort(out, function(a, b) return a.id < b.id end)
      return out
    end,
    info = function(id)
      local v, err = vmm:find(id)
      if not v then
        return nil, err
      end
      local info = methods.vm_info(vmm, v, true)
      info.pid = v:running() and v.handle.pid or nil
      info.work_dir = v.wd.dir
      return info
    end,
    logs = function(id, n, ch)
      local v, err = vmm:find(id)
      if not v then
        return nil, err
      end
      local file = logs.CHANNELS[ch or 'serial']
      if not file then
        return nil, 'channel: serial, stdout or stderr'
      end
      return (logs.tail(v.wd:path(file), n or 20))
    end,
    qmp = function(id, cmd, args) return inspect.qmp(vmm, id, cmd, args) end,
    guest = function(id, method, args) return inspect.guest(vmm, id, method, args) end,
    quote = function(id) return inspect.quote(vmm, id) end,
    start = function(id) return background(vmm, 'start', id, lifecycle.start) end,
    stop = function(id) return background(vmm, 'stop', id, lifecycle.stop) end,
    remove = function(id) return background(vmm, 'remove', id, lifecycle.remove) end,
  }
  local doc = {
    ['vm.list'] = 'vm.list(): every VM (id, name, status, pid, boot progress, restarts)',
    ['vm.info'] = 'vm.info(id): one VM as GetInfo shows it, with its pid and work dir',
    ['vm.logs'] = "vm.logs(id, n, ch): the last n lines (20) of its serial (or 'stdout', 'stderr') log",
    ['vm.qmp'] = "vm.qmp(id, cmd, args): a QMP command of a qemu-backend VM ('query-status')",
    ['vm.guest'] = "vm.guest(id, method, args): call its guest agent's guest API (Info, SysInfo, "
      .. 'NetworkInfo, ListContainers, GetQuote {report_data = nonce hex}) over the host channel',
    ['vm.quote'] = 'vm.quote(id): a fresh quote from the guest, verified here: TCB status, mr '
      .. 'fields, report_data (bound to a nonce), event-log replay',
    ['vm.start'] = 'vm.start(id): start it (in the background)',
    ['vm.stop'] = 'vm.stop(id): stop it hard (in the background)',
    ['vm.remove'] = 'vm.remove(id): remove it and its work dir (in the background)',
  }
  return { vm = vm, backend = function() return vmm.backend:status() end }, doc
end

return M
