-- SPDX-License-Identifier: Apache-2.0
-- moonstack.acme against a real pebble + pebble-challtestsrv (started here on free loopback
-- ports; pebble rejects 15 % of good nonces, so the badNonce retry runs): the account created
-- and found again by its key (and a fresh key finds none), a wildcard certificate by DNS-01
-- whose chain verifies against pebble's root from its management port, a fresh key per
-- certificate, the TXT records cleaned up, the UDP TXT lookup and self-check, and a server
-- certificate from another CA refused.
local fs = require('moonstack.core.fs')
local loop = require('loop')
local process = require('moonstack.core.process')
local uv = require('luv')
local fixtures = require('fixtures')
local x509 = require('moonstack.x509')
local acme = require('moonstack.acme.client')
local dns = require('moonstack.acme.dns')
local issue = require('moonstack.acme.issue')
local provider = require('moonstack.acme.provider')
local client = require('moonstack.http.client')

local have = process.which('pebble') and process.which('pebble-challtestsrv') and process.which('openssl')

local function sh(cmd)
  local r = assert(process.run({ file = 'sh', args = { '-c', cmd }, env = { PATH = os.getenv('PATH') },
    timeout_ms = 20000 }))
  assert(r.exit_code == 0, cmd .. ': ' .. r.stderr)
  return r.stdout
end

