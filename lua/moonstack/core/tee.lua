-- SPDX-License-Identifier: Apache-2.0
-- The TEE backend interface and its registry: one interface to obtain quotes and extend RTMRs,
-- whatever produces them, selected by name only (never silently, no default). The platform
-- registers its backends into it: `tdx` (real hardware, moonstack.tdx.tee) and `sim` (the
-- software TDX, moonstack.sim); a module name may be registered to load on first use.
--
-- A backend is a table with
--   name, simulated                          'tdx' | 'sim', boolean
--   :get_quote(report_data) -> quote         report_data <= 64 bytes, zero-padded
--   :extend_rtmr(index, digest) -> true      digest = 48 bytes
--   :event_log() -> events                   boot + runtime TdxEvents (moonstack.tdx.eventlog)
--   :emit_event(name, payload) -> digest     extend RTMR3 and log (eventlog.emit)
--   :info() -> table                         what it uses (method, paths)
-- and every failure returns nil, 'CODE: message', CODE. Called inside a task, the slow calls
-- run on the thread pool and only suspend the task; outside a task they block.
local errors = require('moonstack.core.errors')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

local registry = {} -- name -> { factory = fn | module = 'name', summary = '...' }

--- Register a backend: `factory(opts)` returns a backend (or nil, msg, code); or give a module
--- name whose module returns such a factory, or a table with `new`. Re-registering a name
--- replaces it.
---@param name string
---@param factory function|string
---@param summary string|nil
function M.register(name, factory, summary)
  if type(name) ~= 'string' or not name:match('^[a-z][a-z0-9_-]*$') then
    error('tee.register: name must be a lowercase identifier', 2)
  end
  if type(factory) ~= 'function' and type(factory) ~= 'string' then
    error('tee.register: factory must be a function or a module name', 2)
  end
  registry[name] = { factory = type(factory) == 'function' and factory or nil,
    module = type(factory) == 'string' and factory or nil, summary = summary }
end

--- The registered backend names, sorted.
function M.names()
  return sorted_keys(registry)
end

--- Create the backend called `name` with `opts`. There is no default and no fallback from
--- one backend to another. Returns the backend or nil, msg, code (EINVAL for an unknown name,
--- ENOTSUP when its module is missing).
---@param name string
---@param opts table|nil
function M.create(name, opts)
  if type(name) ~= 'string' then
    error('tee.create: a backend name is required (' .. table.concat(M.names(), ', ')
      .. '); there is no default', 2)
  end
  local entry = registry[name]
  if not entry then
    return errors.fail('EINVAL', ("unknown TEE backend '%s' (available: %s)"):format(name,
      table.concat(M.names(), ', ')))
  end
  local factory = entry.factory
  if not factory then
    local ok, mod = pcall(require, entry.module)
    if not ok then
      return errors.fail('ENOTSUP', ("TEE backend '%s' is not available: %s"):format(name,
        tostring(mod):match('^[^\n]*')))
    end
    factory = type(mod) == 'table' and mod.new or mod
    if type(factory) ~= 'function' then
      return errors.fail('ENOTSUP', ("module %s is not a backend factory"):format(entry.module))
    end
  end
  return factory(opts or {})
end

return M
