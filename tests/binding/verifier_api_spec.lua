-- SPDX-License-Identifier: Apache-2.0
-- The verifier as a Lua API (verifier:check_quote / verifier:check_attestation): real
-- Intel-signed quotes from the shared vectors with their collateral at the vectors' times, and
-- a simulated CVM (moonstack.sim) with its own root and collateral. Accepted results carry the
-- TCB status, advisories, replayed RTMRs and the BootInfo as raw bytes; each rejection is
-- nil, 'CODE: what failed: why', CODE, result: a tampered quote (ESIG, EQUOTE), wrong or
-- expired collateral (ECRL, EEXPIRED, ESIG, ECOLLATERAL from a PCCS), a TCB status not allowed
-- (ETCB, from the policy or from dcap), an event log that does not replay (EEVENTLOG), a
-- simulated quote without allow_simulator (ESIMULATED), a runtime policy violated (EPOLICY),
-- an attestation not bound to its quote (EBINDING) or not decodable (EATTESTATION).
local bit = require('bit')
local cjson = require('cjson.safe')
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local attestation = require('moonstack.tdx.attestation')
local sim = require('moonstack.sim')
local verifier = require('moonstack.verifier')
local loop = require('tests.helpers.loop')
local fixtures = require('fixtures')
local pcs_server = require('pcs_server')

local hex, unhex = codec.hex, codec.unhex
local R = fixtures.read_vector
local TDX_NOW, SGX_NOW = 1752919234, 1752919277
-- vectors/README.md §1 (parsed independently)
local TDX_MRTD = '91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407'
  .. 'de03ae6dc5f87f27428b2538873118b7'
local TDX_RTMR2 = 'd833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3'
  .. 'ba80b70870d7330733642e01d48c3132'
local ZERO48 = ('\0'):rep(48)
local PLATFORM = { disable_runtime_verification = true, replay_rtmrs = { 3 } }

local function flip(s, offset)
  return s:sub(1, offset) .. string.char(bit.bxor(s:byte(offset + 1), 1)) .. s:sub(offset + 2)
end

