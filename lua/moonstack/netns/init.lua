-- SPDX-License-Identifier: Apache-2.0
-- Linux network and mount namespaces for a CVM run as a process tree (the VMM's process
-- backend) and for its private Docker engine, over moonstack.native.netns:
--
--   netns.available()            true, or nil, 'EPERM: ...' where namespaces cannot be made
--   netns.open(pid | path | ns)  an existing network namespace (held open until ns:close())
--   netns.create()               a new one with its loopback up; the caller is not moved
--   netns.is_host(ns)            whether ns is the caller's own namespace
--   netns.tcp(ns, address)       a luv TCP handle whose socket lives in ns (nil ns: here),
--   netns.udp(ns, address)         family from the address (IPv6 when it has a ':')
--   netns.command(opts, file, args)  -> file', args': run `file args` through the hidden
--                                `moonstack ns-exec` (opts.net = true: a new netns, loopback
--                                up; opts.join = pid/path; opts.mount = true: private mounts)
-- A socket made by tcp()/udp() keeps its namespace for life: bind/listen/connect act there, so
-- the VMM reaches a CVM's 127.0.0.1 without any process of its own inside the CVM.
local uv = require('luv')
local native = require('moonstack.native.netns')
local errors = require('moonstack.core.errors')

local M = {}

local probed -- cached result of available()

--- Whether this process may create network namespaces: true or nil, 'EPERM: ...', code.
function M.available()
  if probed == nil then
    local ns, err, code = native.create()
    if ns then
      ns:close()
      probed = { true }
    else
      probed = { nil, err, code }
    end
  end
  return unpack(probed, 1, 3)
end

--- Open a network namespace: a pid (its process's namespace), a path (/proc/PID/ns/net,
--- /run/netns/NAME) or an already open namespace (returned as is). nil, msg, code on failure.
function M.open(spec)
  if type(spec) == 'userdata' then
    return spec
  end
  if type(spec) ~= 'number' and type(spec) ~= 'string' then
    error('netns.open: expected a pid, a path or a namespace', 2)
  end
  return native.open(spec)
end

--- A new network namespace with its loopback up (nil, msg, code: EPERM when not permitted).
function M.create()
  return native.create()
end

--- Whether `ns` is the caller's own network namespace.
function M.is_host(ns)
  return ns:inode() == native.self_inode()
end

local function family(address)
  return (address and address:find(':', 1, true)) and 'inet6' or 'inet'
end

local function handle(kind, ns, address)
  local h = kind == 'tcp' and uv.new_tcp() or uv.new_udp()
  if not ns then
    return h
  end
  local fd, err, code = ns:socket(kind, family(address))
  if not fd then
    h:close()
    return nil, err, code
  end
  local ok, oerr, oname = h:open(fd)
  if not ok then
    h:close()
    uv.fs_close(fd)
    return errors.fail(oname or 'EIO', ('cannot adopt a socket: %s'):format(tostring(oerr)))
  end
  return h
end

--- A luv TCP handle whose socket lives in `ns` (a plain handle when ns is nil).
function M.tcp(ns, address)
  return handle('tcp', ns, address)
end

--- A luv UDP handle whose socket lives in `ns` (a plain handle when ns is nil).
function M.udp(ns, address)
  return handle('udp', ns, address)
end

--- The program and arguments that run `file args` in new namespaces through the hidden
--- `moonstack ns-exec` (this binary): opts = { net = true (new netns, lo up) | join = pid or
--- path, mount = true (private mount namespace) }.
function M.command(opts, file, args)
  local out = { 'ns-exec' }
  if opts.net then
    out[#out + 1] = '--net'
  elseif type(opts.join) == 'number' then
    out[#out + 1] = '--net-pid'
    out[#out + 1] = tostring(opts.join)
  elseif opts.join then
    out[#out + 1] = '--net-join'
    out[#out + 1] = opts.join
  end
  if opts.mount then
    out[#out + 1] = '--mount'
  end
  out[#out + 1] = '--'
  out[#out + 1] = file
  for _, a in ipairs(args or {}) do
    out[#out + 1] = a
  end
  return uv.exepath(), out
end

return M
