-- SPDX-License-Identifier: Apache-2.0
-- What the agent's control socket offers in the REPL besides the daemon's own globals
-- (`agent`, status(), reload.config(), reload.code(), help()): the app's context, its event
-- log and its logs. Nothing here returns a key.
local codec = require('moonstack.core.codec')

local M = {}

--- The REPL globals and their help lines for a running agent (moonstack.agent).
function M.env(agent)
  local env = {
    app = function() return agent.ctx:status() end,
    events = function()
      local events, err = agent.ctx.tee:event_log()
      if not events then
        return nil, err
      end
      local out = {}
      for _, e in ipairs(events) do
        if e.imr == 3 then
          out[#out + 1] = { event = e.event, payload = codec.hex(e.event_payload or '') }
        end
      end
      return out
    end,
    listeners = function() return agent.api:addresses() end,
  }
  local doc = {
    app = "app(): the app's state, ids and boot progress",
    events = 'events(): the RTMR3 runtime events (name and payload)',
    listeners = "listeners(): the guest API's addresses",
  }
  return env, doc
end

return M
