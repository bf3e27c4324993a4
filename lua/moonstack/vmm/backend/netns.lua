-- SPDX-License-Identifier: Apache-2.0
-- Namespaces for process-backend CVMs: the argv prefix that starts a tree in a PID namespace
-- of its own (`unshare --pid --fork --kill-child`: the tree dies with its first process) and/or
-- a network namespace of its own (`--net`, loopback brought up before the agent starts), and
-- the path of a started tree's network namespace (/proc/<pid>/ns/net, once it is not the
-- VMM's own), which the port mapper (moonstack.vmm.portmap) is given. This is the one place
-- that knows how a CVM's network namespace is made: a richer one (veth, routes to a KMS) plugs
-- in here.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')

local M = {}

local function on_path(prog)
  for dir in (os.getenv('PATH') or '/usr/bin:/bin'):gmatch('[^:]+') do
    if uv.fs_access(dir .. '/' .. prog, 'x') then
      return true
    end
  end
  return false
end

--- Whether unshare(1) is there (the caller checks that it runs as root).
function M.available()
  return on_path('unshare')
end

--- The argv prefix that runs the rest of argv in new namespaces. opts = { pid = bool, net =
--- bool }.
function M.unshare_prefix(opts)
  local argv = { 'unshare', '--fork', '--kill-child' }
  if opts.pid then
    argv[#argv + 1] = '--pid'
  end
  if opts.net then
    argv[#argv + 1] = '--net'
  end
  argv[#argv + 1] = '--'
  if opts.net then
    for _, a in ipairs({ 'sh', '-c', 'ip link set lo up || exit 125; exec "$@"', 'cvm-net' }) do
      argv[#argv + 1] = a
    end
  end
  return argv
end

--- The network namespace path of process `pid` once it has left the VMM's own (inside a
--- task; at most timeout_ms, default 3000): '/proc/<pid>/ns/net', or nil, msg, code.
function M.wait_path(pid, timeout_ms)
  local own = uv.fs_readlink('/proc/self/ns/net')
  local path = ('/proc/%d/ns/net'):format(pid)
  local deadline = uv.now() + (timeout_ms or 3000)
  while uv.now() < deadline do
    local ns = uv.fs_readlink(path)
    if not ns then
      return errors.fail('ESRCH', ('the CVM process %d ended before its network namespace was up')
        :format(pid))
    end
    if ns ~= own then
      return path
    end
    task.sleep(10)
    uv.update_time()
  end
  return errors.fail('ETIMEDOUT', ('the CVM process %d did not enter its network namespace'):format(pid))
end

return M
