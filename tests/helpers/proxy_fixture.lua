-- SPDX-License-Identifier: Apache-2.0
-- Test helper for tests/binding/proxy_*_spec.lua: a wildcard certificate made by the openssl
-- CLI, plain TCP backends on the spec's loop (luv), the python TLS client tests/helpers/
-- proxy_peer.py run as a child process while the loop turns, and an fd count.
local uv = require('luv')
local cjson = require('cjson.safe')
local loop = require('loop')
local fixtures = require('fixtures')

local M = {}

M.BASE = 'test.local'

--- A self-signed certificate for *.test.local (EC P-256): { cert = PEM, key = PEM }.
function M.cert(dir)
  local cmd = ('openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2' ..
    ' -subj /CN=%s -addext subjectAltName=DNS:*.%s,DNS:%s -keyout %s/k.pem -out %s/c.pem' ..
    ' >/dev/null 2>&1'):format(M.BASE, M.BASE, M.BASE, dir, dir)
  local ok = os.execute(cmd)
  assert(ok == true or ok == 0, 'openssl failed')
  return { cert = fixtures.read(dir .. '/c.pem'), key = fixtures.read(dir .. '/k.pem') }
end

--- A snapshot with the test base domain, localhost allowed, and `extra` fields merged in.
function M.snapshot(version, cert, extra)
  local s = {
    version = version,
    base_domains = { { domain = M.BASE, cert = cert.cert, key = cert.key } },
    insecure_localhost = true,
  }
  for k, v in pairs(extra or {}) do
    s[k] = v
  end
  return s
end

--- A TCP server on 127.0.0.1 calling on_conn(client) for each connection. Returns server, port.
function M.server(on_conn)
  local srv = uv.new_tcp()
  assert(srv:bind('127.0.0.1', 0))
  assert(srv:listen(256, function(err)
    assert(not err, err)
    local c = uv.new_tcp()
    srv:accept(c)
    c:nodelay(true)
    on_conn(c)
  end))
  return srv, srv:getsockname().port
end

-- M.server counting its connections in stats.conns and stats.open (stats: the caller's table or
-- a new one, given `fields` first): on_conn(c, close, stats), where close() closes c and counts
-- it closed. Returns server, port, stats.
local function counted(stats, fields, on_conn)
  stats = stats or {}
  for k, v in pairs(fields) do
    stats[k] = v
  end
  stats.conns, stats.open = 0, 0
  local srv, port = M.server(function(c)
    stats.conns = stats.conns + 1
    stats.open = stats.open + 1
    on_conn(c, function()
      c:close()
      stats.open = stats.open - 1
    end, stats)
  end)
  return srv, port, stats
end

-- Echo everything c reads back to it, counting in st.bytes; at EOF shut the write side, then close.
local function echo(c, close, st)
  c:read_start(function(_, data)
    if data then
      st.bytes = st.bytes + #data
      c:write(data)
    else
      c:read_stop()
      c:shutdown(close)
    end
  end)
end

--- An echo backend: every byte back; at EOF, shuts its write side and closes. Counts in `stats`.
function M.echo_server(stats)
  return counted(stats, { bytes = 0 }, echo)
end

--- An echo backend that reads nothing until `ready()` says so (polled every 10 ms; at most
--- `max_ms`): its socket fills up, and so do the proxy's sends to it. Then it echoes as
--- M.echo_server. Counts in `stats`.
function M.paused_echo_server(ready, max_ms, stats)
  return counted(stats, { bytes = 0 }, function(c, close, st)
    local t, waited = uv.new_timer(), 0
    t:start(10, 10, function()
      waited = waited + 10
      if not ready() and waited < max_ms then
        return
      end
      t:close()
      echo(c, close, st)
    end)
  end)
end

