-- SPDX-License-Identifier: Apache-2.0
-- moonstack.kms.auth: BootInfo normalisation (hex, types, unknown keys) and the wrapper's
-- contract (a backend that raises or answers nonsense denies; gateway_app_id only on allow).
local bootinfo = require('moonstack.kms.auth.bootinfo')
local auth = require('moonstack.kms.auth')

local function base()
  return { teeVariant = 'dstack-tdx', tcbStatus = 'UpToDate' }
end

describe('kms auth bootinfo', function()
  it('normalises hex and fills defaults', function()
    local t = base()
    t.appId = '0xABcd'
    local n = assert(bootinfo.normalize(t))
    assert.equal('abcd', n.appId)
    assert.equal('', n.composeHash)
    assert.same({}, n.advisoryIds)
    assert.equal('{"teeVariant":"dstack-tdx","mrAggregated":"","osImageHash":"","mrSystem":"",' ..
      '"appId":"abcd","composeHash":"","instanceId":"","deviceId":"","keyProviderInfo":"",' ..
      '"tcbStatus":"UpToDate","advisoryIds":[]}', bootinfo.encode(n))
  end)

  it('refuses bad input with EINVAL naming the field', function()
    local cases = {
      { { appId = 'abc' }, 'appId is not hex' },
      { { appId = 'zz' }, 'appId is not hex' },
      { { appId = 12 }, 'appId must be a hex string' },
      { { tcbStatus = false }, 'tcbStatus must be a string' },
      { { advisoryIds = { 'a', 3 } }, 'advisoryIds%[2%] must be a string' },
      { { app_id = 'aa' }, "unknown field 'app_id'" },
    }
    for _, c in ipairs(cases) do
      local t = base()
      for k, v in pairs(c[1]) do
        t[k] = v
      end
      local n, err, code = bootinfo.normalize(t)
      assert.is_nil(n)
      assert.equal('EINVAL', code)
      assert.matches(c[2], err)
    end
    assert.is_nil((bootinfo.normalize({ tcbStatus = 'UpToDate' })))
    assert.is_nil((bootinfo.normalize('x')))
  end)
end)

describe('kms auth wrapper', function()
  it('turns a raising or malformed backend into a deny', function()
    auth.register('spec_raise', function()
      return { authorize = function() error('boom') end }
    end)
    auth.register('spec_junk', function()
      return { authorize = function() return { allow = 'yes' } end }
    end)
    auth.register('spec_deny_gw', function()
      return { authorize = function(_, info, scope)
        return { allow = false, reason = scope .. ':' .. info.appId, gateway_app_id = 'x' }
      end }
    end)
    local b = assert(auth.new({ kind = 'spec_raise' }))
    assert.same({ allow = false, reason = 'auth backend spec_raise failed' }, b:authorize_app(base()))
    b = assert(auth.new({ kind = 'spec_junk' }))
    assert.same({ allow = false, reason = 'auth backend returned no valid decision' },
      b:authorize_kms(base()))
    b = assert(auth.new({ kind = 'spec_deny_gw' }))
    local t = base()
    t.appId = 'AA'
    assert.same({ allow = false, reason = 'kms:aa' }, b:authorize_kms(t))
    assert.equal('spec_deny_gw', b:status().kind)
    b:close()
    b:close()
  end)

  it('refuses unknown kinds and misuse', function()
    local b, err, code = auth.new({ kind = '../x' })
    assert.is_nil(b)
    assert.equal('EINVAL', code)
    assert.matches('unknown auth kind', err)
    assert.has_error(function() auth.register('a b', function() end) end)
  end)
end)
