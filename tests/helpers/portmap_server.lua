-- SPDX-License-Identifier: Apache-2.0
-- Test helper: the "app" of a CVM for the port-mapping specs, run with
--   moonstack run tests/helpers/portmap_server.lua PORT TOKEN DIR
-- inside a CVM's network namespace. It listens on 0.0.0.0:PORT (TCP and UDP), PORT+1 and
-- PORT+2 (TCP), writes DIR/ready when all are up, and serves:
--   PORT tcp    "hello TOKEN\n", then echoes every byte; on the client's EOF (half-close) it
--               writes "\nbye N\n" (N = bytes received) and closes: both directions checked
--   PORT+1 tcp  "first TOKEN\n", then shuts its own side down at once (FIN first) and keeps
--               reading; on the client's EOF it writes N to DIR/after-fin and closes
--   PORT+2 tcp  accepts and never reads (a stalled app, for the relay's bounded buffers)
--   PORT udp    each datagram D answered with "TOKEN:D"
-- It runs until killed.
local uv = require('luv')

local port, token, dir = tonumber(arg[1]), arg[2], arg[3]
assert(port and token and dir, 'usage: portmap_server.lua PORT TOKEN DIR')

local function echo(client)
  local n = 0
  local on_read
  client:write('hello ' .. token .. '\n')
  on_read = function(err, data)
    if err then
      client:close()
    elseif data then
      n = n + #data
      client:write(data)
      if client:get_write_queue_size() > 1024 * 1024 then -- bounded: wait for the queue
        client:read_stop()
        client:write('', function()
          if not client:is_closing() then
            client:read_start(on_read)
          end
        end)
      end
    else
      client:write('\nbye ' .. n .. '\n')
      client:shutdown(function() client:close() end)
    end
  end
  client:read_start(on_read)
end

local function fin_first(client)
  local n = 0
  client:write('first ' .. token .. '\n')
  client:shutdown()
  client:read_start(function(err, data)
    if data then
      n = n + #data
      return
    end
    local f = io.open(dir .. '/after-fin', 'w')
    f:write(tostring(n))
    f:close()
    if not err then
      client:close()
    end
  end)
end

local function tcp_server(p, handler)
  local server = uv.new_tcp()
  assert(server:bind('0.0.0.0', p))
  assert(server:listen(64, function()
    local client = uv.new_tcp()
    server:accept(client)
    handler(client)
  end))
end

tcp_server(port, echo)
tcp_server(port + 1, fin_first)
local stalled = {}
tcp_server(port + 2, function(client) stalled[#stalled + 1] = client end)

local udp = uv.new_udp()
assert(udp:bind('0.0.0.0', port))
udp:recv_start(function(_, data, addr)
  if data and addr then
    udp:send(token .. ':' .. data, addr.ip, addr.port)
  end
end)

local f = assert(io.open(dir .. '/ready', 'w'))
f:write('ok')
f:close()
