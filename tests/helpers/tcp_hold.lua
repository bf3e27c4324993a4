-- SPDX-License-Identifier: Apache-2.0
-- Test helper: a TCP app that accepts connections and holds them, run with
--   moonstack run tests/helpers/tcp_hold.lua PORT_FILE
-- It listens on a free port of 127.0.0.1, writes the port to PORT_FILE, and holds every
-- connection open (reading and dropping what comes) until its peer closes it. Every second it
-- rewrites PORT_FILE.count with the number of connections it holds, so a test can watch a
-- gateway's backend side fill up and drain.
local uv = require('luv')

local port_file = arg[1]
assert(port_file, 'usage: tcp_hold.lua PORT_FILE')

local held = 0
local srv = uv.new_tcp()
assert(srv:bind('127.0.0.1', 0))
assert(srv:listen(4096, function(err)
  if err then
    return
  end
  local c = uv.new_tcp()
  if not srv:accept(c) then
    c:close()
    return
  end
  held = held + 1
  c:read_start(function(rerr, data)
    if rerr or not data then
      held = held - 1
      c:close()
    end
  end)
end))

-- Replace the file at `path` with `text` in one step (a rename: watchers see a whole file).
local function write(path, text)
  assert(require('moonstack.core.fs').write_atomic(path, text))
end
write(port_file, tostring(srv:getsockname().port))
local t = uv.new_timer()
t:start(0, 200, function()
  write(port_file .. '.count', tostring(held))
end)
