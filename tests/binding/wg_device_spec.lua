-- SPDX-License-Identifier: Apache-2.0
-- moonstack.wg on the real kernel with real wireguard-go: two network namespaces joined by a
-- veth pair, a device in each started through wg.open (one with run_dir: its own mount
-- namespace, the other at /var/run/wireguard), peered live, bytes across the tunnel over TCP,
-- handshakes read back, a crashed wireguard-go restarted with its peers, a second device on a
-- used socket refused, and close() leaving no process, socket or interface behind. Needs root
-- and /dev/net/tun (skipped with a message otherwise).
local uv = require('luv')
local loop = require('tests.helpers.loop')
local N = require('tests.helpers.wg_netns')
local wg = require('moonstack.wg')
local native = require('moonstack.native.wg')
local netns = require('moonstack.netns')
local task = require('moonstack.core.task')

local TMP = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
local run, ns_run, holder = N.run, N.ns_run, N.holder

-- Connect from namespace `from` to host:port (a listener in `to`), send `msg`, read the echo.
local function echo_across(from, to, host, port, msg)
  local srv = assert(netns.tcp(to, host))
  assert(srv:bind(host, port))
  assert(srv:listen(4, function()
    local c = uv.new_tcp()
    srv:accept(c)
    c:read_start(function(_, data)
      if data then
        c:write(data)
      else
        c:close()
      end
    end)
  end))
  local cli = assert(netns.tcp(from, host))
  local got = ''
  local r = task.await(function(resume)
    cli:connect(host, port, function(err)
      if err then
        return resume(nil, err)
      end
      cli:write(msg)
      cli:read_start(function(_, data)
        if data then
          got = got .. data
          if #got >= #msg then
            resume(true)
          end
        else
          resume(nil, 'eof')
        end
      end)
    end)
  end, { timeout = 10000 })
  cli:close()
  srv:close()
  return r, got
end

local function wg_processes(ifname)
  local n = 0
  for _, pid in ipairs(require('moonstack.core.fs').names('/proc', '^%d+$')) do
    local f = io.open('/proc/' .. pid .. '/cmdline')
    local cmd = f and f:read('*a') or ''
    if f then
      f:close()
    end
    if cmd:find('wireguard-go', 1, true) and cmd:find(ifname, 1, true) then
      n = n + 1
    end
  end
  return n
end

