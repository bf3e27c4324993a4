-- SPDX-License-Identifier: Apache-2.0
-- Where the dev stack keeps everything (`moonstack dev`): one state directory, default
-- ./.moonstack-dev, whose layout is an interface for scripts, `moonstack repl` and the docs:
--   dev.pid  urls.json  ports.json  admin.token  dashboard.login
--   vmm.sock vmm.ctl kms.ctl gateway.ctl      the daemons' API and control sockets (0600)
--   sim/ kms/ gateway/ vmm/ app/ logs/<daemon>.log
local uv = require('luv')

local M = {}

--- The default state directory, relative to the current directory.
M.DEFAULT_DIR = '.moonstack-dev'

--- The state directory to use: `dir` (an option), else $MOONSTACK_DEV_DIR, else the default;
--- made absolute against the current directory.
function M.dir(dir)
  dir = dir or os.getenv('MOONSTACK_DEV_DIR')
  if not dir or dir == '' then
    dir = M.DEFAULT_DIR
  end
  if dir:sub(1, 1) ~= '/' then
    dir = uv.cwd() .. '/' .. dir
  end
  return (dir:gsub('/+$', ''):gsub('/%./', '/'))
end

--- The paths of state directory `dir`: a table of absolute paths by name.
function M.paths(dir)
  local p = {
    dir = dir,
    pid = dir .. '/dev.pid',
    urls = dir .. '/urls.json',
    ports = dir .. '/ports.json',
    admin_token = dir .. '/admin.token',
    login_token = dir .. '/dashboard.login',
    vmm_sock = dir .. '/vmm.sock',
    sim = dir .. '/sim',
    kms = dir .. '/kms',
    gateway = dir .. '/gateway',
    vmm = dir .. '/vmm',
    app = dir .. '/app',
    logs = dir .. '/logs',
  }
  for _, d in ipairs({ 'vmm', 'kms', 'gateway' }) do
    p[d .. '_ctl'] = dir .. '/' .. d .. '.ctl'
    p[d .. '_log'] = p.logs .. '/' .. d .. '.log'
    p[d .. '_config'] = p[d] .. '/' .. d .. '.lua'
  end
  return p
end

--- The control socket of daemon `name` ('vmm', 'kms' or 'gateway') in state dir `dir`.
function M.control_socket(dir, name)
  return dir .. '/' .. name .. '.ctl'
end

return M
