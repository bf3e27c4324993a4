-- SPDX-License-Identifier: Apache-2.0
-- moonstack.etcd against a real single-member etcd started here: kv put/get/range(prefix)/
-- delete, txn compare-and-swap, leases (grant, keepalive, revoke, expiry takes the keys),
-- the lock (create-if-absent; busy names the holder; expires with its ttl), the polling
-- watch (puts, deletes, resume after a failover from a dead endpoint), failover and the
-- deadline, strict decoding of what a member answers.
local loop = require('loop')
local uv = require('luv')
local etcd = require('moonstack.etcd')
local lease = require('moonstack.etcd.lease')
local watch = require('moonstack.etcd.watch')
local fixture = require('etcd_fixture')
local server = require('moonstack.http.server')

local run = loop.run_task

describe('etcd client', function()
  if not fixture.available() then
    pending('etcd is not installed (/usr/bin/etcd)')
    return
  end
  local e
  setup(function()
    e = fixture.start()
  end)
  teardown(function()
    if e then
      e.stop()
    end
  end)

  it('puts, gets, ranges a prefix and deletes', function()
    run(function()
      local c = assert(etcd.new({ endpoints = { e.url } }))
      local rev = assert(c:put('/t/kv/a', 'one'))
      assert.is_true(rev > 0)
      assert(c:put('/t/kv/b', 'two\0bytes'))
      assert(c:put('/t/kvz', 'outside'))
      assert.are.equal('one', c:get('/t/kv/a'))
      assert.is_false(c:get('/t/kv/none'))
      local r = assert(c:range('/t/kv/', { prefix = true }))
      assert.are.equal(2, r.count)
      assert.are.equal('/t/kv/a', r.kvs[1].key)
      assert.are.equal('two\0bytes', r.kvs[2].value)
      assert.is_true(r.kvs[2].mod_revision > r.kvs[1].mod_revision)
      assert.are.equal(2, assert(c:delete('/t/kv/', { prefix = true })))
      assert.are.equal(0, assert(c:range('/t/kv/', { prefix = true })).count)
      assert.are.equal('outside', c:get('/t/kvz'))
      assert.are.equal('/t/kw', etcd.prefix_end('/t/kv'))
      assert.are.equal('a\1', etcd.prefix_end('a\0\255'))
    end, 10000)
  end)

  it('compares and swaps in a transaction', function()
    run(function()
      local c = assert(etcd.new({ endpoints = { e.url } }))
      assert(c:put('/t/cas', 'x'))
      local r = assert(c:txn({ { key = '/t/cas', target = 'value', value = 'x' } },
        { { put = '/t/cas', value = 'y' } }, { { get = '/t/cas' } }))
      assert.is_true(r.succeeded)
      r = assert(c:txn({ { key = '/t/cas', target = 'value', value = 'x' } },
        { { put = '/t/cas', value = 'z' } }, { { get = '/t/cas' } }))
      assert.is_false(r.succeeded)
      assert.are.equal('y', r.responses[1].kvs[1].value)
      assert.are.equal('y', c:get('/t/cas'))
    end, 10000)
  end)

  it('grants, refreshes and revokes leases; an expired lease takes its keys', function()
    run(function()
      local c = assert(etcd.new({ endpoints = { e.url } }))
      local id, ttl = assert(c:grant(30))
      assert.matches('^%d+$', id)
      assert.are.equal(30, ttl)
      assert(c:put('/t/leased', 'v', { lease = id }))
      assert.is_true(assert(c:keepalive(id)) > 0)
      assert.are.equal(id, select(2, c:get('/t/leased')).lease)
      assert(c:revoke(id))
      assert.is_false(c:get('/t/leased'))
      local _, err, code = c:keepalive(id)
      assert.are.equal('ENOENT', code, err)
      assert.is_true(c:revoke(id)) -- already gone
      -- a kept lease outlives its ttl; a lost one is granted again
      local news = 0
      local k = lease.keeper(c, 1, { on_new = function(lid) news = news + 1
        assert(c:put('/t/kept', 'v', { lease = lid })) end })
      assert(k:wait(3000))
      require('moonstack.core.task').sleep(2500)
      assert.are.equal('v', c:get('/t/kept'))
      assert.are.equal(1, news)
      assert(c:revoke(k:id()))
      require('moonstack.core.task').sleep(1200)
      assert.are.equal(2, news) -- noticed the loss, granted again, on_new put the key back
      assert.are.equal('v', c:get('/t/kept'))
      k:stop({ revoke = true })
      assert.is_false(c:get('/t/kept'))
    end, 15000)
  end)

  it('locks: one holder, busy names it, unlock and expiry free it', function()
    run(function()
      local c = assert(etcd.new({ endpoints = { e.url } }))
      local t1 = assert(lease.lock(c, '/t/lock/renew', 2))
      local none, holder, code = lease.lock(c, '/t/lock/renew', 2)
      assert.is_nil(none)
      assert.are.equal('EBUSY', code)
      assert.are.equal(t1, holder)
      assert.is_false(lease.unlock(c, '/t/lock/renew', 'not-the-token'))
      assert.is_true(lease.unlock(c, '/t/lock/renew', t1))
      local t2 = assert(lease.lock(c, '/t/lock/renew', 1))
      assert.are_not.equal(t1, t2)
      require('moonstack.core.task').sleep(2600) -- the ttl runs out
      assert(lease.lock(c, '/t/lock/renew', 1))
    end, 15000)
  end)

  it('watches a prefix by revision: puts, deletes, resumes after a failover', function()
    run(function()
      local task = require('moonstack.core.task')
      -- the first endpoint refuses connections: every call fails over to the real one
      local s = uv.new_tcp()
      assert(s:bind('127.0.0.1', 0))
      local dead = 'http://127.0.0.1:' .. s:getsockname().port
      s:close()
      local c = assert(etcd.new({ endpoints = { dead, e.url }, timeout_ms = 3000 }))
      assert(c:put('/t/w/a', '1'))
      local seen = {}
      local w = watch.start(c, '/t/w/', function(events)
        for _, ev in ipairs(events) do
          seen[#seen + 1] = ev.type .. ' ' .. ev.key .. ' ' .. (ev.value or '')
        end
      end, { interval_ms = 50 })
      local function wait_n(n)
        for _ = 1, 100 do
          if #seen >= n then
            return
          end
          task.sleep(20)
        end
      end
      wait_n(1)
      assert.are.same({ 'put /t/w/a 1' }, seen)
      assert(c:put('/t/w/b', '2'))
      assert(c:put('/t/w/a', '3'))
      assert(c:delete('/t/w/b'))
      assert(c:put('/t/w/c', '4'))
      wait_n(3)
      task.sleep(150)
      -- b came and went between two polls at most: it is seen as put+delete or not at all
      local joined = table.concat(seen, '|')
      assert.matches('put /t/w/a 3', joined)
      assert.matches('put /t/w/c 4', joined)
      assert(c:delete('/t/w/a'))
      local before = #seen
      wait_n(before + 1)
      assert.are.equal('delete /t/w/a ', seen[#seen])
      assert.is_true(w.revision > 0)
      assert.is_true(c:status().failovers >= 1)
      w:stop()
    end, 15000)
  end)

  it('gives up at the deadline when no member answers', function()
    run(function()
      local s = uv.new_tcp()
      assert(s:bind('127.0.0.1', 0))
      local dead = 'http://127.0.0.1:' .. s:getsockname().port
      s:close()
      local c = assert(etcd.new({ endpoints = { dead }, timeout_ms = 400 }))
      local t0 = uv.now()
      local r, err, code = c:put('/t/x', 'y')
      assert.is_nil(r)
      assert.are.equal('EUNAVAILABLE', code, err)
      assert.is_true(uv.now() - t0 < 1500)
      assert.is_nil(etcd.new({ endpoints = { 'ftp://x' } }))
      assert.is_nil(etcd.new({ endpoints = {} }))
    end, 10000)
  end)

  it('speaks to an etcd over TLS with a client certificate (cluster.etcd ca/cert/key files)', function()
    local t = fixture.start({ tls = true })
    local ok, err = pcall(run, function()
      local c = assert(etcd.from_config({ endpoints = { t.url }, timeout_ms = 3000,
        ca_file = t.dir .. '/ca.pem', cert_file = t.dir .. '/client.pem',
        key_file = t.dir .. '/client.key' }))
      assert(c:put('/tls/k', 'v'))
      assert.are.equal('v', c:get('/tls/k'))
      -- without the client certificate etcd refuses; without the CA we refuse etcd
      local anon = assert(etcd.from_config({ endpoints = { t.url }, timeout_ms = 600,
        ca_file = t.dir .. '/ca.pem' }))
      assert.is_nil((anon:get('/tls/k')))
      local blind = assert(etcd.from_config({ endpoints = { t.url }, timeout_ms = 600 }))
      assert.is_nil((blind:get('/tls/k')))
      assert.is_nil((etcd.from_config({ endpoints = { t.url }, cert_file = t.dir .. '/client.pem' })))
      assert.is_nil((etcd.from_config({ endpoints = { t.url }, ca_file = t.dir .. '/none.pem' })))
    end, 15000)
    t.stop()
    assert(ok, err)
  end)

  it('refuses answers that are not what etcd sends', function()
    local srv = server.new({ listen = { host = '127.0.0.1', port = 0 } })
    local answers = {
      '{"header":{"revision":5}',                              -- not JSON
      '{"header":{"revision":"5"},"kvs":[{"key":"!!","create_revision":"1"}]}', -- bad base64
      '{"header":{"revision":"x"}}',                           -- revision not an integer
      '{"header":{"revision":"5"},"header":{"revision":"6"}}', -- duplicate member
      '[1,2]',                                                  -- not an object
    }
    local i = 0
    srv:route('POST', '/v3/kv/range', function()
      i = i + 1
      return 200, answers[i], { ['content-type'] = 'application/json' }
    end)
    assert(srv:listen())
    run(function()
      local c = assert(etcd.new({ endpoints = { 'http://127.0.0.1:' .. srv:port() } }))
      for n = 1, #answers do
        local r, err, code = c:range('/k')
        assert.is_nil(r, 'answer ' .. n)
        assert.are.equal('EPROTO', code, err)
      end
    end, 10000)
    srv:close()
    loop.settle()
  end)
end)
