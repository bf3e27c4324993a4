-- SPDX-License-Identifier: Apache-2.0
-- GetAppKey over real mutual TLS: a simulated CVM (moonstack.sim) with app-id, compose-hash and
-- instance-id events presents an RA-TLS client certificate issued by the KMS temp CA; the KMS
-- verifies the quote against the simulator's collateral and root, replays RTMR3, builds the
-- BootInfo, asks the auth backend and releases the keys of the spec's vectors (root f57527ce…,
-- k256 root 0x01×32, app 0x11×20, instance 0x22×20). Refused: no client certificate, evidence
-- not bound to the certificate's key, a tampered quote, a simulated quote when simulators are not allowed, an
-- event log that does not replay (each named in the error), a denying auth backend (its reason returned).
local bit = require('bit')
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local client = require('moonstack.http.client')
local loop = require('tests.helpers.loop')
local ratls = require('moonstack.x509.ratls')
local evidence = require('moonstack.tdx.evidence')
local auth = require('moonstack.kms.auth')
local config = require('moonstack.kms.config')
local server = require('moonstack.kms')
local kms_fixture = require('kms_fixture')

local hex, unhex = crypto.hex, crypto.unhex
local APP, COMPOSE = kms_fixture.APP, kms_fixture.COMPOSE
local OS_IMAGE = ('ab'):rep(32)

local fx
local base, material, tee, files
local servers = {}

local function start(att, auth_cfg)
  local cfg = assert(config.validate({ key_dir = base .. '/keys',
    listen = { host = '127.0.0.1', port = 0 }, auth = auth_cfg or { kind = 'dev', gateway_app_id = 'gw-1' },
    attestation = att or { collateral_file = files.collateral, root_ca_file = files.root,
      allow_simulator = true }, image = { measurements_dir = files.measurements } }))
  local k = assert(server.start(cfg))
  servers[#servers + 1] = k
  return k
end

-- An RA-TLS client identity from the simulated CVM, issued by the KMS temp CA. `tamper`
-- flips one byte of the quote's signature (VersionedAttestation V0: 2-byte tag, 2-byte compact
-- length, then the quote: header 48 + TD report 584 + signature length 4 + signature).
local function identity(rd_override, tamper)
  local ev = evidence.new({ tee = tee, vm_config = cjson.encode({ os_image_hash = OS_IMAGE }) })
  return assert(ratls.issue({ subject = 'app', eku = { 'client_auth' },
    issuer = { cert = material.tmp_ca_cert, key = material.tmp_ca_key },
    attest = function(rd)
      local a = assert(ev:attestation(rd_override or rd, 'cert'))
      if tamper then
        local i = 4 + 48 + 584 + 4 + 10
        a = a:sub(1, i - 1) .. string.char(bit.bxor(a:byte(i), 1)) .. a:sub(i + 1)
      end
      return a
    end }))
end

local function get_app_key(kms, id, body)
  local tls = { ca = material.root_cert:pem() }
  if id then
    tls = ratls.tls(id, tls)
  end
  return loop.run_task(function()
    return client.request({ url = ('https://127.0.0.1:%d/prpc/GetAppKey?json'):format(kms:port()),
      method = 'POST', host = 'localhost', body = body or '{"api_version":1,"vm_config":""}', tls = tls })
  end, 15000)
end

local function metrics_of(kms)
  local r = assert(loop.run_task(function()
    return client.request({ url = ('https://127.0.0.1:%d/metrics'):format(kms:port()),
      host = 'localhost', tls = { ca = material.root_cert:pem() } })
  end, 10000))
  assert.equal(200, r.status)
  local m = {}
  for name, v in r.body:gmatch('\n([%w_]+) ([%d.]+)') do
    m[name] = tonumber(v)
  end
  m.inf = tonumber(r.body:match('_bucket{le="%+Inf"} (%d+)'))
  return m
end

local function expect_error(r, fragment)
  assert.equal(400, r.status, r.body)
  local e = assert(cjson.decode(r.body)).error
  assert.truthy(e:find(fragment, 1, true), ('%q not in %q'):format(fragment, e))
end

