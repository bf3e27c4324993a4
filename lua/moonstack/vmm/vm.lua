-- SPDX-License-Identifier: Apache-2.0
-- One VM as the VMM keeps it in memory: its work directory (moonstack.vmm.workdir), manifest
-- and image, the process the backend runs it as, what the guest reported (boot_progress,
-- boot_error, shutdown_progress, a bounded ring of events), the auto-restart state, and its
-- status as upstream computes it (§4.1: removing, else started × running → running, exited,
-- stopping, stopped). Operations on one VM are serialised (vm:locked). info() is the VmInfo
-- message of Status and GetInfo.
local uv = require('luv')
local events = require('moonstack.core.events')
local task = require('moonstack.core.task')

local M = {}

local Vm = {}
Vm.__index = Vm

function Vm:__tostring()
  return ('vm<%s %s, %s>'):format(self.id, self.manifest and self.manifest.name or '?', self:status())
end

--- A VM over work directory `wd` with manifest `manifest` (and what its guest last reported,
--- kept in the work directory). opts = { image, event_buffer_size }.
function M.new(wd, manifest, opts)
  opts = opts or {}
  local rt = wd:runtime() or {}
  local function str(v)
    return type(v) == 'string' and v or ''
  end
  local evs = {}
  for _, e in ipairs(type(rt.events) == 'table' and rt.events or {}) do
    if type(e) == 'table' and type(e.event) == 'string' then
      evs[#evs + 1] = { event = e.event, body = str(e.body), timestamp = tonumber(e.timestamp) or 0 }
    end
  end
  return setmetatable({ id = wd.id, wd = wd, manifest = manifest, image = opts.image,
    started = wd:started(), boot_progress = str(rt.boot_progress), boot_error = str(rt.boot_error),
    shutdown_progress = str(rt.shutdown_progress), events = evs,
    event_max = opts.event_buffer_size or 20, restart = { retries = 0 }, lock_queue = {} }, Vm)
end

--- Keep what the guest reported in the work directory (a restarted VMM shows it again).
function Vm:save_runtime()
  return self.wd:set_runtime({ boot_progress = self.boot_progress, boot_error = self.boot_error,
    shutdown_progress = self.shutdown_progress, events = self.events })
end

local function now_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + math.floor(usec / 1000)
end
M.now_ms = now_ms

--- Record an event (kept in a ring of event_buffer_size) and publish it on the event bus as
--- `vmm.<event>` { id, name, body }.
function Vm:event(name, body)
  body = tostring(body or '')
  local list = self.events
  list[#list + 1] = { event = name, body = body, timestamp = now_ms() }
  while #list > self.event_max do
    table.remove(list, 1)
  end
  local topic = name:sub(1, 4) == 'vmm.' and name or ('vmm.' .. name)
  events.publish(topic, { id = self.id, name = self.manifest.name, body = body })
end

--- Whether the VM's process runs.
function Vm:running()
  return self.handle ~= nil and not self.handle.exited
end

--- The status: removing | running | exited | stopping | stopped.
function Vm:status()
  if self.removing then
    return 'removing'
  end
  local running = self:running()
  if self.started then
    return running and 'running' or 'exited'
  end
  return running and 'stopping' or 'stopped'
end

--- Run fn(...) with this VM locked (inside a task): operations on one VM never overlap.
function Vm:locked(fn, ...)
  if self.lock_owner then
    task.await(function(resume)
      self.lock_queue[#self.lock_queue + 1] = resume
    end)
  end
  self.lock_owner = true
  local res = { pcall(fn, ...) }
  local nxt = table.remove(self.lock_queue, 1)
  if nxt then
    nxt() -- the lock passes straight on (lock_owner stays set)
  else
    self.lock_owner = nil
  end
  if not res[1] then
    error(res[2], 0)
  end
  return unpack(res, 2, table.maxn(res))
end

-- "1h 2m 3s" of a number of seconds (upstream prints humantime durations).
local function duration(s)
  s = math.max(0, math.floor(s))
  local d, h, m = math.floor(s / 86400), math.floor(s % 86400 / 3600), math.floor(s % 3600 / 60)
  local parts = {}
  if d > 0 then parts[#parts + 1] = d .. 'days' end
  if h > 0 then parts[#parts + 1] = h .. 'h' end
  if m > 0 then parts[#parts + 1] = m .. 'm' end
  if s % 60 > 0 or #parts == 0 then parts[#parts + 1] = (s % 60) .. 's' end
  return table.concat(parts, ' ')
end

--- The VmInfo message (Status/GetInfo). opts = { brief, gateway (config), configuration =
--- fn(vm) -> VmConfiguration message (unless brief), instance_id = hex or '' }.
function Vm:info(opts)
  local m = self.manifest
  local t = os.time()
  local running = self:running()
  local info = { id = self.id, name = m.name, status = self:status(),
    uptime = running and self.handle.started_at and duration(t - self.handle.started_at) or '',
    app_id = m.app_id, boot_progress = self.boot_progress, boot_error = self.boot_error,
    shutdown_progress = self.shutdown_progress, image_version = self.image and self.image.version or '',
    events = self.events, interfaces = { { mode = 'user', backend = 'process', mac = '' } } }
  if self.exited_at then
    info.exited_at = duration(t - self.exited_at) .. ' ago'
  end
  if opts.instance_id and opts.instance_id ~= '' then
    info.instance_id = opts.instance_id
  end
  if not opts.brief and opts.configuration then
    info.configuration = opts.configuration(self)
  end
  return info
end

--- A snapshot for the REPL (no file contents).
function Vm:summary()
  local h = self.handle
  return { id = self.id, name = self.manifest.name, status = self:status(),
    pid = h and h.pid or nil, boot_progress = self.boot_progress, boot_error = self.boot_error,
    restarts = self.restart.retries, exhausted = self.restart.exhausted or nil,
    ports = #self.manifest.port_map, image = self.manifest.image }
end

return M