describe('moonstack.wg devices', function()
  if N.skipped(it, 'wg_device_spec') then
    return
  end

  it('renders wg-quick text, and refuses what would break it', function()
    local k1, k2 = native.genkey(), native.pubkey(native.genkey())
    local text = wg.render_config({ private_key = k1, listen_port = 51820, peers = {
      { public_key = k2, allowed_ips = { '10.0.0.2/32' }, persistent_keepalive = 25 } } })
    assert.are.equal(('[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n[Peer]\nPublicKey = %s\n'
      .. 'AllowedIPs = 10.0.0.2/32\nPersistentKeepalive = 25\n'):format(k1, k2), text)
    local guest = wg.render_config({ private_key = k1, listen_port = 9182, address = '10.0.0.2/32',
      peers = { { public_key = k2, allowed_ips = '10.0.0.1/32', endpoint = 'gw.example:51820',
        persistent_keepalive = 25 } } })
    assert.matches('\nAddress = 10%.0%.0%.2/32\n', guest)
    assert.matches('\nEndpoint = gw%.example:51820\n', guest)
    assert.has_error(function()
      wg.render_config({ private_key = k1, listen_port = 1, peers = { { public_key = k2,
        allowed_ips = { '10.0.0.2/32\n[Peer]' } } } })
    end)
    assert.has_error(function()
      wg.render_config({ private_key = k1 .. '\n', listen_port = 1 })
    end)
    assert.has_error(function()
      wg.render_config({ private_key = k1, listen_port = 1, peers = { { public_key = k2,
        endpoint = 'a b:1' } } })
    end)
  end)

  it('peers two devices in two namespaces, restarts a crashed one, and closes cleanly', function()
    local holders = {}
    local devs = {}
    local ok, err = pcall(loop.run_task, function()
      local a, b = holder(), holder()
      holders = { a, b }
      N.veth(a, b, 'msv', '192.168.203.1/24', '192.168.203.2/24')
      local ka, kb = native.genkey(), native.genkey()
      local run_dir = ('%s/wg-dev-%d'):format(TMP, uv.os_getpid())
      local da = assert(wg.open({ ifname = 'mswga', private_key = ka, listen_port = 51820,
        address = '10.203.0.1/24', netns = a.path, run_dir = run_dir }))
      devs[#devs + 1] = da
      local db = assert(wg.open({ ifname = 'mswgb', private_key = kb, listen_port = 51821,
        address = '10.203.0.2/24', netns = b.path }))
      devs[#devs + 1] = db
      assert.are.equal(run_dir .. '/mswga.sock', da:socket())
      assert.are.equal('/var/run/wireguard/mswgb.sock', db:socket())
      assert.are.equal(native.pubkey(ka), da:public_key())
      -- the key is nowhere in wireguard-go's argv or environment
      for _, d in ipairs({ da, db }) do
        for _, f in ipairs({ 'cmdline', 'environ' }) do
          local fh = assert(io.open(('/proc/%d/%s'):format(d.proc.pid, f)))
          local text = fh:read('*a')
          fh:close()
          assert.is_nil(text:find(ka, 1, true))
          assert.is_nil(text:find(kb, 1, true))
        end
      end
      -- the interface is in the namespace, not on the host
      assert.are.equal(0, ns_run(a.path, 'ip', { 'link', 'show', 'mswga' }).exit_code)
      assert.are_not.equal(0, run('ip', { 'link', 'show', 'mswga' }).exit_code)
      -- no handshake before peering
      local hs = assert(da:handshakes())
      assert.are.same({}, hs)
      assert(da:add_peer({ public_key = db:public_key(), allowed_ips = { '10.203.0.2/32' } }))
      assert(db:set_peers({ { public_key = da:public_key(), allowed_ips = { '10.203.0.1/32' },
        endpoint = '192.168.203.1:51820', persistent_keepalive = 25 } }))
      local nsa, nsb = assert(netns.open(a.path)), assert(netns.open(b.path))
      local done, got = echo_across(nsa, nsb, '10.203.0.2', 7001, 'hello over wireguard')
      assert.is_true(done, got)
      assert.are.equal('hello over wireguard', got)
      -- both directions, and bigger than one datagram
      local big = string.rep('0123456789abcdef', 8192)
      done, got = echo_across(nsb, nsa, '10.203.0.1', 7002, big)
      assert.is_true(done)
      assert.are.equal(#big, #got)
      assert.is_true(got == big)
      local now = os.time()
      hs = assert(da:handshakes())
      assert.is_true(hs[db:public_key()] >= now - 60 and hs[db:public_key()] <= now + 1)
      -- the callback form, on the thread pool
      local cb_hs = task.await(function(resume)
        assert.is_true(db:handshakes(resume))
      end, { timeout = 6000 })
      assert.is_true(cb_hs[da:public_key()] >= now - 60)
      local peers = assert(db:peers())
      assert.are.equal('192.168.203.1:51820', peers[1].endpoint)
      assert.are.equal(25, peers[1].persistent_keepalive_interval)
      -- set_peers replaces the set as `wg syncconf` does (the hub re-syncs after every
      -- registration): a listed peer keeps its session, counters and learned endpoint, an
      -- unlisted one goes; both forms
      local before = assert(da:peers())[1]
      assert.are.equal('192.168.203.2:51821', before.endpoint)
      local kc = native.pubkey(native.genkey())
      assert(da:set_peers({ { public_key = db:public_key(), allowed_ips = { '10.203.0.2/32' } },
        { public_key = kc, allowed_ips = { '10.203.0.3/32' } } }))
      assert.are.equal(2, #assert(da:peers()))
      assert(task.await(function(resume)
        assert(da:set_peers({ { public_key = db:public_key(), allowed_ips = { '10.203.0.2/32' } } },
          resume))
      end, { timeout = 12000 }))
      local after = assert(da:peers())
      assert.are.equal(1, #after)
      assert.are.equal(db:public_key(), after[1].public_key)
      assert.are.equal(before.endpoint, after[1].endpoint)
      assert.are.equal(before.last_handshake_time_sec, after[1].last_handshake_time_sec)
      assert.is_true(after[1].rx_bytes >= before.rx_bytes and before.rx_bytes > 0)
      -- a second device on a socket in use is refused, the first keeps running
      local dup, derr, dcode = wg.open({ ifname = 'mswga', private_key = native.genkey(),
        listen_port = 0, run_dir = run_dir })
      assert.is_nil(dup)
      assert.are.equal('EADDRINUSE', dcode, derr)
      assert.is_true(da:alive())
      -- wireguard-go killed: restarted with its key and peers; traffic flows again
      assert(da:handshakes()) -- learns where B is
      local old = da.proc.pid
      uv.kill(old, 'sigkill')
      for _ = 1, 300 do
        if da.restarts > 0 then
          break
        end
        task.sleep(20)
      end
      assert.are.equal(1, da.restarts)
      assert.are_not.equal(old, da.proc.pid)
      local apeers = assert(da:peers())
      assert.are.equal(1, #apeers)
      assert.are.equal(db:public_key(), apeers[1].public_key)
      -- (the restarted device knows where B was last seen: it starts the handshake itself)
      done, got = echo_across(nsa, nsb, '10.203.0.2', 7003, 'after restart')
      assert.is_true(done, got)
      -- removing the peer cuts the tunnel's routing for it
      assert(da:remove_peer(db:public_key()))
      assert.are.same({}, assert(da:handshakes()))
      -- close: no process, socket or interface left
      local pa = da.proc.pid
      da:close()
      db:close()
      da:close() -- idempotent
      assert.is_nil(uv.fs_stat(run_dir .. '/mswga.sock'))
      assert.is_nil(uv.fs_stat('/var/run/wireguard/mswgb.sock'))
      assert.are_not.equal(0, uv.kill(pa, 0) == 0 and 0 or 1)
      assert.are.equal(0, wg_processes('mswga'))
      assert.are.equal(0, wg_processes('mswgb'))
      assert.are_not.equal(0, ns_run(a.path, 'ip', { 'link', 'show', 'mswga' }).exit_code)
      assert.are_not.equal(0, ns_run(b.path, 'ip', { 'link', 'show', 'mswgb' }).exit_code)
      assert.has_error(function() da:handshakes() end)
      nsa:close()
      nsb:close()
      os.remove(run_dir)
    end, 60000)
    loop.run_task(function() N.teardown(holders, unpack(devs)) end, 10000)
    assert(ok, err)
  end)
end)
