-- SPDX-License-Identifier: Apache-2.0
-- moonstack.http.login_limit (M7 item 4): per-client failures plus checks in flight within the
-- window, a global cap on checks in flight, Retry-After from the oldest failure, a success
-- clearing the client, failures expiring, a bounded client table failing closed.
local login_limit = require('moonstack.http.login_limit')

describe('http.login_limit', function()
  local now
  local function clock() return now end

  before_each(function() now = 1000 end)

  it('refuses a client over its failures (in flight included), with the wait', function()
    local lim = login_limit.new({ max = 3, window_s = 60, max_inflight = 10, now = clock })
    for _ = 1, 3 do
      assert.is_true(lim:begin('a'))
    end
    local ok, wait, why = lim:begin('a') -- three in flight
    assert.is_false(ok)
    assert.equal(1, wait)
    assert.truthy(why:find('too many failed logins', 1, true))
    for _ = 1, 3 do
      lim:finish('a', false)
    end
    now = 1010
    ok, wait = lim:begin('a')
    assert.is_false(ok)
    assert.equal(50, wait) -- the oldest failure (t = 1000) leaves the window at 1060
    assert.is_true(lim:begin('b')) -- another client is not affected
    lim:finish('b', true)
    now = 1061
    assert.is_true(lim:begin('a'))
    lim:finish('a', true)
    assert.same({ clients = 0, inflight = 0, max = 3, window_s = 60 }, lim:status())
  end)

  it('a success clears the failures', function()
    local lim = login_limit.new({ max = 2, window_s = 60, now = clock })
    assert.is_true(lim:begin('a'))
    lim:finish('a', false)
    assert.is_true(lim:begin('a'))
    lim:finish('a', true)
    assert.is_true(lim:begin('a'))
    lim:finish('a', false)
    assert.is_true(lim:begin('a'))
  end)

  it('caps the checks in flight across clients', function()
    local lim = login_limit.new({ max = 5, max_inflight = 2, now = clock })
    assert.is_true(lim:begin('a'))
    assert.is_true(lim:begin('b'))
    local ok, wait, why = lim:begin('c')
    assert.is_false(ok)
    assert.equal(1, wait)
    assert.truthy(why:find('too many password checks running', 1, true))
    lim:finish('a', false)
    assert.is_true(lim:begin('c'))
  end)

  it('bounds the clients it tracks, forgetting expired ones first, else refusing', function()
    local lim = login_limit.new({ max = 5, window_s = 60, max_inflight = 100, max_clients = 2,
      now = clock })
    for _, k in ipairs({ 'a', 'b' }) do
      assert.is_true(lim:begin(k))
      lim:finish(k, false)
    end
    local ok, _, why = lim:begin('c')
    assert.is_false(ok)
    assert.truthy(why:find('too many clients', 1, true))
    now = 1100 -- a's and b's failures expired: room again
    assert.is_true(lim:begin('c'))
    assert.equal(1, lim:status().clients)
  end)
end)
