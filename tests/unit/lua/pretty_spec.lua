-- SPDX-License-Identifier: Apache-2.0
-- moonstack.control.pretty: how REPL results are shown (text) and sent (JSON-encodable copy).
local pretty = require('moonstack.control.pretty')
local cjson = require('cjson')

describe('pretty.format', function()
  it('renders scalars', function()
    assert.equal('nil', pretty.format(nil))
    assert.equal('true', pretty.format(true))
    assert.equal('false', pretty.format(false))
    assert.equal('2', pretty.format(2))
    assert.equal('-17', pretty.format(-17))
    assert.equal('0.5', pretty.format(0.5))
    assert.equal('0.1', pretty.format(0.1))
    assert.equal('9007199254740991', pretty.format(2 ^ 53 - 1))
    assert.equal('9007199254740992', pretty.format(2 ^ 53))
    assert.equal('1e+300', pretty.format(1e300))
    assert.equal('math.huge', pretty.format(math.huge))
    assert.equal('-math.huge', pretty.format(-math.huge))
    assert.equal('0/0', pretty.format(0 / 0))
  end)

  it('prints non-integers with enough digits to read them back', function()
    for _, n in ipairs({ 1 / 3, 2 / 3, 0.1 + 0.2, 123456.789e-20, -1.5e-7 }) do
      assert.equal(n, tonumber(pretty.format(n)))
    end
  end)

  it('quotes strings on one line with escapes', function()
    assert.equal('"hi"', pretty.format('hi'))
    assert.equal('"a\\nb\\tc\\\\d\\"e"', pretty.format('a\nb\tc\\d"e'))
    assert.equal('"\\0\\001\\127"', pretty.format('\0\1\127'))
    assert.equal('"caf\195\169"', pretty.format('caf\195\169'))
    -- the literal reads back as the same string
    local s = 'x\r\n\0\255"\\'
    assert.equal(s, loadstring('return ' .. pretty.format(s))())
  end)

  it('renders tables with the array part first, then sorted keys', function()
    assert.equal('{}', pretty.format({}))
    assert.equal('{ 1, 2, 3 }', pretty.format({ 1, 2, 3 }))
    assert.equal('{ a = 1, b = 2, c = 3 }', pretty.format({ c = 3, a = 1, b = 2 }))
    assert.equal('{ "x", "y", n = 2 }', pretty.format({ 'x', 'y', n = 2 }))
    assert.equal('{ [1.5] = 1, [10] = 2, ["a b"] = 3, ["end"] = 4, ok = 5, [true] = 6 }',
      pretty.format({ [true] = 6, ok = 5, ['end'] = 4, ['a b'] = 3, [10] = 2, [1.5] = 1 }))
    assert.equal('{ 1, [3] = 3 }', pretty.format({ 1, nil, 3 }))
  end)

  it('breaks long tables over lines with indentation', function()
    local t = { name = ('n'):rep(40), inner = { list = { 1, 2, 3 }, text = ('t'):rep(60) } }
    local expected = table.concat({
      '{',
      '  inner = {',
      '    list = { 1, 2, 3 },',
      '    text = "' .. ('t'):rep(60) .. '",',
      '  },',
      '  name = "' .. ('n'):rep(40) .. '",',
      '}',
    }, '\n')
    assert.equal(expected, pretty.format(t))
    assert.equal('{ a = { b = 1 } }', pretty.format({ a = { b = 1 } }, { width = 20 }))
  end)

  it('marks cycles instead of recursing, but repeats shared tables', function()
    local t = { name = 't' }
    t.self = t
    local out = pretty.format(t)
    assert.equal(('{ name = "t", self = <cycle: %s> }'):format(tostring(t)), out)
    local shared = { 1 }
    assert.equal('{ a = { 1 }, b = { 1 } }', pretty.format({ a = shared, b = shared }))
  end)

  it('stops at the depth limit', function()
    local deep = { a = { b = { c = { d = {} } } } }
    assert.equal('{ a = { b = {...} } }', pretty.format(deep, { depth = 2 }))
    assert.equal('{ a = { b = { c = { d = {} } } } }', pretty.format(deep))
    assert.equal('{ a = { b = { c = { d = {} } } } }', pretty.format(deep, { depth = 4 }))
  end)

  it('limits the items shown per table', function()
    local big = {}
    for i = 1, 50 do
      big[i] = i
    end
    assert.equal('{ 1, 2, 3, ... (47 more) }', pretty.format(big, { max_items = 3 }))
  end)

  it('shows functions, userdata and objects with __tostring', function()
    assert.matches('^<function [^>]*pretty_spec%.lua:%d+>$', pretty.format(function() end))
    assert.matches('^<function: builtin#%d+>$', pretty.format(print))
    assert.matches('^<userdata: 0x%x+>$', pretty.format(newproxy()))
    assert.matches('^<thread: 0x%x+>$', pretty.format(coroutine.create(print)))
    local obj = setmetatable({}, { __tostring = function() return 'EFOO: bad' end })
    assert.equal('EFOO: bad', pretty.format(obj))
    assert.equal('{}', pretty.format(obj, { raw = true }))
    local broken = setmetatable({}, { __tostring = function() error('nope') end })
    assert.matches('__tostring failed', pretty.format(broken))
  end)

  it('renders several results one per line', function()
    assert.equal('1\nnil\n"x"', pretty.format_results({ 1, nil, 'x', n = 3 }, 3))
    assert.equal('', pretty.format_results({ n = 0 }, 0))
  end)

  it('raises on bad options', function()
    assert.has_error(function() pretty.format(1, 'deep') end, 'pretty: opts must be a table')
  end)
end)

describe('pretty.jsonable', function()
  local function enc(v)
    return cjson.encode(pretty.jsonable(v))
  end

  it('keeps plain data', function()
    assert.equal('[1,2,3]', enc({ 1, 2, 3 }))
    assert.equal('{"a":"x"}', enc({ a = 'x' }))
    assert.equal('true', enc(true))
    assert.equal('"s"', enc('s'))
    assert.same({ a = { b = { 1, 2 } } }, cjson.decode(enc({ a = { b = { 1, 2 } } })))
  end)

  it('turns what JSON cannot hold into text', function()
    assert.equal('"math.huge"', enc(math.huge))
    assert.equal('0/0', cjson.decode(enc(0 / 0)))
    assert.matches('^"<function', enc(function() end))
    local t = {}
    t.me = t
    local decoded = cjson.decode(enc(t))
    assert.matches('^<cycle: table', decoded.me)
    -- mixed and non-string keys become an object with text keys
    assert.same({ ['1'] = 'a', x = 'b', ['true'] = 'c' },
      cjson.decode(enc({ 'a', x = 'b', [true] = 'c' })))
    -- objects with __tostring are sent as their text
    local obj = setmetatable({}, { __tostring = function() return 'OBJ' end })
    assert.equal('"OBJ"', enc(obj))
  end)

  it('stops at the depth limit', function()
    local deep = { a = { b = { c = 1 } } }
    assert.same({ a = { b = '{...}' } }, pretty.jsonable(deep, { depth = 2 }))
  end)
end)
