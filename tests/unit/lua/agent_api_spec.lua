-- SPDX-License-Identifier: Apache-2.0
-- Building blocks of the guest API: the pRPC message codec (JSON with bare hex and pure-ASCII
-- output, GET queries, protobuf), dstack's report_data rules (GetQuote padding, Tappd.TdxQuote
-- hashing with the values of guest-and-attestation.md §10), the event-log forms, and the
-- VersionedAttestation / AppInfo encoders (V0 byte-identical to upstream's attestation.bin).
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local fixtures = require('tests.helpers.fixtures')
local proto = require('moonstack.core.proto')
local prpc = require('moonstack.core.prpc')
local evidence = require('moonstack.tdx.evidence')
local attestation = require('moonstack.tdx.attestation')
local eventlog = require('moonstack.tdx.eventlog')

local hex, unhex = crypto.hex, crypto.unhex
local M = require('moonstack.agent.api.messages')

describe('pRPC JSON', function()
  it('writes pure ASCII that decodes back to the same string', function()
    local cases = { 'plain', 'q"uo\\te', 'ctl\1\31\127', 'é', '€uro', '😀', 'mixed é😀 "x"\n' }
    for _, s in ipairs(cases) do
      local j = proto.json_string(s)
      assert.is_nil(j:find('[\128-\255]'), s)
      assert.are.equal(s, cjson.decode(j))
    end
    assert.are.equal('"\\ud83d\\ude00"', proto.json_string('😀'))
    -- invalid UTF-8 never reaches the wire raw
    assert.are.equal('"\\u00ff\\u00c3"', proto.json_string('\255\195'))
  end)

  it('encodes messages in proto order with bare lowercase hex', function()
    assert.are.equal('{"quote":"0aff","event_log":"[]","report_data":"","vm_config":"{}"}',
      proto.to_json(M.GetQuoteResponse, { quote = '\10\255', event_log = '[]', report_data = '',
        vm_config = '{}' }))
    assert.are.equal('{"key":"k","certificate_chain":[]}', proto.to_json(M.GetTlsKeyResponse,
      { key = 'k', certificate_chain = {} }))
    assert.are.equal('{"valid":false}', proto.to_json(M.VerifyResponse, { valid = false }))
    assert.are.equal('{}', proto.to_json(M.Empty, {}))
  end)

  it('decodes requests: defaults, 0x and upper-case hex, nulls, unknown fields', function()
    local a = assert(proto.from_json(M.GetTlsKeyArgs, { subject = 's', extra = 1, not_after = 5,
      alt_names = { 'a', 'b' }, usage_ra_tls = cjson.null }))
    assert.are.same({ subject = 's', alt_names = { 'a', 'b' }, usage_ra_tls = false,
      usage_server_auth = false, usage_client_auth = false, not_after = 5, with_app_info = false }, a)
    assert.is_nil(a.not_before)
    assert.are.equal('\171\205', proto.from_json(M.RawQuoteArgs, { report_data = '0xABcd' }).report_data)
    assert.are.equal('', proto.from_json(M.RawQuoteArgs, {}).report_data)
  end)

  it('names the field of a malformed request', function()
    local function err(schema, obj)
      local v, e = proto.from_json(schema, obj)
      assert.is_nil(v)
      return e
    end
    assert.are.equal('report_data: invalid hex string', err(M.RawQuoteArgs, { report_data = 'xyz' }))
    assert.are.equal('report_data: invalid hex string', err(M.RawQuoteArgs, { report_data = 'abc' }))
    assert.are.equal('report_data: expected a hex string', err(M.RawQuoteArgs, { report_data = 12 }))
    assert.are.equal('path: expected a string', err(M.GetKeyArgs, { path = {} }))
    assert.are.equal('usage_ra_tls: expected a boolean', err(M.GetTlsKeyArgs, { usage_ra_tls = 'yes' }))
    assert.are.equal('not_before: expected an unsigned integer', err(M.GetTlsKeyArgs, { not_before = -1 }))
    assert.are.equal('alt_names[1]: expected a string', err(M.GetTlsKeyArgs, { alt_names = { 'a', 1 } }))
    assert.are.equal('alt_names: expected an array', err(M.GetTlsKeyArgs, { alt_names = 'a' }))
    assert.are.equal('the request body must be a JSON object', err(M.GetKeyArgs, 'x'))
    assert.are.equal('the request body must be a JSON object', err(M.GetKeyArgs, { 1, 2 }))
    assert.are.equal('alt_names: expected an array', err(M.GetTlsKeyArgs, { alt_names = { a = 1 } }))
  end)

  it('takes GET query parameters', function()
    local a = assert(proto.from_query(M.GetTlsKeyArgs, { subject = 'x', usage_ra_tls = '',
      usage_server_auth = 'false', not_before = '17', alt_names = 'h' }))
    assert.are.same({ subject = 'x', alt_names = { 'h' }, usage_ra_tls = true, usage_server_auth = false,
      usage_client_auth = false, not_before = 17, with_app_info = false }, a)
    assert.is_nil(proto.from_query(M.GetTlsKeyArgs, { usage_ra_tls = 'maybe' }))
    assert.is_nil(proto.from_query(M.GetTlsKeyArgs, { not_after = '1e3' }))
  end)
end)

describe('pRPC protobuf', function()
  it('round-trips every field type', function()
    local msg = { subject = 'subj', alt_names = { 'a', '', ('x'):rep(300) }, usage_ra_tls = true,
      usage_server_auth = false, usage_client_auth = true, not_before = 0, not_after = 2 ^ 40 + 3,
      with_app_info = true }
    local bin = proto.to_proto(M.GetTlsKeyArgs, msg)
    local back = assert(proto.from_proto(M.GetTlsKeyArgs, bin))
    msg.not_before = 0 -- proto3 optional: present with 0
    assert.are.same(msg.alt_names, back.alt_names)
    assert.are.equal(msg.not_after, back.not_after)
    assert.are.equal(true, back.with_app_info)
    assert.are.equal(false, back.usage_server_auth)
    -- field 1 string 'subj': key 0x0a, length 4
    assert.are.equal('\10\4subj', bin:sub(1, 6))
  end)

  it('skips unknown fields and refuses malformed input', function()
    -- unknown field 9 (varint), 10 (fixed64), 11 (fixed32), 12 (bytes), then path
    local bin = '\72\150\1' .. '\81' .. ('\0'):rep(8) .. '\93\0\0\0\0' .. '\98\2hi' .. '\10\1p'
    assert.are.equal('p', assert(proto.from_proto(M.GetKeyArgs, bin)).path)
    assert.is_nil(proto.from_proto(M.GetKeyArgs, '\10\5ab'))
    assert.is_nil(proto.from_proto(M.GetKeyArgs, '\10'))
    assert.is_nil(proto.from_proto(M.GetKeyArgs, '\11'))          -- wire type 3
    assert.is_nil(proto.from_proto(M.GetKeyArgs, '\8\1'))         -- path as a varint
    assert.is_nil(proto.from_proto(M.GetKeyArgs, '\72\255\255'))  -- truncated varint
  end)

  it('answers errors as ProtoError', function()
    local status, body, headers = prpc.error_reply(false, 'bad')
    assert.are.equal(400, status)
    assert.are.equal('application/octet-stream', headers['content-type'])
    assert.are.equal('bad', proto.from_proto(proto.ProtoError, body).message)
    local _, text = prpc.error_reply(true, 'bad "x"')
    assert.are.equal('{\n  "error": "bad \\"x\\""\n}', text)
  end)
end)

describe('report_data rules', function()
  it('pads GetQuote report_data to 64 bytes, at most 64', function()
    assert.are.equal('test' .. ('\0'):rep(60), evidence.pad_report_data('test'))
    assert.are.equal(('\1'):rep(64), evidence.pad_report_data(('\1'):rep(64)))
    local rd, err = evidence.pad_report_data(('\1'):rep(65))
    assert.is_nil(rd)
    assert.are.equal('EINVAL: Report data is too long', err)
  end)

  it('hashes Tappd.TdxQuote data as upstream (spec §10, 8)', function()
    local rd, alg, prefix = evidence.tdx_quote_report_data('test', 'sha512', '')
    assert.are.equal('1864e059be7e1ec12d9fe9da903d3711e0d72edab19f044cc9d6ac90c32b996b545a9979309bd1'
      .. '9c36b803941e8e3485115e9b794001f2b9f367f6e03c52e532', hex(rd))
    assert.are.equal('sha512', alg)
    assert.are.equal('app-data', prefix)
    assert.are.equal(rd, (evidence.tdx_quote_report_data('test', '', nil)))
    rd = evidence.tdx_quote_report_data('test', 'sha256')
    assert.matches('^a5d2ef1e.*c1fc' .. ('00'):rep(32) .. '$', hex(rd))
    rd = evidence.tdx_quote_report_data('test', 'keccak256')
    assert.matches('^b8779455.*ecb6' .. ('00'):rep(32) .. '$', hex(rd))
    for _, a in ipairs(evidence.HASH_ALGORITHMS) do
      rd = assert(evidence.tdx_quote_report_data('test', a, 'tag'))
      assert.are.equal(64, #rd)
      assert.are.equal(crypto.hash(a, 'tag:test'), rd:sub(1, #crypto.hash(a, 'x')))
    end
    -- the colon is always added, even after a prefix that ends with one
    assert.are.equal(crypto.sha256('app-data::x'), (evidence.tdx_quote_report_data('x', 'sha256',
      'app-data:')):sub(1, 32))
  end)

  it('takes raw data of exactly 64 bytes and refuses unknown algorithms', function()
    local d = ('\7'):rep(64)
    local rd, alg, prefix = evidence.tdx_quote_report_data(d, 'raw', 'ignored')
    assert.are.equal(d, rd)
    assert.are.equal('raw', alg)
    assert.are.equal('', prefix)
    assert.are.equal('EINVAL: invalid content length', select(2, evidence.tdx_quote_report_data('x', 'raw')))
    for _, a in ipairs({ 'md5', 'SHA256', 'sha3_256', 'keccak' }) do
      assert.are.equal('EINVAL: invalid hash algorithm', select(2, evidence.tdx_quote_report_data('x', a)))
    end
  end)
end)

describe('event-log forms and attestations', function()
  local fixture = assert(attestation.decode(fixtures.read_vector('dstack/simulator/attestation.bin')))

  it('encodes V0 byte-identical to upstream (the simulator fixture)', function()
    local bytes = fixtures.read_vector('dstack/simulator/attestation.bin')
    assert.are.equal(hex(bytes), hex(attestation.encode_v0(fixture)))
    assert.are.equal(bytes, attestation.encode(fixture))
  end)

  it('writes V1 msgpack when a V2 event is present', function()
    local ev = assert(eventlog.runtime_event('app-event', 'xy', 2))
    local att = { quote = '\1\2', event_log = { ev }, runtime_events = { { event = 'app-event',
      payload = 'xy', version = 2 } }, report_data = ('\9'):rep(64), config = '{}' }
    assert.is_nil(attestation.encode_v0(att))
    local v1 = attestation.encode(att)
    assert.are.equal('\131\167version\1\168platform', v1:sub(1, 19))
    assert.truthy(v1:find('\165quote\146\1\2', 1, true))
    assert.truthy(v1:find('\171report_data\220\0\64' .. ('\9'):rep(64), 1, true))
    assert.truthy(v1:find('\167payload\196\2xy\167version\2', 1, true))
    assert.truthy(v1:find('\168preimage\196', 1, true))
  end)

  it('encodes the AppInfo extension as a msgpack array of 8 binaries', function()
    local ext = attestation.app_info_ext({ app_id = ('\1'):rep(20), key_provider_info = '{}' })
    assert.are.equal('\152\196\20' .. ('\1'):rep(20) .. ('\196\0'):rep(6) .. '\196\2{}', ext)
  end)

  it('shapes the log for quotes and certificates', function()
    local events = fixture.event_log
    local q = evidence.shape(events, 'quote')
    local c = evidence.shape(events, 'cert')
    assert.are.equal(#events, #q)
    for i, e in ipairs(q) do
      assert.are.equal(events[i].digest, e.digest)
      if e.imr == 3 then
        assert.are.equal(events[i].event_payload, e.event_payload)
      else
        assert.are.equal('', e.event_payload)
      end
    end
    assert.are.equal(9, #c)
    for _, e in ipairs(c) do
      assert.are.equal(3, e.imr)
      assert.are.equal('', e.digest)
    end
    -- a stripped quote log still replays to the fixture's RTMRs (digests kept)
    local r = assert(eventlog.replay(assert(eventlog.from_json(evidence.event_log_json(events, 'quote')))))
    assert.are.equal('f28a1490ee924e9396c2ccf2d93ad536b83cbe159a1d45024d1fd7acdcc102145efcfcd0cfa2094164'
      .. '46c70226affadf', r[4])
    assert.are.same(evidence.runtime_events(events)[1], { event = 'system-preparing', payload = '',
      version = 1 })
    assert.is_nil(unhex('zz'))
  end)
end)
