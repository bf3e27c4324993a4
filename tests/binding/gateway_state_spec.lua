-- SPDX-License-Identifier: Apache-2.0
-- moonstack.gateway.state: the allocator of §6.6 (spec §9 row 13: two instances get 10.0.0.2
-- and 10.0.0.3 from the default client_ip_range with the gateway's 10.0.0.1 reserved; the
-- rendered WireGuard config), the refusals (another app's instance id, a key in use, an
-- exhausted range), re-registration keeping the address, persistence (0600, atomic, read back),
-- the port policies and recycle.
local state_mod = require('moonstack.gateway.state')
local gw_wg = require('moonstack.gateway.wg')
local fixtures = require('fixtures')
local wgn = require('moonstack.native.wg')

local WG = { ip = '10.0.0.1/24', reserved_net = { '10.0.0.1/32' }, client_ip_range = '10.0.0.0/25',
  listen_port = 51820 }

local function reg(st, id, app, key, extra)
  local r = { instance_id = id, app_id = app, public_key = key or wgn.pubkey(wgn.genkey()) }
  for k, v in pairs(extra or {}) do
    r[k] = v
  end
  return st:register(r)
end

describe('gateway state', function()
  it('allocates 10.0.0.2 then 10.0.0.3 and renders the WireGuard config (spec §9 row 13)', function()
    local st = state_mod.new({ wg = WG })
    local k1, k2 = wgn.pubkey(wgn.genkey()), wgn.pubkey(wgn.genkey())
    local a = assert(reg(st, 'aa', 'app1', k1))
    local b = assert(reg(st, 'bb', 'app1', k2))
    assert.are.equal('10.0.0.2', a.ip)
    assert.are.equal('10.0.0.3', b.ip)
    local priv = wgn.genkey()
    local conf = gw_wg.config(WG, priv, st:list())
    assert.are.equal(51820, conf.listen_port)
    assert.are.same({ { public_key = k1, allowed_ips = { '10.0.0.2/32' }, persistent_keepalive = 25 },
      { public_key = k2, allowed_ips = { '10.0.0.3/32' }, persistent_keepalive = 25 } }, conf.peers)
    local ok, wgmod = pcall(require, 'moonstack.wg')
    if ok and wgmod.render_config then
      local text = wgmod.render_config(conf)
      assert.matches('%[Interface%]', text)
      assert.matches('PrivateKey = ' .. priv:gsub('%p', '%%%0'), text)
      assert.matches('ListenPort = 51820', text)
      assert.matches('AllowedIPs = 10%.0%.0%.2/32', text)
      assert.matches('AllowedIPs = 10%.0%.0%.3/32', text)
      local _, peers = text:gsub('%[Peer%]', '')
      assert.are.equal(2, peers)
      local _, ka = text:gsub('PersistentKeepalive = 25', '')
      assert.are.equal(2, ka)
    else
      pending('moonstack.wg (render_config) is not merged yet')
    end
  end)

  it('skips the gateway IP, reserved nets and the broadcast address; keeps an address', function()
    local st = state_mod.new({ wg = { ip = '10.0.0.5/29', reserved_net = { '10.0.0.5/32', '10.0.0.1/32' },
      client_ip_range = '10.0.0.0/29' } })
    local ips = {}
    for i = 1, 4 do
      ips[i] = assert(reg(st, 'i' .. i, 'app')).ip
    end
    assert.are.same({ '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.6' }, ips)
    local inst, err, code = reg(st, 'i5', 'app')
    assert.is_nil(inst)
    assert.are.equal('EEXHAUSTED', code)
    assert.matches('no free address', err)
    local again, new = reg(st, 'i3', 'app')
    assert.are.equal('10.0.0.4', again.ip)
    assert.is_false(new)
    assert.is_true(st:remove('i1'))
    assert.are.equal('10.0.0.2', assert(reg(st, 'i9', 'app')).ip)
  end)

  it('refuses another app\'s instance id, a key in use, empty ids', function()
    local st = state_mod.new({ wg = WG })
    local k = wgn.pubkey(wgn.genkey())
    assert(reg(st, 'aa', 'app1', k))
    local _, err, code = reg(st, 'aa', 'app2')
    assert.are.equal('EDENIED', code)
    assert.matches('registered to another app', err)
    _, _, code = reg(st, 'bb', 'app1', k)
    assert.are.equal('EINUSE', code)
    _, _, code = reg(st, '', 'app1')
    assert.are.equal('EINVAL', code)
    assert.are.equal(1, st:count())
  end)

  it('persists atomically (0600) and reads the instances back', function()
    local dir = fixtures.tmpdir('gwstate')
    local st = state_mod.new({ wg = WG, data_dir = dir, now = function() return 1000 end })
    local pp = { ports = { { port = 8080, pp = true } }, restrict_mode = true }
    assert(reg(st, 'aa', 'app1', nil, { compose_hash = 'c1', port_policy = pp }))
    assert(reg(st, 'bb', 'app2'))
    local path = dir .. '/' .. state_mod.FILE
    assert.are.equal(384, require('luv').fs_stat(path).mode % 512)
    local st2 = state_mod.new({ wg = WG, data_dir = dir })
    assert(st2:load())
    assert.are.equal(2, st2:count())
    local a = st2:get('aa')
    assert.are.equal('10.0.0.2', a.ip)
    assert.are.equal(1000, a.reg_time)
    assert.are.same(pp, a.port_policy)
    assert.are.equal('10.0.0.3', st2:get('bb').ip)
    assert.are.equal('10.0.0.4', assert(reg(st2, 'cc', 'app3')).ip)
    local f = assert(io.open(path, 'wb'))
    f:write('not json')
    f:close()
    local _, err, code = state_mod.new({ wg = WG, data_dir = dir }):load()
    assert.are.equal('EPARSE', code)
    assert.matches('not a gateway state file', err)
  end)

  it('drops the reported port policy on a new compose hash; the admin override wins', function()
    local st = state_mod.new({ wg = WG })
    local k = wgn.pubkey(wgn.genkey())
    local pp = { ports = { { port = 80, pp = false } }, restrict_mode = false }
    assert(reg(st, 'aa', 'app', k, { compose_hash = 'c1', port_policy = pp }))
    assert(reg(st, 'aa', 'app', k, { compose_hash = 'c1' }))
    assert.are.same(pp, st:get('aa').port_policy)
    assert(reg(st, 'aa', 'app', k, { compose_hash = 'c2' }))
    assert.is_nil(st:get('aa').port_policy)
    local over = { ports = { { port = 443, pp = true } }, restrict_mode = true }
    assert(st:set_admin_port_policy('aa', over))
    assert.are.same(over, state_mod.effective_port_policy(st:get('aa')))
    local _, _, code = st:set_admin_port_policy('zz', over)
    assert.are.equal('ENOENT', code)
  end)

  it('recycles instances registered and silent for longer than the timeout', function()
    local now = 10000
    local st = state_mod.new({ wg = WG, now = function() return now end })
    local k1, k2, k3 = wgn.pubkey(wgn.genkey()), wgn.pubkey(wgn.genkey()), wgn.pubkey(wgn.genkey())
    assert(reg(st, 'old', 'app', k1))
    assert(reg(st, 'talking', 'app', k2))
    now = 20000
    assert(reg(st, 'new', 'app', k3))
    local changes = {}
    st:on_change(function(_, what) changes[#changes + 1] = what end)
    assert.is_true(st:set_handshakes({ [k2] = 19990 }))
    assert.is_false(st:set_handshakes({ [k2] = 19990 }))
    local gone = st:recycle(3600)
    assert.are.equal(1, #gone)
    assert.are.equal('old', gone[1].instance_id)
    assert.are.same({ 'handshakes', 'recycle' }, changes)
    assert.is_nil(st:get('old'))
    assert.are.equal(19990, st:get('talking').last_handshake)
  end)
end)