describe('kms GetAppKey', function()
  setup(function()
    fx = kms_fixture.setup('kms_getappkey_spec')
    base, material, tee, files = fx.base, fx.material, fx.tee, fx.files
    kms_fixture.register_image(fx, OS_IMAGE)
  end)

  teardown(function()
    kms_fixture.teardown(fx, servers)
  end)

  it('releases the app keys to an attested CVM the auth backend allows', function()
    local kms = start()
    local r = assert(get_app_key(kms, identity()))
    assert.equal(200, r.status, r.body)
    local k = assert(cjson.decode(r.body))
    assert.equal(material.root_cert:pem(), k.ca_cert)
    assert.equal('a7470db8cfdd0fe24134b461d60766afa7c078abe6dce9f2c8a5c44034ca400e', k.env_crypt_key)
    assert.equal('a59c814e2c6d9353af59ce4fba7215e5ec3b62a2495b4dca48ea6f9804061f51', k.disk_crypt_key)
    assert.equal('88fa429170ad091e0f87b335ba19b1729610ac25441728807ce3325161846baf', k.k256_key)
    local app_pub = crypto.k256.pubkey(unhex(k.k256_key))
    assert.equal(crypto.k256.pubkey(('\1'):rep(32)),
      require('moonstack.crypto.dstack').kms_issued_recover(APP, app_pub, unhex(k.k256_signature)))
    assert.equal('gw-1', k.gateway_app_id)
    assert.equal('gw-1', k.tproxy_app_id)
    assert.equal(OS_IMAGE, k.os_image_hash)
    local m = metrics_of(kms)
    assert.equal(1, m.dstack_kms_attestation_requests_total)
    assert.equal(0, m.dstack_kms_attestation_failures_total)
    assert.equal(1, m.moonstack_kms_attestation_request_seconds_count)
    assert.equal(1, m.inf)
  end)

  it('refuses a client without a certificate, or with evidence not bound to its key', function()
    local kms = start()
    expect_error(assert(get_app_key(kms, nil)), 'an RA-TLS client certificate is required')
    expect_error(assert(get_app_key(kms, identity(('\7'):rep(64)))), 'report_data is not')
    expect_error(assert(get_app_key(kms, identity(), '{"api_version":2}')), 'unsupported api_version 2')
    expect_error(assert(get_app_key(kms, identity(nil, true))),
      'quote verification failed: the quote signature over the header and body')
    -- the KMS keeps serving
    assert.equal(200, assert(get_app_key(kms, identity())).status)
  end)

  it("takes a simulator's root and collateral from its state directory (development)", function()
    local kms = start({ simulator_dir = base .. '/sim', allow_simulator = true })
    local r = assert(get_app_key(kms, identity()))
    assert.equal(200, r.status, r.body)
    for _, bad in ipairs({
      { { simulator_dir = base .. '/sim' }, 'needs allow_simulator = true' },
      { { simulator_dir = base .. '/sim', allow_simulator = true, root_ca_file = files.root },
        'takes the simulator\'s collateral and root itself' },
      { { simulator_dir = base .. '/sim', allow_simulator = true, collateral_file = files.collateral },
        'give one of collateral_file, pccs or simulator_dir' },
    }) do
      local _, err = config.validate({ key_dir = base .. '/keys', auth = { kind = 'dev' },
        attestation = bad[1] })
      assert.truthy(err and err:find(bad[2], 1, true), err)
    end
  end)

  it('refuses simulated quotes unless the config allows them', function()
    local kms = start({ collateral_file = files.collateral, root_ca_file = files.root })
    expect_error(assert(get_app_key(kms, identity())), 'quote verification failed: the quote chains '
      .. 'to the simulator root')
  end)

  it('names the replay when the event log does not reproduce RTMR3 (not a generic EATTEST)', function()
    local attestation = require('moonstack.tdx.attestation')
    local kms = start()
    local ev = evidence.new({ tee = tee, vm_config = cjson.encode({ os_image_hash = OS_IMAGE }) })
    -- the instance-id event is measured into the quote's RTMR3 but left out of the log
    local function drop(list, key)
      for i = #list, 1, -1 do
        if list[i][key] == 'instance-id' then
          table.remove(list, i)
        end
      end
    end
    local id = assert(ratls.issue({ subject = 'app', eku = { 'client_auth' },
      issuer = { cert = material.tmp_ca_cert, key = material.tmp_ca_key },
      attest = function(rd)
        local a = assert(attestation.decode(assert(ev:attestation(rd, 'cert'))))
        drop(a.event_log, 'event')
        drop(a.runtime_events, 'event')
        return assert(attestation.encode_v0(a))
      end }))
    local r = assert(get_app_key(kms, id))
    expect_error(r, 'event log rejected: event_log.rtmr3: replay gives ')
    assert.falsy(r.body:find('attestation rejected', 1, true), r.body)
    assert.equal(1, metrics_of(kms).dstack_kms_attestation_failures_total)
  end)

  it('returns the auth backend denial', function()
    auth.register('deny_test', function()
      return { authorize = function(_, info)
        return { allow = false, reason = 'compose hash ' .. info.composeHash .. ' not allowed' }
      end }
    end)
    local kms = start(nil, { kind = 'deny_test' })
    expect_error(assert(get_app_key(kms, identity())), 'boot denied: compose hash ' .. hex(COMPOSE)
      .. ' not allowed')
    local m = metrics_of(kms)
    assert.equal(1, m.dstack_kms_attestation_requests_total)
    assert.equal(1, m.dstack_kms_attestation_failures_total)
    assert.equal(1, m.moonstack_kms_auth_denials_total)
  end)

  it('is unavailable without attestation settings', function()
    local cfg = assert(config.validate({ key_dir = base .. '/keys',
      listen = { host = '127.0.0.1', port = 0 }, auth = { kind = 'dev' } }))
    local kms = assert(server.start(cfg))
    servers[#servers + 1] = kms
    expect_error(assert(get_app_key(kms, identity())), 'GetAppKey needs attestation settings')
  end)

  it("gates the OS image a CVM names on the boot measurements registered for it", function()
    local seen
    auth.register('capture_test', function()
      return { authorize = function(_, info)
        seen = info
        return { allow = true, reason = 'ok' }
      end }
    end)
    local kms = start(nil, { kind = 'capture_test' })
    local function with_image(h)
      local ev = evidence.new({ tee = tee, vm_config = cjson.encode({ os_image_hash = h }) })
      return assert(ratls.issue({ subject = 'app', eku = { 'client_auth' },
        issuer = { cert = material.tmp_ca_cert, key = material.tmp_ca_key },
        attest = function(rd) return assert(ev:attestation(rd, 'cert')) end }))
    end
    local function body(h)
      return cjson.encode({ api_version = 1, vm_config = cjson.encode({ os_image_hash = h }) })
    end
    -- the registered image: released; the policy sees the quote's boot chain too
    local r = assert(get_app_key(kms, with_image(OS_IMAGE), body(OS_IMAGE)))
    assert.equal(200, r.status, r.body)
    local m = assert(tee:measurements())
    assert.equal(hex(m.mrtd), seen.mrtd)
    assert.equal(hex(m.rtmr2), seen.rtmr2)
    assert.equal(hex(m.rtmr3), seen.rtmr3)
    -- an image nobody registered, and one registered with another boot chain
    local unknown, other = ('cd'):rep(32), ('ef'):rep(32)
    expect_error(assert(get_app_key(kms, with_image(unknown), body(unknown))),
      'OS image ' .. unknown .. ' has no registered boot measurements')
    local f = assert(io.open(files.measurements .. '/' .. other .. '.json', 'wb'))
    f:write(cjson.encode({ mrtd = ('11'):rep(48), rtmr0 = ('00'):rep(48), rtmr1 = ('00'):rep(48),
      rtmr2 = ('00'):rep(48) }))
    f:close()
    expect_error(assert(get_app_key(kms, with_image(other), body(other))),
      'are not those registered for OS image ' .. other)
    -- registering the CVM's measurements for it later is picked up without a restart
    kms_fixture.register_image(fx, other, nil, { { mrtd = ('11'):rep(48), rtmr0 = ('00'):rep(48),
      rtmr1 = ('00'):rep(48), rtmr2 = ('00'):rep(48) } })
    assert.equal(200, assert(get_app_key(kms, with_image(other), body(other))).status)
    -- image.verify = false lets any claim through (upstream's [core.image] verify = false)
    local cfg = assert(config.validate({ key_dir = base .. '/keys', listen = { host = '127.0.0.1', port = 0 },
      auth = { kind = 'dev' }, attestation = { collateral_file = files.collateral,
        root_ca_file = files.root, allow_simulator = true },
      image = { measurements_dir = files.measurements, verify = false } }))
    local open = assert(server.start(cfg))
    servers[#servers + 1] = open
    assert.equal(200, assert(get_app_key(open, with_image(unknown), body(unknown))).status)
  end)

  -- last: it extends the CVM's RTMR3
  it('reads VersionedAttestation V1 (msgpack), V2 runtime events included', function()
    local attestation = require('moonstack.tdx.attestation')
    local kms = start()
    local ev = evidence.new({ tee = tee, vm_config = '' })
    local function v1_identity()
      return assert(ratls.issue({ subject = 'app', eku = { 'client_auth' },
        issuer = { cert = material.tmp_ca_cert, key = material.tmp_ca_key },
        attest = function(rd)
          local a = assert(attestation.decode(assert(ev:attestation(rd, 'cert'))))
          return attestation.encode_v1(a)
        end }))
    end
    local r = assert(get_app_key(kms, v1_identity()))
    assert.equal(200, r.status, r.body)
    local k = assert(cjson.decode(r.body))
    assert.equal('88fa429170ad091e0f87b335ba19b1729610ac25441728807ce3325161846baf', k.k256_key)
    -- a V2 event: the agent's own attestation is V1 from now on, and still replays
    assert(tee:emit_event('app-event', 'v2 payload', { version = 2 }))
    local id = identity()
    assert.equal(1, ratls.decode_attestation(assert(ratls.inspect(id.cert)).evidence.attestation).version)
    r = assert(get_app_key(kms, id))
    assert.equal(200, r.status, r.body)
    assert.equal(k.k256_key, assert(cjson.decode(r.body)).k256_key)
  end)
end)
