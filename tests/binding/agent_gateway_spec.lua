-- SPDX-License-Identifier: Apache-2.0
-- The agent's gateway registration end to end on this machine: a simulated CVM gets its app
-- keys and its client certificate from an in-process KMS (real SignCert over mutual RA-TLS), a
-- minimal RegisterCvm server (mutual TLS, its certificate issued by the KMS root with a gateway
-- app id) checks the request and the client certificate (CN dstack-guest-agent, clientAuth,
-- app-info naming the app) and peers the key on a real wireguard-go hub in one network
-- namespace; the agent's dstack-wg0-like interface comes up in another (joined by a veth pair),
-- handshakes, carries TCP from the hub side to the CVM side, re-registers on its interval with
-- the cached WG key and certificate, retries after a refusal, and goes away on stop. Also:
-- gateway certificates from another CA or with another app id are refused, and malformed
-- answers are rejected before they reach a WireGuard config. Needs root and /dev/net/tun.
local uv = require('luv')
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local loop = require('tests.helpers.loop')
local N = require('tests.helpers.wg_netns')
local kms_fixture = require('kms_fixture')
local kms_config = require('moonstack.kms.config')
local kms_server = require('moonstack.kms')
local keys = require('moonstack.agent.boot.keys')
local context = require('moonstack.agent.context')
local gateway = require('moonstack.agent.gateway')
local client = require('moonstack.gateway.client')
local http_server = require('moonstack.http.server')
local msgpack = require('moonstack.core.msgpack')
local netns = require('moonstack.netns')
local wg = require('moonstack.wg')
local x509 = require('moonstack.x509')

local GW_APP = ('\170'):rep(20)
local OS_IMAGE = ('ab'):rep(32)
local VM_CONFIG = cjson.encode({ os_image_hash = OS_IMAGE })

local ns_run, holder, wait_for = N.ns_run, N.holder, N.wait_for

local function mode_of(path)
  return uv.fs_stat(path).mode % 512
end

