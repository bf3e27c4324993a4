-- SPDX-License-Identifier: Apache-2.0
-- RA-TLS over real TLS handshakes through moonstack.http (server and client in this process):
-- a server that demands an RA-TLS client certificate via moonstack.x509.ratls.verify_hook
-- accepts a certificate whose evidence is bound to its key (and its handler sees it), and
-- refuses one whose report_data does not match its SPKI, one without evidence, and one its
-- check() vetoes; a client can demand the same of a server. The evidence is synthetic (a fake
-- quote inside a VersionedAttestation V0, tests/helpers/ratls_fake.lua): only the binding is
-- checked here, quote verification is M3's. The real-data checks read ../shared/vectors.
local loop = require('loop')
local fake = require('ratls_fake')
local server = require('moonstack.http.server')
local client = require('moonstack.http.client')
local x509 = require('moonstack.x509')
local ratls = require('moonstack.x509.ratls')

local vectors = os.getenv('MOONSTACK_VECTORS')
  or ((os.getenv('MOONSTACK_SRC') or '.') .. '/../shared/vectors')

local function tohex(s)
  return (s:gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end

local function read_vector(rel)
  local f = io.open(vectors .. '/' .. rel, 'rb')
  if not f then
    return nil
  end
  local s = f:read('*a')
  f:close()
  return s
end

local function run(fn)
  return loop.run_task(fn, 8000)
end

local settle = loop.settle

-- An RA-TLS identity whose attestation carries `rd_for(report_data)` (default: the binding).
local function ratls_identity(opts)
  opts = opts or {}
  local id = assert(ratls.issue({
    subject = opts.subject or 'ratls-client', eku = opts.eku or { 'client_auth' },
    special_usage = opts.special_usage or 'app:custom', issuer = opts.issuer, sans = opts.sans,
    attest = opts.attest or function(report_data)
      return fake.attestation(report_data)
    end,
  }))
  return id
end

describe('RA-TLS', function()
  local servers = {}
  local plain_key, plain_cert

  setup(function()
    plain_key = x509.generate_key()
    plain_cert = assert(x509.issue({ subject = 'localhost', sans = { 'localhost', '127.0.0.1' },
      key = plain_key,
      eku = { 'server_auth', 'client_auth' }, days = 1 }))
  end)

  after_each(function()
    for _, s in ipairs(servers) do
      s:close()
    end
    servers = {}
    settle()
  end)

  describe('inspect', function()
    it('accepts evidence bound to the key and reports what it carries', function()
      local id = ratls_identity()
      local info = assert(ratls.inspect(id.cert))
      assert.equal(ratls.report_data(id.key:spki()), info.report_data)
      assert.equal(id.report_data, info.report_data)
      assert.equal('attestation', info.evidence.kind)
      assert.equal('app:custom', info.special_usage)
      assert.equal(id.key:spki(), info.spki)
      -- the binding is SHA-512("ratls-cert:" || SPKI DER)
      assert.equal(x509.report_data('ratls-cert', id.key:spki()), info.report_data)
    end)

    it('refuses a mismatched binding, missing or malformed evidence', function()
      local other = x509.generate_key()
      local bad = ratls_identity({ attest = function()
        return fake.attestation(ratls.report_data(other:spki()))
      end })
      local r, err, code = ratls.inspect(bad.cert)
      assert.is_nil(r)
      assert.equal('EBINDING', code, err)
      r, err, code = ratls.inspect(plain_cert)
      assert.is_nil(r)
      assert.equal('ENOATTEST', code, err)
      -- the attestation's report_data is right, but its quote's is not
      local split = ratls_identity({ attest = function(rd)
        return fake.attestation(ratls.report_data(other:spki()), rd)
      end })
      r, err, code = ratls.inspect(split.cert)
      assert.is_nil(r)
      assert.equal('EATTEST', code, err)
      -- trailing garbage after the attestation
      local trailing = ratls_identity({ attest = function(rd) return fake.attestation(rd) .. '\0' end })
      r, err, code = ratls.inspect(trailing.cert)
      assert.is_nil(r)
      assert.equal('EATTEST', code, err)
      -- V1 (msgpack) is read like V0: bound when its report_data is the key's
      local attestation = require('moonstack.tdx.attestation')
      local function as_v1(v0) return attestation.encode_v1(assert(attestation.decode(v0))) end
      local v1 = ratls_identity({ attest = function(rd) return as_v1(fake.attestation(rd)) end })
      local info = assert(ratls.inspect(v1.cert))
      assert.equal(1, ratls.decode_attestation(info.evidence.attestation).version)
      local v1_bad = ratls_identity({ attest = function()
        return as_v1(fake.attestation(ratls.report_data(other:spki())))
      end })
      r, err, code = ratls.inspect(v1_bad.cert)
      assert.is_nil(r)
      assert.equal('EBINDING', code, err)
      -- a msgpack map that is no attestation is malformed; an extractor can still take over
      local junk = ratls_identity({ attest = function(rd) return '\131' .. rd end })
      r, err, code = ratls.inspect(junk.cert)
      assert.is_nil(r)
      assert.equal('EATTEST', code, err)
      assert(ratls.inspect(junk.cert, { report_data = function(ev) return ev.attestation:sub(2, 65) end }))
    end)

    it('reads the legacy quote (.1.1) + event log (.1.2) pair', function()
      local id = ratls_identity({ attest = function(rd)
        return { quote = fake.quote(rd), event_log = '[]' }
      end })
      local info = assert(ratls.inspect(id.cert))
      assert.equal('quote', info.evidence.kind)
      assert.equal('[]', info.evidence.event_log)
      -- the event log is mandatory with the legacy quote
      local lone = ratls_identity({ attest = function(rd) return { quote = fake.quote(rd) } end })
      local r, err, code = ratls.inspect(lone.cert)
      assert.is_nil(r)
      assert.equal('EATTEST', code, err)
    end)

    it('finds report_data in real quotes and in the simulator attestation', function()
      local tdx, v5, sgx = read_vector('dcap-qvl/tdx_quote'), read_vector('dcap-qvl/tdx_quote_outdated'),
        read_vector('dcap-qvl/sgx_quote')
      local att = read_vector('dstack/simulator/attestation.bin')
      if not (tdx and v5 and sgx and att) then
        return pending('vectors not found at ' .. vectors)
      end
      -- values from vectors/README.md (parsed independently)
      assert.equal('9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9'
        .. 'eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20',
        tohex(ratls.quote_report_data(tdx)))
      assert.equal('d2142b643598eb5fae2bc8529dd79a558b29f868ccbb6531cb28dab9dce47728' .. ('00'):rep(32),
        tohex(ratls.quote_report_data(v5)))
      assert.equal('Hello, world!' .. ('\0'):rep(51), ratls.quote_report_data(sgx))
      local a = assert(ratls.decode_attestation(att))
      assert.equal(0, a.version)
      assert.equal(5010, #a.quote)
      assert.equal(33, a.events)
      assert.equal(9, a.runtime_events)
      assert.equal(('\0'):rep(64), a.report_data)
      assert.matches('^{"kms_urls"', a.config)
      local r, err, code = ratls.decode_attestation(att:sub(1, -2))
      assert.is_nil(r)
      assert.equal('EATTEST', code, err)
    end)
  end)

  describe('a server that demands an RA-TLS client certificate', function()
    local seen, url

    before_each(function()
      seen = {}
      local s = server.new({ name = 'ratls-spec', listen = { host = '127.0.0.1', port = 0 },
        tls = { cert = plain_cert:pem(), key = plain_key:pkcs8_pem(), client_cert = 'require',
          verify = ratls.verify_hook({ check = function(info)
            seen[#seen + 1] = info
            if info.special_usage == 'app:evil' then
              return false, 'vetoed: evil app'
            end
            if info.special_usage == 'app:raise' then
              error('verifier crashed')
            end
            return true
          end }) } })
      s:get('/whoami', function(req)
        local info = assert(ratls.inspect(req.peer_cert))
        return 200, { cn = info.cert.cn, usage = info.special_usage, report_data = tohex(info.report_data),
          spki_binding = tohex(ratls.report_data(info.spki)) }
      end)
      assert(s:listen())
      servers[#servers + 1] = s
      url = 'https://127.0.0.1:' .. s:port() .. '/whoami'
    end)

    local function call(tls)
      return run(function() return client.get(url, { tls = tls, timeout_ms = 3000 }) end)
    end

    it('accepts a correctly bound certificate and the handler sees it', function()
      local id = ratls_identity({ subject = 'good-client' })
      local r = assert(call(ratls.tls(id, { insecure = true })))
      assert.equal(200, r.status)
      local body = r.json()
      assert.equal('good-client', body.cn)
      assert.equal('app:custom', body.usage)
      assert.equal(tohex(id.report_data), body.report_data)
      assert.equal(body.spki_binding, body.report_data)
      assert.equal(1, #seen)
      assert.equal(id.cert.der, seen[1].der)
      assert.equal(id.cert.der, seen[1].peer.der)
      assert.is_false(seen[1].peer.preverify) -- self-signed: only the evidence vouches for it
    end)

    it('accepts one issued by a CA, chain included', function()
      local ca_key = x509.generate_key()
      local ca = assert(x509.issue({ subject = 'Dstack Client Temp CA', key = ca_key, ca = { pathlen = 0 },
        days = 1 }))
      local id = ratls_identity({ issuer = { cert = ca, key = ca_key } })
      assert.equal(1, #id.chain)
      local tls = ratls.tls(id, { insecure = true })
      assert.equal(2, select(2, tls.cert:gsub('BEGIN CERTIFICATE', '')))
      local r = assert(call(tls))
      assert.equal(200, r.status)
      assert.equal(2, #seen[1].peer.chain)
    end)

    it('refuses a certificate whose attestation report_data does not match its SPKI', function()
      local other = x509.generate_key()
      local id = ratls_identity({ attest = function()
        return fake.attestation(ratls.report_data(other:spki()))
      end })
      local r, err, code = call(ratls.tls(id, { insecure = true }))
      assert.is_nil(r)
      assert.is_string(code, err)
      assert.not_equal('ETIMEDOUT', code)
      assert.equal(0, #seen)
    end)

    it('refuses a plain certificate without the extension', function()
      local r, err, code = call({ cert = plain_cert:pem(), key = plain_key:pkcs8_pem(), insecure = true })
      assert.is_nil(r)
      assert.is_string(code, err)
      assert.not_equal('ETIMEDOUT', code)
      assert.equal(0, #seen)
    end)

    it("honours check()'s veto, and a check() that raises rejects", function()
      local evil = ratls_identity({ special_usage = 'app:evil' })
      local r, err, code = call(ratls.tls(evil, { insecure = true }))
      assert.is_nil(r)
      assert.not_equal('ETIMEDOUT', code, err)
      assert.equal(1, #seen)
      assert.equal('app:evil', seen[1].special_usage)
      local crash = ratls_identity({ special_usage = 'app:raise' })
      r, err, code = call(ratls.tls(crash, { insecure = true }))
      assert.is_nil(r)
      assert.not_equal('ETIMEDOUT', code, err)
      -- and a good one still passes afterwards
      assert(call(ratls.tls(ratls_identity(), { insecure = true })))
      assert.equal(3, #seen)
    end)

    it('refuses a client without a certificate', function()
      local r, err, code = call({ insecure = true })
      assert.is_nil(r)
      assert.not_equal('ETIMEDOUT', code, err)
    end)
  end)

  describe('a client that demands an RA-TLS server certificate', function()
    local function https(tls)
      local s = server.new({ name = 'ratls-srv', listen = { host = '127.0.0.1', port = 0 }, tls = tls })
      s:get('/', function() return 200, 'ok' end)
      assert(s:listen())
      servers[#servers + 1] = s
      return 'https://127.0.0.1:' .. s:port() .. '/'
    end

    it('accepts an attested server and refuses a plain one', function()
      local id = ratls_identity({ subject = 'localhost', eku = { 'server_auth' }, special_usage = 'kms:rpc' })
      local good = https(ratls.tls(id))
      local plain = https({ cert = plain_cert:pem(), key = plain_key:pkcs8_pem() })
      local checked
      local hook = ratls.verify_hook({ check = function(info)
        checked = info
        return info.special_usage == 'kms:rpc', 'not the KMS'
      end })
      local r = assert(run(function() return client.get(good, { tls = { verify = hook } }) end))
      assert.equal(200, r.status)
      assert.equal('ok', r.body)
      assert.equal(id.cert.der, checked.der)
      local _, err, code = run(function() return client.get(plain, { tls = { verify = hook } }) end)
      assert.equal('ECERT', code, err)
      -- require_chain: the evidence alone is not enough when a CA is demanded too
      local strict = ratls.verify_hook({ require_chain = true, check = function() return true end })
      _, err, code = run(function() return client.get(good, { tls = { verify = strict } }) end)
      assert.equal('ECERT', code, err)
    end)
  end)

  it('raises on misuse', function()
    assert.has_error(function() ratls.verify_hook({}) end)
    assert.has_error(function() ratls.issue({ subject = 'x' }) end)
    assert.has_error(function() ratls.tls({ cert = 'x' }) end)
  end)
end)
