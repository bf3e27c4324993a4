-- SPDX-License-Identifier: Apache-2.0
-- The `sim-remote` TEE backend (moonstack.core.tee): a guest without TDX whose simulated TD
-- lives on the host, in the VMM's simulated quote service (moonstack.sim.service), reached
-- over the VM's channel (a local unix socket the agent relays, moonstack.channel). Quotes and
-- RTMR extensions are the host's, as on real TDX; the runtime event log stays in the guest
-- (runtime_log_dir), as a real guest keeps it. opts: socket (the relay's unix path, required),
-- runtime_log_dir (default /run/log/dstack), timeout_ms (10000).
local cjson = require('cjson.safe')
local codec = require('moonstack.core.codec')
local errors = require('moonstack.core.errors')
local eventlog = require('moonstack.tdx.eventlog')
local http = require('moonstack.http.client')

local M = {}

local Remote = {}
Remote.__index = Remote

-- Call a method of the service (inside a task): the decoded answer or nil, msg, code.
function Remote:call(method, body)
  local r, err = http.request({ unix = self.socket, path = '/tee/' .. method, method = 'POST',
    json = body or {}, timeout_ms = self.timeout_ms })
  if not r then
    return errors.fail('ETEE', ('the host\'s quote service (%s): %s'):format(self.socket, tostring(err)))
  end
  local obj = cjson.decode(r.body)
  if r.status ~= 200 or type(obj) ~= 'table' then
    return errors.fail('ETEE', ('%s: %s'):format(method, type(obj) == 'table' and tostring(obj.error)
      or r.body:sub(1, 200)))
  end
  return obj
end

--- A fresh quote over `report_data` (<= 64 bytes, zero padded), from the host.
function Remote:get_quote(report_data)
  if type(report_data) ~= 'string' or #report_data > 64 then
    return errors.fail('EINVAL', 'report_data: at most 64 bytes')
  end
  local r, err, code = self:call('GetQuote', { report_data = codec.hex(report_data) })
  if not r then
    return nil, err, code
  end
  return codec.unhex(r.quote or '')
end

--- Extend RTMR `index` (2 or 3) with a 48-byte digest, on the host.
function Remote:extend_rtmr(index, digest)
  if type(digest) ~= 'string' or #digest ~= 48 then
    return errors.fail('EINVAL', 'digest: 48 bytes')
  end
  local r, err, code = self:call('ExtendRtmr', { index = index, digest = codec.hex(digest) })
  if not r then
    return nil, err, code
  end
  return true
end

--- The TD values (raw bytes): mrtd, rtmr0..3, ...
function Remote:measurements()
  local r, err, code = self:call('Measurements', {})
  if not r then
    return nil, err, code
  end
  local td = {}
  for k, v in pairs(r) do
    td[k] = type(v) == 'string' and codec.unhex(v) or v
  end
  return td
end

--- The RTMRs: [1] = RTMR0 ... [4] = RTMR3.
function Remote:rtmrs()
  local td, err, code = self:measurements()
  if not td then
    return nil, err, code
  end
  return { td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3 }
end

--- The event log: the launch events the host holds (what a real guest reads from its CCEL),
--- then the runtime events logged by this guest.
function Remote:event_log()
  if not self.boot_events then
    local r, err, code = self:call('BootEvents', {})
    if not r then
      return nil, err, code
    end
    local events
    events, err, code = eventlog.from_json(r.event_log or '[]')
    if not events then
      return nil, err, code
    end
    self.boot_events = events
  end
  local events = {}
  for i, e in ipairs(self.boot_events) do
    events[i] = e
  end
  return eventlog.append_runtime_log(events, self.runtime_log_dir)
end

--- Extend RTMR3 with a runtime event and log it (eventlog.emit_logged).
function Remote:emit_event(name, payload, opts)
  return eventlog.emit_logged(self, self.runtime_log_dir, name, payload, opts)
end

--- What this backend is.
function Remote:info()
  return { name = 'sim-remote', simulated = true, socket = self.socket,
    runtime_log_dir = self.runtime_log_dir }
end

--- Nothing to release.
function Remote:close() -- luacheck: ignore 212/self
end

--- A backend over the quote service at opts.socket.
function M.new(opts)
  if type(opts) ~= 'table' or type(opts.socket) ~= 'string' or opts.socket == '' then
    error('sim.remote.new: opts.socket (the quote service\'s unix path) is required', 2)
  end
  return setmetatable({ name = 'sim-remote', simulated = true, socket = opts.socket,
    runtime_log_dir = opts.runtime_log_dir or '/run/log/dstack',
    timeout_ms = opts.timeout_ms or 10000 }, Remote)
end

return M
