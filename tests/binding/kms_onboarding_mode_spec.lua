-- SPDX-License-Identifier: Apache-2.0
-- Onboarding mode over real HTTP: a KMS started with `onboard = {}` on an empty key directory
-- serves the Onboard service and its page until Finish. Bootstrap makes fresh keys attested by
-- the (simulated) TEE over Keccak256("dstack-kms-genereted-keys-v1:" ...), refuses to run
-- twice, bad domains and an early Finish; GetAttestationInfo describes the KMS; after Finish the
-- KMS serves on the new keys, its RPC certificate for the chosen domain and GetMeta carrying
-- bootstrap_info. auto_bootstrap_domain does the same unattended; Onboard copies the keys of a
-- running KMS.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local client = require('moonstack.http.client')
local loop = require('tests.helpers.loop')
local task = require('moonstack.core.task')
local keys = require('moonstack.kms.keys')
local config = require('moonstack.kms.config')
local server = require('moonstack.kms')
local onboarding = require('moonstack.kms.onboarding')
local attestation = require('moonstack.tdx.attestation')
local x509 = require('moonstack.x509')
local kms_fixture = require('kms_fixture')

local hex, unhex = crypto.hex, crypto.unhex

local fx
local servers = {}

local function cfg_for(name, onboard)
  if onboard then
    onboard.listen = { host = '127.0.0.1', port = 0 }
  end
  return assert(config.validate({ key_dir = fx.base .. '/' .. name,
    listen = { host = '127.0.0.1', port = 0 }, auth = { kind = 'dev' }, onboard = onboard,
    attestation = { collateral_file = fx.files.collateral, root_ca_file = fx.files.root,
      allow_simulator = true },
    tee = { kind = 'sim', dir = fx.base .. '/sim', cvm = 'app' } }))
end