--- A backend that reads to EOF, then answers "got:<bytes>" and closes. Records in `stats`.
function M.sink_server(stats)
  return counted(stats, { got = {} }, function(c, close, st)
    local n = 0
    c:read_start(function(_, data)
      if data then
        n = n + #data
      else
        st.got[#st.got + 1] = n
        c:write('got:' .. n, function()
          c:shutdown(close)
        end)
      end
    end)
  end)
end

--- A backend that greets with `greeting`, shuts its write side at once, then counts what it
--- still reads (stats.after) and closes at EOF.
function M.greeter_server(greeting, stats)
  return counted(stats, { after = {} }, function(c, close, st)
    local n = 0
    c:write(greeting)
    c:shutdown()
    c:read_start(function(_, data)
      if data then
        n = n + #data
      else
        st.after[#st.after + 1] = n
        close()
      end
    end)
  end)
end

--- An echo backend that closes (write side first) once it has echoed `limit` bytes.
function M.echo_n_server(limit, stats)
  return counted(stats, {}, function(c, close)
    local n, done = 0, false
    c:read_start(function(_, data)
      if data and not done then
        n = n + #data
        c:write(data)
        if n >= limit then
          done = true
          c:shutdown(close)
        end
      elseif not data and not done then
        done = true
        close()
      end
    end)
  end)
end

--- A raw TCP client sending `bytes` (may be nil): returns how long until the proxy closed it
--- (ms) or nil after `wait_ms`.
function M.raw_closed_after(port, bytes, wait_ms)
  local c = uv.new_tcp()
  local t0, closed_at = uv.now(), nil
  c:connect('127.0.0.1', port, function(err)
    assert(not err, err)
    if bytes then
      c:write(bytes)
    end
    c:read_start(function(_, data)
      if not data then
        closed_at = uv.now()
      end
    end)
  end)
  loop.run_until(function() return closed_at ~= nil end, wait_ms)
  c:close()
  loop.settle(20)
  return closed_at and (closed_at - t0) or nil
end

--- Run the loop until `fn()` is true (or `ms`); returns fn().
function M.wait(fn, ms)
  return loop.run_until(fn, ms or 3000)
end

--- A backend that records the first bytes of each connection (stats.first) and echoes.
function M.recording_server(stats)
  stats = stats or {}
  stats.conns, stats.first = 0, {}
  local srv, port = M.server(function(c)
    stats.conns = stats.conns + 1
    local idx, buf = stats.conns, ''
    c:read_start(function(_, data)
      if data then
        buf = buf .. data
        stats.first[idx] = buf:sub(1, 64)
      else
        c:close()
      end
    end)
  end)
  return srv, port, stats
end

local PEER = (os.getenv('MOONSTACK_SRC') or '.') .. '/tests/helpers/proxy_peer.py'

--- Run proxy_peer.py with `plan` while the loop turns; returns its list of results.
function M.peer(plan, timeout_ms)
  local out, done = {}, false
  local stdout = uv.new_pipe(false)
  local stderr = uv.new_pipe(false)
  local errs = {}
  local handle = uv.spawn('/usr/bin/python3', {
    args = { PEER, cjson.encode(plan) },
    stdio = { nil, stdout, stderr },
  }, function()
    done = true
  end)
  assert(handle, 'cannot run python3')
  stdout:read_start(function(_, data)
    if data then
      out[#out + 1] = data
    end
  end)
  stderr:read_start(function(_, data)
    if data then
      errs[#errs + 1] = data
    end
  end)
  local finished = loop.run_until(function() return done end, timeout_ms or 30000)
  loop.run_until(function() return false end, 20)
  if not finished then
    handle:kill('sigkill')
    loop.run_until(function() return done end, 2000)
  end
  handle:close()
  stdout:close()
  stderr:close()
  assert(finished, 'proxy_peer.py did not finish')
  local res = cjson.decode(table.concat(out))
  assert(res, 'proxy_peer.py printed no JSON: ' .. table.concat(out) .. table.concat(errs))
  return res
end

--- SNI of `localhost` on `port` with `suffix` ('' terminate, 's' passthrough, 'g' h2).
function M.sni(port, suffix)
  return ('localhost-%d%s.%s'):format(port, suffix or '', M.BASE)
end

--- Open file descriptors of this process.
function M.fds()
  local n = 0
  local req = uv.fs_scandir('/proc/self/fd')
  while req and uv.fs_scandir_next(req) do
    n = n + 1
  end
  return n
end

-- The backends kept by M.keep, closed by M.close_all.
local kept = {}

--- Keep the backend `srv` (as returned by a *_server helper, with its port and stats) to be
--- closed by M.close_all; returns port, stats.
function M.keep(srv, port, stats)
  kept[#kept + 1] = srv
  return port, stats
end

--- Close the proxy `p` and every kept backend, and let the loop run their close callbacks.
function M.close_all(p)
  p:close()
  for _, srv in ipairs(kept) do
    srv:close()
  end
  kept = {}
  M.wait(function() return false end, 20)
end

--- Run one connection of `plan` (proxy_peer.py) against `port` unless the plan names one;
--- returns its result.
function M.one(plan, port)
  plan.port = plan.port or port
  local r = M.peer(plan)
  assert(#r == 1, 'expected the result of one connection')
  return r[1]
end

--- A proxy on an ephemeral port with short timeouts (merged with `opts`).
function M.proxy(opts)
  local proxy = require('moonstack.native.proxy')
  local o = {
    listen = { { host = '127.0.0.1', port = 0 } },
    workers = 2,
    timeouts = { connect = 2, handshake = 2, idle = 5, shutdown = 2, total = 60 },
  }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return assert(proxy.new(o))
end

return M