-- A rejection: nil, 'CODE: <phrase>...', CODE, result. Returns the message and the result.
local function rejected(code, phrase, r, err, c, result)
  assert.is_nil(r)
  assert.equal(code, c, err)
  assert.equal(code .. ': ' .. phrase, err:sub(1, #code + 2 + #phrase), err)
  assert.is_table(result)
  assert.is_false(result.ok)
  assert.equal(code, result.code)
  assert.equal(err, result.error)
  return err, result
end

local function tdx_verifier(policy, coll)
  return assert(verifier.new({ policy = policy or PLATFORM,
    collateral = R(coll or 'dcap-qvl/tdx_quote_collateral.json') }))
end

describe('verifier API: real Intel-signed quotes', function()
  local quote = R('dcap-qvl/tdx_quote')

  it('accepts tdx_quote with the structured result', function()
    local v = tdx_verifier()
    local r = assert(v:check_quote(quote, '[]', { now = TDX_NOW }))
    assert.is_true(r.ok)
    assert.is_true(r.verified)
    assert.is_true(r.policy_ok)
    assert.equal(0, r.exit_code)
    assert.is_nil(r.code)
    assert.equal('UpToDate', r.status)
    assert.same({}, r.advisory_ids)
    assert.is_false(r.simulated)
    assert.equal('dstack-tdx', r.tee_variant)
    assert.equal(ZERO48, r.rtmrs.rtmr3) -- an empty log replays to the quote's zero RTMR3
    assert.same({}, r.failures)
    local b = r.boot_info
    assert.equal('dstack-tdx', b.tee_variant)
    assert.equal('UpToDate', b.tcb_status)
    assert.equal(unhex(TDX_MRTD), b.mrtd) -- raw bytes, not hex
    assert.equal(unhex(TDX_RTMR2), b.rtmr2)
    assert.equal(ZERO48, b.rtmr3)
    assert.equal('', b.app_id) -- no runtime events
    assert.equal(32, #b.mr_aggregated)
    assert.equal(crypto.sha256(r.ppid), b.device_id)
    assert.equal(32, #b.mr_system)
  end)

  it('names a tampered quote: ESIG, EQUOTE', function()
    local v = tdx_verifier()
    -- one bit of report_data, then of the ECDSA signature (vectors/README.md offsets)
    for _, off in ipairs({ 568, 640 }) do
      local _, res = rejected('ESIG', 'quote verification failed: ',
        v:check_quote(flip(quote, off), '[]', { now = TDX_NOW }))
      assert.is_false(res.verified)
      assert.equal(2, res.exit_code)
      assert.equal('quote', res.failures[1].stage)
      assert.is_nil(res.boot_info)
    end
    rejected('EQUOTE', 'quote verification failed: truncated',
      v:check_quote(quote:sub(1, 600), '[]', { now = TDX_NOW }))
  end)

  it('names wrong or expired collateral: ECRL, EEXPIRED, ESIG, ECOLLATERAL', function()
    -- the SGX sample's collateral (another PCK CA) for a TDX quote
    rejected('ECRL', 'quote verification failed: the PCK CRL is issued by',
      tdx_verifier(nil, 'dcap-qvl/sgx_quote_collateral.json'):check_quote(quote, '[]', { now = TDX_NOW }))
    -- one second after the TCB info's nextUpdate
    rejected('EEXPIRED', 'quote verification failed: TCB info expired',
      tdx_verifier():check_quote(quote, '[]', { now = 1752920164 }))
    -- a TCB info edited after it was signed
    local text = R('dcap-qvl/tdx_quote_collateral.json')
    local edited = assert(verifier.new({ policy = PLATFORM,
      collateral = (text:gsub('UpToDate', 'OutOfDate', 1)) }))
    rejected('ESIG', 'quote verification failed: ', edited:check_quote(quote, '[]', { now = TDX_NOW }))
    -- malformed collateral is refused when the verifier is made
    local v, err, code = verifier.new({ collateral = '{}' })
    assert.is_nil(v)
    assert.equal('ECOLLATERAL', code, err)
    -- a PCCS that knows another FMSPC
    local coll = assert(cjson.decode(text))
    local srv = pcs_server(coll, { tee = 'tdx', fmspc = 'FFFFFFFFFFFF', ca = 'platform' })
    local pv = assert(verifier.new({ policy = PLATFORM, pccs = srv.base }))
    local res = { loop.run_task(function()
      return pv:check_quote(quote, '[]', { now = TDX_NOW })
    end, 10000) }
    srv:close()
    rejected('ECOLLATERAL', 'quote verification failed: GET http://127.0.0.1:', unpack(res, 1, 4))
  end)

  it('names a TCB status the policy does not allow, and one dcap refuses: ETCB', function()
    local vs = assert(verifier.new({ collateral = R('dcap-qvl/sgx_quote_collateral.json') }))
    local err, res = rejected('ETCB', 'TCB not accepted: allowed_tcb_status: TCB status '
      .. 'ConfigurationAndSWHardeningNeeded is not allowed', vs:check_quote(R('dcap-qvl/sgx_quote'),
      '[]', { now = SGX_NOW }))
    assert.is_true(res.verified)
    assert.is_false(res.policy_ok)
    assert.equal(1, res.exit_code)
    assert.equal('ConfigurationAndSWHardeningNeeded', res.status)
    assert.same({ 'INTEL-SA-00289', 'INTEL-SA-00615' }, res.advisory_ids)
    -- the SGX quote has no RTMRs (EEVENTLOG too), but the TCB is named first
    assert.falsy(err:find('event_log', 1, true))
    local codes = {}
    for _, f in ipairs(res.failures) do
      codes[#codes + 1] = f.code
    end
    assert.same({ 'ETCB', 'EEVENTLOG' }, codes)
    -- an UpToDate platform under a policy that wants another status
    rejected('ETCB', 'TCB not accepted: allowed_tcb_status: TCB status UpToDate is not allowed',
      tdx_verifier({ disable_runtime_verification = true, replay_rtmrs = { 3 },
        allowed_tcb_status = { 'SWHardeningNeeded' } }):check_quote(quote, '[]', { now = TDX_NOW }))
    -- no TCB level matches (dcap's own verdict)
    rejected('ETCB', 'TCB not accepted: No matching TCB level found',
      tdx_verifier():check_quote(unhex(R('dcap-qvl/tdx-quote.hex')), '[]', { now = TDX_NOW }))
  end)

  it('names an event log that does not replay, or none: EEVENTLOG', function()
    local v = tdx_verifier({ disable_runtime_verification = true }) -- replay RTMR0-3
    local err, res = rejected('EEVENTLOG', 'event log rejected: event_log.rtmr0: replay gives '
      .. ('00'):rep(48) .. ', the quote has 44c0197b', v:check_quote(quote, '[]', { now = TDX_NOW }))
    assert.truthy(err:find('event_log.rtmr2: replay gives', 1, true), err)
    assert.is_true(res.verified)
    assert.is_false(res.event_log.verified)
    assert.equal(ZERO48, res.rtmrs.rtmr0) -- what the log replays to
    assert.is_nil(res.boot_info)
    rejected('EEVENTLOG', 'event log rejected: no event log was given',
      tdx_verifier():check_quote(quote, nil, { now = TDX_NOW }))
    rejected('EEVENTLOG', 'event log rejected: event_log: cannot read the event log',
      tdx_verifier():check_quote(quote, '{', { now = TDX_NOW }))
  end)
end)

describe('verifier API: a simulated CVM', function()
  local base, tee, coll, root, now
  local APP, COMPOSE, INSTANCE = ('\17'):rep(20), ('\51'):rep(32), ('\34'):rep(20)

  setup(function()
    base = fixtures.tmpdir('verifier_api')
    tee = assert(sim.new({ dir = base .. '/sim', cvm = 'app', create = true }))
    for _, e in ipairs({ { 'app-id', APP }, { 'compose-hash', COMPOSE }, { 'instance-id', INSTANCE },
      { 'key-provider', '{"name":"kms","id":"ab"}' } }) do
      assert(tee:emit_event(e[1], e[2], { version = 1 }))
    end
    now = os.time()
    coll, root = assert(tee:collateral(now)), (assert(tee:root_ca()))
  end)

  teardown(function()
    tee:close()
    os.execute(("rm -rf '%s'"):format(base))
  end)

  local function sim_verifier(policy)
    local p = { disable_runtime_verification = true, allow_simulator = true }
    for k, val in pairs(policy or {}) do
      p[k] = val
    end
    return assert(verifier.new({ policy = p, collateral = coll, root_ca = root }))
  end

  local function evidence(report_data)
    return assert(tee:get_quote(report_data or ('\0'):rep(64))), assert(tee:event_log())
  end

  it('accepts it under allow_simulator, its BootInfo in raw bytes', function()
    local q, events = evidence()
    local r = assert(sim_verifier():check_quote(q, events, { now = now }))
    assert.is_true(r.simulated)
    local m = assert(tee:measurements())
    local b = r.boot_info
    assert.equal(APP, b.app_id)
    assert.equal(COMPOSE, b.compose_hash)
    assert.equal(INSTANCE, b.instance_id)
    assert.equal('{"name":"kms","id":"ab"}', b.key_provider_info)
    assert.equal(m.mrtd, b.mrtd)
    assert.equal(m.rtmr3, b.rtmr3)
    assert.equal(m.rtmr3, r.rtmrs.rtmr3)
    assert.equal(crypto.sha256(m.mrtd .. m.rtmr0 .. m.rtmr1 .. m.rtmr2
      .. crypto.sha256('{"name":"kms","id":"ab"}')), b.mr_system)
    -- the AppInfo keeps its hex form (as the HTTP service shows it)
    assert.equal(hex(COMPOSE), r.app_info.compose_hash)
  end)

  it('refuses it without allow_simulator: ESIMULATED', function()
    local q, events = evidence()
    local _, res = rejected('ESIMULATED', 'quote verification failed: the quote chains to the '
      .. 'simulator root', assert(verifier.new({ policy = PLATFORM, collateral = coll, root_ca = root }))
      :check_quote(q, events, { now = now }))
    assert.is_false(res.verified)
    assert.is_true(res.simulated)
    -- without its root the chain itself fails
    rejected('ECHAIN', 'quote verification failed: ', assert(verifier.new({ policy = PLATFORM,
      collateral = coll })):check_quote(q, events, { now = now }))
  end)

  it('names a log missing an event (EEVENTLOG) and a runtime policy violated (EPOLICY)', function()
    local q, events = evidence()
    local short = {}
    for _, e in ipairs(events) do
      if e.event ~= 'instance-id' then
        short[#short + 1] = e
      end
    end
    local _, res = rejected('EEVENTLOG', 'event log rejected: event_log.rtmr3: replay gives ',
      sim_verifier():check_quote(q, short, { now = now }))
    assert.equal(res.report.rtmr3, hex(assert(tee:measurements()).rtmr3))
    assert.not_equal(assert(tee:measurements()).rtmr3, res.rtmrs.rtmr3)
    -- a full runtime policy expecting another compose hash; the log replays
    local m = assert(tee:measurements())
    local strict = sim_verifier({ disable_runtime_verification = false,
      expected_bootchain = { mrtd = hex(m.mrtd), rtmr0 = hex(m.rtmr0), rtmr1 = hex(m.rtmr1),
        rtmr2 = hex(m.rtmr2) }, os_image_hash = ('ab'):rep(32), app_compose = ('cd'):rep(32) })
    local err
    err, res = rejected('EPOLICY', 'policy violated: app_compose: compose-hash event is ' .. hex(COMPOSE),
      strict:check_quote(q, events, { now = now }))
    assert.truthy(err:find('; os_image_hash: the event log has no os-image-hash', 1, true), err)
    assert.is_true(res.event_log.verified)
    assert.equal(COMPOSE, res.boot_info.compose_hash) -- the BootInfo is there for the caller to see
  end)

  it('checks a VersionedAttestation: binding (EBINDING), decoding (EATTESTATION)', function()
    local rd = crypto.sha512('a nonce')
    local q, events = evidence(rd)
    local v = sim_verifier()
    for _, encode in ipairs({ attestation.encode_v0, attestation.encode_v1 }) do
      local att = assert(encode({ quote = q, event_log = events, report_data = rd,
        config = '{"os_image_hash":"' .. ('ef'):rep(32) .. '"}' }))
      local r = assert(v:check_attestation(att, { now = now }))
      assert.equal(COMPOSE, r.boot_info.compose_hash)
      assert.equal(('\239'):rep(32), r.boot_info.os_image_hash) -- from the attestation's config
      assert.equal(rd, r.attestation.report_data)
      -- an attestation whose report_data is not its quote's
      local other = assert(encode({ quote = q, event_log = events, report_data = ('\1'):rep(64) }))
      local _, res = rejected('EBINDING', 'attestation not bound to its quote: the attestation '
        .. 'report_data differs', v:check_attestation(other, { now = now }))
      assert.is_true(res.verified)
    end
    local r, err, code, res = v:check_attestation('\0\0\1', { now = now })
    assert.is_nil(r)
    assert.equal('EATTESTATION', code, err)
    assert.is_nil(res)
    assert.has_error(function() v:check_attestation(nil) end)
    assert.has_error(function() v:check_quote(42, {}) end)
  end)
end)
