-- SPDX-License-Identifier: Apache-2.0
-- A small HTTP/1.1 load generator over unix sockets (luv pipes), run by `moonstack run`:
-- N keep-alive connections, each with one request in flight, until `count` requests are done
-- or `seconds` have passed. Every response must be a 200 with a Content-Length body.
--
--   moonstack run load.lua SOCKET PATH CONCURRENCY COUNT SECONDS [BODY | @distinct]
-- BODY is the JSON request body; `@distinct` sends GetKey bodies with a fresh path each time
-- (uncached derivations). Prints `requests N`, `seconds S`, `rps R`, `errors E`.
local uv = require('luv')

local sock, path, conc, count, seconds, body = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4]),
  tonumber(arg[5]), arg[6] or '{}'
assert(sock and path and conc and count and seconds, 'usage: load.lua SOCKET PATH N COUNT SECONDS [BODY]')

local distinct = body == '@distinct'
local seq = 0
local function request()
  local b = body
  if distinct then
    seq = seq + 1
    b = ('{"path":"bench/%d","purpose":"bench","algorithm":"secp256k1"}'):format(seq)
  end
  return ('POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n'
    .. 'Content-Length: %d\r\n\r\n%s'):format(path, #b, b)
end

local started, done, errors, inflight = 0, 0, 0, 0
local t0 = uv.hrtime()
local deadline = t0 + seconds * 1e9
local finished = false
local conns = {}

local function finish()
  if finished then
    return
  end
  finished = true
  local s = (uv.hrtime() - t0) / 1e9
  for _, c in ipairs(conns) do
    if not c:is_closing() then
      c:close()
    end
  end
  print(('requests %d'):format(done))
  print(('seconds %.3f'):format(s))
  print(('rps %.0f'):format(done / s))
  print(('errors %d'):format(errors))
end

local function next_request(c)
  if started >= count or uv.hrtime() > deadline then
    if inflight == 0 then
      finish()
    end
    return
  end
  started = started + 1
  inflight = inflight + 1
  c:write(request())
end

local function connect()
  local c = uv.new_pipe(false)
  conns[#conns + 1] = c
  local buf = ''
  c:connect(sock, function(err)
    if err then
      io.stderr:write('connect: ', err, '\n')
      errors = errors + 1
      finish()
      return
    end
    c:read_start(function(rerr, chunk)
      if rerr or not chunk then
        if not finished then
          errors = errors + 1
          io.stderr:write('connection closed: ', tostring(rerr), '\n')
          finish()
        end
        return
      end
      buf = buf .. chunk
      while true do
        local head_end = buf:find('\r\n\r\n', 1, true)
        if not head_end then
          break
        end
        local head = buf:sub(1, head_end - 1)
        local len = tonumber(head:lower():match('\ncontent%-length:%s*(%d+)'))
        if not len or #buf < head_end + 3 + len then
          break
        end
        if not head:find('^HTTP/1%.1 200') then
          errors = errors + 1
          if errors <= 3 then
            io.stderr:write(buf:sub(1, head_end + 3 + len), '\n')
          end
        end
        buf = buf:sub(head_end + 4 + len)
        done = done + 1
        inflight = inflight - 1
        next_request(c)
      end
    end)
    next_request(c)
  end)
end

for _ = 1, conc do
  connect()
end
local guard = uv.new_timer()
guard:start((seconds + 5) * 1000, 0, function()
  guard:close()
  finish()
end)
guard:unref()
