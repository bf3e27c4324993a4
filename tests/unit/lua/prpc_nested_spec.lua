-- SPDX-License-Identifier: Apache-2.0
-- Nested messages in the pRPC codec (moonstack.core.proto): `message` and `message*`
-- fields (schema = the nested field list) in JSON and protobuf, both directions; bytes
-- checked against hand-written protobuf (KMS GetKmsKey's KmsKeyResponse shape).
local cjson = require('cjson.safe')
local proto = require('moonstack.core.proto')

local Keys = { { 1, 'ca_key', 'string' }, { 2, 'k256_key', 'bytes' } }
local Resp = { { 1, 'temp_ca_key', 'string' }, { 2, 'keys', 'message*', schema = Keys },
  { 3, 'one', 'message', schema = Keys } }

describe('pRPC nested messages', function()
  local msg = { temp_ca_key = 'T', keys = { { ca_key = 'A', k256_key = '\1\2' },
    { ca_key = 'B', k256_key = '' } } }

  it('encodes repeated and singular messages as protobuf', function()
    -- 0a 01 'T' | 12 07 (0a 01 'A' 12 02 01 02) | 12 03 (0a 01 'B')
    assert.equal('\10\1T\18\7\10\1A\18\2\1\2\18\3\10\1B', proto.to_proto(Resp, msg))
    local with_one = { temp_ca_key = '', keys = {}, one = { ca_key = 'C' } }
    assert.equal('\26\3\10\1C', proto.to_proto(Resp, with_one))
    assert.same({ temp_ca_key = 'T', keys = { { ca_key = 'A', k256_key = '\1\2' },
      { ca_key = 'B', k256_key = '' } } }, assert(proto.from_proto(Resp, proto.to_proto(Resp, msg))))
    assert.same({ temp_ca_key = '', keys = {}, one = { ca_key = 'C', k256_key = '' } },
      assert(proto.from_proto(Resp, proto.to_proto(Resp, with_one))))
  end)

  it('encodes and decodes JSON (absent singular message left out)', function()
    local j = proto.to_json(Resp, msg)
    assert.equal('{"temp_ca_key":"T","keys":[{"ca_key":"A","k256_key":"0102"},'
      .. '{"ca_key":"B","k256_key":""}]}', j)
    assert.same(msg, assert(proto.from_json(Resp, assert(cjson.decode(j)))))
  end)

  it('reports malformed nested input with the field path', function()
    local _, err = proto.from_json(Resp, { keys = { { k256_key = 'zz' } } })
    assert.equal('keys[0].k256_key: invalid hex string', err)
    _, err = proto.from_json(Resp, { one = 'x' })
    assert.equal('one: expected an object', err)
    _, err = proto.from_proto(Resp, '\18\3\10\5A')
    assert.equal('keys.malformed protobuf: truncated length-delimited field', err)
    _, err = proto.from_proto(Resp, '\18\2\16\1')
    assert.equal('keys.k256_key: wrong protobuf wire type 0', err)
  end)
end)
