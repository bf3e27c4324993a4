-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.schema: types, defaults, enum, bounds, patterns, records, arrays, maps,
-- unknown keys, custom checks, key paths in messages, and no mutation of the input.
local schema = require('moonstack.core.schema')

-- The single message of a failed validation (asserting it failed with EINVAL).
local function err_of(value, s, root)
  local out, msg, code, list = schema.validate(value, s, root)
  assert.is_nil(out)
  assert.are.equal('EINVAL', code)
  assert.are.equal('EINVAL: ' .. table.concat(list, '; '), msg)
  return table.concat(list, '; '), list
end

local HTTP = {
  type = 'table',
  fields = {
    http = {
      type = 'table',
      default = {},
      fields = {
        listen = {
          type = 'table',
          items = {
            type = 'table',
            fields = {
              host = { type = 'string', default = '127.0.0.1' },
              port = { type = 'integer', min = 1, max = 65535 },
            },
          },
          default = { { port = 8080 } },
        },
        mode = { type = 'string', enum = { 'plain', 'tls' }, default = 'plain' },
      },
    },
    name = { type = 'string', pattern = '^[%w-]+$' },
    debug = { type = 'boolean', optional = true },
  },
}

describe('core.schema', function()
  it('names the key path of the offending value', function()
    local msg = err_of({ name = 'x', http = { listen = { { port = 1 }, { port = '80' } } } }, HTTP)
    assert.are.equal('config.http.listen[2].port: expected integer, got string', msg)
  end)

  it('applies defaults (nested too) and returns a copy without touching the input', function()
    local input = { name = 'svc', http = { listen = { { port = 443 } } } }
    local out = assert(schema.validate(input, HTTP))
    assert.are.same({ name = 'svc', http = { mode = 'plain',
      listen = { { host = '127.0.0.1', port = 443 } } } }, out)
    assert.are.same({ name = 'svc', http = { listen = { { port = 443 } } } }, input)
    assert.are_not.equal(input.http, out.http)
    local defaults = assert(schema.validate({ name = 'a' }, HTTP))
    assert.are.same({ host = '127.0.0.1', port = 8080 }, defaults.http.listen[1])
    -- a default table is copied each time, never shared
    local again = assert(schema.validate({ name = 'a' }, HTTP))
    assert.are_not.equal(defaults.http.listen, again.http.listen)
    assert.is_nil(defaults.debug)
  end)

  it('checks every scalar type', function()
    local cases = {
      { 'string', 'x', 1, 'expected string, got number' },
      { 'number', 1.5, 'x', 'expected number, got string' },
      { 'integer', 3, 1.5, 'expected integer, got 1.5' },
      { 'boolean', false, 'false', 'expected boolean, got string' },
      { 'table', {}, 'x', 'expected table, got string' },
      { 'function', print, {}, 'expected function, got table' },
    }
    for _, c in ipairs(cases) do
      local ty, good, bad, reason = c[1], c[2], c[3], c[4]
      local s = { type = 'table', fields = { v = ty } }
      local out = schema.validate({ v = good }, s)
      assert.is_not_nil(out, ty)
      assert.are.same(good, out.v)
      assert.are.equal('config.v: ' .. reason, err_of({ v = bad }, s))
    end
    assert.are.equal('config.v: expected integer, got inf',
      err_of({ v = math.huge }, { type = 'table', fields = { v = 'integer' } }))
    assert.are.equal('config.v: expected number, got nan',
      (err_of({ v = 0 / 0 }, { type = 'table', fields = { v = 'number' } }):gsub('%-nan', 'nan')))
    assert.are.same({ v = 'anything' },
      schema.validate({ v = 'anything' }, { type = 'table', fields = { v = 'any' } }))
  end)

  it('reports missing required keys and accepts absent optional ones', function()
    local s = { type = 'table', fields = { a = 'string', b = { type = 'number', optional = true } } }
    assert.are.equal('config.a: missing (expected string)', err_of({}, s))
    assert.are.same({ a = 'x' }, schema.validate({ a = 'x' }, s))
  end)

  it('rejects unknown keys unless unknown = allow', function()
    local s = { type = 'table', fields = { a = 'string' } }
    assert.are.equal('config["with space"]: unknown key; config.zzz: unknown key',
      err_of({ a = 'x', zzz = 1, ['with space'] = 2 }, s))
    local allow = { type = 'table', unknown = 'allow', fields = { a = 'string' } }
    local extra = { deep = { 1 } }
    local out = assert(schema.validate({ a = 'x', extra = extra }, allow))
    assert.are.same({ deep = { 1 } }, out.extra)
    assert.are_not.equal(extra, out.extra)
  end)

  it('checks enum, min/max on numbers, string lengths and table sizes, and patterns', function()
    local s = {
      type = 'table',
      fields = {
        level = { type = 'string', enum = { 'debug', 'info' }, optional = true },
        n = { type = 'number', min = 0, max = 10, optional = true },
        s = { type = 'string', min = 2, max = 3, optional = true },
        list = { type = 'table', items = 'string', min = 1, optional = true },
        id = { type = 'string', pattern = '^%x+$', optional = true },
      },
    }
    assert.are.equal([[config.level: expected one of "debug", "info", got "trace"]],
      err_of({ level = 'trace' }, s))
    assert.are.equal('config.n: value must be >= 0, got -1', err_of({ n = -1 }, s))
    assert.are.equal('config.n: value must be <= 10, got 11', err_of({ n = 11 }, s))
    assert.are.equal('config.s: length must be >= 2, got 1', err_of({ s = 'a' }, s))
    assert.are.equal('config.s: length must be <= 3, got 4', err_of({ s = 'abcd' }, s))
    assert.are.equal('config.list: number of entries must be >= 1, got 0', err_of({ list = {} }, s))
    -- the bad value itself is not echoed (it may be a secret)
    local msg = err_of({ id = 'hunter2!' }, s)
    assert.are.equal('config.id: does not match pattern "^%x+$"', msg)
    assert.is_nil(msg:find('hunter2', 1, true))
    assert.are.same({ level = 'info', n = 10, s = 'abc', list = { 'x' }, id = 'beef' },
      schema.validate({ level = 'info', n = 10, s = 'abc', list = { 'x' }, id = 'beef' }, s))
  end)

  it('validates arrays element by element and refuses non-sequences', function()
    local s = { type = 'table', items = { type = 'integer', min = 0 } }
    assert.are.same({ 1, 2, 3 }, schema.validate({ 1, 2, 3 }, s, 'ports'))
    assert.are.equal('ports[2]: expected integer, got string; ports[3]: value must be >= 0, got -1',
      err_of({ 1, 'x', -1 }, s, 'ports'))
    assert.are.equal('ports: expected an array, got key "a"', err_of({ 1, a = 2 }, s, 'ports'))
    assert.are.equal('ports: expected an array, got key 5', err_of({ 1, [5] = 2 }, s, 'ports'))
  end)

  it('validates maps by keys and values, alongside fixed fields', function()
    local s = {
      type = 'table',
      fields = { default = { type = 'string', optional = true } },
      keys = { type = 'string', pattern = '^[a-z]+$' },
      values = { type = 'table', fields = { weight = { type = 'integer', default = 1 } } },
    }
    local out = assert(schema.validate({ default = 'a', a = {}, b = { weight = 5 } }, s, 'routes'))
    assert.are.same({ default = 'a', a = { weight = 1 }, b = { weight = 5 } }, out)
    assert.are.equal(
      'routes.B (key): does not match pattern "^[a-z]+$"; routes.c.weight: expected integer, got string',
      err_of({ B = {}, c = { weight = 'x' } }, s, 'routes'))
  end)

  it('runs custom checks on the validated value and reports their reason', function()
    local s = {
      type = 'table',
      fields = {
        range = {
          type = 'table',
          fields = { lo = 'integer', hi = { type = 'integer', default = 100 } },
          check = function(r)
            if r.lo > r.hi then
              return nil, 'lo must not exceed hi'
            end
            return true
          end,
        },
        boom = { type = 'string', optional = true, check = function() error('oops', 0) end },
        plain = { type = 'string', optional = true, check = function() return false end },
      },
    }
    assert.are.same({ range = { lo = 1, hi = 100 } }, schema.validate({ range = { lo = 1 } }, s))
    assert.are.equal('config.range: lo must not exceed hi', err_of({ range = { lo = 101 } }, s))
    assert.are.equal('config.boom: check failed: oops', err_of({ range = { lo = 1 }, boom = 'x' }, s))
    assert.are.equal('config.plain: invalid value', err_of({ range = { lo = 1 }, plain = 'x' }, s))
  end)

  it('reports every violation in a stable order', function()
    local _, list = err_of({ name = 'bad name!', http = { mode = 'udp', listen = { { port = 0 } } },
      debug = 'yes' }, HTTP)
    assert.are.same({
      'config.debug: expected boolean, got string',
      'config.http.listen[1].port: value must be >= 1, got 0',
      'config.http.mode: expected one of "plain", "tls", got "udp"',
      'config.name: does not match pattern "^[%w-]+$"',
    }, list)
  end)

  it('raises on a malformed schema, naming the node', function()
    assert.has_error(function() schema.validate({}, { type = 'table', fields = { a = { typ = 'x' } } }) end,
      "schema: unknown keyword 'typ' at config.a")
    assert.has_error(function() schema.validate(1, { type = 'int' }) end,
      "schema: bad or missing type 'int' at config")
    assert.has_error(function() schema.validate({}, { type = 'string', fields = {} }) end,
      "schema: fields/items/keys/values need type 'table' at config")
    assert.has_error(function() schema.check_schema({ type = 'table', unknown = 'ignore' }) end,
      "schema: unknown must be 'error' or 'allow' at <schema>")
    assert.is_true(schema.check_schema(HTTP))
  end)

  it('formats key paths', function()
    assert.are.equal('a.b', schema.join_path('a', 'b'))
    assert.are.equal('a[3]', schema.join_path('a', 3))
    assert.are.equal('a["x-y"]', schema.join_path('a', 'x-y'))
  end)
end)
