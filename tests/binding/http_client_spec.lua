-- SPDX-License-Identifier: Apache-2.0
-- moonstack.http.client against an in-process moonstack.http.server (TCP and unix socket) and
-- against raw luv sockets for what a server cannot be made to do: never answer, refuse,
-- answer without Content-Length. Covers round trips, errors, cancel, large bodies, limits.
local uv = require('luv')
local loop = require('loop')
local uv_handles = require('uv_handles')
local server = require('moonstack.http.server')
local client = require('moonstack.http.client')
local native = require('moonstack.native.http')
local fixtures = require('fixtures')

local BIG = 3 * 1024 * 1024

local function tmpdir()
  return fixtures.tmpdir('httpc', true)
end

-- A pseudo-random body that a truncation or reordering would not preserve.
local function pattern(n)
  local parts, x = {}, 7
  for i = 1, n / 1024 do
    x = (x * 1103515245 + 12345) % 2147483648
    parts[i] = ('%08x'):format(x):rep(128)
  end
  return table.concat(parts)
end

local run = loop.run_task

local settle = loop.settle

-- A raw TCP server on 127.0.0.1: `on_data(client, data_so_far)` runs on every read.
local function raw_server(on_data)
  local s = { conns = {}, received = {} }
  s.handle = uv.new_tcp()
  assert(s.handle:bind('127.0.0.1', 0))
  s.port = s.handle:getsockname().port
  assert(s.handle:listen(16, function()
    local c = uv.new_tcp()
    s.handle:accept(c)
    local idx = #s.conns + 1
    s.conns[idx] = c
    s.received[idx] = ''
    c:read_start(function(err, chunk)
      if err or not chunk then
        s.received[idx .. ':eof'] = true
        if not c:is_closing() then
          c:close()
        end
        return
      end
      s.received[idx] = s.received[idx] .. chunk
      if on_data then
        on_data(c, s.received[idx])
      end
    end)
  end))
  function s.close()
    for _, c in ipairs(s.conns) do
      if not c:is_closing() then
        c:close()
      end
    end
    s.handle:close()
  end
  return s
end

