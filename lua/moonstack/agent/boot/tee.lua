-- SPDX-License-Identifier: Apache-2.0
-- The agent's TEE backend for a boot (moonstack.core.tee): `tdx` on hardware, `sim`
-- (moonstack.sim) elsewhere, chosen by name only. A boot starts RTMR3 and the runtime event
-- log afresh: on `sim` (reset = true by default) the CVM goes back to its launch values and
-- the log is truncated; on `tdx` the hardware did that at power-on, and a log that already
-- holds events means the agent restarts within one boot (see runtime_events()). The digest
-- version file (runtime_event_version) is written for eventlog.emit.
local uv = require('luv')
local backend = require('moonstack.core.tee')
require('moonstack.tdx.tee') -- registers 'tdx' and 'sim'
local fs = require('moonstack.core.fs')
local eventlog = require('moonstack.tdx.eventlog')

local M = {}

--- Create the backend from the config's `tee` table. Returns the backend or nil, msg, code.
function M.open(tcfg)
  local opts = {}
  for k, v in pairs(tcfg) do
    if k ~= 'name' then
      opts[k] = v
    end
  end
  if tcfg.name ~= 'sim' then
    return backend.create(tcfg.name, opts)
  end
  local reset = opts.reset ~= false
  opts.create, opts.reset = true, nil
  local tee, err, code = backend.create('sim', opts)
  if not tee or not reset then
    return tee, err, code
  end
  -- A reboot: RTMR3 back to zero; the launch values (MRTD, RTMR0-2, MR_CONFIG_ID ...) stay.
  local td
  td, err, code = tee:measurements()
  tee:close()
  if not td then
    return nil, err, code
  end
  td.rtmr3 = ('\0'):rep(48)
  opts.td, opts.reset, opts.ccel_file = td, true, nil
  tee, err, code = backend.create('sim', opts)
  if tee then
    tee.ccel_file = tcfg.ccel_file
  end
  return tee, err, code
end

--- The backend's runtime log directory.
function M.log_dir(tee)
  return tee.runtime_log_dir or '/run/log/dstack'
end

--- The runtime events already logged by this boot (a list of TdxEvents; {} when none).
function M.runtime_events(tee)
  local text = fs.read_file(M.log_dir(tee) .. '/runtime_events.log')
  if not text then
    return {}
  end
  return eventlog.parse_runtime_log(text)
end

--- Start a fresh runtime log: remove the old one (sim resets only) and write the digest
--- version. Returns true or nil, msg, code.
function M.prepare(tee, version, fresh)
  local dir = M.log_dir(tee)
  local ok, err, code = fs.mkdir_p(dir)
  if not ok then
    return nil, err, code
  end
  if fresh then
    local _, uerr, ucode = uv.fs_unlink(dir .. '/runtime_events.log')
    if ucode and ucode ~= 'ENOENT' then
      return nil, uerr, ucode
    end
  end
  ok, err, code = fs.write_atomic(dir .. '/runtime_event_version', tostring(version) .. '\n', 420)
  if not ok then
    return nil, err, code
  end
  return true
end

--- The payload of the first runtime event called `name` before system-ready, or nil.
function M.find(events, name)
  for _, e in ipairs(events) do
    if e.event == 'system-ready' then
      return nil
    end
    if e.event == name then
      return e.event_payload
    end
  end
  return nil
end

--- Whether the runtime events show a finished boot (a system-ready event).
function M.booted(events)
  for _, e in ipairs(events) do
    if e.event == 'system-ready' then
      return true
    end
  end
  return false
end

return M
