-- SPDX-License-Identifier: Apache-2.0
-- moonstack.acme: JOSE (base64url, the RFC 7638 thumbprint with the RFC's own example, ES256
-- JWS verified with the P-256 public key), the DNS-01 key authorization, CAA content and the
-- upstream order of CAA changes, the DNS answer parser, and the gateway's cert_store.
local caa = require('moonstack.acme.caa')
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local dns = require('moonstack.acme.dns')
local json = require('moonstack.core.json')
local jws = require('moonstack.acme.jws')
local x509 = require('moonstack.x509')

describe('acme.jws', function()
  it('base64url round-trips without padding', function()
    for _, s in ipairs({ '', 'f', 'fo', 'foo', '\255\254\253\62\63' }) do
      local e = jws.b64url(s)
      assert.is_nil(e:find('[=+/]'))
      assert.equal(s, jws.unb64url(e))
    end
    assert.equal('_-8', jws.b64url('\255\239'))
    assert.is_nil(jws.unb64url('a b'))
  end)

  it('computes the RFC 7638 §3.1 example thumbprint', function()
    local jwk = { kty = 'RSA', e = 'AQAB', alg = 'RS256', kid = '2011-04-29',
      n = '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc'
        .. '_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQ'
        .. 'R0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bF'
        .. 'TWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw' }
    assert.equal('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs', jws.thumbprint(jwk))
  end)

  it('makes the JWK of a P-256 key and hashes its canonical form', function()
    local key = x509.generate_key()
    local jwk = jws.jwk(key)
    local pt = key:public_point()
    assert.equal('EC', jwk.kty)
    assert.equal('P-256', jwk.crv)
    assert.equal(pt:sub(2, 33), jws.unb64url(jwk.x))
    assert.equal(pt:sub(34, 65), jws.unb64url(jwk.y))
    local canon = ('{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}'):format(jwk.x, jwk.y)
    assert.equal(jws.b64url(crypto.sha256(canon)), jws.thumbprint(jwk))
  end)

  it('signs a flattened ES256 JWS that verifies with the public key', function()
    local key = x509.generate_key()
    local text = jws.sign(key, { nonce = 'n1', url = 'https://ca/x', kid = 'https://ca/acct/1' },
      '{"a":1}')
    local o = json.decode(text)
    local header = json.decode(jws.unb64url(o.protected))
    assert.equal('ES256', header.alg)
    assert.equal('n1', header.nonce)
    assert.equal('https://ca/x', header.url)
    assert.equal('{"a":1}', jws.unb64url(o.payload))
    local sig = jws.unb64url(o.signature)
    assert.equal(64, #sig)
    local digest = crypto.sha256(o.protected .. '.' .. o.payload)
    assert.is_true(crypto.p256.verify(key:public_point(), digest, sig))
    assert.is_false(crypto.p256.verify(key:public_point(), crypto.sha256('other'), sig))
    -- POST-as-GET: an empty payload
    assert.equal('', json.decode(jws.sign(key, { nonce = 'n', url = 'u' }, '')).payload)
  end)

  it('derives the DNS-01 value from the key authorization (RFC 8555 §8.1, §8.4)', function()
    local token, thumb = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA',
      'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs'
    assert.equal(token .. '.' .. thumb, jws.key_authorization(token, thumb))
    local v = jws.dns01_value(token, thumb)
    assert.equal(43, #v)
    assert.equal(jws.b64url(crypto.sha256(token .. '.' .. thumb)), v)
    -- independently: standard base64 of the digest with the URL alphabet and no padding
    local std = codec.base64(crypto.sha256(token .. '.' .. thumb))
    assert.equal((std:gsub('=', ''):gsub('%+', '-'):gsub('/', '_')), v)
  end)
end)

describe('acme.caa', function()
  it('binds the issuer to DNS-01 and the account as upstream', function()
    assert.equal('letsencrypt.org;validationmethods=dns-01;accounturi=https://ca/acct/7',
      caa.value(nil, 'https://ca/acct/7'))
    local r = caa.records('pebble', 'https://x/a/1')
    local v = 'pebble;validationmethods=dns-01;accounturi=https://x/a/1'
    assert.same({ flags = 0, tag = 'issue', value = v }, r[1])
    assert.same({ flags = 0, tag = 'issuewild', value = v }, r[2])
  end)

  -- a provider recording the calls, with records already at the domain
  local function fake(initial)
    local p = { calls = {}, recs = {}, n = 0 }
    for _, r in ipairs(initial) do
      p.n = p.n + 1
      p.recs[#p.recs + 1] = { id = 'r' .. p.n, flags = 0, tag = r[1], value = r[2] }
    end
    function p.create_caa(self, d, flags, tag, value)
      self.n = self.n + 1
      self.calls[#self.calls + 1] = ('create %s %s %s'):format(d, tag, value)
      self.recs[#self.recs + 1] = { id = 'r' .. self.n, flags = flags, tag = tag, value = value }
      return 'r' .. self.n
    end
    function p.list_caa(self, d) -- luacheck: ignore 212
      local out = {}
      for i, r in ipairs(self.recs) do
        out[i] = r
      end
      return out
    end
    function p.delete_caa(self, d, id)
      for i, r in ipairs(self.recs) do
        if r.id == id then
          table.remove(self.recs, i)
          self.calls[#self.calls + 1] = ('delete %s %s %s'):format(d, r.tag, r.value)
          return true
        end
      end
      return nil, 'ENOENT: ' .. id
    end
    return p
  end

  it('guards first, drops other issuers, adds the account, then removes the guards', function()
    local p = fake({ { 'issue', 'other-ca.example' }, { 'iodef', 'mailto:x@y' },
      { 'issuewild', 'other-ca.example' } })
    assert.is_true(caa.set(p, '*.test.local', 'https://ca/a/1', 'pebble'))
    local v = 'pebble;validationmethods=dns-01;accounturi=https://ca/a/1'
    assert.same({
      'create test.local issue ;', 'create test.local issuewild ;',
      'delete test.local issue other-ca.example', 'delete test.local issuewild other-ca.example',
      'create test.local issue ' .. v, 'create test.local issuewild ' .. v,
      'delete test.local issue ;', 'delete test.local issuewild ;',
    }, p.calls)
    local left = {}
    for _, r in ipairs(p.recs) do
      left[#left + 1] = r.tag .. ' ' .. r.value
    end
    assert.same({ 'iodef mailto:x@y', 'issue ' .. v, 'issuewild ' .. v }, left)
  end)

  it('leaves the guards when a step fails (nothing may issue)', function()
    local p = fake({})
    p.list_caa = function() return nil, 'EDNS: down', 'EDNS' end
    local ok, err = caa.set(p, 'test.local', 'https://ca/a/1')
    assert.is_nil(ok)
    assert.matches('EDNS', err)
    assert.equal(2, #p.recs)
    assert.equal(';', p.recs[1].value)
  end)
end)

describe('acme.dns', function()
  -- an answer to `q` with TXT records `txts` (names compressed to the question)
  local function answer(q, txts, rcode)
    local id = q:sub(1, 2)
    local hdr = id .. string.char(0x81, 0x80 + (rcode or 0), 0, 1, 0, #txts, 0, 0, 0, 0)
    local parts = { hdr, q:sub(13) }
    for _, t in ipairs(txts) do
      local rdata = string.char(#t) .. t
      parts[#parts + 1] = string.char(0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, #rdata) .. rdata
    end
    return table.concat(parts)
  end

  it('builds a query and parses TXT answers strictly', function()
    local q = dns.query('_acme-challenge.test.local.', dns.TYPE_TXT, 0x1234)
    assert.equal('\18\52\1\0\0\1\0\0\0\0\0\0\15_acme-challenge\4test\5local\0\0\16\0\1', q)
    assert.same({ 'v1', 'v2' }, dns.parse(answer(q, { 'v1', 'v2' }), 0x1234, dns.TYPE_TXT))
    assert.same({}, dns.parse(answer(q, {}, 3), 0x1234, dns.TYPE_TXT)) -- NXDOMAIN
    local ok, err = dns.parse(answer(q, { 'v1' }), 0x1235, dns.TYPE_TXT)
    assert.is_nil(ok)
    assert.matches('another id', err)
    local a = answer(q, { 'value' })
    assert.is_nil((dns.parse(a:sub(1, #a - 2), 0x1234, dns.TYPE_TXT))) -- truncated RDATA
    assert.is_nil((dns.parse(q, 0x1234, dns.TYPE_TXT))) -- a query, not a response
    -- a name pointing at itself is skipped, not followed (no loop)
    local loop = q:sub(1, 2) .. string.char(0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0) .. string.char(0xc0, 12)
    assert.same({}, dns.parse(loop .. string.rep('\0', 10), 0x1234, dns.TYPE_TXT))
    -- a label length with the reserved bits 01/10 is refused
    local bad = q:sub(1, 2) .. string.char(0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0) .. string.char(0x40)
    assert.is_nil((dns.parse(bad .. string.rep('\0', 12), 0x1234, dns.TYPE_TXT)))
  end)
end)

describe('gateway.cert_store', function()
  local store_mod = require('moonstack.gateway.cert_store')
  local dir = os.tmpname()
  os.remove(dir)
  local store = store_mod.new(dir)

  it('keeps values 0600 under their keys', function()
    assert.is_nil(store:get('acme/account'))
    assert.is_true(store:put('cert/test.local/data', '{"x":1}'))
    assert.equal('{"x":1}', store:get('cert/test.local/data'))
    local st = require('luv').fs_stat(dir .. '/cert/test.local/data')
    assert.equal(384, st.mode % 512)
    assert.is_nil(store:put('../escape', 'x'))
    assert.is_nil(store:put('cert//x', 'x'))
    assert.is_nil(store:get('cert/../../etc/passwd'))
  end)

  it('locks: one holder until unlock or expiry', function()
    local t1 = assert(store:lock('cert/test.local', 60))
    local t2, holder = store:lock('cert/test.local', 60)
    assert.is_nil(t2)
    assert.equal(t1, holder)
    store:unlock('cert/test.local', 'not-the-token')
    assert.is_nil((store:lock('cert/test.local', 60)))
    store:unlock('cert/test.local', t1)
    local t3 = assert(store:lock('cert/test.local', -1)) -- expired at once
    assert.truthy(store:lock('cert/test.local', 60))
    assert.not_equal(t1, t3)
    require('moonstack.core.fs').remove_tree(dir)
  end)
end)
