-- SPDX-License-Identifier: Apache-2.0
-- Simulator mode for app developers without TDX (`moonstack agent --simulator ...`): like
-- upstream's dstack-simulator (same sockets, same API), but every quote is fresh and signed by
-- the software TDX of moonstack.sim, so report_data, RTMR3 and the event log are real and
-- consistent: replaying GetQuote's log gives the quote's RTMRs, EmitEvent extends RTMR3.
-- The context is moonstack.agent.simulator.context's simulate() (the boot events measured into a sim CVM
-- reset at every start); this module serves the guest API over it.
--
--   local s = assert(simulator.start({ keys_file = 'appkeys.json', compose_file =
--     'app-compose.json', socket_dir = '/tmp/dstack' }))   -- dstack.sock, tappd.sock
--   ...
--   s:stop()
local fs = require('moonstack.core.fs')
local api = require('moonstack.agent.api')

local M = {}

--- The `Server:` header of the simulator's listeners.
M.IDENT = 'moonstack guest agent (simulator)'

--- The app id the upstream simulator's appkeys.json was issued to.
M.UPSTREAM_APP_ID = '5bb4ff9a3837357f19dc176407a5709c62eb6c56'

local Simulator = {}
Simulator.__index = Simulator

--- Start simulator mode. opts:
---   keys_file, compose_file   upstream appkeys.json and app-compose.json (required)
---   socket_dir                where dstack.sock and tappd.sock are created (required)
---   state_dir                 the simulated platform and runtime log (default
---                             <socket_dir>/.moonstack-agent)
---   listen = { host, port }   also serve the public listener (default: none)
---   sys_config_file, app_id (20 bytes), ccel_file   passed to context.simulate
---   socket_mode, ident, emit_event   passed to moonstack.agent.api
--- Returns the simulator { ctx, api, stop() } or nil, err, code (nothing left running).
function M.start(opts)
  assert(type(opts) == 'table' and opts.keys_file and opts.compose_file and opts.socket_dir,
    'simulator.start: keys_file, compose_file and socket_dir are required')
  local dir = opts.socket_dir:gsub('(.)/+$', '%1')
  local ok, err, code = fs.mkdir_p(dir, 493)
  if not ok then
    return nil, err, code
  end
  local ctx
  ctx, err, code = require('moonstack.agent.simulator.context').simulate({
    keys_file = opts.keys_file, compose_file = opts.compose_file,
    state_dir = opts.state_dir or (dir .. '/.moonstack-agent'), sys_config_file = opts.sys_config_file,
    app_id = opts.app_id, ccel_file = opts.ccel_file,
  })
  if not ctx then
    return nil, err, code
  end
  if not opts.app_id then
    -- the keys' k256_signature was made by a KMS for the app it issued them to: reporting
    -- another app id gives signature chains that verify against nothing
    local app_id = require('moonstack.crypto').hex(ctx.instance_info.app_id)
    require('moonstack.core.log').new('agent').warn(('no --app-id: reporting app id %s '
      .. '(compose_hash[:20]); the k256_signature in %s verifies only for the app id the keys '
      .. 'were issued to, so GetKey signature chains will not verify unless it is this one: '
      .. "pass --app-id (the upstream simulator's appkeys.json: %s)"):format(app_id,
      opts.keys_file, M.UPSTREAM_APP_ID), { app_id = app_id, keys = opts.keys_file })
  end
  local a
  a, err, code = api.start(ctx, { dstack = { unix = dir .. '/dstack.sock' },
    tappd = { unix = dir .. '/tappd.sock' }, external = opts.listen or false,
    socket_mode = opts.socket_mode, ident = opts.ident or M.IDENT, emit_event = opts.emit_event })
  if not a then
    ctx:close()
    return nil, err, code
  end
  return setmetatable({ ctx = ctx, api = a, dir = dir }, Simulator)
end

--- Close the listeners and the simulated CVM (idempotent): the agent service's stop.
function Simulator:stop()
  return require('moonstack.agent').Agent.stop(self)
end

return M
