-- SPDX-License-Identifier: Apache-2.0
-- HTTPS between moonstack.http.server and moonstack.http.client with a throwaway PKI made by
-- the openssl CLI: server authentication (CA, host name), client certificates ('require',
-- 'request') and the Lua verification hooks on both sides, whose decision wins.
local uv = require('luv')
local loop = require('loop')
local server = require('moonstack.http.server')
local client = require('moonstack.http.client')

local function sh(cmd)
  local ok = os.execute(cmd .. ' >/dev/null 2>&1')
  assert(ok == true or ok == 0, 'command failed: ' .. cmd)
end

local function slurp(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

-- A CA, a server certificate for localhost/127.0.0.1, a client certificate and a self-signed
-- rogue certificate (valid for the same names, trusted by nobody).
local function make_pki(dir)
  local ec = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'
  local script = table.concat({
    'set -e',
    'cd ' .. dir,
    'openssl req -x509 ' .. ec .. ' -days 2 -subj /CN=spec-ca -keyout ca.key -out ca.pem',
    'openssl req ' .. ec .. ' -subj /CN=localhost -keyout srv.key -out srv.csr',
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > srv.ext",
    'openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2' ..
      ' -extfile srv.ext -out srv.pem',
    'openssl req ' .. ec .. ' -subj /CN=spec-client -keyout cli.key -out cli.csr',
    "printf 'extendedKeyUsage=clientAuth\\n' > cli.ext",
    'openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2' ..
      ' -extfile cli.ext -out cli.pem',
    'openssl req -x509 ' .. ec .. ' -days 2 -subj /CN=rogue' ..
      ' -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout rogue.key -out rogue.pem',
    'openssl x509 -in cli.pem -outform DER -out cli.der',
    'openssl x509 -in rogue.pem -outform DER -out rogue.der',
    'openssl x509 -in srv.pem -outform DER -out srv.der',
  }, '\n')
  local f = assert(io.open(dir .. '/make.sh', 'w'))
  f:write(script)
  f:close()
  sh('sh ' .. dir .. '/make.sh')
  local pki = {}
  for _, name in ipairs({ 'ca.pem', 'srv.pem', 'srv.key', 'cli.pem', 'cli.key', 'rogue.pem', 'rogue.key',
    'cli.der', 'rogue.der', 'srv.der' }) do
    pki[name:gsub('%.', '_')] = slurp(dir .. '/' .. name)
  end
  return pki
end

local function run(fn)
  return loop.run_task(fn, 5000)
end

local settle = loop.settle

describe('moonstack.http TLS', function()
  local dir, pki
  local servers = {}

  setup(function()
    local base = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    os.execute(('mkdir -p %q'):format(base))
    dir = assert(uv.fs_mkdtemp(base .. '/tls-XXXXXX'))
    pki = make_pki(dir)
  end)

  teardown(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  after_each(function()
    for _, s in ipairs(servers) do
      s:close()
    end
    servers = {}
    settle()
  end)

  -- An HTTPS server on 127.0.0.1 whose /whoami reports the client certificate it saw.
  local function https_server(tls)
    local s = server.new({ name = 'tls-spec', listen = { host = '127.0.0.1', port = 0 }, tls = tls })
    s:get('/whoami', function(req)
      return 200, { peer_cert = req.peer_cert and #req.peer_cert or false,
        same_as_cli = req.peer_cert == pki.cli_der, same_as_rogue = req.peer_cert == pki.rogue_der }
    end)
    assert(s:listen())
    servers[#servers + 1] = s
    return s, 'https://127.0.0.1:' .. s:port() .. '/whoami'
  end

  describe('server authentication', function()
    it('accepts a server whose certificate chains to the given CA', function()
      local _, url = https_server({ cert = pki.srv_pem, key = pki.srv_key })
      local r = assert(run(function() return client.get(url, { tls = { ca = pki.ca_pem } }) end))
      assert.equal(200, r.status)
      assert.same({ peer_cert = false, same_as_cli = false, same_as_rogue = false }, r.json())
      -- the DNS name in the certificate works too (Host/SNI 'localhost', connecting to the IP)
      r = assert(run(function()
        return client.get(url, { host = 'localhost', tls = { ca = pki.ca_pem } })
      end))
      assert.equal(200, r.status)
    end)

    it('refuses a server it has no CA for with ECERT', function()
      local _, url = https_server({ cert = pki.srv_pem, key = pki.srv_key })
      local r, err, code = run(function() return client.get(url, { tls = {} }) end)
      assert.is_nil(r)
      assert.equal('ECERT', code)
      assert.matches('^ECERT: server certificate rejected: ', err)
      -- with the wrong CA (the rogue's) as well
      r, err, code = run(function() return client.get(url, { tls = { ca = pki.rogue_pem } }) end)
      assert.is_nil(r)
      assert.equal('ECERT', code, err)
    end)

    it('refuses a server whose certificate is for another name, unless skip_hostname', function()
      local _, url = https_server({ cert = pki.srv_pem, key = pki.srv_key })
      local r, err, code = run(function()
        return client.get(url, { host = 'wrong.example', tls = { ca = pki.ca_pem } })
      end)
      assert.is_nil(r)
      assert.equal('ECERT', code)
      assert.matches('host name', err)
      r = assert(run(function()
        return client.get(url, { host = 'wrong.example', tls = { ca = pki.ca_pem, skip_hostname = true } })
      end))
      assert.equal(200, r.status)
    end)

    it('accepts anything with insecure (tests only)', function()
      local _, url = https_server({ cert = pki.rogue_pem, key = pki.rogue_key })
      local r = assert(run(function() return client.get(url, { tls = { insecure = true } }) end))
      assert.equal(200, r.status)
    end)
  end)

  describe("client_cert = 'require'", function()
    local url

    before_each(function()
      local _
      _, url = https_server({ cert = pki.srv_pem, key = pki.srv_key, ca = pki.ca_pem,
        client_cert = 'require' })
    end)

    it('serves a client with a certificate from the CA and shows it to the handler', function()
      local r = assert(run(function()
        return client.get(url, { tls = { ca = pki.ca_pem, cert = pki.cli_pem, key = pki.cli_key } })
      end))
      assert.equal(200, r.status)
      assert.same({ peer_cert = #pki.cli_der, same_as_cli = true, same_as_rogue = false }, r.json())
    end)

    it('refuses a client without a certificate', function()
      local r, err, code = run(function()
        return client.get(url, { tls = { ca = pki.ca_pem }, timeout_ms = 3000 })
      end)
      assert.is_nil(r)
      assert.is_string(code, err)
      assert.not_equal('ETIMEDOUT', code)
    end)

    it('refuses a client with a certificate from elsewhere', function()
      local r, err, code = run(function()
        return client.get(url, { tls = { ca = pki.ca_pem, cert = pki.rogue_pem, key = pki.rogue_key },
          timeout_ms = 3000 })
      end)
      assert.is_nil(r)
      assert.is_string(code, err)
      assert.not_equal('ETIMEDOUT', code)
    end)
  end)

  describe('verification hooks', function()
    it("lets the server hook decide under client_cert = 'request'", function()
      local seen = {}
      local _, url = https_server({
        cert = pki.srv_pem, key = pki.srv_key, ca = pki.ca_pem, client_cert = 'request',
        verify = function(peer)
          seen[#seen + 1] = peer
          if peer.der == pki.rogue_der then
            return true -- pinned, although no CA vouches for it
          end
          return false, 'only the rogue may enter'
        end,
      })
      -- the rogue certificate: OpenSSL says no, the hook says yes
      local r = assert(run(function()
        return client.get(url, { tls = { ca = pki.ca_pem, cert = pki.rogue_pem, key = pki.rogue_key } })
      end))
      assert.equal(200, r.status)
      assert.same({ peer_cert = #pki.rogue_der, same_as_cli = false, same_as_rogue = true }, r.json())
      assert.equal(1, #seen)
      assert.equal(pki.rogue_der, seen[1].der)
      assert.is_false(seen[1].preverify)
      assert.is_string(seen[1].error)
      assert.equal(pki.rogue_der, seen[1].chain[1])
      -- a valid certificate: OpenSSL says yes, the hook says no
      local r2, err, code = run(function()
        return client.get(url, { tls = { ca = pki.ca_pem, cert = pki.cli_pem, key = pki.cli_key },
          timeout_ms = 3000 })
      end)
      assert.is_nil(r2)
      assert.is_string(code, err)
      assert.not_equal('ETIMEDOUT', code)
      assert.equal(2, #seen)
      assert.equal(pki.cli_der, seen[2].der)
      assert.is_true(seen[2].preverify)
      -- no certificate at all is allowed with 'request': the hook is not asked
      r = assert(run(function() return client.get(url, { tls = { ca = pki.ca_pem } }) end))
      assert.equal(200, r.status)
      assert.same({ peer_cert = false, same_as_cli = false, same_as_rogue = false }, r.json())
      assert.equal(2, #seen)
    end)

    it('lets the client hook reject a valid server', function()
      local _, url = https_server({ cert = pki.srv_pem, key = pki.srv_key })
      local seen
      local r, err, code = run(function()
        return client.get(url, { tls = { ca = pki.ca_pem, verify = function(peer)
          seen = peer
          return false, 'not the one'
        end } })
      end)
      assert.is_nil(r)
      assert.equal('ECERT', code)
      assert.matches('verification hook', err)
      assert.is_true(seen.preverify)
      assert.equal(pki.srv_der, seen.der)
    end)

    it('lets the client hook accept an untrusted server', function()
      local _, url = https_server({ cert = pki.rogue_pem, key = pki.rogue_key })
      local seen
      local r = assert(run(function()
        return client.get(url, { tls = { ca = pki.ca_pem, verify = function(peer)
          seen = peer
          return peer.der == pki.rogue_der
        end } })
      end))
      assert.equal(200, r.status)
      assert.is_false(seen.preverify)
      assert.is_string(seen.error)
      assert.equal(pki.rogue_der, seen.chain[1])
    end)
  end)

  describe('per-connection costs', function()
    -- `openssl s_client -msg` against url's server, run beside the loop; returns its output.
    local function s_client(port, extra)
      return run(function()
        return require('moonstack.core.task').await(function(resume)
          local out, stdout = {}, uv.new_pipe(false)
          local proc
          -- stdin stays open for a moment: the client reads what the server sends after the
          -- handshake (session tickets)
          proc = uv.spawn('sh', { args = { '-c', ('sleep 0.3 | openssl s_client -connect ' ..
            '127.0.0.1:%d -msg %s 2>&1'):format(port, extra or '') },
            stdio = { nil, stdout, nil } }, function()
            proc:close()
            stdout:close()
            resume(table.concat(out))
          end)
          stdout:read_start(function(_, data)
            out[#out + 1] = data
          end)
        end, { timeout = 5000 })
      end)
    end

    local function count(text, pattern)
      local n = 0
      for _ in text:gmatch(pattern) do
        n = n + 1
      end
      return n
    end

    it('agrees on X25519 in one round trip (no HelloRetryRequest)', function()
      local s = https_server({ cert = pki.srv_pem, key = pki.srv_key })
      local out = assert(s_client(s:port()))
      assert.equal(1, count(out, '<<< TLS 1%.3, Handshake %[length %x+%], ServerHello'), out)
      assert.matches('Server Temp Key: X25519', out)
    end)

    it('issues session tickets only where client certificates do not count', function()
      local s = https_server({ cert = pki.srv_pem, key = pki.srv_key })
      local out = assert(s_client(s:port()))
      assert.is_true(count(out, 'NewSessionTicket') > 0, out)
      s = https_server({ cert = pki.srv_pem, key = pki.srv_key, ca = pki.ca_pem,
        client_cert = 'request' })
      out = assert(s_client(s:port(), '-cert ' .. dir .. '/cli.pem -key ' .. dir .. '/cli.key'))
      assert.matches('Verify return code', out)
      assert.equal(0, count(out, 'NewSessionTicket'), out)
    end)

    it("uses each request's own identity and trust anchors (parsed ones are reused)", function()
      local _, url = https_server({ cert = pki.srv_pem, key = pki.srv_key, client_cert = 'request',
        verify = function() return true end })
      local function whoami(tls)
        return run(function() return client.get(url, { tls = tls, timeout_ms = 3000 }) end)
      end
      local cli = { ca = pki.ca_pem, cert = pki.cli_pem, key = pki.cli_key }
      local rogue = { ca = pki.ca_pem, cert = pki.rogue_pem, key = pki.rogue_key }
      for _ = 1, 2 do
        assert.same({ peer_cert = #pki.cli_der, same_as_cli = true, same_as_rogue = false },
          assert(whoami(cli)).json())
        assert.same({ peer_cert = #pki.rogue_der, same_as_cli = false, same_as_rogue = true },
          assert(whoami(rogue)).json())
        assert.same({ peer_cert = false, same_as_cli = false, same_as_rogue = false },
          assert(whoami({ ca = pki.ca_pem })).json())
        local r, err, code = whoami({ ca = pki.rogue_pem })
        assert.is_nil(r)
        assert.equal('ECERT', code, err)
      end
    end)
  end)

  it('raises on misuse of the tls options', function()
    assert.has_error(function()
      server.new({ listen = { host = '127.0.0.1', port = 0 }, tls = { cert = pki.srv_pem } }):listen()
    end, 'http: tls.cert and tls.key go together')
    assert.has_error(function()
      server.new({ listen = { host = '127.0.0.1', port = 0 }, tls = { ca = pki.ca_pem } }):listen()
    end, 'http: a TLS server needs tls.cert and tls.key')
    assert.has_error(function()
      server.new({ listen = { host = '127.0.0.1', port = 0 },
        tls = { cert = pki.srv_pem, key = pki.srv_key, client_cert = 'maybe' } }):listen()
    end, "http: tls.client_cert must be 'none', 'request' or 'require'")
  end)
end)