-- An HTTPS RegisterCvm server with `cert` (issued for `key`); answer(req, seen) -> status, body.
local function rpc_server(cert, key, ca, answer)
  local seen = {}
  local s = http_server.new({ name = 'gw-spec', listen = { host = '127.0.0.1', port = 0 },
    tls = { cert = cert:pem(), key = key:pkcs8_pem(), ca = ca, client_cert = 'require' } })
  s:post('/prpc/RegisterCvm', function(req)
    local rec = { peer = req.peer_cert, body = req:json() }
    seen[#seen + 1] = rec
    return answer(rec, seen)
  end)
  assert(s:listen())
  return s, seen, ('https://localhost:%d'):format(s:port())
end

describe('agent gateway port policy', function()
  it('reports app-compose\'s port_policy, else the default: every port, no restriction', function()
    local listed = { ports = { { port = 8080, pp = true } }, restrict_mode = true }
    assert.are.equal(listed, gateway.port_policy({ port_policy = listed }))
    -- never nil: a gateway that knows no policy for an instance denies all its ports
    assert.are.same({ restrict_mode = false }, gateway.port_policy({ gateway_enabled = true }))
    assert.are.same({ restrict_mode = false }, gateway.port_policy(nil))
  end)
end)

describe('agent gateway registration', function()
  if N.skipped(it, 'agent_gateway_spec') then
    return
  end

  local fx, kms, appkeys, root_pem
  local servers = {}

  setup(function()
    fx = kms_fixture.setup('agent_gateway_spec')
    kms_fixture.register_image(fx, OS_IMAGE)
    local cfg = assert(kms_config.validate({ key_dir = fx.base .. '/keys', domain = 'localhost',
      listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'dev', gateway_app_id = crypto.hex(GW_APP) },
      attestation = { collateral_file = fx.files.collateral, root_ca_file = fx.files.root,
        allow_simulator = true }, image = { measurements_dir = fx.files.measurements } }))
    kms = assert(kms_server.start(cfg))
    servers[#servers + 1] = kms
    appkeys = assert(loop.run_task(function()
      return keys.get({ tee = fx.tee, vm_config = VM_CONFIG, config = { kind = 'auto' },
        compose_key_provider = 'kms', sys_config = { kms_urls = {
          ('https://localhost:%d'):format(kms:port()) } } })
    end, 20000))
    root_pem = fx.material.root_cert:pem()
  end)

  teardown(function()
    kms_fixture.teardown(fx, servers)
  end)

  -- A gateway certificate for 127.0.0.1/localhost issued by `issuer` with app id `app_id`.
  local function gw_cert(issuer, app_id)
    local key = x509.generate_key()
    local cert = assert(x509.issue({ subject = 'gateway', sans = { 'localhost', '127.0.0.1' },
      key = key, issuer = issuer, eku = { 'server_auth' }, ratls = { app_id = app_id } }))
    return cert, key
  end

  local function root_issuer()
    return { cert = fx.material.root_cert, key = fx.material.root_key }
  end

  it('checks the gateway certificate and the answer before using them', function()
    local any_answer = function()
      return 200, { wg = { client_ip = '10.9.0.2', servers = { { pk = wg.public_key_of(
        require('moonstack.native.wg').genkey()), ip = '10.9.0.1/24', endpoint = '127.0.0.1:1' } } } }
    end
    local identity
    loop.run_task(function()
      local ctx = { sign_cert = appkeys.sign_cert }
      local c = assert(require('moonstack.agent.gateway_cache').client_cert({}, ctx, {}))
      identity = { cert = c.cert, key = c.key }
      local pk = wg.public_key_of(require('moonstack.native.wg').genkey())
      -- a gateway whose certificate chains to the KMS root and names the expected app id
      local cert, key = gw_cert(root_issuer(), GW_APP)
      local s, seen, url = rpc_server(cert, key, root_pem, any_answer)
      servers[#servers + 1] = s
      local reg = assert(client.register_cvm({ url = url, identity = identity, ca = root_pem,
        gateway_app_id = crypto.hex(GW_APP), public_key = pk }))
      assert.are.equal('10.9.0.2', reg.wg.client_ip)
      assert.are.equal('10.9.0.1', reg.wg.servers[1].ip)
      assert.are.equal(1, #seen)
      -- 'any' and '' accept any app id; another app id is refused before a byte is sent
      assert(client.register_cvm({ url = url, identity = identity, ca = root_pem,
        gateway_app_id = 'any', public_key = pk }))
      local r, err = client.register_cvm({ url = url, identity = identity, ca = root_pem,
        gateway_app_id = ('bb'):rep(20), public_key = pk })
      assert.is_nil(r)
      assert.is_truthy(err)
      assert.are.equal(2, #seen)
      -- a gateway certificate from another CA is refused
      local other_ca_key = x509.generate_key()
      local other_ca = assert(x509.issue({ subject = 'rogue CA', key = other_ca_key, ca = true }))
      local rcert, rkey = gw_cert({ cert = other_ca, key = other_ca_key }, GW_APP)
      local rs, rseen, rurl = rpc_server(rcert, rkey, root_pem, any_answer)
      servers[#servers + 1] = rs
      r = client.register_cvm({ url = rurl, identity = identity, ca = root_pem,
        gateway_app_id = crypto.hex(GW_APP), public_key = pk })
      assert.is_nil(r)
      assert.are.equal(0, #rseen)
      -- a refusal is EDENIED with the gateway's reason
      local ds, _, durl = rpc_server(cert, key, root_pem, function()
        return 400, { error = 'node is down' }
      end)
      servers[#servers + 1] = ds
      local code
      r, err, code = client.register_cvm({ url = durl, identity = identity, ca = root_pem,
        public_key = pk })
      assert.is_nil(r)
      assert.are.equal('EDENIED', code)
      assert.matches('node is down', err)
    end, 30000)
    -- malformed answers never reach a WireGuard config
    local pk = wg.public_key_of(require('moonstack.native.wg').genkey())
    local function answer(wgpart)
      return client.check_registration({ wg = wgpart })
    end
    assert.is_truthy(answer({ client_ip = '10.0.0.2', servers = { { pk = pk, ip = '10.0.0.1/24',
      endpoint = 'gw.example.com:51820' } } }))
    for _, bad in ipairs({
      { client_ip = '10.0.0.2\n[Peer]', servers = { { pk = pk, ip = '10.0.0.1', endpoint = 'a:1' } } },
      { client_ip = '10.0.0.300', servers = { { pk = pk, ip = '10.0.0.1', endpoint = 'a:1' } } },
      { client_ip = '10.0.0.2', servers = {} },
      { client_ip = '10.0.0.2', servers = { { pk = 'short', ip = '10.0.0.1', endpoint = 'a:1' } } },
      { client_ip = '10.0.0.2', servers = { { pk = pk, ip = 'x', endpoint = 'a:1' } } },
      { client_ip = '10.0.0.2', servers = { { pk = pk, ip = '10.0.0.1', endpoint = 'a:1\nX' } } },
      { client_ip = '10.0.0.2', servers = { { pk = pk, ip = '10.0.0.1', endpoint = 'a:70000' } } },
    }) do
      local r, _, code = answer(bad)
      assert.is_nil(r)
      assert.are.equal('EPROTO', code)
    end
  end)

  it('registers, brings up WireGuard, carries traffic, re-registers and stops', function()
    local holders, hub, gw = {}, nil, nil
    local ok, err = pcall(loop.run_task, function()
      local a, b = holder(), holder() -- a: the CVM, b: the gateway's hub
      holders = { a, b }
      N.veth(a, b, 'msg', '192.168.204.2/24', '192.168.204.1/24')
      hub = assert(wg.open({ ifname = 'msgwhub', private_key = require('moonstack.native.wg').genkey(),
        listen_port = 51830, address = '10.204.0.1/24', netns = b.path, run_dir = fx.base .. '/hub' }))
      local cert, key = gw_cert(root_issuer(), GW_APP)
      local refused_once = false
      local s, seen, url = rpc_server(cert, key, root_pem, function(rec)
        if not refused_once then -- the first attempt is refused: the agent must retry
          refused_once = true
          return 400, { error = 'try again' }
        end
        local pk = rec.body and rec.body.client_public_key
        local okpk = pcall(wg.public_key_of, pk)
        if not okpk then
          return 400, { error = 'bad client_public_key' }
        end
        hub:add_peer({ public_key = pk, allowed_ips = { '10.204.0.2/32' } }, function() end)
        return 200, { wg = { client_ip = '10.204.0.2', servers = { { pk = hub:public_key(),
          ip = '10.204.0.1/24', endpoint = '192.168.204.1:51830' } } },
          agent = { external_port = 443, internal_port = 8090, domain = 'app.example.com',
            app_address_ns_prefix = '_dstack-app-address' }, gateways = {} }
      end)
      servers[#servers + 1] = s
      local ctx = context.new({ keys = appkeys.keys, sign_cert = appkeys.sign_cert,
        app_compose = { gateway_enabled = true, port_policy = { ports = { { port = 7010, pp = false } },
          restrict_mode = true } }, sys_config = { gateway_urls = { url } } })
      local steps = {}
      ctx.events:on('step', function(name, detail)
        steps[#steps + 1] = name .. ':' .. tostring(detail and detail.state)
      end)
      local dir = fx.base .. '/agent-gw'
      gw = assert(gateway.start(ctx, { interface = 'msgw0', listen_port = 9182, dir = dir,
        netns = a.path, register_interval_ms = 2500, handshake_stale_ms = 60000,
        check_interval_ms = 100, retry_min_ms = 200, retry_max_ms = 400, timeout_ms = 5000 },
        fx.base))
      assert.is_true(wait_for(function() return gw.state == 'registered' end, 20000), gw.last_error)
      assert.are.equal(2, #seen) -- refused once, then accepted
      assert.are.same({ 'gateway:registering', 'gateway:registered' }, steps)
      -- the request: the WG key and the port policy; the client certificate from the KMS
      local body = seen[2].body
      local cache = cjson.decode(assert(io.open(dir .. '/gateway-cache.json')):read('*a'))
      assert.are.equal(wg.public_key_of(cache.wg_private_key), body.client_public_key)
      assert.are.same({ ports = { { port = 7010, pp = false } }, restrict_mode = true }, body.port_policy)
      local info = assert(x509.cert(seen[2].peer)):info()
      assert.are.equal('dstack-guest-agent', info.cn)
      assert.is_true(info.eku.client_auth)
      assert.is_nil(info.eku.server_auth)
      assert.are.equal('Dstack App CA', info.issuer_cn)
      local app_info = msgpack.decode(info.ratls.app_info)
      assert.are.equal(kms_fixture.APP, app_info[1])
      assert.are.equal(kms_fixture.APP, info.ratls.app_id)
      assert.is_true(info.not_after - os.time() > 9 * 86400)
      -- the files: 0600, the guest form of the config
      assert.are.equal(384, mode_of(dir .. '/gateway-cache.json'))
      assert.are.equal(384, mode_of(dir .. '/msgw0.conf'))
      local conf = assert(io.open(dir .. '/msgw0.conf')):read('*a')
      assert.are.equal(table.concat({ '[Interface]', 'PrivateKey = ' .. cache.wg_private_key,
        'ListenPort = 9182', 'Address = 10.204.0.2/32', '', '[Peer]', 'PublicKey = ' .. hub:public_key(),
        'AllowedIPs = 10.204.0.1/32', 'Endpoint = 192.168.204.1:51830', 'PersistentKeepalive = 25',
        '' }, '\n'), conf)
      -- the tunnel: a handshake, then TCP from the gateway side to the CVM's app
      assert.is_true(wait_for(function()
        local hs = hub:handshakes()
        return hs and (hs[body.client_public_key] or 0) > 0
      end, 10000))
      local nsa, nsb = assert(netns.open(a.path)), assert(netns.open(b.path))
      local srv = N.serve_text(nsa, '10.204.0.2', 7010, 'hello from the CVM')
      local got = N.read_all(assert(netns.tcp(nsb, '10.204.0.2')), '10.204.0.2', 7010)
      srv:close()
      nsa:close()
      nsb:close()
      assert.are.equal('hello from the CVM', got)
      assert.are.equal('up', gw:status().device and 'up')
      -- re-registration on the interval: same WG key, the cached certificate reused
      assert.is_true(wait_for(function() return #seen >= 3 end, 8000))
      assert.is_true(wait_for(function() return gw.registrations >= 2 end, 5000))
      assert.are.equal(body.client_public_key, seen[3].body.client_public_key)
      assert.are.equal(seen[2].peer, seen[3].peer)
      -- stop: no interface, no wireguard-go, no socket
      gw:stop()
      gw = nil
      assert.are_not.equal(0, ns_run(a.path, 'ip', { 'link', 'show', 'msgw0' }).exit_code)
      assert.is_nil(uv.fs_stat(dir .. '/msgw0.sock'))
    end, 90000)
    loop.run_task(function() N.teardown(holders, gw, hub) end, 10000)
    assert(ok, err)
  end)
  it("reaches a hub on the host's loopback through the process backend's UDP forward", function()
    local holders, hub, dev, pm = {}, nil, nil, nil
    local ok, err = pcall(loop.run_task, function()
      -- what the VMM forwards into a CVM's namespace with process.udp_forwards
      local backend = assert(require('moonstack.vmm.backend.process').new({ cfg = {
        kms_urls = {}, gateway_urls = { 'https://127.0.0.1:8000' }, process = {
          sim_dir = fx.base .. '/vmm-sim', network = 'auto', pid_namespace = false, cgroup = false,
          udp_forwards = { '127.0.0.1:51841' } } }, log = require('moonstack.core.log').new('vmm') }))
      local fwd = backend:forwards()
      assert.are.same({ protocol = 'udp', vm_address = '127.0.0.1', vm_port = 51841,
        host_address = '127.0.0.1', host_port = 51841 }, fwd[2])
      assert.are.equal('tcp', fwd[1].protocol)
      local a = holder()
      holders = { a }
      pm = assert(require('moonstack.vmm.portmap').new({ netns = a.path, forwards = { fwd[2] } }))
      assert(pm:start())
      -- the hub in this (the host's) namespace, the CVM's interface in its own
      hub = assert(wg.open({ ifname = 'msfwhub', private_key = require('moonstack.native.wg').genkey(),
        listen_port = 51841, address = '10.205.0.1/24', run_dir = fx.base .. '/fwhub' }))
      dev = assert(wg.open({ ifname = 'msfw0', private_key = require('moonstack.native.wg').genkey(),
        listen_port = 9182, address = '10.205.0.2/32', routes = { '10.205.0.1/32' }, netns = a.path,
        run_dir = fx.base .. '/fwcvm' }))
      assert(hub:add_peer({ public_key = dev:public_key(), allowed_ips = { '10.205.0.2/32' } }))
      assert(dev:set_peers({ { public_key = hub:public_key(), allowed_ips = { '10.205.0.1/32' },
        endpoint = '127.0.0.1:51841', persistent_keepalive = 25 } }))
      local nsa = assert(netns.open(a.path))
      local srv = N.serve_text(nsa, '10.205.0.2', 7020, 'through the forward')
      local got = N.read_all(uv.new_tcp(), '10.205.0.2', 7020)
      srv:close()
      nsa:close()
      assert.are.equal('through the forward', got)
      assert.is_true(pm:stats().datagrams_in > 0)
    end, 60000)
    loop.run_task(function() N.teardown(holders, dev, hub, pm) end, 10000)
    assert(ok, err)
  end)
  it('registers with the real gateway (moonstack.gateway) and reaches its app over its hub', function()
    local holders, gwsvc, ag = {}, nil, nil
    local ok, err = pcall(loop.run_task, function()
      local a, b = holder(), holder()
      holders = { a, b }
      N.veth(a, b, 'msr', '192.168.206.2/24', '192.168.206.1/24')
      local cert, key = gw_cert(root_issuer(), GW_APP)
      local dir = fx.base .. '/realgw'
      assert(require('moonstack.core.fs').mkdir_p(dir))
      local function put(name, text)
        assert(require('moonstack.core.fs').write_atomic(dir .. '/' .. name, text, 384))
        return dir .. '/' .. name
      end
      local gcfg = assert(require('moonstack.gateway.config').validate({
        proxy = { listen = { host = '127.0.0.1', port = 0 }, base_domain = 'app.test' },
        rpc = { listen = { host = '127.0.0.1', port = 0 }, cert = put('rpc.crt', cert:pem()),
          key = put('rpc.key', key:pkcs8_pem()), kms_ca = put('kms-ca.crt', root_pem) },
        wg = { private_key = require('moonstack.native.wg').genkey(), listen_port = 51850,
          ip = '10.206.0.1/24', reserved_net = { '10.206.0.1/32' }, client_ip_range = '10.206.0.0/25',
          interface = 'msrhub', endpoint = '192.168.206.1:51850', netns = b.path,
          run_dir = dir .. '/wg' },
        data_dir = dir .. '/data' }))
      gwsvc = assert(require('moonstack.gateway').start(gcfg))
      local url = ('https://localhost:%d'):format(gwsvc.rpc_server:port())
      local ctx = context.new({ keys = appkeys.keys, sign_cert = appkeys.sign_cert,
        app_compose = { gateway_enabled = true }, sys_config = { gateway_urls = { url } } })
      ag = assert(gateway.start(ctx, { interface = 'msr0', dir = dir .. '/agent', netns = a.path,
        check_interval_ms = 100, retry_min_ms = 200, retry_max_ms = 400, timeout_ms = 5000 }, fx.base))
      assert.is_true(wait_for(function() return ag.state == 'registered' end, 20000), ag.last_error)
      assert.are.equal('10.206.0.2', ag.registration.wg.client_ip)
      local nsa = assert(netns.open(a.path))
      local srv = N.serve_text(nsa, '10.206.0.2', 7030, 'app behind the real gateway')
      local nsb = assert(netns.open(b.path))
      local got
      for _ = 1, 3 do -- the hub learns the peer as the gateway reconfigures it
        got = N.read_all(assert(netns.tcp(nsb, '10.206.0.2')), '10.206.0.2', 7030, 8000)
        if got then
          break
        end
      end
      srv:close()
      nsa:close()
      nsb:close()
      assert.are.equal('app behind the real gateway', got)
    end, 90000)
    loop.run_task(function() N.teardown(holders, ag, gwsvc) end, 15000)
    assert(ok, err)
  end)
end)
