-- SPDX-License-Identifier: Apache-2.0
-- The `eth` KMS auth backend's failure paths, which a healthy chain never produces (the real
-- chain's answers are tested in tests/functional/kms_eth_test.sh against hardhat): a local
-- moonstack HTTP server stands in for the node and answers garbage, an error object with
-- revert data, the wrong id, ABI data with an offset outside it, nothing (timeout), or nobody
-- listens. Every one denies with a reason saying what went wrong; none raises; the call data
-- the backend sends is the AppBootInfo call ethers would send.
local loop = require('loop')
local cjson = require('cjson')
local server = require('moonstack.http.server')
local task = require('moonstack.core.task')
local crypto = require('moonstack.crypto')
local abi = require('moonstack.eth.abi')
local auth = require('moonstack.kms.auth')
local eth = require('moonstack.kms.auth.eth')

local CONTRACT = '0x' .. ('ab'):rep(20)
local BOOT = {
  teeVariant = 'dstack-tdx', mrAggregated = ('0a'):rep(32), osImageHash = ('0b'):rep(32),
  mrSystem = ('0c'):rep(32), appId = ('0d'):rep(19), composeHash = ('0e'):rep(32),
  instanceId = '', deviceId = ('10'):rep(32), tcbStatus = 'UpToDate', advisoryIds = { 'INTEL-SA-1' },
}

local function decide(backend, scope)
  return loop.run_task(function()
    if scope == 'kms' then
      return backend:authorize_kms(BOOT)
    end
    return backend:authorize_app(BOOT)
  end, 8000)
end

local function word_bool(b)
  return ('\0'):rep(31) .. (b and '\1' or '\0')
end

