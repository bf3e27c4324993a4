-- SPDX-License-Identifier: Apache-2.0
-- moonstack.gateway.acme_info: the simulated-platform evidence source (`attestation = { sim =
-- DIR }`) makes GetQuoteResponse JSON whose quote the verifier accepts (trusting that platform)
-- over SHA-512("zt-cert:" || SPKI) and refuses over another key's; AcmeInfo built from a store.
local acme_info = require('moonstack.gateway.acme_info')
local cert_store = require('moonstack.gateway.cert_store')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')
local json = require('moonstack.core.json')
local loop = require('loop')
local verifier = require('moonstack.verifier')
local x509 = require('moonstack.x509')

describe('gateway.acme_info', function()
  local dir = os.tmpname()
  os.remove(dir)

  teardown(function()
    fs.remove_tree(dir)
  end)

  it('quotes a certificate key on a simulated platform; the verifier checks the binding', function()
    loop.run_task(function()
      assert.is_nil(acme_info.source(nil))
      local src = assert(acme_info.source({ sim = dir .. '/sim' }))
      assert.equal('sim', src.kind)
      local spki = x509.generate_key():spki()
      local rd = acme_info.cert_report_data(spki)
      assert.equal(crypto.sha512('zt-cert:' .. spki), rd)
      local q = json.decode(assert(src:quote(rd)))
      assert.equal(crypto.hex(rd), q.report_data)
      assert.equal('string', type(q.event_log))
      local vopts = {}
      assert(require('moonstack.sim').trust(vopts, dir .. '/sim'))
      local p = {}
      for k, v in pairs(verifier.DEFAULT_POLICY) do
        p[k] = v
      end
      p.allow_simulator = true
      vopts.policy = p
      local v = assert(verifier.new(vopts))
      local quote = crypto.unhex(q.quote)
      local res, err = v:check_quote(quote, q.event_log, { report_data = rd })
      assert.truthy(res, err)
      local other = acme_info.cert_report_data(x509.generate_key():spki())
      local bad, berr = v:check_quote(quote, q.event_log, { report_data = other })
      assert.is_nil(bad)
      assert.matches('EBINDING', berr)
      -- without trusting the simulated platform the quote does not verify
      local strict = assert(verifier.new({ collateral = vopts.collateral }))
      assert.is_nil((strict:check_quote(quote, q.event_log, { report_data = rd })))
    end, 30000)
  end)

  it('builds AcmeInfo from the store', function()
    local store = cert_store.new(dir .. '/store')
    local info = acme_info.info(store, 'test.local')
    assert.same({ account_uri = '', hist_keys = {}, quoted_hist_keys = {}, account_quote = '',
      account_attestation = '', active_cert = '', base_domain = 'test.local' }, info)
    local k1, k2 = x509.generate_key():spki(), x509.generate_key():spki()
    assert(store:put('acme/account', json.encode({ account_uri = 'https://ca/acct/1', key = 'x' })))
    assert(store:put('acme/attestation', json.encode({ account_uri = 'https://ca/acct/1',
      quote = '{"q":1}' })))
    assert(store:put('cert/test.local/attestation/history', json.encode({
      { public_key = crypto.hex(k1), quote = '{"a":1}' }, { public_key = crypto.hex(k2), quote = '{"b":2}' },
      { public_key = 'not hex', quote = '' } })))
    assert(store:put('cert/test.local/data', json.encode({ chain = 'PEM', key = 'KEY', not_after = 1 })))
    info = acme_info.info(store, 'test.local')
    assert.equal('https://ca/acct/1', info.account_uri)
    assert.equal('{"q":1}', info.account_quote)
    assert.same({ k1, k2 }, info.hist_keys)
    assert.equal('{"b":2}', info.quoted_hist_keys[2].quote)
    assert.equal('PEM', info.active_cert)
    local j = acme_info.info_json(info)
    assert.equal(crypto.hex(k1), j.quoted_hist_keys[1].public_key)
    assert.equal(crypto.hex(k2), j.hist_keys[2])
    assert.is_nil(json.encode(j):find('KEY', 1, true)) -- the private key never leaves the store
  end)
end)
