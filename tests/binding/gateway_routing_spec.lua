-- SPDX-License-Identifier: Apache-2.0
-- moonstack.gateway.routing + the snapshot builder: on_route decisions (allow, deny, another
-- backend port, PROXY header) made in policy workers for every instance and app × its policy
-- ports when the snapshot is built, cached per key (no second policy call), the example policy
-- examples/policies/route.lua loads with its tests; a broken file is refused and the old
-- policy keeps deciding; a good new version replaces the decisions.
local routing = require('moonstack.gateway.routing')
local proxy = require('moonstack.gateway.proxy')
local state_mod = require('moonstack.gateway.state')
local fixtures = require('fixtures')
local loop = require('loop')
local log = require('moonstack.core.log').new('test')

local function in_task(fn)
  return function()
    loop.run_task(fn, 30000)
  end
end

-- Replace the file at `path` with `text` in one step (a rename: watchers see a whole file).
local function write(path, text)
  assert(require('moonstack.core.fs').write_atomic(path, text))
end

local function policy(version, body)
  return ([[return { name = 'spec', version = %d, on_route = function(m) %s end,
    tests = { { hook = 'on_route', input = { app_id = 'a', port = 1 }, expect = {} } } }]]):format(
    version, body)
end

local WG = { ip = '10.0.0.1/24', reserved_net = { '10.0.0.1/32' }, client_ip_range = '10.0.0.0/25' }

describe('gateway routing policy', function()
  it('loads the example policy (its self-tests pass)', in_task(function()
    local src = os.getenv('MOONSTACK_SRC') or '.'
    local r = assert(routing.start({ path = src .. '/examples/policies/route.lua', watch = false,
      workers = 1 }, log))
    assert.are.same({ allow = true, to_port = 8080 }, r:decide('x:80', { app_id = 'x', port = 80 }))
    assert.are.same({ allow = false }, r:decide('x:22', { app_id = 'x', port = 22 }))
    assert.are.same({ allow = true, pp = true }, r:decide('x:8443', { app_id = 'x', port = 8443 }))
    r:close()
  end))

  it('decides every instance and app port when the snapshot is built, once', in_task(function()
    local dir = fixtures.tmpdir('gwroute')
    local path = dir .. '/route.lua'
    write(path, policy(1, [[
      if m.port == 22 then return { allow = false, reason = 'ssh' } end
      if m.instance_id then return { allow = true, to_port = m.port + 1 } end
      return { allow = true, pp = true }]]))
    local changed = 0
    local r = assert(routing.start({ path = path, watch = false, workers = 1 }, log,
      function() changed = changed + 1 end))
    local st = state_mod.new({ wg = WG })
    assert(st:register({ instance_id = 'i1', app_id = 'a1', public_key = 'k1',
      port_policy = { ports = { { port = 80, pp = false }, { port = 22, pp = false } } } }))
    assert(st:register({ instance_id = 'i2', app_id = 'a1', public_key = 'k2' }))
    local keys = proxy.route_keys(st:list())
    local routes = {}
    for k, meta in pairs(keys) do
      routes[k] = r:decide(k, meta)
    end
    assert.are.same({
      ['i1:80'] = { allow = true, to_port = 81 }, ['i1:22'] = { allow = false },
      ['a1:80'] = { allow = true, pp = true }, ['a1:22'] = { allow = false },
    }, routes)
    local decisions = r:status().decisions
    r:decide('i1:80', keys['i1:80'])
    assert.are.equal(decisions, r:status().decisions) -- cached: no policy call
    local snap = proxy.snapshot({ cfg = { proxy = { base_domain = 'b', timeouts = {
      handshake_stale = 1800, cache_top_n = 30, dns_resolve = 5 }, app_address_ns_prefix = 'p',
      app_address_ns_compat = true, app_address_dns_servers = {} },
      debug = { insecure_localhost_backend = false } }, state = st, certs = {} }, routes, 7)
    assert.are.equal(7, snap.version)
    -- no certificate: the base domain is still published (its `s` names pass through)
    assert.are.same({ { domain = 'b' } }, snap.base_domains)
    assert.are.same({ [80] = { pp = false }, [22] = { pp = false } }, snap.instances.i1.ports)
    assert.is_nil(snap.instances.i2.ports) -- no policy known yet: the data path denies
    assert.are.equal('10.0.0.2', snap.instances.i1.ip)
    assert.are.same(routes, snap.routes)

    -- a broken file is refused: the old decisions stay
    write(path, 'return { name = ')
    local s, err = r:reload()
    assert.is_nil(s)
    assert.is_string(err)
    assert.are.equal(1, r:status().failures)
    assert.are.same({ allow = true, pp = true }, r:decide('a1:80', keys['a1:80']))
    assert.are.equal(0, changed)
    -- a policy whose own tests fail is refused too
    write(path, [[return { name = 'spec', version = 3, on_route = function() return { allow = true } end,
      tests = { { hook = 'on_route', input = {}, expect = { allow = false } } } }]])
    assert.is_nil(r:reload())
    assert.are.same({ allow = true, to_port = 81 }, r:decide('i1:80', keys['i1:80']))
    -- a good new version replaces the decisions
    write(path, policy(2, "return { allow = false, reason = 'v2' }"))
    assert(r:reload())
    assert.are.equal(1, changed)
    assert.are.same({ allow = false }, r:decide('i1:80', keys['i1:80']))
    assert.are.same({ allow = false }, r:decide('a1:80', keys['a1:80']))
    r:close()
  end))

  it('turns a nonsense port into a deny', function()
    assert.are.same({ allow = false }, routing.route_of({ allow = true, to_port = 70000 }))
    assert.are.same({ allow = true, to_port = 8080 }, routing.route_of({ allow = true, to_port = 8080 }))
  end)
end)
