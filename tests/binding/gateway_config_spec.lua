-- SPDX-License-Identifier: Apache-2.0
-- moonstack.gateway.config: a config with only proxy and debug is valid; defaults of §6.11;
-- the wg networks are checked (reserved within ip's net, ip in reserved, client range within
-- the net); rpc needs wg and data_dir; the admin token aliases; routing_policy's forms; every
-- error names its field.
local config = require('moonstack.gateway.config')
local cidr = require('moonstack.gateway.cidr')

local KEY = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk='

local function with(extra)
  local t = { proxy = { base_domain = 'app.example.com' } }
  for k, v in pairs(extra or {}) do
    t[k] = v
  end
  return t
end

describe('gateway config', function()
  it('accepts proxy + debug alone, with the defaults of the spec', function()
    local cfg = assert(config.validate(with({ debug = { insecure_localhost_backend = true } })))
    assert.are.equal(443, cfg.proxy.listen.port)
    assert.are.equal('0.0.0.0', cfg.proxy.listen.host)
    local t = cfg.proxy.timeouts
    assert.are.same({ 5, 5, 600, 5, 18000, 30, 1800, 5, 5 }, { t.connect, t.handshake, t.idle,
      t.shutdown, t.total, t.cache_top_n, t.handshake_stale, t.dns_resolve, t.pp_header })
    assert.are.equal(65536, cfg.proxy.buffer_size)
    assert.are.equal(3, cfg.proxy.connect_top_n)
    assert.are.equal('_dstack-app-address', cfg.proxy.app_address_ns_prefix)
    assert.is_true(cfg.proxy.app_address_ns_compat)
    assert.are.equal(8090, cfg.proxy.agent_port)
    assert.is_true(cfg.debug.insecure_localhost_backend)
    assert.is_nil(cfg.wg)
    assert.is_nil(cfg.rpc)
    assert.are.same({ enabled = true, interval = 300, timeout = 36000 }, cfg.recycle)
  end)

  it('requires proxy.base_domain and names the field', function()
    local cfg, err = config.validate({ proxy = {} })
    assert.is_nil(cfg)
    assert.matches('config%.proxy%.base_domain: missing', err)
    cfg, err = config.validate(with({ proxy = { base_domain = 'x', timeouts = { idle = 'long' } } }))
    assert.is_nil(cfg)
    assert.matches('config%.proxy%.timeouts%.idle: expected number', err)
    cfg, err = config.validate(with({ wgg = {} }))
    assert.is_nil(cfg)
    assert.matches('config%.wgg: unknown key', err)
  end)

  it('applies the wg defaults and checks its networks', function()
    local cfg = assert(config.validate(with({ wg = { private_key = KEY, endpoint = 'gw:51820' } })))
    assert.are.equal('10.0.0.1/24', cfg.wg.ip)
    assert.are.same({ '10.0.0.1/32' }, cfg.wg.reserved_net)
    assert.are.equal('10.0.0.0/25', cfg.wg.client_ip_range)
    assert.are.equal(51820, cfg.wg.listen_port)
    local cases = {
      { { reserved_net = { '10.1.0.1/32' } }, 'wg%.reserved_net%[1%]: 10%.1%.0%.1/32 is not within' },
      { { reserved_net = { '10.0.0.9/32' } }, 'wg%.ip: 10%.0%.0%.1/24 is not in wg%.reserved_net' },
      { { client_ip_range = '10.0.1.0/24' }, 'wg%.client_ip_range: 10%.0%.1%.0/24 is not within' },
      { { ip = '10.0.0.300/24' }, 'config%.wg%.ip: "10%.0%.0%.300" is not an IPv4 address' },
      { { client_ip_range = '10.0.0.0/33' }, 'prefix length' },
      { { private_key = false }, 'config%.wg%.private_key: expected string' },
    }
    for _, c in ipairs(cases) do
      local wg = { private_key = KEY, endpoint = 'gw:51820' }
      for k, v in pairs(c[1]) do
        wg[k] = v
      end
      if wg.private_key == false then
        wg.private_key = 1
      end
      local ok, err = config.validate(with({ wg = wg }))
      assert.is_nil(ok)
      assert.matches(c[2], err)
    end
    local _, err = config.validate(with({ wg = { endpoint = 'gw:1' } }))
    assert.matches('config%.wg: give one of private_key or private_key_file', err)
  end)

  it('rpc needs wg and data_dir', function()
    local _, err = config.validate(with({ rpc = { kms_ca = '/ca.pem' } }))
    assert.matches('config%.rpc: RegisterCvm hands out WireGuard addresses', err)
    _, err = config.validate(with({ rpc = { kms_ca = '/ca.pem' },
      wg = { private_key = KEY, endpoint = 'gw:1' } }))
    assert.matches('config%.data_dir: required with rpc', err)
    _, err = config.validate(with({ rpc = { kms_ca = '/ca.pem', cert = '/c' }, data_dir = '/d',
      wg = { private_key = KEY, endpoint = 'gw:1' } }))
    assert.matches('give both cert and key', err)
    local cfg = assert(config.validate(with({ rpc = { kms_ca = '/ca.pem' }, data_dir = '/d',
      wg = { private_key = KEY, endpoint = 'gw:1' } })))
    assert.are.equal(8000, cfg.rpc.listen.port)
  end)

  it('takes admin_token as an alias of auth_token, not both', function()
    local cfg = assert(config.validate(with({ admin = { admin_token = 's3cret' } })))
    assert.are.equal('s3cret', cfg.admin.token)
    assert.are.equal(8011, cfg.admin.listen.port)
    local _, err = config.validate(with({ admin = { admin_token = 'a', auth_token = 'b' } }))
    assert.matches('admin: auth_token, admin_token are aliases', err)
  end)

  it('takes routing_policy as a path or a table', function()
    local cfg = assert(config.validate(with({ routing_policy = '/etc/route.lua' })))
    assert.are.same({ path = '/etc/route.lua', watch = true, debounce_ms = 200, workers = 1 },
      cfg.routing_policy)
    local _, err = config.validate(with({ routing_policy = { path = '/p', wacth = false } }))
    assert.matches('config%.routing_policy%.wacth: unknown key', err)
    _, err = config.validate(with({ routing_policy = 3 }))
    assert.matches('config%.routing_policy: expected a file path', err)
  end)

  it('parses networks and walks their hosts', function()
    local n = assert(cidr.parse('10.0.0.1/24'))
    assert.are.equal(cidr.parse_ip('10.0.0.0'), n.first)
    assert.are.equal(cidr.parse_ip('10.0.0.255'), n.last)
    local hosts = {}
    for h in cidr.hosts(assert(cidr.parse('192.168.1.0/30'))) do
      hosts[#hosts + 1] = cidr.format_ip(h)
    end
    assert.are.same({ '192.168.1.1', '192.168.1.2' }, hosts)
    assert.is_nil(cidr.parse_ip('01.2.3.4'))
    assert.is_nil(cidr.parse_ip('1.2.3'))
  end)
end)