describe('kms auth eth', function()
  local srv, base, answer, seen

  setup(function()
    srv = server.new({ name = 'eth-spec', listen = { host = '127.0.0.1', port = 0 } })
    srv:post('/rpc', function(req)
      local call = cjson.decode(req.body)
      seen[#seen + 1] = call
      return answer(call)
    end)
    assert(srv:listen())
    base = 'http://127.0.0.1:' .. srv:port() .. '/rpc'
  end)

  teardown(function()
    srv:close()
    loop.settle(30)
  end)

  before_each(function()
    seen = {}
  end)

  local function result(call, data)
    return 200, { jsonrpc = '2.0', id = call.id, result = '0x' .. crypto.hex(data) }
  end

  it('sends isAppAllowed(AppBootInfo) with short hex left-padded, and takes an allow', function()
    answer = function(call)
      local data = crypto.unhex(call.params[1].data:sub(3))
      if data:sub(1, 4) == abi.selector('gatewayAppId()') then
        return result(call, assert(abi.encode({ 'string' }, { 'gw-9' })))
      end
      return result(call, assert(abi.encode({ 'bool', 'string' }, { true, '' })))
    end
    local b = assert(auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT }))
    local d = decide(b, 'app')
    assert.are.same({ allow = true, reason = '', gateway_app_id = 'gw-9' }, d)
    assert.are.equal('eth_call', seen[1].method)
    assert.are.equal(CONTRACT, seen[1].params[1].to)
    assert.are.equal('latest', seen[1].params[2])
    local data = crypto.unhex(seen[1].params[1].data:sub(3))
    assert.are.equal('1e079198', crypto.hex(data:sub(1, 4)))
    local t = assert(abi.decode({ abi.APP_BOOT_INFO }, data:sub(5)))[1]
    assert.are.same({ '0x00' .. ('0d'):rep(19), '0x' .. ('0e'):rep(32), '0x' .. ('00'):rep(20),
      '0x' .. ('10'):rep(32), '0x' .. ('0a'):rep(32), '0x' .. ('0c'):rep(32), '0x' .. ('0b'):rep(32),
      'UpToDate', { 'INTEL-SA-1' } }, t)
  end)

  it('sends isKmsAllowed for KMS checks and passes the contract reason on', function()
    answer = function(call)
      return result(call, assert(abi.encode({ 'bool', 'string' },
        { false, 'KMS is not allowed to boot on this device' })))
    end
    local b = assert(auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT }))
    local d = decide(b, 'kms')
    assert.are.same({ allow = false, reason = 'KMS is not allowed to boot on this device' }, d)
    assert.are.equal('e067ec9d', seen[1].params[1].data:sub(3, 10))
  end)

  local FAILURES = {
    { 'HTTP 500', function() return 500, 'boom' end, 'chain unreachable: .*HTTP 500' },
    { 'not JSON', function() return 200, 'garbage{' end, 'not a JSON%-RPC 2.0 answer' },
    { 'the wrong id', function(c) return 200, { jsonrpc = '2.0', id = c.id + 7, result = '0x' } end,
      'answer for id' },
    { 'a revert with Error(string)', function(c)
      return 200, { jsonrpc = '2.0', id = c.id, error = { code = 3, message = 'execution reverted',
        data = '0x' .. crypto.hex(abi.selector('Error(string)')
          .. assert(abi.encode({ 'string' }, { 'nope' }))) } }
    end, 'reverted isAppAllowed: nope' },
    { 'an empty answer (no contract)', function(c) return result(c, '') end,
      'no contract answering isAppAllowed' },
    { 'an offset outside the data', function(c)
      return result(c, word_bool(true) .. ('\0'):rep(28) .. '\0\0\16\0' .. ('\0'):rep(32))
    end, 'malformed data: EABI' },
    { 'a bool that is 2', function(c)
      return result(c, ('\0'):rep(31) .. '\2' .. assert(abi.encode({ 'string' }, { '' })))
    end, 'malformed data: .*neither 0 nor 1' },
    { 'a result that is not hex', function(c) return 200, { jsonrpc = '2.0', id = c.id, result = 'zz' } end,
      'not hex data' },
    { 'allowed, then gatewayAppId() fails', function(c)
      local data = crypto.unhex(c.params[1].data:sub(3))
      if data:sub(1, 4) == abi.selector('gatewayAppId()') then
        return 500, 'down'
      end
      return result(c, assert(abi.encode({ 'bool', 'string' }, { true, '' })))
    end, 'allowed, but gatewayAppId%(%) failed' },
  }
  for _, f in ipairs(FAILURES) do
    it('denies on ' .. f[1], function()
      answer = f[2]
      local b = assert(auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT }))
      local d = decide(b, 'app')
      assert.is_false(d.allow)
      assert.is_nil(d.gateway_app_id)
      assert.matches('^eth auth: ', d.reason)
      assert.matches(f[3], d.reason)
      assert.are.equal(1, b:status().errors)
    end)
  end

  it('decides many requests at once, each answer matched to its own call', function()
    answer = function(call)
      task.sleep(math.random(1, 40))
      local data = crypto.unhex(call.params[1].data:sub(3))
      if data:sub(1, 4) == abi.selector('gatewayAppId()') then
        return result(call, assert(abi.encode({ 'string' }, { 'gw' })))
      end
      return result(call, assert(abi.encode({ 'bool', 'string' }, { true, '' })))
    end
    local b = assert(auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT }))
    local out = {}
    for i = 1, 12 do
      task.spawn(function()
        local d = b:authorize_app(BOOT) -- (then the index: the call yields)
        d.i = i
        out[#out + 1] = d
      end)
    end
    loop.run_until(function() return #out == 12 end, 8000)
    assert.are.equal(12, #out)
    for _, d in ipairs(out) do
      assert.are.same({ allow = true, reason = '', gateway_app_id = 'gw' },
        { allow = d.allow, reason = d.reason, gateway_app_id = d.gateway_app_id })
    end
    assert.are.equal(0, b:status().errors)
  end)

  it('checks the chain id when configured, and reads confirmations blocks below the head', function()
    answer = function(call)
      if call.method == 'eth_chainId' then
        return 200, { jsonrpc = '2.0', id = call.id, result = '0x7a69' }
      elseif call.method == 'eth_blockNumber' then
        return 200, { jsonrpc = '2.0', id = call.id, result = '0x10' }
      end
      local data = crypto.unhex(call.params[1].data:sub(3))
      if data:sub(1, 4) == abi.selector('gatewayAppId()') then
        return result(call, assert(abi.encode({ 'string' }, { 'gw' })))
      end
      return result(call, assert(abi.encode({ 'bool', 'string' }, { true, '' })))
    end
    local b = assert(auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT, chain_id = 31337,
      confirmations = 3 }))
    assert.is_true(decide(b, 'app').allow)
    local methods, blocks = {}, {}
    for _, c in ipairs(seen) do
      methods[#methods + 1] = c.method
      if c.method == 'eth_call' then
        blocks[#blocks + 1] = c.params[2]
      end
    end
    assert.are.same({ 'eth_chainId', 'eth_blockNumber', 'eth_call', 'eth_call' }, methods)
    assert.are.same({ '0xd', '0xd' }, blocks) -- 16 - 3, for the decision and its gateway id
    seen = {}
    b = assert(auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT, chain_id = 1 }))
    local d = decide(b, 'kms')
    assert.is_false(d.allow)
    assert.matches('is on chain 31337, not the configured chain_id 1', d.reason)
    assert.are.same({ 'eth_chainId' }, { seen[1].method, seen[2] and seen[2].method })
    local _, err = auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT, confirmations = -1 })
    assert.matches('auth.confirmations must be a non%-negative integer', err)
  end)

  it('denies on a timeout, within it', function()
    answer = function(c)
      task.sleep(3000)
      return result(c, assert(abi.encode({ 'bool', 'string' }, { true, '' })))
    end
    local b = assert(auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT, timeout_ms = 300 }))
    local t0 = require('luv').hrtime()
    local d = decide(b, 'app')
    local ms = (require('luv').hrtime() - t0) / 1e6
    assert.is_false(d.allow)
    assert.matches('chain unreachable', d.reason)
    assert.is_true(ms < 2000, ms)
  end)

  it('denies when nobody listens', function()
    local b = assert(auth.new({ kind = 'eth', rpc_url = 'http://127.0.0.1:1/', kms_contract = CONTRACT }))
    local d = decide(b, 'kms')
    assert.is_false(d.allow)
    assert.matches('eth auth: chain unreachable', d.reason)
  end)

  it('denies a boot info that does not fit the contract, without asking', function()
    local b = assert(auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT }))
    local saved = BOOT.appId
    BOOT.appId = ('0d'):rep(21)
    local d = decide(b, 'app')
    BOOT.appId = saved
    assert.is_false(d.allow)
    assert.matches('appId is longer than 20 bytes', d.reason)
    assert.are.equal(0, #seen)
  end)

  it('refuses bad configurations naming the field', function()
    local _, err = auth.new({ kind = 'eth', rpc_url = base })
    assert.matches('EINVAL: auth.kms_contract', err)
    _, err = auth.new({ kind = 'eth', rpc_url = 'x', kms_contract = CONTRACT })
    assert.matches('EINVAL: auth.rpc_url', err)
    _, err = auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT, timeout_ms = -1 })
    assert.matches('EINVAL: auth.timeout_ms', err)
    _, err = auth.new({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT, url = 'x' })
    assert.matches('auth.url is not a key of the eth backend', err)
    assert.is_true(eth.check({ kind = 'eth', rpc_url = base, kms_contract = CONTRACT, timeout_ms = 5 }))
    local cfg, cerr = require('moonstack.kms.config').validate({ auth = { kind = 'eth', rpc_url = base,
      kms_contract = '0x1' } })
    assert.is_nil(cfg)
    assert.matches('auth.kms_contract must be the DstackKms contract address', cerr)
  end)
end)
