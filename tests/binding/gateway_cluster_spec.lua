-- SPDX-License-Identifier: Apache-2.0
-- The gateway's cluster pieces against a real single-member etcd: the certificate store the
-- ACME certbot uses (get/put of plain keys under <prefix>/gateway/, the lease-backed lock: one
-- holder, busy names it, unlock by token only, expiry after its ttl), the strict checks of the
-- records read back from etcd, and the state's apply/retain of cluster records (the local
-- handshake time kept, unchanged records no change).
local loop = require('loop')
local etcd = require('moonstack.etcd')
local fixture = require('etcd_fixture')
local store_mod = require('moonstack.gateway.cluster_store')
local cluster = require('moonstack.gateway.cluster')
local state_mod = require('moonstack.gateway.state')
local wgn = require('moonstack.native.wg')

local run = loop.run_task
local IID = ('ab'):rep(20)

describe('gateway cluster', function()
  it('checks instance and node records strictly', function()
    local key = wgn.pubkey(wgn.genkey())
    local good = { instance_id = IID, app_id = 'cd', ip = '10.0.0.70', public_key = key,
      reg_time = 5, node_id = 1, port_policy = { ports = { { port = 80, pp = true } } } }
    local cjson = require('cjson.safe')
    local rec = assert(cluster.decode_instance(cjson.encode(good), IID))
    assert.are.equal('10.0.0.70', rec.ip)
    assert.are.equal(80, rec.port_policy.ports[1].port)
    local function bad(field, v, id)
      local t = cjson.decode(cjson.encode(good))
      t[field] = v
      assert.is_nil((cluster.decode_instance(cjson.encode(t), id or IID)), field)
    end
    bad('ip', '10.0.0.300')
    bad('public_key', 'c2hvcnQ=')
    bad('instance_id', 'zz')
    bad('instance_id', ('ab'):rep(19), IID) -- not the key's id
    bad('reg_time', '5')
    bad('port_policy', { ports = { { port = 70000 } } })
    assert.is_nil((cluster.decode_instance('{"instance_id":', IID)))
    assert.is_nil((cluster.decode_instance(('x'):rep(300 * 1024), IID)))
    assert.is_truthy(cluster.decode_node('{"id":2,"wg_ip":"10.0.0.2/24"}'))
    assert.is_nil((cluster.decode_node('{"id":"2"}')))
    assert.is_nil((cluster.decode_node('{"id":2,"wg_ip":7}')))
  end)

  it('applies cluster records to the state and keeps the local handshake time', function()
    local st = state_mod.new({ wg = { ip = '10.0.0.1/24', reserved_net = { '10.0.0.1/32' },
      client_ip_range = '10.0.0.64/26' } })
    local changes = 0
    st:on_change(function() changes = changes + 1 end)
    local key = wgn.pubkey(wgn.genkey())
    local rec = { instance_id = IID, app_id = 'cd', ip = '10.0.0.130', public_key = key,
      reg_time = 5, node_id = 2 }
    assert.is_true(st:apply(rec))
    st:set_handshakes({ [key] = 1234 })
    assert.is_false(st:apply(rec)) -- the same record: nothing to do
    rec.reg_time = 6
    assert.is_true(st:apply(rec))
    assert.are.equal(1234, st:get(IID).last_handshake)
    -- a local registration allocates from this node's range, never a peer's address
    local mine = assert(st:register({ instance_id = 'ee', app_id = 'cd',
      public_key = wgn.pubkey(wgn.genkey()), node_id = 1 }))
    assert.are.equal('10.0.0.65', mine.ip)
    assert.are.equal(1, st:record('ee').node_id)
    -- recycle in a cluster: only this node's instances
    st.now = function() return 10 ^ 10 end
    local gone = st:recycle(10, 1)
    assert.are.equal(1, #gone)
    assert.are.equal('ee', gone[1].instance_id)
    assert.is_table(st:get(IID))
    assert.are.equal(1, st:retain({}))
    assert.are.equal(0, st:count())
    assert.is_true(changes >= 5)
  end)

  it('does not apply a record that clashes with another instance (address or key)', function()
    local st = state_mod.new({ wg = { ip = '10.0.0.1/24', reserved_net = { '10.0.0.1/32' },
      client_ip_range = '10.0.0.64/26' } })
    local gw = { state = st, log = require('moonstack.core.log').new('test'),
      cfg = { cluster = { node_id = 1, etcd = { endpoints = { 'http://127.0.0.1:1' },
        prefix = '/ms', timeout_ms = 100 } } } }
    local c = assert(cluster.new(gw))
    local k1, k2 = wgn.pubkey(wgn.genkey()), wgn.pubkey(wgn.genkey())
    assert.is_true(c:_apply({ instance_id = 'aa', app_id = 'cd', ip = '10.0.0.130', public_key = k1,
      reg_time = 1, node_id = 2 }, 'k1'))
    assert.is_false(c:_apply({ instance_id = 'bb', app_id = 'cd', ip = '10.0.0.130', public_key = k2,
      reg_time = 1, node_id = 2 }, 'k2'))
    assert.is_false(c:_apply({ instance_id = 'bb', app_id = 'cd', ip = '10.0.0.131', public_key = k1,
      reg_time = 1, node_id = 2 }, 'k2'))
    assert.is_true(c:_apply({ instance_id = 'bb', app_id = 'cd', ip = '10.0.0.131', public_key = k2,
      reg_time = 1, node_id = 2 }, 'k2'))
    assert.are.equal(2, st:count())
  end)

  it('GetPeers lists the other nodes known from etcd, for a gateway\'s certificate only', function()
    local x509 = require('moonstack.x509')
    local attestation = require('moonstack.tdx.attestation')
    local function cert_of(app)
      local key = x509.generate_key()
      return assert(x509.issue({ subject = 'gw', key = key, eku = { 'client_auth' },
        ratls = { app_info = attestation.app_info_ext({ app_id = app,
          compose_hash = ('\1'):rep(32), instance_id = ('\2'):rep(20) }) } })).der
    end
    local app = ('\171'):rep(20)
    local gw = { state = state_mod.new({}), log = require('moonstack.core.log').new('test'),
      cfg = { node = { id = 1, url = 'https://gw-1:8000', app_id = ('ab'):rep(20) },
        cluster = { node_id = 1, etcd = { endpoints = { 'http://127.0.0.1:1' },
          prefix = '/ms', timeout_ms = 100 } } } }
    gw.cluster = assert(cluster.new(gw))
    gw.cluster.nodes = { [2] = { id = 2, url = 'https://gw-2:8000', wg_public_key = 'pk2',
      status = 'up' }, [3] = { id = 3, url = 'https://gw-3:8000', wg_public_key = 'pk3',
      status = 'down' } }
    local m = require('moonstack.gateway.api').methods(gw).GetPeers
    local r = assert(m.call({}, { peer_cert = cert_of(app) }))
    assert.are.equal(1, r.my_id)
    assert.are.same({ { id = 1, url = 'https://gw-1:8000' }, { id = 2, url = 'https://gw-2:8000' } },
      r.peers)
    assert.is_nil((m.call({}, { peer_cert = cert_of(('\205'):rep(20)) })))
    assert.is_nil((m.call({}, {})))
  end)

  describe('certificate store on etcd', function()
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

    it('gets and puts plain keys under <prefix>/gateway/', function()
      run(function()
        local c = assert(etcd.new({ endpoints = { e.url } }))
        local s = store_mod.new(c, '/ms/gateway/')
        assert.is_nil(s:get('acme/account'))
        assert.is_true(s:put('acme/account', '{"uri":"https://ca/acct/1"}'))
        assert.is_true(s:put('cert/example.com/data', ('\1\2'):rep(1000)))
        assert.are.equal('{"uri":"https://ca/acct/1"}', s:get('acme/account'))
        assert.are.equal(('\1\2'):rep(1000), s:get('cert/example.com/data'))
        assert.are.equal('{"uri":"https://ca/acct/1"}', c:get('/ms/gateway/acme/account'))
        assert.is_nil(s:put('../escape', 'x'))
        assert.is_nil(s:put('/abs', 'x'))
        assert.is_nil(s:put('k', ('x'):rep(store_mod.MAX_VALUE + 1)))
        assert.is_nil(s:put('k', 5))
      end, 10000)
    end)

    it('locks with a lease: one holder, busy names it, unlock by token', function()
      run(function()
        local c = assert(etcd.new({ endpoints = { e.url } }))
        local s1 = store_mod.new(c, '/ms/gateway/')
        local s2 = store_mod.new(assert(etcd.new({ endpoints = { e.url } })), '/ms/gateway/')
        local t1 = assert(s1:lock('acme-renew', 2))
        local none, holder = s2:lock('acme-renew', 2)
        assert.is_nil(none)
        assert.are.equal(t1, holder)
        assert.is_false(s2:unlock('acme-renew', 'someone-else'))
        assert.is_nil((s2:lock('acme-renew', 2)))
        assert.is_true(s1:unlock('acme-renew', t1))
        local t2 = assert(s2:lock('acme-renew', 1))
        assert.are_not.equal(t1, t2)
        assert.are.equal(t2, c:get('/ms/gateway/locks/acme-renew'))
        assert.is_true(s2:holds('acme-renew', t2))
        assert.is_true(s2:unlock('acme-renew', t2))
        assert.is_false(s2:holds('acme-renew', t2))
        assert.is_string(s1:lock('acme-renew', 5))
      end, 15000)
    end)

    it('keeps a lock alive past its lease while held; a dead holder frees it within lock_ttl', function()
      run(function()
        local task = require('moonstack.core.task')
        local c = assert(etcd.new({ endpoints = { e.url } }))
        local s1 = store_mod.new(c, '/ms/gateway/', { lock_ttl = 2 })
        local s2 = store_mod.new(assert(etcd.new({ endpoints = { e.url } })), '/ms/gateway/',
          { lock_ttl = 2 })
        local t1 = assert(s1:lock('renew-ka', 60))
        task.sleep(4500) -- twice the lease: kept alive by the holder
        assert.are.equal(t1, c:get('/ms/gateway/locks/renew-ka'))
        assert.is_true(s1:holds('renew-ka', t1))
        assert.is_nil((s2:lock('renew-ka', 60)))
        s1.held['renew-ka'].released = true -- the holder dies (no unlock, no more keepalive)
        local t0, free = os.time(), false
        while os.time() - t0 < 8 and not free do
          task.sleep(200)
          free = c:get('/ms/gateway/locks/renew-ka') == false
        end
        assert.is_true(free)
        assert.is_string(s2:lock('renew-ka', 5))
      end, 15000)
    end)

    it('says why when etcd cannot be reached (never a silent success)', function()
      run(function()
        local c = assert(etcd.new({ endpoints = { 'http://127.0.0.1:1' }, timeout_ms = 300 }))
        local s = store_mod.new(c, '/ms/gateway/')
        local v, err = s:get('acme/account')
        assert.is_nil(v)
        assert.matches('EUNAVAILABLE', err)
        local ok, perr = s:put('acme/account', 'x')
        assert.is_nil(ok)
        assert.matches('EUNAVAILABLE', perr)
        local tok, holder = s:lock('acme-renew', 5)
        assert.is_nil(tok)
        assert.matches('EUNAVAILABLE', holder)
      end, 10000)
    end)
  end)
end)
