-- SPDX-License-Identifier: Apache-2.0
-- The VMM's backends (how a CVM runs) and their registry, like the TEE backends
-- (moonstack.core.tee): selected by the config's `backend` name only, no fallback from one to
-- another. `process` (moonstack.vmm.backend.process) runs a CVM as a supervised local process
-- tree; `qemu` (moonstack.vmm.backend.qemu) as a QEMU guest. A backend is created with
-- new({ cfg (the VMM config), log }) and offers:
--
--   b.name
--   b:check_ports(vm) -> true | nil, msg, code      can this VM's port mappings be carried out
--                                                    here? (refused clearly, never shared)
--   b:launch(vm, on_exit) -> handle | nil, msg, code start the CVM (its work dir ready: shared/
--                                                    with .sys-config.json, logs begun); handle =
--                                                    { pid, start_time, boot_id, started_at,
--                                                    exited?, record = what process.json keeps }
--   b:adopt(vm, record, on_exit) -> handle | nil     a CVM a previous VMM started, identified by
--                                                    pid + start time + boot id (never pid alone)
--   b:alive(handle) -> bool                          polled for adopted CVMs (not our children)
--   b:stop(handle)                                   hard stop of the whole tree (in a task);
--                                                    on_exit is called once it is gone
--   b:release(handle)                                the VMM stops: the CVM keeps running
--   b:cleanup(vm)                                    RemoveVm: what the backend keeps for the VM
--   b:transports(vm) -> { host_api = { unix = path }, guest_api = { unix = path } }
--                                                    where the host API (guest → VMM) listens and
--                                                    where the guest API (VMM → guest) answers
--   b:status() -> table                              what it can do here (namespaces, cgroups)
--   b:powerdown(handle) -> true | nil, msg           optional: ask the guest to power off (a
--                                                    VM's power button); ShutdownVm uses it
--                                                    instead of the guest API's Shutdown
--   b:guest_urls(urls) -> urls                       optional: the sys-config's kms_urls and
--                                                    gateway_urls as the CVM reaches them (the
--                                                    qemu backend with host_access: the host's
--                                                    loopback as 10.0.2.2)
-- on_exit(handle, { exit_code, signal }) is called once per handle when the CVM ends.
local errors = require('moonstack.core.errors')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

local registry = {} -- name -> module name or factory

--- Register a backend: `factory` is a function(opts) -> backend, or a module name whose module
--- has new(opts).
function M.register(name, factory)
  assert(type(name) == 'string' and (type(factory) == 'function' or type(factory) == 'string'),
    'backend.register: a name and a factory or module name')
  registry[name] = factory
end

--- The registered names, sorted.
function M.names()
  return sorted_keys(registry)
end

--- Create backend `name` with `opts`. Returns it or nil, msg, code (EINVAL: unknown name;
--- ENOTSUP: not in this build).
function M.create(name, opts)
  local f = registry[name]
  if not f then
    return errors.fail('EINVAL', ("unknown VMM backend '%s' (available: %s)"):format(tostring(name),
      table.concat(M.names(), ', ')))
  end
  if type(f) == 'string' then
    local ok, mod = pcall(require, f)
    if not ok or type(mod) ~= 'table' or type(mod.new) ~= 'function' then
      return errors.fail('ENOTSUP', ("the %s backend is not in this build%s"):format(name,
        ok and '' or (': ' .. tostring(mod):match('^[^\n]*'))))
    end
    f = mod.new
  end
  return f(opts or {})
end

--- Whether the CVM of backend handle `h` still runs: not seen exiting, and its process (our
--- child, or one adopted by pid + start time + boot id) alive.
function M.alive(h)
  if h.exited then
    return false
  end
  if h.proc then
    return not h.proc.exited
  end
  return require('moonstack.core.procfs').alive(h)
end

--- Remove the simulated TD of VM `id` from the simulator directory `sim_dir` (its state, its
--- runtime log): what RemoveVm frees for a CVM that attested on the simulator.
function M.remove_sim_cvm(sim_dir, id)
  local fs = require('moonstack.core.fs')
  local base = sim_dir .. '/cvms/' .. id
  for _, p in ipairs({ base, base .. '.state', base .. '.runtime' }) do
    fs.remove_tree(p)
  end
end

M.register('process', 'moonstack.vmm.backend.process')
M.register('qemu', 'moonstack.vmm.backend.qemu')

return M
