-- SPDX-License-Identifier: Apache-2.0
-- moonstack.verifier.collateral: files in the vectors' format, expiry from nextUpdate (CRLs
-- parsed), and fetching from a local PCCS-like server (moonstack.http.server on loopback)
-- that serves the vectors the way Intel's PCS v4 does: issuer chains URL-encoded in custom
-- response headers (read through the HTTP client's want_headers), TCB info and QE identity
-- wrapped with their signatures, the root CA CRL as hex. Then the caches (memory and disk): a
-- hit makes no request, an entry past its nextUpdate is fetched again, files are 0600, a
-- corrupt file is replaced.
local uv = require('luv')
local loop = require('loop')
local server = require('moonstack.http.server')
local client = require('moonstack.http.client')
local collateral = require('moonstack.verifier.collateral')
local json = require('moonstack.core.json')
local codec = require('moonstack.core.codec')
local fixtures = require('fixtures')

local function run(fn, timeout_ms)
  return loop.run_task(fn, timeout_ms or 10000)
end

-- dcap-qvl's upstream rule: the verification time for a sample is min(nextUpdate) - 1 s.
local SAMPLES = {
  { quote = 'dcap-qvl/tdx_quote', collateral = 'dcap-qvl/tdx_quote_collateral.json',
    tee = 'tdx', fmspc = 'B0C06F000000', ca = 'platform', now = 1752919234 },
  { quote = 'dcap-qvl/sgx_quote', collateral = 'dcap-qvl/sgx_quote_collateral.json',
    tee = 'sgx', fmspc = '00A067110000', ca = 'processor', now = 1752919277 },
  { quote = 'dcap-qvl/tdx_quote_outdated', collateral = 'dcap-qvl/tdx_quote_outdated_collateral.json',
    tee = 'tdx', fmspc = '90C06F000000', ca = 'platform', now = 1774003274 },
}

local pcs_server = require('pcs_server')

local function total(srv)
  local n = 0
  for _, v in pairs(srv.hits) do
    n = n + v
  end
  return n
end

describe('verifier collateral: files and expiry', function()
  it('reads every sample collateral file and finds its earliest nextUpdate', function()
    for _, s in ipairs(SAMPLES) do
      local text = assert(collateral.read_file(fixtures.vector(s.collateral)))
      local exp = assert(collateral.expires(text))
      -- the upstream test time is min(nextUpdate) - 1
      assert.equals(s.now + 1, exp)
    end
  end)

  it('parses CRL nextUpdate from DER', function()
    local c = assert(collateral.parse(fixtures.read_vector('dcap-qvl/tdx_quote_collateral.json')))
    -- the PCK CRL of this sample expires first (vectors/README.md: 16 min before tcbInfo)
    local pck = assert(collateral.crl_next_update(codec.unhex(c.pck_crl)))
    assert.equals(1752919235, pck)
    assert.is_true(assert(collateral.crl_next_update(codec.unhex(c.root_ca_crl))) > pck)
    local none, err = collateral.crl_next_update('\48\3\2\1\0')
    assert.is_nil(none)
    assert.matches('not a DER CRL', err)
  end)

  it('rejects malformed collateral, naming the field', function()
    local c = assert(json.decode(fixtures.read_vector('dcap-qvl/tdx_quote_collateral.json')))
    for field, value in pairs({ pck_crl = 'xyz', tcb_info = '[1]', qe_identity = 7 }) do
      local bad = {}
      for k, v in pairs(c) do
        bad[k] = v
      end
      bad[field] = value
      local ok, err, code = collateral.parse(json.encode(bad))
      assert.is_nil(ok)
      assert.equals('ECOLLATERAL', code)
      assert.matches(field, err)
    end
    local _, err, code = collateral.parse('{"pck_crl": ')
    assert.equals('ECOLLATERAL', code)
    assert.matches('invalid JSON', err)
    local _, _, ecode = collateral.read_file('/nonexistent/collateral.json')
    assert.equals('ENOENT', ecode)
  end)

  it('finds what each sample quote needs from its PCK chain', function()
    for _, s in ipairs(SAMPLES) do
      local t = assert(collateral.quote_target(fixtures.read_vector(s.quote)))
      assert.same({ fmspc = s.fmspc, ca = s.ca, tee = s.tee }, t)
    end
    local _, _, code = collateral.quote_target('not a quote')
    assert.equals('EQUOTE', code)
  end)

  it('builds the PCS v4 URLs from a base with or without the certification path', function()
    local t = { tee = 'tdx', fmspc = 'B0C06F000000', ca = 'platform' }
    for _, base in ipairs({ 'https://pccs.example', 'https://pccs.example/',
      'https://pccs.example/tdx/certification/v4', 'https://pccs.example/sgx/certification/v4/' }) do
      local u = collateral.urls(base, t)
      assert.equals('https://pccs.example/sgx/certification/v4/pckcrl?ca=platform&encoding=der', u.pckcrl)
      assert.equals('https://pccs.example/tdx/certification/v4/tcb?fmspc=B0C06F000000', u.tcb)
      assert.equals('https://pccs.example/tdx/certification/v4/qe/identity?update=standard', u.qe_identity)
      assert.equals('https://pccs.example/sgx/certification/v4/rootcacrl', u.rootcacrl)
      assert.is_false(u.is_pcs)
    end
    assert.is_true(collateral.urls('https://api.trustedservices.intel.com/sgx/certification/v4', t).is_pcs)
  end)
end)

describe('verifier collateral: the HTTP client returns wanted custom headers', function()
  it('copies the named non-standard headers, and only those', function()
    local srv = server.new({ name = 'h', listen = { host = '127.0.0.1', port = 0 } })
    local long = ('%2D'):rep(900) -- a URL-encoded PEM is ~2 KB
    srv:get('/h', function(_, res)
      res:send(200, 'x', { ['SGX-PCK-CRL-Issuer-Chain'] = long, ['X-Other'] = 'o' })
    end)
    assert(srv:listen())
    local resp = run(function()
      return client.request({ url = ('http://127.0.0.1:%d/h'):format(srv:port()),
        want_headers = { 'SGX-PCK-CRL-Issuer-Chain', 'X-Absent' } })
    end)
    srv:close()
    assert.equals(200, resp.status)
    assert.equals(long, resp.headers['sgx-pck-crl-issuer-chain'])
    assert.is_nil(resp.headers['x-absent'])
    assert.is_nil(resp.headers['x-other'])
    assert.has_error(function()
      client.request_cb({ url = 'http://127.0.0.1:1/', want_headers = { 'bad name' } }, function() end)
    end, 'http.request: want_headers[1] must be a header name')
  end)
end)

describe('verifier collateral: fetching from a PCCS', function()
  local cache_dir
  before_each(function()
    cache_dir = fixtures.tmpdir('coll') .. '/cache'
  end)

  it('fetches exactly the vectors for every sample quote', function()
    for _, s in ipairs(SAMPLES) do
      local coll = assert(json.decode(fixtures.read_vector(s.collateral)))
      local srv = pcs_server(coll, s)
      local src = collateral.pccs(srv.base .. '/' .. s.tee .. '/certification/v4')
      local text, info = run(function()
        return src:fetch(fixtures.read_vector(s.quote), { now = s.now })
      end)
      srv:close()
      assert(text, info)
      assert.equals('network', info.source)
      local got = assert(json.decode(text))
      for _, k in ipairs(collateral.KEYS) do
        assert.equals(coll[k], got[k], s.quote .. ': ' .. k)
      end
      assert.equals(4, total(srv))
    end
  end)

  it('accepts the older SGX-TCB-Info-Issuer-Chain header', function()
    local s = SAMPLES[1]
    local coll = assert(json.decode(fixtures.read_vector(s.collateral)))
    local srv = pcs_server(coll, { tee = s.tee, fmspc = s.fmspc, ca = s.ca, old_tcb_header = true })
    local text, err = run(function()
      return collateral.pccs(srv.base):fetch(fixtures.read_vector(s.quote), { now = s.now })
    end)
    srv:close()
    assert(text, err)
    assert.equals(coll.tcb_info_issuer_chain, assert(json.decode(text)).tcb_info_issuer_chain)
  end)

  it('falls back to the root CA CRL distribution point', function()
    local s = SAMPLES[1]
    local coll = assert(json.decode(fixtures.read_vector(s.collateral)))
    local srv = pcs_server(coll, { tee = s.tee, fmspc = s.fmspc, ca = s.ca, no_rootcacrl = true })
    local text, err = run(function()
      return collateral.pccs(srv.base, { root_ca_crl_url = srv.base .. '/IntelSGXRootCA.der' })
        :fetch(fixtures.read_vector(s.quote), { now = s.now })
    end)
    srv:close()
    assert(text, err)
    assert.equals(coll.root_ca_crl, assert(json.decode(text)).root_ca_crl)
    assert.equals(1, srv.hits['/IntelSGXRootCA.der'])
  end)

  it('caches: a hit makes no request; past nextUpdate it fetches again', function()
    local s = SAMPLES[1]
    local coll = assert(json.decode(fixtures.read_vector(s.collateral)))
    local srv = pcs_server(coll, s)
    local src = collateral.pccs(srv.base, { cache_dir = cache_dir })
    local q = fixtures.read_vector(s.quote)
    local text, info = run(function() return src:fetch(q, { now = s.now }) end)
    assert(text, info)
    assert.equals('network', info.source)
    assert.equals(4, total(srv))
    assert.equals(s.now + 1, info.expires)
    assert.matches('/[0-9a-f]+%-tdx%-B0C06F000000%-platform%.json$', info.path)
    assert.equals(384, bit.band(uv.fs_stat(info.path).mode, 511)) -- 0600
    assert.equals(448, bit.band(uv.fs_stat(cache_dir).mode, 511)) -- 0700
    assert.equals(text, fixtures.read(info.path))
    -- a hit: same text, no request; from memory, and from disk for a new source
    local again, info2 = run(function() return src:fetch(q, { now = s.now }) end)
    assert.equals(text, again)
    assert.equals('memory', info2.source)
    local fresh = collateral.pccs(srv.base, { cache_dir = cache_dir })
    again, info2 = run(function() return fresh:fetch(q, { now = s.now }) end)
    assert.equals(text, again)
    assert.equals('cache', info2.source)
    assert.equals(4, total(srv))
    -- the cached file is usable as --collateral
    assert.equals(text, collateral.read_file(info.path))
    -- one second later the earliest nextUpdate (the PCK CRL) has passed: fetch again
    local _, info3 = run(function() return src:fetch(q, { now = s.now + 1 }) end)
    assert.equals('network', info3.source)
    assert.equals(8, total(srv))
    -- refresh forces a download
    local _, info4 = run(function() return src:fetch(q, { now = s.now, refresh = true }) end)
    assert.equals('network', info4.source)
    assert.equals(12, total(srv))
    -- a corrupt cache file is replaced
    local f = assert(io.open(info.path, 'wb'))
    f:write('{"garbage"')
    f:close()
    local fixed, info5 = run(function()
      return collateral.pccs(srv.base, { cache_dir = cache_dir }):fetch(q, { now = s.now })
    end)
    assert.equals('network', info5.source)
    assert.equals(text, fixed)
    assert.equals(text, fixtures.read(info.path))
    -- no temporary files left behind
    local names = {}
    local req = uv.fs_scandir(cache_dir)
    while true do
      local name = uv.fs_scandir_next(req)
      if not name then break end
      names[#names + 1] = name
    end
    assert.equals(1, #names)
    srv:close()
  end)

  it('keys the cache by FMSPC and CA', function()
    local srvs, paths = {}, {}
    for i = 1, 2 do
      local s = SAMPLES[i]
      local coll = assert(json.decode(fixtures.read_vector(s.collateral)))
      srvs[i] = pcs_server(coll, s)
    end
    -- one base URL serving both would be a real PCCS; two servers, one cache dir here
    for i = 1, 2 do
      local s = SAMPLES[i]
      local text, info = run(function()
        return collateral.pccs(srvs[i].base, { cache_dir = cache_dir }):fetch(
          fixtures.read_vector(s.quote), { now = s.now })
      end)
      assert(text, info)
      paths[i] = info.path
    end
    for _, srv in ipairs(srvs) do
      srv:close()
    end
    assert.matches('%-sgx%-00A067110000%-processor%.json$', paths[2])
    assert.not_equals(paths[1], paths[2])
  end)

  it('reports HTTP errors, missing headers and bad bodies', function()
    local s = SAMPLES[1]
    local coll = assert(json.decode(fixtures.read_vector(s.collateral)))
    -- the server knows another FMSPC: the TCB info request is a 404
    local srv = pcs_server(coll, { tee = s.tee, fmspc = 'FFFFFFFFFFFF', ca = s.ca })
    local text, err, code = run(function()
      return collateral.pccs(srv.base):fetch(fixtures.read_vector(s.quote), { now = s.now })
    end)
    assert.is_nil(text)
    assert.equals('ECOLLATERAL', code)
    assert.matches('GET http://127%.0%.0%.1:%d+/tdx/certification/v4/tcb%?fmspc=B0C06F000000: HTTP 404', err)
    srv:close()
    -- a server without the issuer-chain header
    local bare = server.new({ name = 'bare', listen = { host = '127.0.0.1', port = 0 } })
    bare:get('/sgx/certification/v4/pckcrl', function() return 200, 'x' end)
    assert(bare:listen())
    text, err, code = run(function()
      return collateral.pccs(('http://127.0.0.1:%d'):format(bare:port()))
        :fetch(fixtures.read_vector(s.quote), { now = s.now })
    end)
    bare:close()
    assert.is_nil(text)
    assert.equals('ECOLLATERAL', code)
    assert.matches('has no sgx%-pck%-crl%-issuer%-chain header', err)
    -- nothing listening
    text, err, code = run(function()
      return collateral.pccs('http://127.0.0.1:1'):fetch(fixtures.read_vector(s.quote))
    end)
    assert.is_nil(text)
    assert.equals('ECONNREFUSED', code)
    assert.matches('GET http://127%.0%.0%.1:1/sgx', err)
  end)
end)
