-- SPDX-License-Identifier: Apache-2.0
-- The verifier's building blocks: moonstack.core.json (canonical form = Atlas's compose
-- hash, arrays vs objects, duplicate keys, raw member text), moonstack.tdx.attestation
-- (VersionedAttestation V0 against the simulator fixture and the dstack-verifier fixture, V1
-- msgpack decoded to the same fields, its refusals) and
-- moonstack.verifier.events (binding, replay, AppInfo against the values in vectors/README.md).
local json = require('moonstack.core.json')
local attestation = require('moonstack.tdx.attestation')
local events = require('moonstack.verifier.events')
local quote = require('moonstack.tdx.quote')
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local cjson = require('cjson')
local fixtures = require('fixtures')
local eventlog = require('moonstack.tdx.eventlog')

describe('verifier json', function()
  it('reproduces the Atlas compose hashes from the stored canonical files', function()
    for file, hash in pairs({
      ['derived/atlas-default-app-compose.json'] =
        'a372f45a6f60cacfdf6be794a0729e3fb79c43b190db2e38b91544d149d9f6b5',
      ['derived/atlas-vllm-app-compose.json'] =
        '11899cdb6d8e0022298eb89acc347faafb8720488428c965542ff13b47949fa4',
    }) do
      local text = fixtures.read_vector(file)
      local canon = assert(json.canonical(text))
      assert.is_true(canon == text)
      assert.equals(hash, codec.hex(crypto.sha256(canon)))
      -- pretty-printed input, with the last key moved first, gives the same canonical text
      local last = text:match(',("[%w_]+":[^,]+)}$')
      local body = text:sub(2, -#last - 3):gsub(',"([%w_]+)":', ',\n  "%1" : ')
      local pretty = '{ ' .. last .. ' ,\n' .. body .. '\n}'
      assert.is_true(pretty ~= text)
      assert.equals(hash, codec.hex(crypto.sha256(assert(json.canonical(pretty)))))
    end
  end)

  it('keeps arrays apart from objects, and serde_json escaping', function()
    assert.equals('{"a":[],"b":{},"c":[{}]}', json.canonical('{"c":[{}],"b":{},"a":[]}'))
    assert.equals('"a/b\\u0001\\n\\"é😀"', json.canonical('"a\\/b\\u0001\\n\\"\\u00e9\\ud83d\\ude00"'))
    assert.equals('[1,1.0,-250.0,0.5,1e300]', json.canonical('[1, 1.0, -0.25e3, 0.5, 1e300]'))
    assert.equals('[]', json.encode(json.array()))
    assert.equals('{}', json.encode({}))
    assert.equals('{"a":null}', json.encode({ a = json.null }))
  end)

  it('rejects malformed JSON with the offset', function()
    for text, pattern in pairs({
      ['{"a":1,"a":2}'] = 'duplicate key "a" at offset 7',
      ['[1,]'] = 'unexpected character',
      ['01'] = 'trailing characters at offset 1',
      ['"\\ud800"'] = 'unpaired surrogate',
      ['"a\nb"'] = 'control character in a string',
      ['{"a" 1}'] = "expected ':'",
      [''] = 'unexpected end of input',
    }) do
      local v, err, code = json.decode(text)
      assert.is_nil(v)
      assert.equals('EPARSE', code)
      assert.matches(pattern, err, 1, true)
    end
  end)

  it('gives the raw text of top-level members', function()
    local v, raw = json.decode_with_raw('{"tcbInfo" : {"b":1,  "a":[2]} ,"signature":"ab"}')
    assert.equals(1, v.tcbInfo.b)
    assert.equals('{"b":1,  "a":[2]}', raw.tcbInfo)
    assert.equals('"ab"', raw.signature)
  end)

  it('raises on values JSON cannot hold', function()
    assert.has_error(function() json.encode({ f = print }) end)
    assert.has_error(function() json.encode({ [true] = 1 }) end)
    assert.has_error(function() json.encode(0 / 0) end)
  end)
end)

describe('verifier attestation (VersionedAttestation V0)', function()
  local decoded = cjson.decode(fixtures.read_vector('derived/simulator-attestation.decoded.json'))

  it('decodes the simulator fixture as the independent decoder did', function()
    local att = assert(attestation.decode(fixtures.read_vector('dstack/simulator/attestation.bin')))
    assert.equals(0, att.version)
    assert.equals('tdx', att.platform)
    assert.equals(fixtures.read_vector('derived/simulator-quote.bin'), att.quote)
    assert.equals(#decoded.event_log, #att.event_log)
    for i, e in ipairs(decoded.event_log) do
      assert.equals(e.imr, att.event_log[i].imr)
      assert.equals(e.event_type, att.event_log[i].event_type)
      assert.equals(e.digest, codec.hex(att.event_log[i].digest))
      assert.equals(e.event, att.event_log[i].event)
      assert.equals(e.event_payload, codec.hex(att.event_log[i].event_payload))
    end
    assert.equals(#decoded.runtime_events, #att.runtime_events)
    assert.equals(decoded.report_data, codec.hex(att.report_data))
    assert.equals(decoded.config, att.config)
  end)

  it('derives the AppInfo of vectors/README.md §2 from it', function()
    local att = assert(attestation.decode(fixtures.read_vector('dstack/simulator/attestation.bin')))
    local report = assert(quote.describe(assert(quote.parse(att.quote))))
    local evs = assert(attestation.events(att))
    local checked = events.check(evs, report)
    assert.is_true(checked.ok)
    local info = assert(events.app_info(evs, report, checked, { vm_config = att.config }))
    assert.equals('5bb4ff9a3837357f19dc176407a5709c62eb6c56', info.app_id)
    assert.equals('1691ed1b47506cad7d08834668691d88246f5b1f', info.instance_id)
    assert.equals('c143116fef3940e7f776bfc0919c256232ae5338a6e948c96b711e0b2383483a', info.compose_hash)
    assert.equals('e61be43dd1cc6a6f5edefd7c51b608983780839b0000ce60dd99737dcffe09b9', info.os_image_hash)
    assert.equals('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', info.device_id)
    assert.equals('51ea38f8eee6dc72dbae9b74531ae6d6204295d265dabb4e6c34621a2a1a1197', info.mr_system)
    assert.equals('85334a62c97d0f8bf82d0245d31b539d17a2d7c258e2a13efc928aaea0e107cb', info.mr_aggregated)
    assert.equals('kms', info.key_provider.name)
    assert.equals('[]', json.encode(info.init_script_hashes))
    -- device_id from a PPID
    info = events.app_info(evs, report, checked, { ppid = '\1\2' })
    assert.equals(codec.hex(crypto.sha256('\1\2')), info.device_id)
    -- no AppInfo from a log that failed its checks
    local _, err, code = events.app_info(evs, report, { ok = false })
    assert.equals('EEVENTLOG', code)
    assert.matches('did not pass', err)
  end)

  it('decodes the dstack-verifier fixture: a certificate-style log that replays RTMR3 only', function()
    local body = cjson.decode(fixtures.read_vector('dstack/verifier/tdx-lite-attestation.json'))
    local att = assert(attestation.decode(assert(codec.unhex(body.attestation))))
    assert.equals(5006, #att.quote)
    assert.equals(12, #att.event_log) -- 3 ACPI events + 9 runtime events
    local report = assert(quote.describe(assert(quote.parse(att.quote))))
    local evs = assert(attestation.events(att))
    assert.is_true(events.check(evs, report, { 3 }).ok)
    local full = events.check(evs, report)
    assert.is_false(full.ok)
    assert.equals('event_log.rtmr0', full.problems[1].field)
    local info = events.app_info(evs, report, events.check(evs, report, { 3 }), { vm_config = att.config })
    assert.equals('e6f5cfec20c02e7b97baa213d0f718020b55e040172d90ccbcb946d56c8b09db', info.os_image_hash)
    assert.equals('86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9', info.compose_hash)
  end)

  it('rejects truncated, trailing, malformed V1 and unknown inputs', function()
    local bin = fixtures.read_vector('dstack/simulator/attestation.bin')
    local cases = {
      { bin:sub(1, 100), 'truncated: quote needs 5010 bytes' },
      { bin .. '\0', '1 trailing bytes at offset 9504' },
      { '\x81\xa7version\x01', 'V1 attestation: platform is not a map' },
      { '\x81\xa7version\x02', 'V1 attestation: version is 2, not 1' },
      { '\x81\xa7version', 'V1 attestation: truncated value at offset 9' },
      { '\x05', 'unknown attestation version byte 0x05' },
      { '\0\3', 'platform sev%-snp is not supported' },
      { '', 'empty attestation' },
    }
    for _, c in ipairs(cases) do
      local v, err, code = attestation.decode(c[1])
      assert.is_nil(v)
      assert.equals('EATTESTATION', code)
      assert.matches(c[2], err)
    end
  end)

  it('decodes V1 (msgpack) to the same fields as V0, V2 events kept with their preimages', function()
    local bin = fixtures.read_vector('dstack/simulator/attestation.bin')
    local v0 = assert(attestation.decode(bin))
    local v1 = assert(attestation.decode(attestation.encode_v1(v0)))
    assert.equals(1, v1.version)
    for _, f in ipairs({ 'platform', 'quote', 'report_data', 'config' }) do
      assert.equals(v0[f], v1[f], f)
    end
    assert.same(v0.event_log, v1.event_log)
    assert.same(v0.runtime_events, (function()
      local t = {}
      for i, r in ipairs(v1.runtime_events) do
        assert.equals(1, r.version)
        t[i] = { event = r.event, payload = r.payload }
      end
      return t
    end)())
    -- the same quote replays, so the decoded log is the one to verify
    local report = assert(quote.describe(assert(quote.parse(v1.quote))))
    assert.is_true(events.check(assert(attestation.events(v1)), report, { 3 }).ok)
    -- a V2 runtime event survives with its version and preimage
    local ev = assert(eventlog.runtime_event('app-event', 'xy', 2))
    local att = assert(attestation.decode(attestation.encode({ quote = '\1\2', event_log = { ev },
      runtime_events = { { event = 'app-event', payload = 'xy', version = 2 } },
      report_data = ('\9'):rep(64), config = '{}' })))
    assert.equals(2, att.event_log[1].version)
    assert.equals(ev.preimage, att.event_log[1].preimage)
    assert.equals(ev.digest, att.event_log[1].digest)
    assert.same({ { event = 'app-event', payload = 'xy', version = 2 } }, att.runtime_events)
    assert.equals('\1\2', att.quote)
  end)

  it('refuses V1 attestations with missing or mistyped fields, naming them', function()
    local mp = require('moonstack.core.msgpack')
    local function v1(platform, stack)
      return mp.encode({ map = { { 'version', 1 }, { 'platform', platform }, { 'stack', stack } } })
    end
    local good_p = { map = { { 'kind', 'tdx' }, { 'data', { map = { { 'quote', { bin = 'q' } } } } } } }
    local good_s = { map = { { 'kind', 'dstack' }, { 'data', { map = {
      { 'report_data', { ints = ('\0'):rep(64) } }, { 'config', '' } } } } } }
    assert.truthy(attestation.decode(v1(good_p, good_s)))
    local cases = {
      { v1({ map = { { 'kind', 'sev-snp' } } }, good_s), 'platform sev-snp is not supported' },
      { v1(good_p, { map = { { 'kind', 'dstack-pod' } } }), 'stack dstack-pod is not supported' },
      { v1(good_p, { map = { { 'kind', 'dstack' }, { 'data', { map = {
        { 'report_data', { bin = 'short' } } } } } } }), 'stack.data.report_data is 5 bytes, not 64' },
      { v1({ map = { { 'kind', 'tdx' }, { 'data', { map = { { 'quote', 5 } } } } } }, good_s),
        'platform.data.quote is not bytes' },
      { v1({ map = { { 'kind', 'tdx' }, { 'data', { map = { { 'quote', { bin = 'q' } },
        { 'event_log', { array = { { map = { { 'imr', -1 } } } } } } } } } } }, good_s),
        'event_log[1].imr is not a u32' },
      { v1(good_p, { map = { { 'kind', 'dstack' }, { 'data', { map = {
        { 'report_data', { bin = ('\0'):rep(64) } },
        { 'runtime_events', { array = { { map = { { 'event', 'e' }, { 'version', 3 } } } } } } } } } } }),
        'runtime_events[1].version must be 1 or 2' },
    }
    for _, c in ipairs(cases) do
      local v, err, code = attestation.decode(c[1])
      assert.is_nil(v, c[2])
      assert.equals('EATTESTATION', code)
      assert.truthy(err:find(c[2], 1, true), ('%q not in %q'):format(c[2], err))
    end
  end)

  it('adds the runtime events when the log carries none', function()
    local att = assert(attestation.decode(fixtures.read_vector('dstack/simulator/attestation.bin')))
    local boot = {}
    for _, e in ipairs(att.event_log) do
      if e.imr ~= 3 then
        boot[#boot + 1] = e
      end
    end
    att.event_log = boot
    local evs = assert(attestation.events(att))
    assert.equals(33, #evs)
    local report = assert(quote.describe(assert(quote.parse(att.quote))))
    assert.is_true(events.check(evs, report).ok)
  end)
end)
