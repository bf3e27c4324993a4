-- SPDX-License-Identifier: Apache-2.0
-- moonstack.verifier.rules: every field (validation, contradictions, unknown fields, loading
-- JSON/Lua files) and evaluation against real TD measurements: the simulator fixture's quote
-- and event log (dstack/simulator/attestation.bin), the dcap-qvl samples, and event logs
-- tampered so that a payload no longer matches its digest.
local policy = require('moonstack.verifier.rules')
local attestation = require('moonstack.tdx.attestation')
local json = require('moonstack.core.json')
local quote = require('moonstack.tdx.quote')
local eventlog = require('moonstack.tdx.eventlog')
local crypto = require('moonstack.crypto')
local codec = require('moonstack.core.codec')
local fixtures = require('fixtures')

local hex = codec.hex

-- The simulator fixture: a dstack 0.6 TD with KMS, its full event log and quote.
local att = assert(attestation.decode(fixtures.read_vector('dstack/simulator/attestation.bin')))
local SIM_EVENTS = assert(attestation.events(att))
local COMPOSE_HASH = 'c143116fef3940e7f776bfc0919c256232ae5338a6e948c96b711e0b2383483a'
local OS_IMAGE_HASH = 'e61be43dd1cc6a6f5edefd7c51b608983780839b0000ce60dd99737dcffe09b9'

-- A report as moonstack.dcap returns it, from the parsed quote (hex fields) plus a status.
local function report_of(bytes, extra)
  local d = assert(quote.describe(assert(quote.parse(bytes))))
  local r = { status = 'UpToDate', advisory_ids = {}, tee_type = d.tee, quote_version = d.version,
    simulated = false }
  for _, k in ipairs({ 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3', 'report_data', 'mr_config_id',
    'mr_owner', 'mr_owner_config', 'td_attributes', 'xfam', 'mr_enclave', 'mr_signer' }) do
    r[k] = d[k]
  end
  for k, v in pairs(extra or {}) do
    r[k] = v
  end
  return r
end

local SIM = report_of(att.quote)