-- Start a KMS in the background; returns its result box and the onboarding address (if any).
local function start_bg(cfg)
  local box, addr = {}, nil
  task.spawn(function()
    local k, err, code = server.start(cfg, nil, { onboarding_ready = function(a) addr = a end })
    box.k, box.err, box.code, box.done = k, err, code, true
    if k then
      servers[#servers + 1] = k
    end
  end)
  loop.run_until(function() return addr ~= nil or box.done end, 10000)
  return box, addr
end

local function post(addr, method, body)
  return assert(loop.run_task(function()
    return client.request({ url = ('http://%s/prpc/Onboard.%s?json'):format(addr, method), method = 'POST',
      body = cjson.encode(body or {}), headers = { ['content-type'] = 'application/json' } })
  end, 15000))
end

local function get(url)
  return assert(loop.run_task(function()
    return client.request({ url = url, want_headers = { 'content-security-policy' } })
  end, 15000))
end

local function meta(k)
  local r = assert(loop.run_task(function()
    return client.request({ url = ('https://127.0.0.1:%d/prpc/GetMeta?json'):format(k:port()),
      method = 'POST', body = '{}', host = 'localhost',
      tls = { ca = k.material.root_cert:pem(), skip_hostname = true } })
  end, 15000))
  assert.equal(200, r.status, r.body)
  return assert(cjson.decode(r.body))
end

describe('kms onboarding mode', function()
  setup(function()
    fx = kms_fixture.setup('kms_onboarding_mode_spec')
  end)

  teardown(function()
    kms_fixture.teardown(fx, servers)
  end)

  it('bootstraps attested keys on request, then serves them after Finish', function()
    local box, addr = start_bg(cfg_for('a', {}))
    assert.truthy(addr, box.err)
    local page = get('http://' .. addr .. '/')
    assert.equal(200, page.status)
    assert.truthy(page.body:find('Bootstrap', 1, true))
    assert.truthy(page.headers['content-security-policy'])
    assert.is_nil(page.headers['content-security-policy']:find('unsafe', 1, true))
    assert.equal('text/html; charset=utf-8', page.headers['content-type'])
    for name, ctype in pairs({ ['onboarding.js'] = 'text/javascript', ['onboarding.css'] = 'text/css' }) do
      local asset = get('http://' .. addr .. '/' .. name) -- ui/kms/onboarding, next to the page
      assert.equal(200, asset.status, name)
      assert.matches(ctype, asset.headers['content-type'], 1, true)
      assert.truthy(page.body:find(name, 1, true), name)
    end
    assert.equal(404, get('http://' .. addr .. '/nope.js').status)
    local r = post(addr, 'Finish')
    assert.equal(400, r.status)
    assert.truthy(r.body:find('no root keys yet', 1, true), r.body)
    r = post(addr, 'Bootstrap', { domain = 'not a domain!' })
    assert.equal(400, r.status)
    assert.truthy(r.body:find('domain must be a DNS name', 1, true), r.body)

    r = post(addr, 'Bootstrap', { domain = 'kms-a.example' })
    assert.equal(200, r.status, r.body)
    local b = assert(cjson.decode(r.body))
    local m = assert(keys.load(fx.base .. '/a'))
    assert.equal(hex(m.root_key:spki()), b.ca_pubkey)
    assert.equal(hex(m.k256_pubkey), b.k256_pubkey)
    local att = assert(attestation.decode(unhex(b.attestation)))
    assert.equal(onboarding.report_data(m.root_key:spki(), m.k256_pubkey), att.report_data)
    local preimage = 'dstack-kms-genereted-keys-v1:' .. b.ca_pubkey .. ';' .. b.k256_pubkey .. ';'
    assert.equal(crypto.keccak256(preimage), att.report_data:sub(1, 32))
    r = post(addr, 'Bootstrap', { domain = 'kms-a.example' })
    assert.equal(400, r.status)
    assert.truthy(r.body:find('refusing to overwrite', 1, true), r.body)
    r = post(addr, 'GetAttestationInfo')
    assert.equal(200, r.status, r.body)
    local info = assert(cjson.decode(r.body))
    assert.equal('dstack-tdx', info.tee_variant)
    assert.equal(64, #info.mr_aggregated)
    -- device_id = SHA-256(PPID), as the BootInfo's
    assert.truthy(#info.ppid > 0, r.body)
    assert.equal(hex(crypto.sha256(unhex(info.ppid))), info.device_id)

    assert.equal(200, get('http://' .. addr .. '/finish').status)
    loop.run_until(function() return box.done end, 10000)
    local k = assert(box.k, box.err)
    assert.equal('kms-a.example', k.domain)
    assert.equal('kms-a.example', k.rpc_cert:info().cn)
    assert.same(b, meta(k).bootstrap_info)
  end)

  it('bootstraps unattended with auto_bootstrap_domain', function()
    local box = start_bg(cfg_for('auto', { auto_bootstrap_domain = 'auto.example' }))
    loop.run_until(function() return box.done end, 10000)
    local k = assert(box.k, box.err)
    local bi = meta(k).bootstrap_info
    assert.equal(hex(k.material.root_key:spki()), bi.ca_pubkey)
    assert.truthy(#bi.attestation > 0)
    assert.equal('auto.example', k.domain)
    local _, err = config.validate({ key_dir = '/x', auth = { kind = 'dev' },
      onboard = { auto_bootstrap_domain = 'a.example', source_url = 'https://b:1' },
      attestation = { collateral_file = '/c' }, tee = { kind = 'agent' } })
    assert.truthy(err:find('not both', 1, true), err)
  end)

  it('onboards from a running KMS on request', function()
    local source = assert(servers[1], 'the first test started a KMS')
    local box, addr = start_bg(cfg_for('b', {}))
    assert.truthy(addr, box.err)
    local r = post(addr, 'Onboard', { source_url = 'http://127.0.0.1:1', domain = 'kms-b.example' })
    assert.equal(400, r.status)
    assert.truthy(r.body:find('source_url must be an https:// URL', 1, true), r.body)
    r = post(addr, 'Onboard', { source_url = ('https://127.0.0.1:%d'):format(source:port()),
      domain = 'kms-b.example' })
    assert.equal(200, r.status, r.body)
    assert.equal(hex(source.material.k256_pubkey), assert(cjson.decode(r.body)).k256_pubkey)
    assert.equal(200, post(addr, 'Finish').status)
    loop.run_until(function() return box.done end, 10000)
    local k = assert(box.k, box.err)
    assert.equal(source.material.root_cert:pem(), k.material.root_cert:pem())
    assert.equal('kms-b.example', k.domain)
    assert.is_nil(meta(k).bootstrap_info) -- replicated, not bootstrapped here
    assert.truthy(x509.cert(k.rpc_cert:pem()))
  end)
end)
