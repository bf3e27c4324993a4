-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.msgpack: every encoding of the subset checked against the byte layouts of the
-- MessagePack specification (boundaries of each integer, string, binary, array and map form),
-- decode(encode(v)) round trips, bytes() for bin and rmp-serde's integer arrays, and the strict
-- decoder's refusals (truncation at every position, trailing bytes, lengths past the input,
-- duplicate and non-string keys, deep nesting, floats and extension types).
local msgpack = require('moonstack.core.msgpack')

local function hex(s)
  return (s:gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end

describe('core.msgpack', function()
  it('encodes integers in the smallest form the specification gives them', function()
    local cases = {
      { 0, '00' }, { 127, '7f' }, { 128, 'cc80' }, { 255, 'ccff' }, { 256, 'cd0100' },
      { 65535, 'cdffff' }, { 65536, 'ce00010000' }, { 2 ^ 32 - 1, 'ceffffffff' },
      { 2 ^ 32, 'cf0000000100000000' }, { -1, 'ff' }, { -32, 'e0' }, { -33, 'd2ffffffdf' },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], hex(msgpack.encode(c[1])), tostring(c[1]))
      assert.equal(c[1], (msgpack.decode(msgpack.encode(c[1]))))
    end
    -- the other integer forms decode too
    assert.equal(-33, msgpack.decode('\208\223')) -- int8
    assert.equal(-2, msgpack.decode('\209\255\254')) -- int16
    assert.equal(1, msgpack.decode('\211\0\0\0\0\0\0\0\1')) -- int64
  end)

  it('encodes str, bin, arrays and maps at each length boundary', function()
    local function prefix(v, n)
      return hex(msgpack.encode(v)):sub(1, n)
    end
    assert.equal('a0', prefix('', 2))
    assert.equal('bf', prefix(('x'):rep(31), 2))
    assert.equal('d920', prefix(('x'):rep(32), 4))
    assert.equal('da0100', prefix(('x'):rep(256), 6))
    assert.equal('db00010000', prefix(('x'):rep(65536), 10))
    assert.equal('c400', prefix({ bin = '' }, 4))
    assert.equal('c50100', prefix({ bin = ('x'):rep(256) }, 6))
    assert.equal('c600010000', prefix({ bin = ('x'):rep(65536) }, 10))
    assert.equal('90', prefix({ array = {} }, 2))
    assert.equal('dc0010', prefix({ array = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 } }, 6))
    assert.equal('80', prefix({ map = {} }, 2))
    assert.equal('93017fcc80', hex(msgpack.encode({ ints = '\1\127\128' })))
    assert.equal('82a16101a162c3', hex(msgpack.encode({ map = { { 'a', 1 }, { 'b', true } } })))
    assert.equal('c0c2', hex(msgpack.encode(nil) .. msgpack.encode(false)))
  end)

  it('decodes what it encodes', function()
    local v = msgpack.decode(msgpack.encode({ map = {
      { 'version', 1 }, { 'name', ('n'):rep(40) }, { 'blob', { bin = ('\0\255'):rep(200) } },
      { 'list', { array = { 1, -5, 70000, 'x', false, { map = { { 'k', { ints = 'ab' } } } } } } },
    } }))
    assert.same({ version = 1, name = ('n'):rep(40), blob = ('\0\255'):rep(200),
      list = { 1, -5, 70000, 'x', false, { k = { 97, 98 } } } }, v)
    assert.equal('ab', msgpack.bytes(v.list[6].k))
    assert.equal(v.blob, msgpack.bytes(v.blob))
  end)

  it('reads byte fields written as bin or as integer arrays, and nothing else', function()
    assert.equal('', msgpack.bytes({}))
    assert.equal('\0\1\255', msgpack.bytes({ 0, 1, 255 }))
    assert.is_nil(msgpack.bytes({ 0, 256 }))
    assert.is_nil(msgpack.bytes({ 0, -1 }))
    assert.is_nil(msgpack.bytes({ 1.5 }))
    assert.is_nil(msgpack.bytes({ a = 1 }))
    assert.is_nil(msgpack.bytes({ 1, 2, [4] = 4 }))
    assert.is_nil(msgpack.bytes(7))
  end)

  it('refuses malformed input with the offset', function()
    local whole = msgpack.encode({ map = { { 'a', { bin = 'xyz' } }, { 'b', { array = { 1, 2 } } } } })
    for n = 0, #whole - 1 do
      local v, err, code = msgpack.decode(whole:sub(1, n))
      assert.is_nil(v, n)
      assert.equal('EMSGPACK', code, n)
      assert.matches('^EMSGPACK: ', err)
    end
    local cases = {
      { whole .. '\0', '1 trailing bytes at offset' },
      { '\196\10ab', 'bin of 10 bytes overruns the input' },
      { '\219\255\255\255\255', 'str of 4294967295 bytes overruns' },
      { '\221\0\1\0\0', 'array of 65536 elements overruns' },
      { '\223\0\0\1\0', 'map of 256 entries overruns' },
      { '\130\161a\1\161a\2', 'duplicate map key "a" at offset 4' },
      { '\129\1\1', 'map key is not a string at offset 1' },
      { ('\145'):rep(40) .. '\0', 'nesting deeper than 32' },
      { '\203\0\0\0\0\0\0\0\0', 'unsupported type byte 0xcb' },
      { '\199\1\1\0', 'unsupported type byte 0xc7' },
      { '\207\255\0\0\0\0\0\0\0', 'uint64 beyond 2^53' },
      { '\211\255\255\255\255\255\255\255\255', 'negative int64' },
    }
    for _, c in ipairs(cases) do
      local v, err, code = msgpack.decode(c[1])
      assert.is_nil(v, c[2])
      assert.equal('EMSGPACK', code)
      assert.truthy(err:find(c[2], 1, true), ('%q not in %q'):format(c[2], err))
    end
  end)
end)
