-- SPDX-License-Identifier: Apache-2.0
-- The `webhook` KMS auth backend against a real local moonstack HTTP server: the exact BootInfo
-- JSON upstream sends (key order, hex, compact), the two endpoints, the User-Agent, and every
-- way the webhook can fail (timeout, 500, garbage, missing keys, nobody listening) denying;
-- GET <url> for GetMeta's facts.
local loop = require('loop')
local server = require('moonstack.http.server')
local task = require('moonstack.core.task')
local auth = require('moonstack.kms.auth')

local BOOT = {
  teeVariant = 'dstack-tdx',
  mrAggregated = ('0A'):rep(32),
  osImageHash = '0x' .. ('0b'):rep(32),
  mrSystem = ('0c'):rep(32),
  appId = ('0d'):rep(20),
  composeHash = ('0e'):rep(32),
  instanceId = ('0f'):rep(20),
  deviceId = ('10'):rep(32),
  tcbStatus = 'SWHardeningNeeded',
  advisoryIds = { 'INTEL-SA-00828', 'INTEL-SA-"q"' },
}

-- What upstream's serde_json writes for BOOT (keyProviderInfo missing = empty bytes).
local EXPECTED = '{"teeVariant":"dstack-tdx","mrAggregated":"' .. ('0a'):rep(32) ..
  '","osImageHash":"' .. ('0b'):rep(32) .. '","mrSystem":"' .. ('0c'):rep(32) ..
  '","appId":"' .. ('0d'):rep(20) .. '","composeHash":"' .. ('0e'):rep(32) ..
  '","instanceId":"' .. ('0f'):rep(20) .. '","deviceId":"' .. ('10'):rep(32) ..
  '","keyProviderInfo":"","tcbStatus":"SWHardeningNeeded",' ..
  '"advisoryIds":["INTEL-SA-00828","INTEL-SA-\\"q\\""]}'

local function decide(backend, scope, info)
  return loop.run_task(function()
    if scope == 'kms' then
      return backend:authorize_kms(info or BOOT)
    end
    return backend:authorize_app(info or BOOT)
  end, 5000)
end

