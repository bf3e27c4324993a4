-- SPDX-License-Identifier: Apache-2.0
-- Websocket endpoints of moonstack.http.server, driven by an independent client written for
-- the tests (tests/helpers/ws_client.lua): echo, large messages, broadcast, client counts,
-- closes from either side with codes, refused paths, the message size limit, subprotocols.
local cjson = require('cjson')
local loop = require('loop')
local ws_client = require('ws_client')
local server = require('moonstack.http.server')

local settle = loop.settle

describe('ws_client helper', function()
  it('computes the RFC 6455 accept value', function()
    -- the example of RFC 6455 section 1.3
    assert.equal('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', ws_client.accept_for('dGhlIHNhbXBsZSBub25jZQ=='))
    assert.equal('', ws_client.base64(''))
    assert.equal('Zm9vYg==', ws_client.base64('foob'))
  end)
end)

describe('moonstack.http.server websockets', function()
  local srv, port, events

  setup(function()
    events = {}
    srv = server.new({ name = 'ws-spec', listen = { host = '127.0.0.1', port = 0 },
      max_ws_message = 256 * 1024, ws_protocols = { 'chat.v1' } })
    srv:websocket('/echo', {
      on_open = function(ws)
        events[#events + 1] = { 'open', ws:id(), ws:path(), ws:is_open() }
      end,
      on_message = function(ws, data, binary)
        if data == 'bye' then
          ws:close(4001, 'bye now')
        elseif data == 'info' then
          ws:send(cjson.encode({ id = ws:id(), path = ws:path(), open = ws:is_open() }))
        else
          ws:send(data, binary)
        end
      end,
      on_close = function(ws)
        events[#events + 1] = { 'close', ws:id() }
      end,
    })
    srv:websocket('/feed', {})
    srv:get('/plain', function() return 200, 'plain' end)
    assert(srv:listen())
    port = srv:port()
  end)

  teardown(function()
    srv:close()
    settle()
  end)

  local function connect(path, extra)
    local opts = { port = port, path = path }
    for k, v in pairs(extra or {}) do
      opts[k] = v
    end
    return ws_client.connect(opts)
  end

  it('echoes text and binary messages', function()
    local c = assert(connect('/echo'))
    c:send_text('hello')
    assert.same({ type = 'text', data = 'hello' }, c:receive())
    local bytes = '\0\1\2\255\254' .. ('\128'):rep(300)
    c:send_binary(bytes)
    assert.same({ type = 'binary', data = bytes }, c:receive())
    c:send_text('')
    assert.same({ type = 'text', data = '' }, c:receive())
    local close = c:close(1000, 'done')
    assert.equal('close', close.type)
    assert.equal(1000, close.code)
  end)

  it('reassembles a fragmented message', function()
    local c = assert(connect('/echo'))
    c:send_frame(1, 'frag', false)
    c:send_frame(0, 'men', false)
    c:send_frame(0, 'ted', true)
    assert.same({ type = 'text', data = 'fragmented' }, c:receive())
    c:close()
  end)

  it('carries a 200 KiB message both ways intact', function()
    local c = assert(connect('/echo'))
    local parts = {}
    for i = 1, 200 * 1024 / 8 do
      parts[i] = ('%08x'):format(i * 2654435761 % 4294967296)
    end
    local big = table.concat(parts)
    assert.equal(200 * 1024, #big)
    c:send_binary(big)
    local m = assert(c:receive(5000))
    assert.equal('binary', m.type)
    assert.equal(#big, #m.data)
    assert.is_true(m.data == big, 'message changed in transit')
    c:close()
  end)

  it('reports open and close to the handlers, with ids and paths', function()
    local before = #events
    local c = assert(connect('/echo?x=1'))
    c:send_text('info')
    local info = cjson.decode(assert(c:receive()).data)
    assert.same({ id = info.id, path = '/echo', open = true }, info)
    c:close()
    assert.is_true(loop.run_until(function() return #events >= before + 2 end, 2000))
    assert.same({ 'open', info.id, '/echo', true }, events[before + 1])
    assert.same({ 'close', info.id }, events[before + 2])
  end)

  it('broadcasts to every client of an endpoint and counts them', function()
    assert.equal(0, srv:client_count('/feed'))
    local clients = {}
    for i = 1, 3 do
      clients[i] = assert(connect('/feed'))
    end
    local echo = assert(connect('/echo'))
    assert.is_true(loop.run_until(function() return srv:client_count('/feed') == 3 end, 2000))
    assert.equal(3, srv:broadcast('/feed', { n = 1 }))
    assert.equal(3, srv:broadcast('/feed', 'plain text'))
    for i = 1, 3 do
      assert.same({ type = 'text', data = '{"n":1}' }, clients[i]:receive())
      assert.same({ type = 'text', data = 'plain text' }, clients[i]:receive())
    end
    -- other endpoints get nothing
    echo:send_text('ping?')
    assert.same({ type = 'text', data = 'ping?' }, echo:receive())
    clients[2]:close()
    assert.is_true(loop.run_until(function() return srv:client_count('/feed') == 2 end, 2000))
    clients[3]:abort() -- no closing handshake: noticed all the same
    assert.is_true(loop.run_until(function() return srv:client_count('/feed') == 1 end, 2000))
    assert.equal(1, srv:broadcast('/feed', 'last'))
    assert.same({ type = 'text', data = 'last' }, clients[1]:receive())
    clients[1]:close()
    echo:close()
    assert.is_true(loop.run_until(function() return srv:client_count('/feed') == 0 end, 2000))
  end)

  it('closes from the server side with a code and reason', function()
    local c = assert(connect('/echo'))
    c:send_text('bye')
    local m = assert(c:receive())
    assert.equal('close', m.type)
    assert.equal(4001, m.code)
    assert.equal('bye now', m.reason)
    assert.is_true(c:wait_eof(2000), 'server did not close the connection')
    c:abort()
  end)

  it('refuses an upgrade on a path that is not a websocket endpoint', function()
    local c, err, resp = connect('/nope')
    assert.is_nil(c)
    assert.is_string(err)
    if resp then
      assert.not_equal(101, resp.status)
    end
    c, err = connect('/plain')
    assert.is_nil(c)
    assert.is_string(err)
  end)

  it('closes with 1009 when a message exceeds max_ws_message', function()
    local c = assert(connect('/echo'))
    c:send_binary(('x'):rep(256 * 1024)) -- exactly the limit is fine
    assert.equal(256 * 1024, #assert(c:receive(5000)).data)
    c:send_binary(('x'):rep(256 * 1024 + 1))
    local m = assert(c:receive(5000))
    assert.equal('close', m.type)
    assert.equal(1009, m.code)
    assert.is_true(c:wait_eof(2000))
    c:abort()
    -- fragments count towards the limit too
    c = assert(connect('/echo'))
    c:send_frame(2, ('y'):rep(200 * 1024), false)
    c:send_frame(0, ('y'):rep(100 * 1024), true)
    m = assert(c:receive(5000))
    assert.equal(1009, m.code)
    c:abort()
  end)

  it('negotiates a subprotocol listed in ws_protocols', function()
    local c = assert(connect('/echo', { protocols = { 'chat.v1' } }))
    assert.equal('chat.v1', c.protocol)
    c:send_text('over chat.v1')
    assert.same({ type = 'text', data = 'over chat.v1' }, c:receive())
    c:close()
    -- without one, the default protocol answers
    c = assert(connect('/echo'))
    assert.is_nil(c.protocol)
    c:close()
  end)

  it('closes every client with 1001 when the server closes', function()
    local s2 = server.new({ listen = { host = '127.0.0.1', port = 0 } })
    s2:websocket('/w', {})
    assert(s2:listen())
    local a = assert(ws_client.connect({ port = s2:port(), path = '/w' }))
    local b = assert(ws_client.connect({ port = s2:port(), path = '/w' }))
    assert.is_true(loop.run_until(function() return s2:client_count('/w') == 2 end, 2000))
    s2:close()
    for _, c in ipairs({ a, b }) do
      local m = assert(c:receive(2000))
      assert.equal('close', m.type)
      assert.equal(1001, m.code)
      assert.is_true(c:wait_eof(2000))
      c:abort()
    end
  end)

  it('judges an upgrade with authorize(req) before answering it', function()
    local seen = {}
    local s2 = server.new({ listen = { host = '127.0.0.1', port = 0 } })
    s2:websocket('/guarded', {
      authorize = function(req)
        seen[#seen + 1] = { path = req.path, token = req:header('x-admin-token'),
          cookie = req:header('cookie'), arg = req.args.a, peer = req.peer }
        if req:header('x-admin-token') == 'raise' then
          error('boom')
        end
        return req:header('x-admin-token') == 'good'
      end,
      on_open = function(ws) ws:send('welcome') end,
    })
    s2:websocket('/open', { on_open = function(ws) ws:send('hi') end })
    assert(s2:listen())
    local c, err = ws_client.connect({ port = s2:port(), path = '/guarded?a=1',
      headers = { 'X-Admin-Token: bad', 'Cookie: s=1' } })
    assert.is_nil(c)
    assert.is_string(err)
    assert.same({ path = '/guarded', token = 'bad', cookie = 's=1', arg = '1', peer = '127.0.0.1' },
      seen[1])
    c = ws_client.connect({ port = s2:port(), path = '/guarded' })
    assert.is_nil(c, 'no credential: refused')
    c = ws_client.connect({ port = s2:port(), path = '/guarded', headers = { 'X-Admin-Token: raise' } })
    assert.is_nil(c, 'an authorize that raises refuses')
    c = assert(ws_client.connect({ port = s2:port(), path = '/guarded',
      headers = { 'X-Admin-Token: good' } }))
    assert.same({ type = 'text', data = 'welcome' }, c:receive(2000))
    c:close()
    -- an endpoint without authorize on the same server accepts anyone
    c = assert(ws_client.connect({ port = s2:port(), path = '/open' }))
    assert.same({ type = 'text', data = 'hi' }, c:receive(2000))
    c:close()
    -- plain requests are not filtered
    s2:close()
    settle()
  end)
end)
