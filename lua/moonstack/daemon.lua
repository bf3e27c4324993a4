-- SPDX-License-Identifier: Apache-2.0
-- The life of a long-running daemon: start its services in a task, open its control socket
-- (REPL), stop gracefully on SIGTERM/SIGINT (bounded), reload on SIGHUP, and report status.
-- Every daemon command (kms, vmm, gateway, agent...) runs through daemon.run.
local uv = require('luv')
local control = require('moonstack.control')
local runtime = require('moonstack.native.runtime')
local task = require('moonstack.core.task')

local M = {}

local Daemon = {}
Daemon.__index = Daemon

--- Start a daemon. spec:
---   name     string, used in logs
---   control  control socket path or table (see moonstack.control.open), or nil
---   env      table of helpers visible as globals in REPL chunks (the daemon is `daemon`)
---   start    function(d) run in a task; raise or return nil, msg to fail startup (exit 1)
---   stop     function(d) run in a task on shutdown (bounded by stop_timeout_ms)
---   reload   function(d) run in a task on SIGHUP (or d:reload()); failures are logged
---   stop_timeout_ms  default 10000
--- Returns the daemon object; the runtime's loop keeps it running until stopped.
function M.run(spec)
  assert(type(spec) == 'table' and type(spec.name) == 'string', 'daemon.run: spec.name required')
  local log = require('moonstack.core.log').new(spec.name)
  local d = setmetatable({ spec = spec, name = spec.name, log = log, state = 'starting',
    signals = {}, started_at = os.time() }, Daemon)

  for _, sig in ipairs({ 'sigterm', 'sigint', 'sighup' }) do
    local h = uv.new_signal()
    h:start(sig, function()
      if sig == 'sighup' then
        d:reload()
      else
        log.info('signal received, stopping', { signal = sig })
        d:stop(0)
      end
    end)
    d.signals[#d.signals + 1] = h
  end

  task.spawn_named(spec.name .. ':start', function()
    local ok, res, err = pcall(spec.start or function() return true end, d)
    if not ok or res == nil and err ~= nil then
      log.error('startup failed', { error = tostring(ok and err or res) })
      d:stop(1)
      return
    end
    if d.state ~= 'starting' then
      return -- stopped while starting
    end
    if spec.control then
      local env = { daemon = d }
      for k, v in pairs(spec.env or {}) do
        env[k] = v
      end
      local srv, cerr = control.open(spec.control, env)
      if srv == nil then
        log.error('cannot open the control socket', { error = cerr })
        d:stop(1)
        return
      end
      d.control = srv or nil
    end
    d.state = 'running'
    log.info('running', { pid = uv.os_getpid(), control = d.control and d.control.path or nil })
  end)
  return d
end

--- Run the spec's reload function (SIGHUP does this). Returns true or nil, msg.
function Daemon:reload()
  if not self.spec.reload then
    self.log.info('reload requested: nothing to reload')
    return true
  end
  local ok, err = pcall(self.spec.reload, self)
  if not ok then
    self.log.error('reload failed; the previous version stays', { error = tostring(err) })
    return nil, tostring(err)
  end
  self.log.info('reloaded')
  return true
end

--- Stop the daemon: the spec's stop function (bounded), then the control socket and signal
--- handlers; the process exits with `code` once the loop is idle.
function Daemon:stop(code)
  if self.state == 'stopping' or self.state == 'stopped' then
    return
  end
  self.state = 'stopping'
  runtime.set_exit_code(code or 0)
  task.spawn_named(self.name .. ':stop', function()
    if self.spec.stop then
      local ok, err, ecode = task.timeout(self.spec.stop_timeout_ms or 10000, self.spec.stop, self)
      if not ok and ecode then
        self.log.error('stop did not finish cleanly', { error = err })
      end
    end
    if self.control then
      self.control:close()
      self.control = nil
    end
    for _, h in ipairs(self.signals) do
      if not h:is_closing() then
        h:close()
      end
    end
    self.signals = {}
    self.state = 'stopped'
    self.log.info('stopped', { exit_code = code or 0 })
    -- Whatever is still open now is a leak; do not let it keep the process alive.
    local grace = uv.new_timer()
    grace:start(2000, 0, function()
      grace:close()
      self.log.warn('handles still open after stop; exiting anyway')
      runtime.exit(code or 0)
    end)
    grace:unref()
  end)
end

--- A snapshot for REPL users and dashboards.
function Daemon:status()
  return { name = self.name, state = self.state, pid = uv.os_getpid(),
    uptime_s = os.time() - self.started_at, control = self.control and self.control.path or nil }
end

return M
