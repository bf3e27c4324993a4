-- SPDX-License-Identifier: Apache-2.0
-- The guest agent service, in the service shape: start (boot from the shared folder with
-- moonstack.agent.boot and serve the guest API over the context it builds, or simulator mode:
-- moonstack.agent.simulator), stop, status, reload (the agent has nothing to apply in place:
-- a changed config needs a restart) and rebind (adopt a swapped copy of the agent's code:
-- moonstack.daemon.code). What survives a code swap is this object: the context (the app, its
-- keys, the TEE), the listeners and the state behind the API's methods.
local M = {}

--- The runtime event a code swap is recorded under in RTMR3 (payload: the code's SHA-256).
M.CODE_EVENT = 'moonstack-code'

local Agent = {}
Agent.__index = Agent
M.Agent = Agent

-- Boot from the config and serve the API. The boot calls serve(ctx) once the keys and the
-- boot measurements are in place and before the app starts, so the app finds its sockets;
-- else the API starts afterwards. With `host_api` in the config, the boot's progress, its
-- error and the instance info are reported to the host (moonstack.agent.host).
local function boot(cfg, log)
  local listen = cfg.listen or {}
  local api_opts = {}
  for k, v in pairs(cfg.api or {}) do
    api_opts[k] = v
  end
  api_opts.dstack, api_opts.tappd, api_opts.external = listen.dstack, listen.tappd, listen.public
  api_opts.guest = listen.guest
  local served
  local function serve(ctx)
    if served then
      return true
    end
    local a, aerr, code = require('moonstack.agent.api').start(ctx, api_opts)
    if not a then
      return nil, aerr, code
    end
    served = a
    return true
  end
  local host = require('moonstack.agent.host').new(cfg.host_api)
  for _, stage in ipairs(require('moonstack.agent.channels').boot_stages(cfg.boot_progress_file)) do
    host:send('boot.progress', stage) -- what the VM's init did before the agent ran
  end
  local ctx, err, code = require('moonstack.agent.boot').run(cfg, { serve = serve,
    on_context = function(c) host:attach(c) end })
  if not ctx then
    if served then
      served:close()
    end
    host:send('boot.error', (tostring(err):gsub('^E[A-Z0-9_]+: ', '')))
    host:flush(2000)
    return nil, err, code
  end
  ctx.host = host
  local ok
  ok, err, code = serve(ctx)
  if not ok then
    ctx:close()
    return nil, err, code
  end
  log.info('agent booted', { app = ctx.app_name, state = ctx.state })
  -- gateway registration (spec §6.6): in the background, never fatal to the app
  ctx.gateway = require('moonstack.agent.gateway').start(ctx, cfg.gateway, cfg.state_dir)
  return ctx, served
end

--- Start the agent. `cfg` is a validated agent.lua (moonstack.agent.config), or
--- { simulator = opts } for simulator mode (opts of moonstack.agent.simulator.start). Call in
--- a task. Returns the Agent { ctx, api, cfg } or nil, msg, code (nothing left running).
function M.start(cfg, log)
  log = log or require('moonstack.core.log').new('agent')
  local self = setmetatable({ cfg = cfg, log = log }, Agent)
  if cfg.simulator then
    local s, err, code = require('moonstack.agent.simulator').start(cfg.simulator)
    if not s then
      return nil, err, code
    end
    self.ctx, self.api = s.ctx, s.api
  else
    local channels = require('moonstack.agent.channels')
    local ccfg, relays, ccode = channels.open(cfg)
    if not ccfg then
      return nil, relays, ccode
    end
    self.relays = relays
    local ctx, api, code = boot(ccfg, log)
    if not ctx then
      channels.close_all(relays)
      return nil, api, code
    end
    self.ctx, self.api = ctx, api
  end
  log.info('guest API listening', self.api:addresses())
  return self
end

--- Adopt a swapped copy of the agent's code: this module's methods for `agent`, and the
--- API's method tables and handlers rebuilt from the new moonstack.agent.api.
function M.rebind(agent)
  setmetatable(agent, Agent)
  require('moonstack.agent.api').rebind(agent.api)
end

--- Record a code swap in RTMR3 before it happens (moonstack.daemon.code's before_swap):
--- the runtime event moonstack-code with the code's SHA-256, so a verifier replaying the
--- event log sees which code the agent switched to. True or nil, msg, code.
function Agent:record_code(staged)
  local digest = require('moonstack.crypto').unhex(staged.hash)
  local ok, err, code = self.ctx.tee:emit_event(M.CODE_EVENT, digest)
  if not ok then
    return nil, err, code
  end
  self.api:invalidate()
  self.log.info('code swap measured into RTMR3', { event = M.CODE_EVENT, hash = staged.hash })
  return true
end

--- Reload: nothing is applied in place (the app was booted from this config); a changed
--- config answers ERESTART and the running config stays. Returns true or nil, msg, code.
function Agent.reload(_, _, changed)
  if changed and #changed > 0 then
    return nil, ('ERESTART: %s changed: restart the agent to apply'):format(
      table.concat(changed, ', ')), 'ERESTART'
  end
  return true
end

--- A snapshot for the REPL: the context's status and the API's addresses.
function Agent:status()
  return { ctx = self.ctx and self.ctx:status(), listeners = self.api and self.api:addresses(),
    gateway = self.ctx and self.ctx.gateway and self.ctx.gateway:status() or nil }
end

--- Close the listeners and the context (the app is stopped). Idempotent. (Also the stop of
--- simulator mode's object, which has the same ctx and api.)
function Agent:stop()
  if self.api then
    self.api:close()
    self.api = nil
  end
  if self.ctx then
    if self.ctx.gateway then
      self.ctx.gateway:stop()
    end
    self.ctx:close()
    if self.ctx.host then
      self.ctx.host:flush(1000)
    end
    self.ctx = nil
  end
  if self.relays then -- after the last reports went out
    require('moonstack.agent.channels').close_all(self.relays)
    self.relays = nil
  end
end

return M