describe('kms auth webhook', function()
  local srv, base, seen, answer

  setup(function()
    seen = {}
    srv = server.new({ name = 'webhook-spec', listen = { host = '127.0.0.1', port = 0 } })
    srv:post('/hook/bootAuth/:scope', function(req)
      seen[#seen + 1] = { scope = req.params.scope, body = req.body, ua = req:header('user-agent'),
        ctype = req.headers['content-type'] }
      return answer(req)
    end)
    srv:get('/hook', function()
      return 200, { status = 'ok', kmsContractAddr = '0x' .. ('ab'):rep(20), gatewayAppId = 'gw-7',
        chainId = 31337, appImplementation = '0x' .. ('cd'):rep(20) }
    end)
    srv:get('/broken', function()
      return 503, 'down'
    end)
    srv:post('/slow/bootAuth/app', function()
      task.sleep(1500)
      return 200, { isAllowed = true, gatewayAppId = 'any', reason = 'late' }
    end)
    assert(srv:listen())
    base = 'http://127.0.0.1:' .. srv:port()
  end)

  teardown(function()
    srv:close()
    loop.settle(30)
  end)

  before_each(function()
    seen = {}
  end)

  it('POSTs the exact upstream BootInfo JSON to bootAuth/app and takes an allow', function()
    answer = function(req)
      if req.body ~= EXPECTED then
        return 200, { isAllowed = false, gatewayAppId = '', reason = 'unexpected body' }
      end
      return 200, { isAllowed = true, gatewayAppId = 'gw-app', reason = 'ok by hook' }
    end
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/hook' }))
    local d = decide(b, 'app')
    assert.equal(EXPECTED, seen[1].body)
    assert.same({ allow = true, reason = 'ok by hook', gateway_app_id = 'gw-app' }, d)
    assert.equal('app', seen[1].scope)
    assert.matches('^dstack%-kms/', seen[1].ua)
    assert.equal('application/json', seen[1].ctype)
    b:close()
  end)

  it('uses bootAuth/kms for KMS checks, with or without a trailing slash', function()
    answer = function() return 200, { isAllowed = true, gatewayAppId = '', reason = 'kms ok' } end
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/hook/' }))
    local d = decide(b, 'kms')
    assert.equal('kms', seen[1].scope)
    assert.equal(EXPECTED, seen[1].body)
    assert.is_true(d.allow)
    assert.equal('kms ok', d.reason)
  end)

  it('passes a deny through with its reason and no gateway app id', function()
    answer = function()
      return 200, { isAllowed = false, gatewayAppId = 'gw', reason = 'compose hash not registered' }
    end
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/hook' }))
    assert.same({ allow = false, reason = 'compose hash not registered' }, decide(b, 'app'))
  end)

  it('denies on HTTP 500, even with an allowing body', function()
    answer = function() return 500, { isAllowed = true, gatewayAppId = 'any', reason = 'x' } end
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/hook' }))
    local d = decide(b, 'app')
    assert.is_false(d.allow)
    assert.matches('returned HTTP 500', d.reason)
    assert.equal(1, b:status().errors)
  end)

  it('denies on garbage', function()
    answer = function() return 200, 'isAllowed: true' end
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/hook' }))
    local d = decide(b, 'app')
    assert.is_false(d.allow)
    assert.matches('invalid JSON', d.reason)
  end)

  it('denies an answer missing a key or with a mistyped one', function()
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/hook' }))
    answer = function() return 200, { isAllowed = true, reason = 'no gateway id' } end
    local d = decide(b, 'app')
    assert.is_false(d.allow)
    assert.matches('lacks gatewayAppId', d.reason)
    answer = function() return 200, { isAllowed = 'true', gatewayAppId = '', reason = '' } end
    d = decide(b, 'app')
    assert.is_false(d.allow)
    assert.matches('lacks isAllowed', d.reason)
  end)

  it('denies on timeout', function()
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/slow', timeout_ms = 200 }))
    local t0 = require('luv').now()
    local d = decide(b, 'app')
    assert.is_false(d.allow)
    assert.matches('unreachable', d.reason)
    assert.is_true(require('luv').now() - t0 < 1400)
    loop.settle(1500) -- let the slow handler finish
  end)

  it('denies when nobody listens', function()
    local b = assert(auth.new({ kind = 'webhook', url = 'http://127.0.0.1:1/x', timeout_ms = 1000 }))
    local d = decide(b, 'app')
    assert.is_false(d.allow)
    assert.matches('unreachable', d.reason)
  end)

  it('denies invalid boot info without calling the webhook', function()
    answer = function() return 200, { isAllowed = true, gatewayAppId = '', reason = '' } end
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/hook' }))
    local bad = {}
    for k, v in pairs(BOOT) do
      bad[k] = v
    end
    bad.composeHash = 'xyz'
    local d = decide(b, 'app', bad)
    assert.is_false(d.allow)
    assert.matches('composeHash is not hex', d.reason)
    assert.equal(0, #seen)
  end)

  it("gives GetMeta the facts of GET <url>, and fails when it cannot", function()
    local b = assert(auth.new({ kind = 'webhook', url = base .. '/hook' }))
    local info = assert(loop.run_task(function() return b:info() end, 5000))
    assert.same({ gateway_app_id = 'gw-7', kms_contract_address = '0x' .. ('ab'):rep(20), chain_id = 31337,
      app_auth_implementation = '0x' .. ('cd'):rep(20) }, info)
    local broken = assert(auth.new({ kind = 'webhook', url = base .. '/broken' }))
    local r = loop.run_task(function() return { broken:info() } end, 5000)
    assert.is_nil(r[1])
    assert.equal('EUNAVAILABLE', r[3])
    assert.truthy(r[2]:find('returned HTTP 503', 1, true), r[2])
    -- backends without facts give none
    auth.register('plain_test', function()
      return { authorize = function() return { allow = true, reason = 'x' } end }
    end)
    assert.same({}, assert(auth.new({ kind = 'plain_test' })):info())
  end)

  it('refuses bad configurations', function()
    local b, err, code = auth.new({ kind = 'webhook', url = 'ftp://x' })
    assert.is_nil(b)
    assert.equal('EINVAL', code)
    assert.matches('url', err)
    assert.is_nil((auth.new({ kind = 'nope' })))
    assert.has_error(function() auth.new('webhook') end)
  end)
end)
