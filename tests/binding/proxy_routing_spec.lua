-- SPDX-License-Identifier: Apache-2.0
-- moonstack.native.proxy, routing: the snapshot's strict checks, instance and app ids (§6.4:
-- instance first, healthy candidates by handshake, parallel connect), port policy and PROXY
-- headers (§6.5), routing decisions in the snapshot and through on_route_miss / decide,
-- per-app caps, counters and conns — the real proxy on loopback with plain TCP backends.
local F = require('proxy_fixture')
local fixtures = require('fixtures')

describe('moonstack.native.proxy routing', function()
  local cert, p, port
  local serve = F.keep

  local function one(plan)
    return F.one(plan, port)
  end

  local function echo_ok(sni)
    return one({ sni = sni, ops = { { 'send', 100 }, { 'recv', 100 }, { 'shutdown' }, { 'eof' } } })
  end

  setup(function()
    cert = F.cert(fixtures.tmpdir('proxy-routing'))
  end)

  before_each(function()
    p = F.proxy()
    port = p:port(1)
  end)

  after_each(function()
    F.close_all(p)
  end)

  it('refuses a malformed snapshot, naming the field', function()
    local function err(snap)
      local ok, e = pcall(p.publish, p, snap)
      assert.is_false(ok)
      return e
    end
    assert.matches('snapshot.version', err({}))
    assert.matches('instances%["i1"%].ip', err({ version = 1, instances = { i1 = { app_id = 'a' } } }))
    assert.matches('not a numeric address',
      err({ version = 1, instances = { i1 = { app_id = 'a', ip = 'x' } } }))
    assert.matches('bogus is not a known field', err({ version = 1, bogus = 1 }))
    assert.matches('routes', err({ version = 1, routes = { nope = { allow = true } } }))
    assert.matches('routes%["a:1"%].allow', err({ version = 1, routes = { ['a:1'] = {} } }))
    assert.matches('base_domains%[1%]',
      err({ version = 1, base_domains = { { domain = 'x.y', cert = 'c' } } }))
    assert.matches('ports', err({ version = 1,
      instances = { i1 = { app_id = 'a', ip = '1.2.3.4', ports = { [70000] = true } } } }))
    -- a certificate that does not load is an expected failure, not misuse
    local v, msg, code = p:publish({ version = 1,
      base_domains = { { domain = 'x.y', cert = 'c', key = 'k' } } })
    assert.is_nil(v)
    assert.equal('ETLS', code)
    assert.matches('x.y', msg)
    assert.equal(-1, p:counters().snapshot_version) -- nothing was published
  end)

  it('routes an instance id by its port policy', function()
    local bport = serve(F.echo_server())
    local now = os.time()
    assert(p:publish(F.snapshot(1, cert, { instances = {
      i1 = { app_id = 'a1', ip = '127.0.0.1', last_handshake = now, ports = { [bport] = true } },
      i2 = { app_id = 'a1', ip = '127.0.0.1', last_handshake = now }, -- no policy yet
      i3 = { app_id = 'a3', ip = '127.0.0.1', last_handshake = now, restrict = true, ports = { [1] = true } },
      i4 = { app_id = 'a4', ip = '127.0.0.1', last_handshake = now, ports = {} }, -- unrestricted
    } })))
    assert.is_true(echo_ok(('i1-%d.%s'):format(bport, F.BASE)).ok)
    assert.is_false(echo_ok(('i2-%d.%s'):format(bport, F.BASE)).ok)
    assert.is_false(echo_ok(('i3-%d.%s'):format(bport, F.BASE)).ok)
    assert.is_true(echo_ok(('i4-%d.%s'):format(bport, F.BASE)).ok)
    local c = p:counters()
    assert.equal(2, c.refused['port-policy'])
    assert.equal(1, c.instances.i1.total)
    assert.equal(200, c.instances.i1.bytes_in + c.instances.i1.bytes_out)
    assert.equal(1, c.apps.a1.total + 0 * c.apps.a1.active)
  end)

  it('picks the healthy instances of an app, most recent first, first connect wins', function()
    local bport = serve(F.echo_server())
    local now = os.time()
    assert(p:publish(F.snapshot(1, cert, { handshake_stale = 100, instances = {
      -- the freshest one refuses connections (nothing listens on 127.0.0.2): the next wins
      fresh = { app_id = 'app1', ip = '127.0.0.2', last_handshake = now, ports = {} },
      older = { app_id = 'app1', ip = '127.0.0.1', last_handshake = now - 10, ports = {} },
      stale = { app_id = 'app2', ip = '127.0.0.1', last_handshake = now - 1000, ports = {} },
    } })))
    assert.is_true(echo_ok(('app1-%d.%s'):format(bport, F.BASE)).ok)
    assert.is_false(echo_ok(('app2-%d.%s'):format(bport, F.BASE)).ok)
    local c = p:counters()
    assert.equal(1, c.instances.older.total)
    assert.equal(0, c.instances.fresh.total)
    assert.equal(1, c.refused['no-backend'])
    -- the stale instance is still reachable by its own id
    assert.is_true(echo_ok(('stale-%d.%s'):format(bport, F.BASE)).ok)
  end)

  it('applies routing decisions from the snapshot: deny and port mapping', function()
    local bport = serve(F.echo_server())
    assert(p:publish(F.snapshot(1, cert, {
      instances = { i1 = { app_id = 'a1', ip = '127.0.0.1', last_handshake = os.time(), ports = {} } },
      routes = { ['i1:' .. bport] = { allow = false }, ['i1:1234'] = { allow = true, to_port = bport } },
    })))
    assert.is_false(echo_ok(('i1-%d.%s'):format(bport, F.BASE)).ok)
    assert.is_true(echo_ok(('i1-1234.%s'):format(F.BASE)).ok)
    assert.equal(1, p:counters().refused.denied)
  end)

  it('asks on_route_miss once per unseen key and follows p:decide', function()
    local bport = serve(F.echo_server())
    assert(p:publish(F.snapshot(1, cert, {
      instances = { i1 = { app_id = 'a1', ip = '127.0.0.1', last_handshake = os.time(), ports = {} } },
    })))
    local asked = {}
    p:on_route_miss(function(key, meta)
      asked[#asked + 1] = { key = key, meta = meta }
      p:decide(key, { allow = meta.port == bport })
    end)
    assert.is_true(echo_ok(('i1-%d.%s'):format(bport, F.BASE)).ok)
    assert.is_true(echo_ok(('i1-%d.%s'):format(bport, F.BASE)).ok) -- decided: not asked again
    assert.is_false(echo_ok(('i1-81.%s'):format(F.BASE)).ok)
    assert.equal(2, #asked)
    assert.equal('i1:' .. bport, asked[1].key)
    assert.equal('i1', asked[1].meta.id)
    assert.equal('a1', asked[1].meta.app_id)
    assert.equal('i1', asked[1].meta.instance_id)
    assert.equal('terminate', asked[1].meta.mode)
    assert.matches('^127%.0%.0%.1:%d+$', asked[1].meta.client)
    -- no answer: the connection waits for `handshake`, then is refused
    p:on_route_miss(function() end)
    assert.is_false(echo_ok(('i1-82.%s'):format(F.BASE)).ok)
    assert.equal(1, p:counters().refused.timeout)
  end)

  it('caps the connections of an app', function()
    p:close()
    p = F.proxy({ max_connections_per_app = 1 })
    port = p:port(1)
    local bport = serve(F.echo_server())
    assert(p:publish(F.snapshot(1, cert, {
      instances = { i1 = { app_id = 'a1', ip = '127.0.0.1', last_handshake = os.time(), ports = {} } },
    })))
    local r = F.peer({ port = port, sni = ('a1-%d.%s'):format(bport, F.BASE), parallel = 2,
      ops = { { 'send', 5 }, { 'recv', 5 }, { 'sleep', 700 } } })
    local ok = 0
    for _, x in ipairs(r) do
      ok = ok + (x.ok and 1 or 0)
    end
    assert.equal(1, ok)
    assert.equal(1, p:counters().refused.cap)
    -- a per-app override lifts it
    assert(p:publish(F.snapshot(2, cert, {
      instances = { i1 = { app_id = 'a1', ip = '127.0.0.1', last_handshake = os.time(), ports = {} } },
      apps = { a1 = { max_connections = 0 } },
    })))
    r = F.peer({ port = port, sni = ('a1-%d.%s'):format(bport, F.BASE), parallel = 2,
      ops = { { 'send', 5 }, { 'recv', 5 }, { 'sleep', 300 } } })
    assert.is_true(r[1].ok and r[2].ok)
  end)

  it('sends a PROXY v2 header when the port policy says pp, carrying the inbound one', function()
    p:close()
    p = F.proxy({ inbound_pp = true })
    port = p:port(1)
    local bport, st = serve(F.recording_server())
    assert(p:publish(F.snapshot(1, cert, {
      instances = { i1 = { app_id = 'a1', ip = '127.0.0.1', last_handshake = os.time(),
        ports = { [bport] = { pp = true } } } },
    })))
    local r = one({ sni = ('i1-%ds.%s'):format(bport, F.BASE), tls = false,
      preamble = 'PROXY TCP4 198.51.100.7 203.0.113.9 40000 443\r\n',
      ops = { { 'send', 10 }, { 'sleep', 100 } } })
    assert.is_true(r.ok, r.error)
    assert.is_true(F.wait(function() return st.first[1] ~= nil and #st.first[1] >= 28 end))
    local h = st.first[1]
    assert.equal('\r\n\r\n\0\r\nQUIT\n', h:sub(1, 12))
    assert.equal(0x21, h:byte(13)) -- v2, PROXY
    assert.equal(string.char(198, 51, 100, 7), h:sub(17, 20))
    assert.equal(string.char(203, 0, 113, 9), h:sub(21, 24))
    -- without a header the inbound side refuses, and the backend sees nothing more
    one({ sni = ('i1-%ds.%s'):format(bport, F.BASE), tls = false, ops = { { 'send', 1 } } })
    assert.is_true(F.wait(function() return (p:counters().refused['proxy-header'] or 0) == 1 end))
    assert.equal(1, st.conns)
  end)

  it('lists active connections and counts totals', function()
    local bport = serve(F.echo_server())
    assert(p:publish(F.snapshot(7, cert)))
    assert.same({}, p:conns())
    local r = F.peer({ port = port, sni = F.sni(bport, 's'), tls = false, parallel = 3,
      ops = { { 'send', 1000 }, { 'sleep', 200 }, { 'shutdown' }, { 'eof' } } })
    for _, x in ipairs(r) do
      assert.is_true(x.ok, x.error)
    end
    local c = p:counters()
    assert.equal(3, c.total)
    assert.equal(0, c.active)
    assert.equal(7, c.snapshot_version)
    assert.equal(c.bytes_in, c.bytes_out) -- an echo
    assert.equal(3 * (1000 + r[1].hello_len), c.bytes_in)
    assert.matches('proxy<2 workers', tostring(p))
    p:close()
    p:close()
    assert.equal('proxy<closed>', tostring(p))
    local v, _, code = p:counters()
    assert.is_nil(v)
    assert.equal('EBADF', code)
  end)

  it('reports a taken port as EADDRINUSE', function()
    local proxy = require('moonstack.native.proxy')
    local srv = require('luv').new_tcp()
    assert(srv:bind('127.0.0.1', 0))
    assert(srv:listen(1, function() end))
    serve(srv)
    local taken = srv:getsockname().port
    local q, msg, code = proxy.new({ listen = { { host = '127.0.0.1', port = taken } }, workers = 1 })
    assert.is_nil(q)
    assert.equal('EADDRINUSE', code)
    assert.is_string(msg)
    assert.has_error(function() proxy.new({ listen = {} }) end)
    assert.has_error(function() proxy.new({ listen = { { host = '127.0.0.1', port = 0 } }, bogus = 1 }) end)
  end)
end)
