-- SPDX-License-Identifier: Apache-2.0
-- moonstack.native.proxy, the relay: the real proxy (2 worker threads) on loopback between the
-- python TLS client tests/helpers/proxy_peer.py and plain TCP backends on this loop, through
-- the `localhost` id (insecure_localhost): payload integrity on the terminate and passthrough
-- paths, concurrency, half-close both ways, the orderly TLS close, timeouts, refusals, ALPN,
-- session resumption, publish while connections are in flight, and no fd leak.
local F = require('proxy_fixture')
local fixtures = require('fixtures')
local uv = require('luv')

local MiB = 1024 * 1024

describe('moonstack.native.proxy relay', function()
  local cert, p, port
  local serve = F.keep

  setup(function()
    cert = F.cert(fixtures.tmpdir('proxy-relay'))
  end)

  before_each(function()
    p = F.proxy({ timeouts = { connect = 2, handshake = 1, idle = 1.5, shutdown = 2, total = 60 } })
    port = p:port(1)
    assert.equal(1, p:publish(F.snapshot(1, cert)))
  end)

  after_each(function()
    F.close_all(p)
  end)

  local function one(plan)
    return F.one(plan, port)
  end

  for _, size in ipairs({ 1024, MiB }) do
    it(('terminates TLS and relays %d bytes both ways intact'):format(size), function()
      local bport, st = serve(F.echo_server())
      local r = one({ sni = F.sni(bport),
        ops = { { 'send', size }, { 'recv', size }, { 'shutdown' }, { 'eof' } } })
      assert.is_true(r.ok, r.error)
      assert.equal(size, r.rcvd)
      assert.equal('clean', r.eof)
      assert.equal(size, st.bytes)
      assert.is_nil(r.alpn)
    end)

    it(('passes %d bytes through after the replayed ClientHello intact'):format(size), function()
      local bport, st = serve(F.echo_server())
      local r = one({ sni = F.sni(bport, 's'), tls = false,
        ops = { { 'send', size }, { 'shutdown' }, { 'eof' } } })
      assert.is_true(r.ok, r.error)
      -- the echo returns the hello and the payload: the backend got exactly those bytes
      assert.equal(r.hello_len + size, st.bytes)
      assert.equal(r.hello_len + size, r.extra)
      assert.equal('clean', r.eof)
    end)
  end

  it('carries 16 concurrent transfers on both paths', function()
    local bport, st = serve(F.echo_server())
    local r = F.peer({ port = port, sni = F.sni(bport), parallel = 16, seed = 3,
      ops = { { 'send', 256 * 1024 }, { 'recv', 256 * 1024 }, { 'shutdown' }, { 'eof' } } })
    assert.equal(16, #r)
    for _, x in ipairs(r) do
      assert.is_true(x.ok, x.error)
      assert.equal('clean', x.eof)
    end
    local r2 = F.peer({ port = port, sni = F.sni(bport, 's'), parallel = 16, tls = false,
      ops = { { 'send', 256 * 1024 }, { 'shutdown' }, { 'eof' } } })
    for _, x in ipairs(r2) do
      assert.is_true(x.ok, x.error)
      assert.equal(x.hello_len + 256 * 1024, x.extra)
    end
    assert.equal(32, st.conns)
  end)

  -- proxy_batch.h: the last send to a backend of each event batch waits for the batch's one
  -- io_uring_enter; one the backend's full socket did not take whole goes on as a short write.
  -- (Where the kernel refuses io_uring, the proxy sends at once: the batch counts are then 0.)
  local f = io.open('/proc/sys/kernel/io_uring_disabled')
  local uring_here = not f or f:read('*n') == 0
  if f then
    f:close()
  end
  for _, uring in ipairs({ true, false }) do
    it(('io_uring %s: 8 MB of 1000-byte records to a backend that stops reading arrive whole '
      .. 'and in order'):format(uring), function()
      local q = F.proxy({ io_uring = uring, timeouts = { connect = 2, handshake = 2, idle = 30,
        shutdown = 2, total = 120 } })
      assert.equal(1, q:publish(F.snapshot(1, cert)))
      local batching = uring and uring_here
      -- The backend reads once a batched send met its full socket, or once the proxy stalled
      -- (the socket filled on a send that was not batched: two records were read in one go).
      -- Up to 4 tries for a batched send to meet the full socket; each must arrive whole.
      local c
      for _ = 1, batching and 4 or 1 do
        local last, still = -1, 0
        local bport, st = serve(F.paused_echo_server(function()
          local k = q:counters()
          still = k.bytes_in == last and still + 1 or 0
          last = k.bytes_in
          return k.queued_short > 0 or still >= 30
        end, 20000))
        local ops = {}
        for i = 1, 8000 do
          ops[i] = { 'send', 1000 }
        end
        ops[#ops + 1] = { 'recv', 8000000 } -- checked byte for byte against what was sent
        ops[#ops + 1] = { 'shutdown' }
        ops[#ops + 1] = { 'eof' }
        local r = F.one({ port = q:port(1), sni = F.sni(bport), ops = ops, timeout = 60 })
        assert.is_true(r.ok, r.error)
        assert.equal('clean', r.eof)
        assert.equal(8000000, st.bytes)
        c = q:counters()
        if c.queued_short > 0 then
          break
        end
      end
      q:close()
      if batching then
        assert.is_true(c.queued > 100, 'sends batched: ' .. c.queued)
        assert.is_true(c.queued_short > 0, 'a batched send met a full socket')
      else
        assert.equal(0, c.queued)
      end
    end)
  end

  it('io_uring: each request of 16 concurrent exchanges goes through a batch', function()
    local bport, st = serve(F.echo_server())
    local ops = {}
    for i = 1, 200 do
      ops[#ops + 1] = { 'send', 700 + i }
      ops[#ops + 1] = { 'recv', 700 + i }
    end
    ops[#ops + 1] = { 'shutdown' }
    ops[#ops + 1] = { 'eof' }
    local r = F.peer({ port = port, sni = F.sni(bport), parallel = 16, seed = 5, ops = ops })
    assert.equal(16, #r)
    for _, x in ipairs(r) do
      assert.is_true(x.ok, x.error)
      assert.equal('clean', x.eof)
    end
    if uring_here then
      assert.is_true(p:counters().queued >= 16 * 200, 'each request went through a batch')
    end
    local bytes = 0
    for i = 1, 200 do
      bytes = bytes + 700 + i
    end
    assert.equal(16 * bytes, st.bytes)
  end)

  for _, mode in ipairs({ 'terminate', 'passthrough' }) do
    local suffix, tls = mode == 'terminate' and '' or 's', mode == 'terminate'

    it(mode .. ': client half-close reaches the backend, which still answers', function()
      local bport, st = serve(F.sink_server())
      local r = one({ sni = F.sni(bport, suffix), tls = tls,
        ops = { { 'send', 1000 }, { 'shutdown' }, { 'recv_any' }, { 'eof' } } })
      assert.is_true(r.ok, r.error)
      local expect = 1000 + (tls and 0 or r.hello_len)
      assert.same({ expect }, st.got)
      assert.same({ 'got:' .. expect }, r.recv_any)
      assert.equal('clean', r.eof)
    end)

    it(mode .. ': backend half-close reaches the client, which still sends', function()
      local bport, st = serve(F.greeter_server('hello'))
      local r = one({ sni = F.sni(bport, suffix), tls = tls,
        ops = { { 'recv_any' }, { 'eof' }, { 'send', 700 }, { 'shutdown' }, { 'sleep', 100 } } })
      assert.is_true(r.ok, r.error)
      assert.same({ 'hello' }, r.recv_any)
      assert.equal('clean', r.eof) -- terminate: the close_notify the proxy sent
      assert.is_true(F.wait(function() return #st.after == 1 end))
      assert.equal(700 + (tls and 0 or r.hello_len), st.after[1])
    end)
  end

  it('closes TLS with close_notify when the app closes after 1 MiB', function()
    local bport = serve(F.echo_n_server(MiB))
    local r = one({ sni = F.sni(bport), ops = { { 'send', MiB }, { 'recv', MiB }, { 'eof' } } })
    assert.is_true(r.ok, r.error)
    assert.equal('clean', r.eof)
    assert.equal(0, r.extra)
  end)

  it('reaps an idle connection after the idle timeout but keeps one where data flows', function()
    local bport = serve(F.echo_server())
    local r = one({ sni = F.sni(bport), ops = { { 'send', 10 }, { 'recv', 10 }, { 'closed_within', 4000 } } })
    assert.is_true(r.ok, r.error)
    assert.is_number(r.closed_after_ms)
    assert.is_true(r.closed_after_ms >= 1200 and r.closed_after_ms < 3000, tostring(r.closed_after_ms))
    local ops = {}
    for _ = 1, 6 do -- 3 s of traffic every 0.5 s, idle timeout 1.5 s
      ops[#ops + 1] = { 'send', 100 }
      ops[#ops + 1] = { 'recv', 100 }
      ops[#ops + 1] = { 'sleep', 500 }
    end
    ops[#ops + 1] = { 'shutdown' }
    ops[#ops + 1] = { 'eof' }
    r = one({ sni = F.sni(bport), ops = ops })
    assert.is_true(r.ok, r.error)
    assert.equal('clean', r.eof)
  end)

  it('closes a silent client after the handshake timeout', function()
    local ms = F.raw_closed_after(port, nil, 4000)
    assert.is_number(ms)
    assert.is_true(ms >= 900 and ms < 2500, tostring(ms))
    assert.equal(1, p:counters().refused.timeout)
  end)

  it('closes malformed hellos and non-TLS bytes at once', function()
    local ms = F.raw_closed_after(port, '\22\3\1\0\5hello', 3000)
    assert.is_true(ms ~= nil and ms < 500)
    ms = F.raw_closed_after(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 3000)
    assert.is_true(ms ~= nil and ms < 500)
    local refused = p:counters().refused
    assert.equal(1, refused.malformed)
    assert.equal(1, refused['not-tls'])
  end)

  it('refuses unknown ids, bad names and localhost when it is not enabled', function()
    assert.is_false(one({ sni = 'deadbeef.' .. F.BASE }).ok)
    assert.is_false(one({ sni = 'a-1-2.' .. F.BASE }).ok)
    local refused = p:counters().refused
    assert.equal(1, refused['unknown-id'])
    assert.equal(1, refused.route)
    local bport = serve(F.echo_server())
    p:publish(F.snapshot(2, cert, { insecure_localhost = false }))
    assert.is_false(one({ sni = F.sni(bport) }).ok)
    assert.equal(2, p:counters().refused.route)
  end)

  it('selects ALPN h2 only for g names', function()
    local bport = serve(F.echo_server())
    local r = one({ sni = F.sni(bport, 'g'), alpn = { 'h2', 'http/1.1' },
      ops = { { 'send', 5 }, { 'recv', 5 } } })
    assert.is_true(r.ok, r.error)
    assert.equal('h2', r.alpn)
    r = one({ sni = F.sni(bport), alpn = { 'h2', 'http/1.1' }, ops = { { 'send', 5 }, { 'recv', 5 } } })
    assert.is_true(r.ok, r.error)
    assert.is_nil(r.alpn)
  end)

  it('resumes TLS sessions (1.3 tickets and 1.2), across workers and a publish', function()
    local bport = serve(F.echo_server())
    for _, v in ipairs({ 'TLSv1_3', 'TLSv1_2' }) do
      local r = F.peer({ port = port, sni = F.sni(bport), times = 3, resume = true, max_version = v,
        ops = { { 'send', 5 }, { 'recv', 5 } } })
      assert.equal(3, #r)
      assert.is_true(r[1].ok, r[1].error)
      assert.is_false(r[1].resumed)
      assert.is_true(r[2].resumed, v)
      assert.is_true(r[3].resumed, v)
    end
    -- without resume, nothing is resumed (the check can fail)
    local r = F.peer({ port = port, sni = F.sni(bport), times = 2, ops = { { 'send', 5 }, { 'recv', 5 } } })
    assert.is_false(r[2].resumed)
  end)

  it('keeps connections alive across publishes; new ones use the new snapshot', function()
    local bport = serve(F.echo_server())
    local v, timer, seen = 1, uv.new_timer(), nil
    -- once the connection is up (made under snapshot 1), publish every 50 ms snapshots
    -- without localhost: it must keep working, new connections must not
    timer:start(10, 10, function()
      if not seen then
        local list = p:conns()
        if #list == 0 or list[1].backend == '' then
          return
        end
        seen = list[1]
      end
      v = v + 1
      assert(p:publish(F.snapshot(v, cert, { insecure_localhost = false })))
    end)
    local ops = {}
    for _ = 1, 10 do
      ops[#ops + 1] = { 'send', 1000 }
      ops[#ops + 1] = { 'recv', 1000 }
      ops[#ops + 1] = { 'sleep', 60 }
    end
    ops[#ops + 1] = { 'shutdown' }
    ops[#ops + 1] = { 'eof' }
    local r = one({ sni = F.sni(bport), ops = ops })
    timer:stop()
    timer:close()
    assert.is_true(r.ok, r.error)
    assert.equal('clean', r.eof)
    assert.is_true(v > 5)
    assert.equal(1, seen.snapshot_version)
    assert.equal('terminate', seen.mode)
    assert.equal(F.sni(bport), seen.sni)
    assert.equal('127.0.0.1:' .. bport, seen.backend)
    assert.equal(v, p:counters().snapshot_version)
    assert.is_false(one({ sni = F.sni(bport) }).ok) -- the current snapshot has no localhost
  end)

  it('leaves as many fds open as before after 500 connections', function()
    local bport, st = serve(F.echo_server())
    F.wait(function() return false end, 50)
    local before = F.fds()
    local r = F.peer({ port = port, sni = F.sni(bport), parallel = 10, times = 25,
      ops = { { 'send', 100 }, { 'recv', 100 }, { 'shutdown' }, { 'eof' } } }, 60000)
    local r2 = F.peer({ port = port, sni = F.sni(bport, 's'), tls = false, parallel = 10, times = 25,
      ops = { { 'send', 100 }, { 'shutdown' }, { 'eof' } } }, 60000)
    for _, x in ipairs(r) do
      assert.is_true(x.ok, x.error)
    end
    for _, x in ipairs(r2) do
      assert.is_true(x.ok, x.error)
    end
    assert.is_true(F.wait(function() return p:counters().active == 0 and st.open == 0 end, 5000))
    F.wait(function() return false end, 50)
    assert.equal(500, st.conns)
    assert.equal(500, p:counters().total)
    assert.equal(before, F.fds())
  end)
end)
