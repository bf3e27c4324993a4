-- SPDX-License-Identifier: Apache-2.0
-- moonstack.native.wg without wireguard-go: key helpers (RFC 7748's X25519 vector), refusals of
-- bad keys and values before anything is sent, and get/set on the thread pool against a fake
-- UAPI server served by the loop itself (a blocking call would deadlock it: the pool is used).
local uv = require('luv')
local loop = require('tests.helpers.loop')
local wg = require('moonstack.native.wg')

local ALICE_PRIV = 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo='
local ALICE_PUB = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo='
local BOB_PUB_HEX = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'
local TMP = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'

-- A one-shot UAPI server at a fresh path: records the request, answers `reply`.
local function fake(reply)
  os.execute('mkdir -p ' .. TMP)
  local path = string.format('%s/wg-spec-%d-%d.sock', TMP, uv.os_getpid(), math.random(1e9))
  os.remove(path)
  local srv = uv.new_pipe(false)
  assert(srv:bind(path))
  local got = { text = '' }
  assert(srv:listen(1, function()
    local c = uv.new_pipe(false)
    srv:accept(c)
    c:read_start(function(_, data)
      if not data then return c:close() end
      got.text = got.text .. data
      if got.text:sub(-2) == '\n\n' then
        c:write(reply, function() c:close() end)
      end
    end)
  end))
  return path, got, function() srv:close(); os.remove(path) end
end

local function call(fn, ...)
  local res
  local args = { ... }
  args[#args + 1] = function(...) res = { n = select('#', ...), ... } end
  assert.is_true(fn(unpack(args)))
  assert.is_true(loop.run_until(function() return res ~= nil end, 5000))
  return unpack(res, 1, res.n)
end

describe('moonstack.native.wg', function()
  it('derives X25519 public keys and converts keys', function()
    assert.are.equal(ALICE_PUB, wg.pubkey(ALICE_PRIV))
    assert.are.equal(ALICE_PUB, wg.pubkey(wg.hex(ALICE_PRIV)))
    assert.are.equal(BOB_PUB_HEX, wg.hex(wg.base64(BOB_PUB_HEX)))
    local k = wg.genkey()
    assert.are.equal(44, #k)
    assert.are.equal(44, #wg.pubkey(k))
    assert.are_not.equal(wg.genpsk(), wg.genpsk())
    assert.has_error(function() wg.pubkey('short') end)
    assert.has_error(function() wg.hex(ALICE_PUB:sub(1, 43) .. '\n') end)
    assert.are.equal('/var/run/wireguard/wg0.sock', wg.socket_path('wg0'))
    local p, err, code = wg.socket_path('../etc')
    assert.is_nil(p)
    assert.are.equal('EINVAL', code, err)
  end)

  it('gets a device on the thread pool', function()
    local path, got, stop = fake(table.concat({
      'private_key=' .. wg.hex(ALICE_PRIV), 'listen_port=51820',
      'public_key=' .. BOB_PUB_HEX, 'preshared_key=' .. string.rep('0', 64),
      'protocol_version=1', 'endpoint=10.250.0.2:51821', 'last_handshake_time_sec=0',
      'last_handshake_time_nsec=0', 'tx_bytes=10', 'rx_bytes=20',
      'persistent_keepalive_interval=25', 'allowed_ip=10.251.0.2/32', 'errno=0', '', '' }, '\n'))
    local dev, err = call(wg.get, path, { timeout_ms = 3000 })
    stop()
    assert.are.equal('get=1\n\n', got.text)
    assert.is_table(dev, err)
    assert.are.equal(ALICE_PRIV, dev.private_key)
    assert.are.equal(ALICE_PUB, dev.public_key)
    assert.are.equal(51820, dev.listen_port)
    assert.are.equal(1, #dev.peers)
    local p = dev.peers[1]
    assert.are.equal(wg.base64(BOB_PUB_HEX), p.public_key)
    assert.is_nil(p.preshared_key)
    assert.are.equal('10.250.0.2:51821', p.endpoint)
    assert.are.same({ '10.251.0.2/32' }, p.allowed_ips)
    assert.are.equal(20, p.rx_bytes)
    assert.are.equal(25, p.persistent_keepalive_interval)
  end)

  it('sets a device and reports its errno', function()
    local path, got, stop = fake('errno=-22\n\n')
    local ok, err, code = call(wg.set, path, {
      private_key = ALICE_PRIV, listen_port = 51820, replace_peers = true,
      peers = { { public_key = BOB_PUB_HEX, endpoint = '[::1]:1', allowed_ips = { '10.0.0.0/8' },
        replace_allowed_ips = true, persistent_keepalive_interval = 0 } } })
    stop()
    assert.is_nil(ok)
    assert.are.equal('EINVAL', code, err)
    assert.are.equal('set=1\nprivate_key=' .. wg.hex(ALICE_PRIV) .. '\nlisten_port=51820\n' ..
      'replace_peers=true\npublic_key=' .. BOB_PUB_HEX .. '\nendpoint=[::1]:1\n' ..
      'persistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=10.0.0.0/8\n\n',
      got.text)
  end)

  it('refuses bad configurations before sending anything', function()
    local function bad(conf) assert.has_error(function() wg.set('/nonexistent', conf) end) end
    bad({ private_key = 'nope' })
    bad({ listen_port = 65536 })
    bad({ listen_port = 1.5 })
    bad({ fwmark = -2 })
    bad({ replace_peers = 'yes' })
    bad({ peers = { {} } })
    bad({ peers = { { public_key = BOB_PUB_HEX, endpoint = '1.2.3.4:5\nremove=true' } } })
    bad({ peers = { { public_key = BOB_PUB_HEX, allowed_ips = { '10.0.0.1/32\nx=1' } } } })
    bad({ peers = { { public_key = BOB_PUB_HEX, remove = true, endpoint = '1.2.3.4:5' } } })
    bad({ peers = 'x' })
    local ok, err, code = wg.set('/nonexistent/wg0.sock', { listen_port = 1 })
    assert.is_nil(ok)
    assert.are.equal('ENOENT', code, err)
  end)
end)
