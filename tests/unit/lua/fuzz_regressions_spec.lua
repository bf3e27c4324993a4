-- SPDX-License-Identifier: Apache-2.0
-- Inputs the fuzz targets (tests/fuzz) found to break a parser's contract, each kept as a
-- regression: the parser must give a clean result or a clean error on it. The same inputs are in
-- the targets' seed corpora (tests/fuzz/corpus/<target>/regress_*).
local json = require('moonstack.core.json')
local eventlog = require('moonstack.tdx.eventlog')

describe('fuzz regressions', function()
  it('json: a number out of range (1e400, a 20-digit exponent) is an error, not a raise', function()
    -- tonumber gave nil: decode returned { 2 } for this array and canonical() raised
    local text = '[1e810000000000000009, 2]'
    local v, err, code = json.decode(text)
    assert.is_nil(v)
    assert.equal('EPARSE', code)
    assert.matches('number out of range', err)
    local c, cerr = json.canonical(text)
    assert.is_nil(c)
    assert.matches('^EPARSE: ', cerr)
    assert.is_nil((json.decode('1e-99999999999999999999')))
    -- past the doubles: canonical() raised 'cannot encode NaN or infinity' on 1e400
    for _, t in ipairs({ '1e400', '[-1e400]', '{"a":1E999}' }) do
      local x, xerr, xcode = json.decode(t)
      assert.is_nil(x)
      assert.equal('EPARSE', xcode, xerr)
      assert.is_nil((json.canonical(t)))
    end
    -- what fits stays a number
    assert.equal(1e300, json.decode('[1e300]')[1])
  end)

  it('eventlog.from_json: imr and event_type are u32 (replay raised on -1, 2^32, 1.5, NaN)', function()
    local digest = ('00'):rep(48)
    local function ev(imr, ty)
      return ('[{"imr":%s,"event_type":%s,"digest":"%s","event":"","event_payload":""}]')
        :format(imr, ty, digest)
    end
    for _, case in ipairs({ { '-1', '1' }, { '0', '4294967296' }, { '1.5', '1' }, { '0', 'NaN' },
      { 'Infinity', '1' } }) do
      local events, err, code = eventlog.from_json(ev(case[1], case[2]))
      assert.is_nil(events, case[1] .. ' ' .. case[2])
      assert.equal('EEVENTLOG', code)
      assert.matches('imr and event_type must be integers', err)
    end
    -- an imr past 3 parses, and replay answers it with a clean error
    local events = assert(eventlog.from_json(ev('7', '4294967295')))
    local r, err, code = eventlog.replay(events)
    assert.is_nil(r)
    assert.equal('EEVENTLOG', code, err)
  end)
end)