describe('moonstack.http.client', function()
  local srv, base, dir, usrv, sock

  setup(function()
    srv = server.new({ name = 'client-spec', listen = { host = '127.0.0.1', port = 0 },
      max_body = 16 * 1024 * 1024 })
    srv:get('/hello', function(req)
      return 200, { hello = req.args.name or 'world', ua = req:header('x-test') }
    end)
    srv:post('/echo', function(req)
      return 200, { got = req:json(), method = req.method, ctype = req.headers['content-type'] }
    end)
    srv:post('/raw', function(req) return 200, req.body end)
    srv:get('/big', function() return 200, pattern(BIG) end)
    srv:get('/status/:code', function(req)
      return tonumber(req.params.code), { code = tonumber(req.params.code) }
    end)
    srv:get('/text', function() return 200, 'not json' end)
    srv:get('/host', function(req) return 200, req.headers.host end)
    assert(srv:listen())
    base = 'http://127.0.0.1:' .. srv:port()
    dir = tmpdir()
    sock = dir .. '/api.sock'
    usrv = server.new({ name = 'client-spec-unix', listen = { unix = sock } })
    usrv:get('/who', function(req) return 200, { peer = req.peer, host = req.headers.host } end)
    usrv:post('/echo', function(req) return 201, { got = req:json() } end)
    assert(usrv:listen())
  end)

  teardown(function()
    srv:close()
    usrv:close()
    settle()
    os.execute(('rm -rf %q'):format(dir))
  end)

  describe('round trips', function()
    it('GETs JSON over TCP', function()
      local resp = loop.run_task(function()
        return assert(client.get(base .. '/hello', { query = { name = 'a b&c' },
          headers = { ['X-Test'] = 'yes' } }))
      end)
      assert.equal(200, resp.status)
      assert.equal('application/json', resp.headers['content-type'])
      assert.equal(tostring(#resp.body), resp.headers['content-length'])
      assert.same({ hello = 'a b&c', ua = 'yes' }, resp.json())
    end)

    it('names the port in Host with host_port (servers that build URLs from it: ACME)', function()
      local plain, with = loop.run_task(function()
        return assert(client.get(base .. '/host')).body,
          assert(client.get(base .. '/host', { host_port = true })).body
      end)
      assert.equal('127.0.0.1', plain)
      assert.equal('127.0.0.1:' .. srv:port(), with)
    end)

    it('POSTs JSON over TCP', function()
      local decoded, resp = loop.run_task(function()
        return client.post_json(base .. '/echo', { n = 1, list = { 1, 2, 3 }, s = 'é' })
      end)
      assert.equal(200, resp.status)
      assert.same({ got = { n = 1, list = { 1, 2, 3 }, s = 'é' }, method = 'POST',
        ctype = 'application/json' }, decoded)
    end)

    it('returns HTTP error statuses as responses', function()
      local decoded, resp = loop.run_task(function()
        return client.post_json(base .. '/nope', {})
      end)
      assert.equal(404, resp.status)
      assert.same({ error = 'not found' }, decoded)
      local r = loop.run_task(function() return client.get(base .. '/status/418') end)
      assert.equal(418, r.status)
      assert.same({ code = 418 }, r.json())
    end)

    it('reports a non-JSON answer to post_json as EPARSE', function()
      srv:post('/text', function() return 200, 'not json' end)
      local v, err, code = run(function() return client.post_json(base .. '/text', {}) end)
      assert.is_nil(v)
      assert.equal('EPARSE', code)
      assert.matches('^EPARSE: HTTP 200', err)
    end)

    it('GETs and POSTs over a unix socket', function()
      local r = loop.run_task(function() return assert(client.request({ unix = sock, path = '/who' })) end)
      assert.equal(200, r.status)
      assert.same({ peer = 'unix', host = 'localhost' }, r.json())
      r = loop.run_task(function()
        return assert(client.request({ unix = sock, path = '/echo', json = { x = true } }))
      end)
      assert.equal(201, r.status)
      assert.same({ got = { x = true } }, r.json())
    end)

    it('moves 3 MiB both ways intact', function()
      local body = pattern(BIG)
      local up, down = loop.run_task(function()
        local a = assert(client.request({ url = base .. '/raw', method = 'POST', body = body,
          headers = { ['content-type'] = 'application/octet-stream' } }))
        local b = assert(client.get(base .. '/big'))
        return a, b
      end, 10000)
      assert.equal(200, up.status)
      assert.equal(#body, #up.body)
      assert.is_true(up.body == body, 'uploaded body changed')
      assert.equal(200, down.status)
      assert.equal(BIG, #down.body)
      assert.is_true(down.body == body, 'downloaded body changed')
    end)

    it('serves concurrent requests from several tasks', function()
      local results = loop.run_task(function()
        local task = require('moonstack.core.task')
        local ts = {}
        for i = 1, 8 do
          ts[i] = task.spawn(function()
            return assert(client.get(base .. '/hello?name=n' .. i)).json().hello
          end)
        end
        local out = {}
        for i, t in ipairs(ts) do
          local ok, v = t:join(3000)
          out[i] = ok and v
        end
        return out
      end)
      for i = 1, 8 do
        assert.equal('n' .. i, results[i])
      end
    end)
  end)

  describe('failures', function()
    it('enforces max_response', function()
      local r, err, code = run(function()
        return client.request({ url = base .. '/big', max_response = 64 * 1024 })
      end)
      assert.is_nil(r)
      assert.equal('ETOOBIG', code)
      assert.matches('^ETOOBIG: ', err)
      -- exactly enough is fine
      r = loop.run_task(function()
        return client.request({ url = base .. '/big', max_response = BIG })
      end)
      assert.equal(BIG, #r.body)
    end)

    it('times out with ETIMEDOUT when the server never answers', function()
      local silent = raw_server()
      local t0 = uv.hrtime()
      local r, err, code = run(function()
        return client.request({ url = 'http://127.0.0.1:' .. silent.port .. '/', timeout_ms = 200 })
      end)
      local ms = (uv.hrtime() - t0) / 1e6
      assert.is_nil(r)
      assert.equal('ETIMEDOUT', code)
      assert.matches('^ETIMEDOUT: ', err)
      assert.is_true(ms >= 190 and ms < 2000, ('took %d ms'):format(ms))
      assert.matches('^GET / HTTP/1.1\r\n', silent.received[1])
      -- the client let go of the connection
      assert.is_true(loop.run_until(function() return silent.received['1:eof'] end, 2000))
      silent.close()
    end)

    it('reports ECONNREFUSED when nothing listens', function()
      local probe = uv.new_tcp()
      assert(probe:bind('127.0.0.1', 0))
      local port = probe:getsockname().port
      probe:close()
      settle(5)
      local r, err, code = run(function()
        return client.get('http://127.0.0.1:' .. port .. '/', { timeout_ms = 2000 })
      end)
      assert.is_nil(r)
      assert.equal('ECONNREFUSED', code)
      assert.matches('^ECONNREFUSED: ', err)
      r, err, code = run(function()
        return client.request({ unix = dir .. '/nobody.sock', path = '/' })
      end)
      assert.is_nil(r)
      assert.is_string(code, err)
    end)

    it('resolves host names off the event loop, keeping the answer a while', function()
      local port = tonumber(base:match(':(%d+)$'))
      local real, calls = client.resolver, {}
      client.flush_dns()
      client.resolver = function(host, cb)
        calls[#calls + 1] = host
        return real(host, cb)
      end
      local ok, res = pcall(function()
        for _ = 1, 2 do
          local r = assert(run(function() return client.get(('http://localhost:%d/hello'):format(port)) end))
          assert.equal(200, r.status)
        end
        assert.same({ 'localhost' }, calls) -- the second request used the cached answer
        client.flush_dns('localhost')
        assert(run(function() return client.get(('http://localhost:%d/hello'):format(port)) end))
        assert.same({ 'localhost', 'localhost' }, calls)
      end)
      client.resolver = real
      assert(ok, res)
    end)

    it('tries the next address when one refuses, and names unresolvable hosts', function()
      local port = tonumber(base:match(':(%d+)$'))
      local real = client.resolver
      client.flush_dns()
      local answers = {
        ['two.test'] = { '127.0.0.2', '127.0.0.1' }, -- the server listens on 127.0.0.1 only
        ['dead.test'] = { '127.0.0.2', '127.0.0.3' },
      }
      client.resolver = function(host, cb)
        if answers[host] then
          cb(nil, answers[host])
        else
          cb('ENOTFOUND', {})
        end
      end
      local ok, res = pcall(function()
        local r = assert(run(function()
          return client.get(('http://two.test:%d/hello'):format(port), { timeout_ms = 3000 })
        end))
        assert.equal(200, r.status)
        local _, err, code = run(function()
          return client.get(('http://dead.test:%d/hello'):format(port), { timeout_ms = 3000 })
        end)
        assert.equal('ECONNREFUSED', code, err)
        _, err, code = run(function() return client.get('http://nowhere.test/') end)
        assert.equal('ENOTFOUND', code)
        assert.truthy(err:find('cannot resolve nowhere.test', 1, true), err)
      end)
      client.resolver = real
      client.flush_dns()
      assert(ok, res)
    end)

    it('rejects bad URLs with EINVAL', function()
      local r, err, code = run(function() return client.get('ftp://x/') end)
      assert.is_nil(r)
      assert.equal('EINVAL', code)
      assert.matches('unsupported URL', err)
      r, err, code = client.request_cb({ url = 'http://:80/' }, function() end)
      assert.is_nil(r)
      assert.equal('EINVAL', code)
      assert.matches('has no host', err)
    end)

    it('raises on misuse of the native request', function()
      assert.has_error(function() native.request({}, function() end) end,
        "http.request: give 'address' or 'unix'")
      assert.has_error(function() native.request({ address = '127.0.0.1' }) end)
      assert.has_error(function()
        native.request({ address = '127.0.0.1', headers = { ['x'] = 'a\r\nb: c' } }, function() end)
      end, "http: invalid header 'x'")
    end)
  end)

  describe('cancel', function()
    it('cancels a request through its handle: the callback gets ECANCELED once', function()
      local silent = raw_server()
      local calls = {}
      local handle = client.request_cb({ url = 'http://127.0.0.1:' .. silent.port .. '/slow' },
        function(err, resp, code)
          calls[#calls + 1] = { err = err, resp = resp, code = code }
        end)
      assert.is_truthy(handle)
      assert.is_true(loop.run_until(function() return silent.received[1] ~= nil end, 2000))
      handle:cancel()
      handle:cancel() -- idempotent
      settle(50)
      assert.equal(1, #calls)
      assert.equal('ECANCELED', calls[1].code)
      assert.is_nil(calls[1].resp)
      assert.is_true(loop.run_until(function() return silent.received['1:eof'] end, 2000),
        'the connection was not closed')
      silent.close()
    end)

    it('cancels the request when its task is cancelled', function()
      local silent = raw_server()
      local task = require('moonstack.core.task')
      local outcome
      local t = task.spawn(function()
        local ok, err = pcall(client.get, 'http://127.0.0.1:' .. silent.port .. '/')
        outcome = { ok = ok, err = err }
      end)
      assert.is_true(loop.run_until(function() return silent.received[1] ~= nil end, 2000))
      t:cancel('test')
      assert.is_false(outcome.ok)
      assert.equal('ECANCELED', outcome.err.code)
      assert.is_true(loop.run_until(function() return silent.received['1:eof'] end, 2000))
      silent.close()
    end)
  end)

  describe('on the wire', function()
    it('sends Host, Content-Length and the headers given', function()
      local reply = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/x-spec\r\n\r\nok'
      local rs = raw_server(function(c, data)
        if data:find('\r\n\r\n', 1, true) and data:sub(-7) == '{"a":1}' then
          c:write(reply)
        end
      end)
      local r = loop.run_task(function()
        return assert(client.request({ url = 'http://127.0.0.1:' .. rs.port .. '/p?q=1',
          json = { a = 1 }, headers = { ['X-Custom'] = 'v' } }))
      end)
      assert.equal(200, r.status)
      assert.equal('ok', r.body)
      assert.equal('text/x-spec', r.headers['content-type'])
      local req = rs.received[1]
      assert.matches('^POST /p%?q=1 HTTP/1.1\r\n', req)
      local lower = req:lower()
      assert.matches('\r\nhost: 127.0.0.1[:\r]', lower)
      assert.matches('\r\ncontent%-length: 7\r\n', lower)
      assert.matches('\r\ncontent%-type: application/json\r\n', lower)
      assert.matches('\r\nx%-custom: v\r\n', lower)
      assert.not_matches('transfer%-encoding', lower)
      rs.close()
    end)

    it('reads a response delimited by the connection close', function()
      local rs = raw_server(function(c, data)
        if data:find('\r\n\r\n', 1, true) then
          c:write('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end', function()
            c:close()
          end)
        end
      end)
      local r = loop.run_task(function()
        return assert(client.get('http://127.0.0.1:' .. rs.port .. '/'))
      end)
      assert.equal(200, r.status)
      assert.equal('until the end', r.body)
      rs.close()
    end)

    it('reports ECONNRESET when the server closes before answering', function()
      local rs = raw_server(function(c) c:close() end)
      local r, err, code = run(function()
        return client.get('http://127.0.0.1:' .. rs.port .. '/', { timeout_ms = 2000 })
      end)
      assert.is_nil(r)
      assert.is_string(code, err)
      assert.not_equal('ETIMEDOUT', code)
      rs.close()
    end)
  end)

  it('leaves no libuv handle behind', function()
    settle()
    local before = uv_handles.count()
    local r = loop.run_task(function() return assert(client.get(base .. '/hello')) end)
    assert.equal(200, r.status)
    assert.is_true(loop.run_until(function() return uv_handles.count() <= before + 1 end, 2000))
    settle()
    assert.equal(before, uv_handles.count(), 'left: ' .. uv_handles.describe())
  end)
end)
