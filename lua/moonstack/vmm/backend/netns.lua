-- SPDX-License-Identifier: Apache-2.0
-- Namespaces for process-backend CVMs: the argv prefix that starts a tree in a network
-- namespace of its own (the hidden `moonstack ns-exec --net`: loopback only, up, made by
-- moonstack.netns, so nothing outside this binary is needed) and/or a PID namespace of its own
-- (`unshare --pid --fork --kill-child --mount-proc`: the tree dies with its first process and
-- sees its own /proc), and the path of
-- a started tree's network namespace (/proc/<pid>/ns/net, once it is not the VMM's own), which
-- the port mapper (moonstack.vmm.portmap) is given. This is the one place that knows how a
-- CVM's namespaces are made: a richer network (veth, routes to a KMS) plugs in here.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')
local netns = require('moonstack.netns')
local process = require('moonstack.core.process')

local M = {}

--- What this host allows: { net = bool (network namespaces), pid = bool (unshare(1) for PID
--- namespaces; the caller checks that it runs as root) }.
function M.available()
  return { net = netns.available() == true, pid = process.which('unshare') ~= nil }
end

--- The argv prefix that runs the rest of argv in new namespaces. opts = { pid = bool, net =
--- bool }. The network namespace is entered first, by the first process (ns-exec execs in
--- place), so /proc/<first pid>/ns/net is the CVM's.
function M.unshare_prefix(opts)
  local argv = {}
  if opts.net then
    local file, args = netns.command({ net = true }) -- ends with '--': the rest follows
    argv[1] = file
    for _, a in ipairs(args) do
      argv[#argv + 1] = a
    end
  end
  if opts.pid then
    -- its own /proc too: pids inside (containerd's shims, for one) must be found there
    for _, a in ipairs({ 'unshare', '--fork', '--kill-child', '--pid', '--mount-proc', '--' }) do
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
