-- SPDX-License-Identifier: Apache-2.0
-- Service lifecycle and config reload, after Snabb's compute_config_actions: the desired state
-- is a plain table { name = { class = C, args = {...}, order = n? } }; diff() computes the
-- actions that turn the running state into it, and a supervisor applies them.
--
-- A service class is a table with
--   C.new(args) -> instance       (or nil, msg[, code], or raise)
--   instance:start()              start serving; owns its luv handles and tasks
--   instance:stop()               free everything start() made; also called after a failed
--                                 start, so it must cope with a half-started instance
--   instance:reconfig(args)       optional (looked up as C.reconfig): apply new args in place
-- start/stop/reconfig report failure by raising or by returning nil, msg[, code].
--
-- Error policy (Knot's): the caller decides whether a failure at startup is fatal; on a
-- reload, a service that fails to reconfigure or restart keeps its previous version running
-- (restarted from its old args if needed), and the other services are unaffected.
local errors = require('moonstack.core.errors')
local log = require('moonstack.core.log').new('service')

local tables = require('moonstack.core.tables')

local M = {}

local pack, copy, equal = tables.pack, tables.copy, tables.equal

--- Deep equality of plain data (tables by content, other values by ==).
M.equal = equal

local function check_desired(desired, fname)
  if type(desired) ~= 'table' then
    error(('%s: desired state must be a table'):format(fname), 3)
  end
  for name, spec in pairs(desired) do
    local where = ('%s: service %s'):format(fname, tostring(name))
    if type(name) ~= 'string' then
      error(where .. ': name must be a string', 3)
    elseif type(spec) ~= 'table' then
      error(where .. ': spec must be a table', 3)
    elseif type(spec.class) ~= 'table' or type(spec.class.new) ~= 'function' then
      error(where .. ': class must be a table with a new() function', 3)
    elseif spec.args ~= nil and type(spec.args) ~= 'table' then
      error(where .. ': args must be a table', 3)
    elseif spec.order ~= nil and type(spec.order) ~= 'number' then
      error(where .. ': order must be a number', 3)
    end
  end
end

local function before(a, b)
  if a.order ~= b.order then
    return a.order < b.order
  end
  return a.name < b.name
end

--- The actions that turn `current` into `desired` (both { name = {class, args, order?} }).
--- A pure function. Each action is { op, name, class, args, order, old = current spec }
--- where op is 'stop' (removed), 'start' (added), 'reconfig' (args changed and the class has
--- reconfig) or 'restart' (class changed, or args changed without reconfig). Unchanged
--- services (same class, deep-equal args) get no action. Stops come first, in reverse
--- (order, name); then the others in (order, name) order. `order` defaults to 0.
function M.diff(current, desired)
  check_desired(current, 'service.diff')
  check_desired(desired, 'service.diff')
  local stops, others = {}, {}
  for name, old in pairs(current) do
    if desired[name] == nil then
      stops[#stops + 1] = { op = 'stop', name = name, class = old.class, args = old.args or {},
        order = old.order or 0, old = old }
    end
  end
  for name, new in pairs(desired) do
    local old = current[name]
    local action = { name = name, class = new.class, args = new.args or {}, order = new.order or 0,
      old = old }
    if old == nil then
      action.op = 'start'
    elseif old.class ~= new.class then
      action.op = 'restart'
    elseif not equal(old.args or {}, new.args or {}) then
      action.op = type(new.class.reconfig) == 'function' and 'reconfig' or 'restart'
    end
    if action.op then
      others[#others + 1] = action
    end
  end
  table.sort(stops, function(a, b) return before(b, a) end)
  table.sort(others, before)
  for _, a in ipairs(others) do
    stops[#stops + 1] = a
  end
  return stops
end

-- Call fn(...) and normalize failure: true, ...results or nil, 'CODE: msg', CODE, traceback.
local function call(fn, ...)
  local r = pack(xpcall(fn, function(e)
    return { err = e, tb = debug.traceback(tostring(e), 2) }
  end, ...))
  if not r[1] then
    local e = errors.wrap(r[2].err, 'EINTERNAL')
    return nil, ('%s: %s'):format(e.code, e.msg), e.code, r[2].tb
  end
  if not r[2] and r[3] ~= nil then
    local msg = tostring(r[3])
    local code = r[4] or msg:match('^(E[A-Z0-9_]+): ') or 'EINTERNAL'
    if msg:sub(1, #code + 2) ~= code .. ': ' then
      msg = code .. ': ' .. msg
    end
    return nil, msg, code
  end
  return true, unpack(r, 2, r.n)
end

local Supervisor = {}
Supervisor.__index = Supervisor

--- A supervisor: it owns the running services and applies desired states to them.
function M.supervisor()
  return setmetatable({ entries = {}, seq = 0, busy = false }, Supervisor)
end

-- Create and start an instance. Returns the instance or nil, msg, code, traceback.
local function launch(name, class, args)
  local ok, inst, code, tb = call(class.new, copy(args))
  if ok and (type(inst) ~= 'table' or type(inst.start) ~= 'function'
      or type(inst.stop) ~= 'function') then
    return nil, ('EINTERNAL: %s: new() must return an object with start() and stop()'):format(name),
      'EINTERNAL'
  end
  if not ok then
    return nil, inst, code, tb
  end
  local sok, msg, scode, stb = call(inst.start, inst)
  if not sok then
    -- free whatever the half-started instance holds
    local cok, cmsg = call(inst.stop, inst)
    if not cok then
      log.warn(('%s: stop after a failed start failed: %s'):format(name, cmsg))
    end
    return nil, msg, scode, stb
  end
  return inst
end

function Supervisor:_record_start(name, class, args, order, inst)
  self.seq = self.seq + 1
  self.entries[name] = { name = name, class = class, args = copy(args), order = order,
    instance = inst, seq = self.seq }
end

function Supervisor:_stop(entry)
  self.entries[entry.name] = nil
  local ok, msg, code, tb = call(entry.instance.stop, entry.instance)
  if ok then
    log.info('stopped', { service = entry.name })
    return true
  end
  log.error(('%s: stop failed: %s'):format(entry.name, tb or msg), { service = entry.name })
  return nil, msg, code
end

--- The running state, in the shape diff() takes: { name = {class, args, order} } (copies).
function Supervisor:state()
  local out = {}
  for name, e in pairs(self.entries) do
    out[name] = { class = e.class, args = copy(e.args), order = e.order }
  end
  return out
end

--- The running instance of service `name`, or nil.
function Supervisor:get(name)
  local e = self.entries[name]
  return e and e.instance
end

--- Running services in start order: { {name, class, args, order, instance}, ... }.
function Supervisor:list()
  local list = {}
  for _, e in pairs(self.entries) do
    list[#list + 1] = e
  end
  table.sort(list, function(a, b) return a.seq < b.seq end)
  local out = {}
  for i, e in ipairs(list) do
    out[i] = { name = e.name, class = e.class, args = copy(e.args), order = e.order,
      instance = e.instance }
  end
  return out
end

-- Execute one action; returns nil on success or a failure record.
function Supervisor:_run(a)
  local entry = self.entries[a.name]
  if a.op == 'stop' then
    local ok, msg, code = self:_stop(entry)
    return not ok and { name = a.name, op = a.op, message = msg, code = code } or nil
  elseif a.op == 'reconfig' then
    local ok, msg, code, tb = call(entry.instance.reconfig, entry.instance, copy(a.args))
    if ok then
      entry.args = copy(a.args)
      entry.order = a.order
      log.info('reconfigured', { service = a.name })
      return nil
    end
    log.error(('%s: reconfig failed, keeping the previous config: %s'):format(a.name, tb or msg),
      { service = a.name })
    return { name = a.name, op = a.op, message = msg, code = code, kept = true }
  end
  if a.op == 'restart' then
    self:_stop(entry)
  end
  local inst, msg, code, tb = launch(a.name, a.class, a.args)
  if inst then
    self:_record_start(a.name, a.class, a.args, a.order, inst)
    log.info(a.op == 'start' and 'started' or 'restarted', { service = a.name })
    return nil
  end
  log.error(('%s: %s failed: %s'):format(a.name, a.op, tb or msg), { service = a.name })
  local failure = { name = a.name, op = a.op, message = msg, code = code }
  if a.op == 'restart' then
    -- keep the previous version: start it again from its old class and args
    local old = launch(a.name, entry.class, entry.args)
    if old then
      self:_record_start(a.name, entry.class, entry.args, entry.order, old)
      log.warn(('%s: restarted the previous version'):format(a.name), { service = a.name })
      failure.kept = true
    else
      log.error(('%s: the previous version failed to start too; service is down'):format(a.name),
        { service = a.name })
      failure.kept = false
    end
  end
  return failure
end

--- Bring the running services to `desired` ({ name = {class, args, order?} }): stop the
--- removed, start the added, reconfig or restart the changed, keep the unchanged. A failing
--- service does not stop the others. Returns true, report; or nil, 'ESERVICE: ...',
--- 'ESERVICE', report when some action failed. report = { actions = diff(), failed =
--- { {name, op, message, code, kept?} } } where kept tells whether the previous version of a
--- reconfigured/restarted service is still running. Services that failed to start are not
--- running, so the next apply tries them again. Calls run in the caller's context: inside a
--- task, start/stop/reconfig may wait. Returns nil, 'EBUSY: ...', 'EBUSY' during another apply.
function Supervisor:apply(desired)
  check_desired(desired, 'supervisor:apply')
  if self.busy then
    return errors.fail('EBUSY', 'another apply or stop_all is in progress')
  end
  self.busy = true
  local actions = M.diff(self:state(), desired)
  local failed = {}
  for _, a in ipairs(actions) do
    local ok, failure = pcall(self._run, self, a)
    if not ok then
      failure = { name = a.name, op = a.op, message = 'EINTERNAL: ' .. tostring(failure),
        code = 'EINTERNAL' }
    end
    failed[#failed + 1] = failure
  end
  for name, spec in pairs(desired) do
    if self.entries[name] and self.entries[name].class == spec.class then
      self.entries[name].order = spec.order or 0
    end
  end
  self.busy = false
  local report = { actions = actions, failed = failed }
  if #failed == 0 then
    return true, report
  end
  local parts = {}
  for i, f in ipairs(failed) do
    parts[i] = ('%s (%s): %s'):format(f.name, f.op, f.message)
  end
  return nil, ('ESERVICE: %d service action(s) failed: %s'):format(#failed,
    table.concat(parts, '; ')), 'ESERVICE', report
end

--- Stop every running service, in reverse start order. A failing stop is logged and the
--- others still stop. Returns true, or nil, 'ESERVICE: ...', 'ESERVICE'.
function Supervisor:stop_all()
  if self.busy then
    return errors.fail('EBUSY', 'another apply or stop_all is in progress')
  end
  self.busy = true
  local list = {}
  for _, e in pairs(self.entries) do
    list[#list + 1] = e
  end
  table.sort(list, function(a, b) return a.seq > b.seq end)
  local failed = {}
  for _, e in ipairs(list) do
    local ok, msg = self:_stop(e)
    if not ok then
      failed[#failed + 1] = ('%s: %s'):format(e.name, msg)
    end
  end
  self.busy = false
  if #failed > 0 then
    return errors.fail('ESERVICE', 'stop failed: ' .. table.concat(failed, '; '))
  end
  return true
end

return M
