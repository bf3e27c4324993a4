-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.scale: compact integers in all four modes (encode and decode, boundaries),
-- Option / bool / Vec / u64 decoding and their errors (offset reported), the pcall wrapper.
local scale = require('moonstack.core.scale')

local function decode(bytes, fn)
  return scale.pcall(function()
    local r = scale.reader(bytes)
    return fn(r), r.pos
  end)
end

describe('core.scale', function()
  it('encodes and decodes compact integers at every mode boundary', function()
    local cases = {
      { 0, '\0' }, { 63, '\252' }, { 64, '\1\1' }, { 16383, '\253\255' }, { 16384, '\2\0\1\0' },
      { 2 ^ 30 - 1, '\254\255\255\255' }, { 2 ^ 30, '\3\0\0\0\64' }, { 2 ^ 32, '\7\0\0\0\0\1' },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], scale.compact(c[1]))
      assert.equal(c[1], (decode(c[2], function(r) return r:compact('n') end)))
    end
  end)

  it('decodes Option, bool, Vec<String> and u64', function()
    local bytes = '\1' .. scale.bytes('org') .. '\0' .. '\1' .. scale.compact(2) .. scale.bytes('a')
      .. scale.bytes('bc') .. scale.uint(1700000000, 8) .. 'rest'
    local v = assert(decode(bytes, function(r)
      return { r:option('o', r.bytes), r:option('n', r.bytes), r:bool('b'), r:vec('v', r.bytes),
        r:uint(8, 'u'), r:rest() }
    end))
    assert.same({ 'org', nil, true, { 'a', 'bc' }, 1700000000, 'rest' }, v)
  end)

  it('reports malformed input with the field and the offset', function()
    local cases = {
      { '\12ab', function(r) return r:bytes('name') end,
        'truncated: name needs 3 bytes, 2 left at offset 1' },
      { '\2', function(r) return r:bool('flag') end, 'flag: invalid bool 0x02 at offset 1' },
      { '\7', function(r) return r:option('opt', r.bytes) end, 'opt: invalid Option tag 0x07 at offset 1' },
      { '\40', function(r) return r:vec('list', r.bytes) end, 'list: 10 items cannot fit at offset 1' },
      { ('\255'):rep(8), function(r) return r:uint(8, 'u') end, 'u: u64 above 2^53' },
      { '\31', function(r) return r:compact('len') end, 'len: compact length too large' },
    }
    for _, c in ipairs(cases) do
      local v, err, code = decode(c[1], c[2])
      assert.is_nil(v)
      assert.equal('ESCALE', code)
      assert.truthy(err:find(c[3], 1, true), err)
    end
    assert.has_error(function() scale.pcall(function() error('boom') end) end)
  end)
end)