local describe_if = have and describe or pending
describe_if('acme client against pebble', function()
  local dir, procs, P = nil, {}, {}
  local ca_pem, root_pem

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(fs.mkdir_p(dir, 448))
    for _, k in ipairs({ 'acme', 'mgmt', 'dns', 'cts', 'http', 'tls' }) do
      P[k] = fixtures.free_port()
    end
    loop.run_task(function()
      sh(('cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 '
        .. '-subj /CN=t-ca -keyout ca.key -out ca.pem && openssl req -newkey ec -pkeyopt '
        .. 'ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout key.pem -out req.csr && '
        .. 'printf "subjectAltName=IP:127.0.0.1\\n" > ext.cnf && openssl x509 -req -in req.csr -CA '
        .. 'ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem'):format(dir))
      assert(fs.write_atomic(dir .. '/pebble.json', ([[{"pebble":{"listenAddress":"127.0.0.1:%d",
 "managementListenAddress":"127.0.0.1:%d","certificate":"%s/cert.pem","privateKey":"%s/key.pem",
 "httpPort":%d,"tlsPort":%d,"ocspResponderURL":"","externalAccountBindingRequired":false}}]]):format(
        P.acme, P.mgmt, dir, dir, P.http, P.tls)))
      procs[1] = assert(process.spawn({ service = 'challtestsrv', file = 'pebble-challtestsrv',
        args = { '-dns01', '127.0.0.1:' .. P.dns, '-management', '127.0.0.1:' .. P.cts,
          '-http01', '', '-https01', '', '-tlsalpn01', '' }, env = {},
        files = { stdout = dir .. '/cts.log', stderr = dir .. '/cts.log' } }))
      procs[2] = assert(process.spawn({ service = 'pebble', file = 'pebble',
        args = { '-config', dir .. '/pebble.json', '-dnsserver', '127.0.0.1:' .. P.dns },
        env = { PEBBLE_VA_NOSLEEP = '1', PEBBLE_WFE_NONCEREJECT = '15', PEBBLE_AUTHZREUSE = '0' },
        files = { stdout = dir .. '/pebble.log', stderr = dir .. '/pebble.log' } }))
      ca_pem = assert(fs.read_file(dir .. '/ca.pem'))
      local deadline = uv.now() + 15000
      while uv.now() < deadline do
        local r = client.request({ url = ('https://127.0.0.1:%d/roots/0'):format(P.mgmt),
          tls = { ca = ca_pem }, timeout_ms = 1000 })
        if r and r.status == 200 then
          root_pem = r.body
          break
        end
        require('moonstack.core.task').sleep(50)
      end
      assert(root_pem, 'pebble did not start: ' .. tostring(fs.read_file(dir .. '/pebble.log')))
    end, 30000)
  end)

  teardown(function()
    loop.run_task(function()
      for _, p in ipairs(procs) do
        p:stop(2000)
      end
    end, 10000)
    fs.remove_tree(dir)
  end)

  local function new_client(key, ca)
    return acme.new({ directory_url = ('https://127.0.0.1:%d/dir'):format(P.acme),
      key = key or x509.generate_key(), ca = ca or ca_pem })
  end

  it('creates an account and finds it again by its key', function()
    loop.run_task(function()
      local key = x509.generate_key()
      local c = new_client(key)
      local uri, acct = c:account()
      assert.matches('^https://127%.0%.0%.1:%d+/my%-account/', uri)
      assert.equal('valid', acct.status)
      local again = new_client(key)
      assert.equal(uri, (again:account({ only_existing = true })))
      local none, err = new_client():account({ only_existing = true })
      assert.is_nil(none)
      assert.matches('accountDoesNotExist', err)
    end, 30000)
  end)

  it('obtains a wildcard certificate by DNS-01 with a fresh key each time', function()
    loop.run_task(function()
      local c = new_client()
      assert(c:account())
      local dnsp = assert(provider.new({ provider = 'challtestsrv',
        url = ('http://127.0.0.1:%d'):format(P.cts) }))
      local opts = { domain = 'test.local', dns_server = '127.0.0.1:' .. P.dns, max_dns_wait = 5,
        timeout = 60 }
      local r1 = assert(issue.obtain(c, dnsp, opts))
      local r2 = assert(issue.obtain(c, dnsp, opts))
      local certs = assert(x509.certs(r1.chain))
      assert.is_true(#certs >= 2)
      assert.is_true(x509.verify(certs[1], { roots = root_pem, chain = { certs[2] },
        purpose = 'server', hostname = 'x.test.local' }))
      assert.same({ '*.test.local' }, certs[1]:info().dns)
      assert.equal(certs[1]:spki(), r1.spki)
      assert.equal(x509.load_key(r1.key):spki(), r1.spki)
      assert.not_equal(r1.spki, r2.spki)
      assert.not_equal(r1.serial, r2.serial)
      assert.not_equal(r1.spki, c.key:spki())
      assert.same({}, assert(dns.lookup('127.0.0.1:' .. P.dns, '_acme-challenge.test.local')))
      assert.is_true(c.requests > 10)
      print(('# %d requests, %d badNonce retries'):format(c.requests, c.bad_nonces))
    end, 90000)
  end)

  it('looks TXT records up over UDP and gives up after max_wait', function()
    loop.run_task(function()
      local dnsp = assert(provider.new({ provider = 'challtestsrv',
        url = ('http://127.0.0.1:%d'):format(P.cts) }))
      assert(dnsp:present('_probe.example.test', 'value-1'))
      assert(dnsp:present('_probe.example.test', 'value-2'))
      local got = assert(dns.lookup('127.0.0.1:' .. P.dns, '_probe.example.test.'))
      table.sort(got)
      assert.same({ 'value-1', 'value-2' }, got)
      assert.is_true(dns.wait_txt('127.0.0.1:' .. P.dns, '_probe.example.test', { 'value-2' }, 2))
      local t0 = uv.now()
      local seen = dns.wait_txt('127.0.0.1:' .. P.dns, '_probe.example.test', { 'missing' }, 0.6)
      assert.is_false(seen)
      assert.is_true(uv.now() - t0 < 3000)
      assert(dnsp:cleanup('_probe.example.test'))
      assert.same({}, assert(dns.lookup('127.0.0.1:' .. P.dns, '_probe.example.test')))
    end, 30000)
  end)

  it('reads CAA records back over DNS and replaces one', function()
    loop.run_task(function()
      local url, server = ('http://127.0.0.1:%d'):format(P.cts), '127.0.0.1:' .. P.dns
      local a = assert(provider.new({ provider = 'challtestsrv', url = url, dns_server = server }))
      assert(a:create_caa('caa.test', 0, 'issue', 'ca-one'))
      assert(a:create_caa('caa.test', 0, 'issuewild', 'ca-two'))
      local b = assert(provider.new({ provider = 'challtestsrv', url = url, dns_server = server }))
      local list = assert(b:list_caa('caa.test'))
      assert.equal(2, #list)
      local id
      for _, r in ipairs(list) do
        if r.tag == 'issue' then
          assert.equal('ca-one', r.value)
          id = r.id
        end
      end
      assert(b:delete_caa('caa.test', id))
      local left = assert(b:list_caa('caa.test'))
      assert.equal(1, #left)
      assert.same({ 0, 'issuewild', 'ca-two' }, { left[1].flags, left[1].tag, left[1].value })
    end, 30000)
  end)

  it('refuses an ACME server whose certificate is from another CA', function()
    loop.run_task(function()
      local other = x509.issue({ subject = 'other', key = x509.generate_key(), ca = true, days = 2 })
      local _, err = new_client(nil, other:pem()):account()
      assert.matches('ECERT', err)
    end, 30000)
  end)
end)
