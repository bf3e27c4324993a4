-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.tables: sorted_keys, shared by core.schema (field order of errors) and the
-- audit's config walk (finding order).
local tables = require('moonstack.core.tables')

describe('moonstack.core.tables.sorted_keys', function()
  it('puts numbers before strings, each in order', function()
    assert.are.same({ 1, 2, 10, 'a', 'b', 'z' },
      tables.sorted_keys({ z = 1, [10] = 1, a = 1, [2] = 1, b = 1, [1] = 1 }))
  end)

  it('orders keys of other types by type name, then by their text, without raising', function()
    local keys = tables.sorted_keys({ [true] = 1, [false] = 1, x = 1, [3] = 1 })
    assert.are.same({ false, true, 3, 'x' }, keys)
    assert.are.same({}, tables.sorted_keys({}))
  end)
end)
