-- SPDX-License-Identifier: Apache-2.0
-- Test helper: a keep-alive HTTP/1.1 app behind the gateway, run with
--   moonstack run tests/helpers/http_backend.lua PORT_FILE
-- It listens on a free port of 127.0.0.1 (the runtime's HTTP server), writes the port to
-- PORT_FILE once it listens, and serves until killed:
--   GET /1k        1024 bytes of 'a'
--   GET /bytes/N   N bytes (N <= 64 MiB) of a pattern that depends on the offset, so a
--                  truncated, reordered or duplicated relay shows in the body's digest
--   POST /echo     the request body
local server = require('moonstack.http.server')

local port_file = arg[1]
assert(port_file, 'usage: http_backend.lua PORT_FILE')

local function pattern(n)
  local unit = {}
  for i = 0, 255 do
    unit[#unit + 1] = string.char((i * 7 + 13) % 256)
  end
  local block = table.concat(unit)
  local reps = math.ceil(n / #block)
  return string.rep(block, reps):sub(1, n)
end

local srv = server.new({ name = 'backend', listen = { host = '127.0.0.1', port = 0 },
  max_body = 64 * 1024 * 1024 })
local one_k = string.rep('a', 1024)
srv:get('/1k', function(_, res)
  res:send(200, one_k, { ['content-type'] = 'application/octet-stream' })
end)
srv:get('/bytes/:n', function(req, res)
  local n = tonumber(req.params.n)
  if not n or n < 0 or n > 64 * 1024 * 1024 then
    return 400, { error = 'n' }
  end
  res:send(200, pattern(n), { ['content-type'] = 'application/octet-stream' })
end)
srv:post('/echo', function(req, res)
  res:send(200, req.body or '', { ['content-type'] = 'application/octet-stream' })
end)
assert(srv:listen())

local f = assert(io.open(port_file .. '.tmp', 'w'))
f:write(tostring(srv:port()))
f:close()
assert(os.rename(port_file .. '.tmp', port_file))