local function copy(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = type(v) == 'table' and copy(v) or v
  end
  return out
end

local function with(r, extra)
  local out = copy(r)
  for k, v in pairs(extra) do
    out[k] = v
  end
  return out
end

-- A complete runtime policy that the simulator fixture satisfies.
local function full_policy(extra)
  local p = {
    type = 'dstack_tdx',
    expected_bootchain = { mrtd = SIM.mrtd, rtmr0 = SIM.rtmr0, rtmr1 = SIM.rtmr1, rtmr2 = SIM.rtmr2 },
    os_image_hash = OS_IMAGE_HASH,
    app_compose = COMPOSE_HASH,
  }
  for k, v in pairs(extra or {}) do
    p[k] = v
  end
  return p
end

local function platform_only(extra)
  local p = { disable_runtime_verification = true }
  for k, v in pairs(extra or {}) do
    p[k] = v
  end
  return p
end

local function fields(res)
  local out = {}
  for i, v in ipairs(res.violations) do
    out[i] = v.field
  end
  return out
end

local function eval(p, report, opts)
  local res, err = policy.evaluate(p, report, opts)
  assert(res, err)
  return res
end

local function invalid(p, pattern)
  local v, err, code = policy.validate(p)
  assert.is_nil(v)
  assert.equals('EINVAL', code)
  assert.matches(pattern, err)
end

local function event_copy()
  local out = {}
  for i, e in ipairs(SIM_EVENTS) do
    out[i] = copy(e)
  end
  return out
end

local function index_of(events, name)
  for i, e in ipairs(events) do
    if e.event == name then
      return i
    end
  end
end

describe('verifier policy: validation', function()
  it('fills in the defaults', function()
    local p = assert(policy.validate(platform_only()))
    assert.same({ 'UpToDate' }, p.allowed_tcb_status)
    assert.same({ 0, 1, 2, 3 }, p.replay_rtmrs)
    assert.is_false(p.allow_simulator)
    assert.is_false(p.allow_debug)
    assert.is_false(p.cache_collateral)
  end)

  it('rejects unknown fields, naming them', function()
    invalid(platform_only({ allowed_tcb_statuses = { 'UpToDate' } }),
      'policy%.allowed_tcb_statuses: unknown key')
    invalid(platform_only({ report_data = { exact = '00', extra = 1 } }),
      'report_data.*extra: unknown key')
  end)

  it('checks type', function()
    assert.truthy(policy.validate(platform_only({ type = 'dstack_tdx' })))
    invalid(platform_only({ type = 'sev_snp' }), 'policy%.type')
  end)

  it('checks allowed_tcb_status names, emptiness and Revoked', function()
    invalid(platform_only({ allowed_tcb_status = { 'UpToDate', 'Fine' } }), 'allowed_tcb_status%[2%]')
    invalid(platform_only({ allowed_tcb_status = {} }), 'allowed_tcb_status: number of entries must be >= 1')
    invalid(platform_only({ allowed_tcb_status = { 'UpToDate', 'Revoked' } }),
      "policy%.allowed_tcb_status: 'Revoked' can never be allowed")
  end)

  it('rejects grace_period without OutOfDate allowed, and negative ones', function()
    invalid(platform_only({ grace_period = 3600 }),
      'policy%.grace_period: applies to OutOfDate platforms only')
    invalid(platform_only({ grace_period = -1, allowed_tcb_status = { 'OutOfDate' } }), 'grace_period')
    assert.truthy(policy.validate(platform_only({ grace_period = 0,
      allowed_tcb_status = { 'UpToDate', 'OutOfDateConfigurationNeeded' } })))
  end)

  it('requires the runtime fields unless runtime verification is disabled (as Atlas)', function()
    invalid({}, 'missing: expected_bootchain, os_image_hash, app_compose')
    local p = full_policy()
    p.os_image_hash = nil
    invalid(p, 'policy%.os_image_hash: is required')
    assert.truthy(policy.validate(full_policy()))
  end)

  it('rejects runtime fields that disable_runtime_verification would ignore', function()
    for _, f in ipairs({ 'expected_bootchain', 'os_image_hash', 'app_compose' }) do
      local p = full_policy({ disable_runtime_verification = true })
      for _, other in ipairs({ 'expected_bootchain', 'os_image_hash', 'app_compose' }) do
        if other ~= f then
          p[other] = nil
        end
      end
      invalid(p, 'policy%.' .. f .. ': is set but disable_runtime_verification is true')
    end
    invalid(platform_only({ key_provider = { name = 'kms' } }), 'policy%.key_provider: is set but')
  end)

  it('checks expected_bootchain hex and sizes', function()
    invalid(full_policy({ expected_bootchain = { mrtd = SIM.mrtd, rtmr0 = SIM.rtmr0, rtmr1 = SIM.rtmr1 } }),
      'expected_bootchain%.rtmr2: missing')
    invalid(full_policy({ expected_bootchain = { mrtd = 'zz' .. SIM.mrtd:sub(3), rtmr0 = SIM.rtmr0,
      rtmr1 = SIM.rtmr1, rtmr2 = SIM.rtmr2 } }), 'expected_bootchain%.mrtd: does not match pattern')
    invalid(full_policy({ expected_bootchain = { mrtd = SIM.mrtd:sub(3), rtmr0 = SIM.rtmr0,
      rtmr1 = SIM.rtmr1, rtmr2 = SIM.rtmr2 } }), 'expected_bootchain%.mrtd: length must be >= 96')
    local p = assert(policy.validate(full_policy({ expected_bootchain = { mrtd = SIM.mrtd:upper(),
      rtmr0 = SIM.rtmr0, rtmr1 = SIM.rtmr1, rtmr2 = SIM.rtmr2 } })))
    assert.equals(SIM.mrtd, p.expected_bootchain.mrtd)
  end)

  it('checks os_image_hash and app_compose forms', function()
    invalid(full_policy({ os_image_hash = 'abcd' }), 'os_image_hash: length')
    invalid(full_policy({ app_compose = 'not json, not a hash' }), 'app_compose: a string must be')
    invalid(full_policy({ app_compose = 42 }), 'app_compose: expected a string')
  end)

  it('checks pccs_url, cache_collateral, allow_simulator and allow_debug types', function()
    invalid(platform_only({ pccs_url = 'ftp://x' }), 'pccs_url')
    invalid(platform_only({ cache_collateral = 'yes' }), 'cache_collateral: expected boolean')
    invalid(platform_only({ allow_simulator = 1 }), 'allow_simulator: expected boolean')
    invalid(platform_only({ allow_debug = 'no' }), 'allow_debug: expected boolean')
    assert.truthy(policy.validate(platform_only({ pccs_url = 'https://pccs.example/tdx/certification/v4',
      cache_collateral = true })))
  end)

  it('checks report_data forms', function()
    invalid(platform_only({ report_data = 'abc' }), 'report_data: expected hex')
    invalid(platform_only({ report_data = string.rep('00', 65) }), 'report_data: expected hex')
    invalid(platform_only({ report_data = { prefix = '00', exact = '00' } }), 'exactly one of')
    invalid(platform_only({ report_data = { tag = 'app-data' } }), 'tag needs content')
    invalid(platform_only({ report_data = { prefix = '00', content = '00' } }),
      'content and hash go with tag')
    invalid(platform_only({ report_data = { tag = 'x', content = '00', hash = 'md5' } }), 'hash')
  end)

  it('checks replay_rtmrs', function()
    invalid(platform_only({ replay_rtmrs = { 0, 1, 2 } }), 'policy%.replay_rtmrs: must include 3')
    invalid(platform_only({ replay_rtmrs = { 3, 3 } }), 'lists RTMR3 twice')
    invalid(platform_only({ replay_rtmrs = { 4 } }), 'replay_rtmrs%[1%]')
  end)

  it('checks key_provider', function()
    invalid(full_policy({ key_provider = { name = 'vault' } }), 'key_provider%.name')
    invalid(full_policy({ key_provider = { name = 'kms', id = 'xyz' } }), 'key_provider%.id')
  end)
end)

describe('verifier policy: evaluation', function()
  it('accepts the simulator fixture under a complete policy, and derives its AppInfo', function()
    local res = eval(full_policy({ key_provider = { name = 'kms' } }), SIM, { event_log = SIM_EVENTS })
    assert.same({}, fields(res))
    assert.is_true(res.ok)
    assert.is_true(res.event_log.verified)
    assert.equals(COMPOSE_HASH, res.app_info.compose_hash)
    assert.equals('51ea38f8eee6dc72dbae9b74531ae6d6204295d265dabb4e6c34621a2a1a1197', res.app_info.mr_system)
  end)

  it('allowed_tcb_status: other statuses are violations naming the status', function()
    local res = eval(platform_only(), with(SIM, { status = 'SWHardeningNeeded' }))
    assert.same({ 'allowed_tcb_status' }, fields(res))
    assert.matches('TCB status SWHardeningNeeded is not allowed %(allowed: UpToDate%)',
      res.violations[1].reason)
    assert.is_true(eval(platform_only({ allowed_tcb_status = { 'UpToDate', 'SWHardeningNeeded' } }),
      with(SIM, { status = 'SWHardeningNeeded' })).ok)
  end)

  it('grace_period: OutOfDate within the window passes, after it fails, without a date fails', function()
    local p = platform_only({ allowed_tcb_status = { 'UpToDate', 'OutOfDate' }, grace_period = 86400 })
    local r = with(SIM, { status = 'OutOfDate', tcb_date = '2024-03-13T00:00:00Z' })
    local t0 = 1710288000 -- 2024-03-13T00:00:00Z
    assert.is_true(eval(p, r, { now = t0 + 86400 }).ok)
    local late = eval(p, r, { now = t0 + 86401 })
    assert.same({ 'grace_period' }, fields(late))
    assert.matches('2024%-03%-13T00:00:00Z %+ grace period 86400 s ended 2024%-03%-14T00:00:00Z',
      late.violations[1].reason)
    assert.is_true(eval(p, with(r, { tcb_date = t0 }), { now = t0 + 10 }).ok)
    assert.is_true(eval(p, with(r, { tcb_date = '2024-03-13T02:00:00+02:00' }), { now = t0 + 86400 }).ok)
    local undated = with(r, {})
    undated.tcb_date = nil
    local res = eval(p, undated, { now = t0 })
    assert.same({ 'grace_period' }, fields(res))
    assert.matches('carries no TCB date', res.violations[1].reason)
    -- not applied to other statuses, nor without a grace period
    assert.is_true(eval(p, with(r, { status = 'UpToDate' }), { now = t0 + 10 ^ 8 }).ok)
    assert.is_true(eval(platform_only({ allowed_tcb_status = { 'OutOfDate' } }), r, { now = t0 + 10 ^ 8 }).ok)
  end)

  it('expected_bootchain: every register is compared', function()
    for _, k in ipairs({ 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2' }) do
      local p = full_policy()
      p.expected_bootchain[k] = string.rep('ab', 48)
      local res = eval(p, SIM, { event_log = SIM_EVENTS })
      assert.same({ 'expected_bootchain.' .. k }, fields(res))
      assert.matches(k .. ' is ' .. SIM[k] .. ', expected abab', res.violations[1].reason)
    end
  end)

  it('expected_bootchain and event logs do not apply to SGX quotes', function()
    local sgx = report_of(fixtures.read_vector('dcap-qvl/sgx_quote'), { tee_type = 'SGX' })
    local res = eval(full_policy(), sgx, { event_log = SIM_EVENTS })
    assert.same({ 'expected_bootchain', 'event_log', 'app_compose', 'os_image_hash' }, fields(res))
    assert.matches('not a TD quote', res.violations[1].reason)
  end)

  it('os_image_hash: compared with the measured os-image-hash event', function()
    local res = eval(full_policy({ os_image_hash = string.rep('0', 64) }), SIM, { event_log = SIM_EVENTS })
    assert.same({ 'os_image_hash' }, fields(res))
    assert.matches('os%-image%-hash event is ' .. OS_IMAGE_HASH, res.violations[1].reason)
  end)

  it('app_compose: a hash, the exact JSON text, or a JSON value in canonical form', function()
    assert.is_true(eval(full_policy({ app_compose = COMPOSE_HASH:upper() }), SIM,
      { event_log = SIM_EVENTS }).ok)
    local res = eval(full_policy({ app_compose = '{"name":"x"}' }), SIM, { event_log = SIM_EVENTS })
    assert.same({ 'app_compose', 'app_compose' }, fields(res)) -- the event and mr_config_id
    assert.matches('expected ' .. hex(crypto.sha256('{"name":"x"}')), res.violations[1].reason)
    assert.matches('mr_config_id binds compose hash ' .. COMPOSE_HASH, res.violations[2].reason)
    -- a JSON value hashes like Atlas: sorted keys, compact
    local vllm = fixtures.read_vector('derived/atlas-vllm-app-compose.json')
    local p = assert(policy.validate(full_policy({ app_compose = assert(json.decode(vllm)) })))
    assert.equals('11899cdb6d8e0022298eb89acc347faafb8720488428c965542ff13b47949fa4', policy.compose_hash(p))
    local text = assert(policy.validate(full_policy({ app_compose = vllm })))
    assert.equals(policy.compose_hash(p), policy.compose_hash(text))
  end)

  it('app_compose: a missing compose-hash event is a violation', function()
    local evs = event_copy()
    table.remove(evs, index_of(evs, 'compose-hash'))
    local r = with(SIM, { rtmr3 = eventlog.replay(evs)[4] })
    local res = eval(full_policy(), r, { event_log = evs })
    assert.same({ 'app_compose' }, fields(res))
    assert.matches('no compose%-hash event before system%-ready', res.violations[1].reason)
  end)

  it('runtime fields need an event log', function()
    local res = eval(full_policy(), SIM)
    assert.same({ 'event_log' }, fields(res))
    assert.matches('required to check app_compose, os_image_hash', res.violations[1].reason)
    assert.is_true(eval(platform_only(), SIM).ok) -- a platform-only policy does not
  end)

  it('disable_runtime_verification: skips bootchain and runtime events, keeps the replay', function()
    local other = with(SIM, { mrtd = string.rep('00', 48) })
    assert.is_true(eval(platform_only(), other, { event_log = SIM_EVENTS }).ok)
    local res = eval(platform_only(), with(SIM, { rtmr3 = string.rep('00', 48) }), { event_log = SIM_EVENTS })
    assert.same({ 'event_log.rtmr3' }, fields(res))
  end)

  it('allow_simulator: simulated reports are rejected unless allowed', function()
    local r = with(SIM, { simulated = true })
    local res = eval(platform_only(), r)
    assert.same({ 'allow_simulator' }, fields(res))
    assert.is_true(eval(platform_only({ allow_simulator = true }), r).ok)
  end)

  it('allow_debug: a debug TD is rejected unless allowed', function()
    local r = with(SIM, { td_attributes = '0100001000000000' })
    assert.same({ 'allow_debug' }, fields(eval(platform_only(), r)))
    assert.is_true(eval(platform_only({ allow_debug = true }), r).ok)
  end)

  it('report_data: exact (zero padded), prefix and the tag:content binding', function()
    local nonce = string.rep('00', 64) -- the fixture's report_data is all zero
    assert.is_true(eval(platform_only({ report_data = nonce }), SIM).ok)
    assert.is_true(eval(platform_only({ report_data = '' }), SIM).ok) -- padded to 64 zero bytes
    assert.same({ 'report_data' }, fields(eval(platform_only({ report_data = '01' }), SIM)))
    assert.is_true(eval(platform_only({ report_data = { prefix = '0000' } }), SIM).ok)
    local sgx = report_of(fixtures.read_vector('dcap-qvl/sgx_quote'), { tee_type = 'SGX' })
    assert.is_true(eval(platform_only({ report_data = hex('Hello, world!') }), sgx).ok)
    assert.same({ 'report_data' },
      fields(eval(platform_only({ report_data = { prefix = hex('Hello!') } }), sgx)))
    local content = hex('my public key')
    local bound = hex(crypto.sha512('app-data:my public key'))
    local r = with(SIM, { report_data = bound })
    assert.is_true(eval(platform_only({ report_data = { tag = 'app-data', content = content } }), r).ok)
    local res = eval(platform_only({ report_data = { tag = 'app-data', content = hex('other') } }), r)
    assert.same({ 'report_data' }, fields(res))
    assert.matches('= sha512%(app%-data:content%)', res.violations[1].reason)
    local short = with(SIM, { report_data = hex(crypto.sha256('t:x')) .. string.rep('00', 32) })
    assert.is_true(eval(platform_only({ report_data = { tag = 't', content = hex('x'), hash = 'sha256' } }),
      short).ok)
  end)

  it('replay_rtmrs: registers left out are not compared', function()
    -- a certificate-style log: only RTMR3 events
    local evs = {}
    for _, e in ipairs(SIM_EVENTS) do
      if e.imr == 3 then
        evs[#evs + 1] = e
      end
    end
    local res = eval(platform_only(), SIM, { event_log = evs })
    assert.same({ 'event_log.rtmr0', 'event_log.rtmr1', 'event_log.rtmr2' }, fields(res))
    assert.is_true(eval(platform_only({ replay_rtmrs = { 3 } }), SIM, { event_log = evs }).ok)
  end)

  it('key_provider: name and id from the key-provider event', function()
    local id = assert(require('cjson').decode(att.runtime_events[7].payload)).id
    assert.is_true(eval(full_policy({ key_provider = { name = 'kms', id = id:upper() } }), SIM,
      { event_log = SIM_EVENTS }).ok)
    assert.same({ 'key_provider.name' }, fields(eval(full_policy({ key_provider = { name = 'local-sgx' } }),
      SIM, { event_log = SIM_EVENTS })))
    assert.same({ 'key_provider.id' }, fields(eval(full_policy({ key_provider = { name = 'kms',
      id = '00' } }),
      SIM, { event_log = SIM_EVENTS })))
  end)
end)

describe('verifier policy: the event log binding', function()
  it('rejects an event whose payload does not match its digest, and reads nothing from it', function()
    -- The attack Atlas misses: keep the measured digest, swap the compose-hash payload. The
    -- replay (recomputing the digest) no longer matches either.
    local evs = event_copy()
    local i = index_of(evs, 'compose-hash')
    local forged = crypto.sha256('{"name":"evil"}')
    evs[i].event_payload = forged
    local res = eval(full_policy({ app_compose = hex(forged) }), SIM, { event_log = evs })
    local f = fields(res)
    assert.equals(('event_log.events[%d]'):format(i), f[1])
    assert.matches('"compose%-hash": logged digest %x+ is not the digest of its name and payload %(V1',
      res.violations[1].reason)
    assert.equals('event_log.rtmr3', f[2])
    assert.same({ 'app_compose', 'os_image_hash' }, { f[3], f[4] })
    assert.matches('not checked: the event log failed', res.violations[3].reason)
    assert.is_nil(res.app_info)
    assert.is_false(res.event_log.verified)
  end)

  it('a stripped log (no runtime digests) replays from names and payloads', function()
    local evs = event_copy()
    for _, e in ipairs(evs) do
      if e.event_type == eventlog.RUNTIME_EVENT_TYPE then
        e.digest = ''
      end
    end
    assert.is_true(eval(full_policy(), SIM, { event_log = evs }).ok)
  end)

  it('the same log as TdxEvent JSON text', function()
    assert.is_true(eval(full_policy(), SIM, { event_log = eventlog.to_json(SIM_EVENTS) }).ok)
    local res = eval(full_policy(), SIM, { event_log = '[{"imr": "x"}]' })
    assert.equals('event_log', fields(res)[1])
    assert.matches('cannot read the event log', res.violations[1].reason)
  end)

  it('V2 events: the digest is bound to the JCS form, and a preimage must be canonical', function()
    local evs = {}
    for _, name in ipairs({ 'system-preparing', 'app-id', 'compose-hash', 'instance-id', 'boot-mr-done',
      'os-image-hash', 'key-provider', 'system-ready' }) do
      local payload = ({ ['compose-hash'] = codec.unhex(COMPOSE_HASH),
        ['os-image-hash'] = codec.unhex(OS_IMAGE_HASH),
        ['key-provider'] = '{"name":"kms","id":"00"}' })[name] or ''
      evs[#evs + 1] = assert(eventlog.runtime_event(name, payload, 2))
    end
    local zero = string.rep('00', 48)
    local r = with(SIM, { rtmr0 = zero, rtmr1 = zero, rtmr2 = zero, rtmr3 = eventlog.replay(evs)[4],
      mr_config_id = zero })
    local p = full_policy({ expected_bootchain = { mrtd = r.mrtd, rtmr0 = zero, rtmr1 = zero,
      rtmr2 = zero } })
    assert.is_true(eval(p, r, { event_log = evs }).ok)
    -- a V1 digest on a V2 event
    local bad = copy(evs)
    bad[3] = copy(evs[3])
    bad[3].digest = eventlog.runtime_digest('compose-hash', bad[3].event_payload, 1)
    local res = eval(p, r, { event_log = bad })
    assert.equals('event_log.events[3]', fields(res)[1])
    assert.matches('%(V2: ', res.violations[1].reason)
    -- a preimage that hashes to the digest but is not the canonical JSON (extra space)
    bad[3] = copy(evs[3])
    bad[3].preimage = bad[3].preimage:gsub('","payload', '", "payload')
    res = eval(p, r, { event_log = bad })
    assert.equals('event_log.events[3]', fields(res)[1])
    assert.matches('preimage does not hash to the digest', res.violations[1].reason)
  end)

  it('a runtime event outside RTMR3 is rejected', function()
    local evs = event_copy()
    local i = index_of(evs, 'storage-fs')
    evs[i].imr = 2
    local res = eval(platform_only(), SIM, { event_log = evs })
    assert.equals(('event_log.events[%d]'):format(i), fields(res)[1])
    assert.matches('runtime event in RTMR2', res.violations[1].reason)
  end)

  it('events after system-ready do not count for app identity', function()
    local evs = event_copy()
    evs[#evs + 1] = assert(eventlog.runtime_event('compose-hash', string.rep('\1', 32), 1))
    local r = with(SIM, { rtmr3 = eventlog.replay(evs)[4] })
    local res = eval(full_policy(), r, { event_log = evs })
    assert.is_true(res.ok)
    assert.equals(COMPOSE_HASH, res.app_info.compose_hash)
  end)
end)

describe('verifier policy: files', function()
  local dir
  setup(function()
    dir = fixtures.tmpdir('policy')
  end)
  local function write(name, text)
    local path = dir .. '/' .. name
    local f = assert(io.open(path, 'wb'))
    f:write(text)
    f:close()
    return path
  end

  it('loads an Atlas JSON policy, hashing an app_compose object canonically', function()
    local vllm = fixtures.read_vector('derived/atlas-vllm-app-compose.json')
    -- pretty-printed with keys in another order: the canonical form is what counts
    local obj = assert(json.decode(vllm))
    local pretty = '{\n  "type": "dstack_tdx",\n  "disable_runtime_verification": false,\n'
      .. '  "allowed_tcb_status": ["UpToDate", "SWHardeningNeeded"],\n'
      .. '  "expected_bootchain": {"mrtd": "' .. SIM.mrtd .. '", "rtmr0": "' .. SIM.rtmr0 .. '", "rtmr1": "'
      .. SIM.rtmr1 .. '", "rtmr2": "' .. SIM.rtmr2 .. '"},\n  "os_image_hash": "' .. OS_IMAGE_HASH .. '",\n'
      .. '  "app_compose": {"runner": ' .. json.encode(obj.runner) .. ', "allowed_envs": '
      .. json.encode(obj.allowed_envs) .. ', "docker_compose_file": ' .. json.encode(obj.docker_compose_file)
    for _, k in ipairs({ 'features', 'gateway_enabled', 'kms_enabled', 'local_key_provider_enabled',
      'manifest_version', 'name', 'no_instance_id', 'pre_launch_script', 'public_logs', 'public_sysinfo',
      'public_tcbinfo', 'secure_time', 'storage_fs', 'tproxy_enabled' }) do
      if obj[k] ~= nil then
        pretty = pretty .. ',\n    ' .. json.encode(k) .. ': ' .. json.encode(obj[k])
      end
    end
    pretty = pretty .. '}\n}\n'
    assert.not_equals(vllm, select(2, json.decode_with_raw(pretty)).app_compose)
    local p = assert(policy.load(write('atlas.json', pretty)))
    assert.equals('11899cdb6d8e0022298eb89acc347faafb8720488428c965542ff13b47949fa4', policy.compose_hash(p))
    assert.same({ 'UpToDate', 'SWHardeningNeeded' }, p.allowed_tcb_status)
  end)

  it('loads a Lua policy', function()
    local p = assert(policy.load(write('p.lua', 'return { disable_runtime_verification = true, '
      .. "allowed_tcb_status = { 'UpToDate', 'OutOfDate' }, grace_period = 30 * 86400 }")))
    assert.equals(2592000, p.grace_period)
  end)

  it('reports parse errors, schema errors with the file name, and missing files', function()
    local _, err, code = policy.load(write('bad.json', '{"disable_runtime_verification": true,}'))
    assert.equals('EPARSE', code)
    assert.matches('bad%.json: invalid JSON', err)
    _, err, code = policy.load(write('dup.json', '{"allow_debug": true, "allow_debug": false}'))
    assert.equals('EPARSE', code)
    assert.matches('duplicate key "allow_debug"', err)
    _, err, code = policy.load(write('unknown.json', '{"disable_runtime_verification": true, "x": 1}'))
    assert.equals('EINVAL', code)
    assert.matches('unknown%.json: policy%.x: unknown key', err)
    _, err, code = policy.load(write('bad.lua', 'return { allow_debug = 1 }'))
    assert.equals('EINVAL', code)
    assert.matches('bad%.lua: policy%.allow_debug: expected boolean', err)
    _, _, code = policy.load(dir .. '/none.json')
    assert.equals('ENOENT', code)
  end)
end)
