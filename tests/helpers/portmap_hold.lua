-- SPDX-License-Identifier: Apache-2.0
-- Test helper: hold a port mapping into a CVM's network namespace until killed, for shell tests.
--   moonstack run tests/helpers/portmap_hold.lua PID VM_PORT PORT_FILE
-- maps a free port on 127.0.0.1 to VM_PORT in the network namespace of process PID
-- (moonstack.vmm.portmap) and writes the host port to PORT_FILE (or "error: <message>").
local portmap = require('moonstack.vmm.portmap')

local pid, vm_port, port_file = tonumber(arg[1]), tonumber(arg[2]), arg[3]
assert(pid and vm_port and port_file, 'usage: portmap_hold.lua PID VM_PORT PORT_FILE')

local function write(text)
  local f = assert(io.open(port_file .. '.tmp', 'w'))
  f:write(text)
  f:close()
  assert(os.rename(port_file .. '.tmp', port_file))
end

local pm, err = portmap.new({ netns = pid, ports = { { host_port = 0, vm_port = vm_port } } })
local ok
if pm then
  ok, err = pm:start()
end
if not ok then
  write('error: ' .. tostring(err))
  return 1
end
write(tostring(pm:ports()[1].host_port))
