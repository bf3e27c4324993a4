-- SPDX-License-Identifier: Apache-2.0
-- What every runner's app object shares (the runner interface of moonstack.agent.runner.bash):
-- its log services, and the watcher told once when the app ends by itself. A runner's App
-- class inherits these with app.class().
local M = {}

local Base = {}
Base.__index = Base

--- The log services of the app (its log store's list).
function Base:services()
  return self.logs:list()
end

--- Call fn(state, info) when the app ends by itself (at once if it already has).
function Base:watch(fn)
  self.watcher = fn
  if self.ended then
    fn(self.ended.state, self.ended.info)
  end
end

--- Record that the app ended by itself (state 'exited' or 'failed') and tell the watcher.
function Base:_ended(state, info)
  self.ended = { state = state, info = info }
  if self.watcher then
    self.watcher(state, info)
  end
end

--- A new App class for a runner, inheriting services, watch and _ended.
function M.class()
  local App = setmetatable({}, { __index = Base })
  App.__index = App
  return App
end

return M
