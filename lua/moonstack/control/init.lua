-- SPDX-License-Identifier: Apache-2.0
-- `moonstack.control`: what daemons call to open their control socket (the REPL endpoint)
-- from their config. The server itself is moonstack.control.server.
local server = require('moonstack.control.server')

local M = {}

M.listen = server.listen

--- Whether the control socket of `cfg` (as for open()) can be opened: true (also when there
--- is none), or nil, msg, code (see server.check). Nothing is created.
function M.check(cfg)
  if cfg == nil or cfg == false or (type(cfg) == 'table' and cfg.enabled == false) then
    return true
  end
  local path = type(cfg) == 'table' and cfg.path or cfg
  if type(path) ~= 'string' or path == '' then
    error('control.check: cfg must be a path or a table with path', 2)
  end
  return server.check(path)
end

--- Open a daemon's control socket as its config says.
--- `cfg` is the daemon's `control` setting: a socket path, or a table
--- { path = '...', enabled = true, timeout = 30, max_line = 1048576, max_clients = 16 },
--- or nil/false (no control socket). `env` is a table of helpers the daemon offers to REPL
--- chunks as globals (say { vmm = vmm, config = cfg }).
--- Returns the server, false when disabled, or nil, message, code (see server.listen).
function M.open(cfg, env)
  if cfg == nil or cfg == false then
    return false
  end
  if type(cfg) == 'string' then
    cfg = { path = cfg }
  end
  if type(cfg) ~= 'table' then
    error('control.open: cfg must be a path, a table or nil', 2)
  end
  if cfg.enabled == false then
    return false
  end
  if type(cfg.path) ~= 'string' or cfg.path == '' then
    error('control.open: cfg.path must be a non-empty string', 2)
  end
  return server.listen(cfg.path, {
    env = env,
    timeout = cfg.timeout,
    max_line = cfg.max_line,
    max_clients = cfg.max_clients,
  })
end

return M
