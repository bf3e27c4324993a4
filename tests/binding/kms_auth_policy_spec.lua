-- SPDX-License-Identifier: Apache-2.0
-- The `policy` KMS auth backend over the real policy VM and a real file: decisions for apps
-- and KMS instances, the shipped example policies, reload() while decisions flow (no failed
-- decision, then the new answers), a broken file refused with the old policy deciding, and a
-- reload triggered by changing the file on disk; decisions and reloads on the event bus.
local loop = require('loop')
local fixtures = require('fixtures')
local task = require('moonstack.core.task')
local fs = require('moonstack.core.fs')
local auth = require('moonstack.kms.auth')
local events = require('moonstack.core.events')

local A, B = ('aa'):rep(32), ('bb'):rep(32)

local function boot(compose)
  return { teeVariant = 'dstack-tdx', composeHash = compose, appId = ('0d'):rep(20),
    mrAggregated = ('0a'):rep(32), deviceId = ('d2'):rep(32), tcbStatus = 'UpToDate',
    osImageHash = ('1f2e3d4c5b6a7988' .. ('0f1e2d3c4b5a6978'):rep(3)), advisoryIds = {} }
end

-- A policy allowing `allowed` compose hash, tagging reasons with `tag`.
local function policy(tag, allowed, extra)
  return ([[
return {
  name = 'spec', version = '%s',
  on_auth = function(b)
    if b.composeHash == '%s' then
      return { allow = true, reason = '%s allow', gateway_app_id = 'gw-%s' }
    end
    return { allow = false, reason = '%s deny' }
  end,
  %s
  tests = { { hook = 'on_auth', input = { composeHash = '%s' }, expect = { allow = true } } },
}
]]):format(tag, allowed, tag, tag, tag, extra or '', allowed)
end

local KMS_HOOK = [[
  on_kms_auth = function(b)
    return { allow = b.mrAggregated == ']] .. ('0a'):rep(32) .. [[', reason = 'kms at ' .. type(b.now) }
  end,]]

-- The backend waits on its policy workers: create it inside a task.
local function new_backend(cfg)
  return loop.run_task(function()
    return auth.new(cfg)
  end, 10000)
end

local function decide(backend, scope, info)
  return loop.run_task(function()
    if scope == 'kms' then
      return backend:authorize_kms(info)
    end
    return backend:authorize_app(info)
  end, 5000)
end

describe('kms auth policy', function()
  local dir, path

  before_each(function()
    dir = fixtures.tmpdir('kmsauth', true)
    path = dir .. '/auth.lua'
  end)

  after_each(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  it('decides for apps and KMS instances with the policy hooks', function()
    assert(fs.write_atomic(path, policy('v1', A, KMS_HOOK)))
    local b = assert(new_backend({ kind = 'policy', path = path, watch = false }))
    assert.same({ allow = true, reason = 'v1 allow', gateway_app_id = 'gw-v1' }, decide(b, 'app', boot(A)))
    assert.same({ allow = false, reason = 'v1 deny' }, decide(b, 'app', boot(B)))
    assert.same({ allow = true, reason = 'kms at number' }, decide(b, 'kms', boot(B)))
    local st = b:status()
    assert.equal('policy', st.kind)
    assert.equal('v1', st.version)
    assert.matches('^%x+$', st.sha256)
    assert.equal(3, st.decisions)
    assert.equal(1, st.denied)
    b:close()
  end)

  it('tries the policy without side effects (the REPL\'s policy.test, M11)', function()
    assert(fs.write_atomic(path, policy('v1', A, KMS_HOOK)))
    local b = assert(new_backend({ kind = 'policy', path = path, watch = false }))
    local seen = 0
    local sub = events.subscribe('kms.decision', function() seen = seen + 1 end)
    local d = loop.run_task(function() return b:test(boot(A)) end, 5000)
    assert.is_true(d.allow)
    assert.equal('v1 allow', d.reason)
    assert.equal('v1', d.policy_version)
    assert.matches('^%x+$', d.policy_sha256)
    d = loop.run_task(function() return b:test(boot(B), 'kms') end, 5000)
    assert.same({ true, 'kms at number' }, { d.allow, d.reason })
    local none, err, code = loop.run_task(function() return b:test({ bogus = 1 }) end, 5000)
    assert.is_nil(none)
    assert.equal('EINVAL', code)
    assert.matches('unknown field', err)
    assert.equal(0, seen)
    assert.equal(0, b:status().decisions)
    sub:close()
    b:close()
    local dev = assert(auth.new({ kind = 'dev' }))
    assert.same({ true, 'dev mode' }, { dev:test(boot(A)).allow, dev:test(boot(A)).reason })
  end)

  it('denies KMS checks when the policy has no on_kms_auth', function()
    assert(fs.write_atomic(path, policy('v1', A)))
    local b = assert(new_backend({ kind = 'policy', path = path, watch = false }))
    local d = decide(b, 'kms', boot(A))
    assert.is_false(d.allow)
    assert.equal('policy spec has no on_kms_auth hook', d.reason)
    b:close()
  end)

  it('refuses to start on a broken or missing file', function()
    assert(fs.write_atomic(path, 'return {'))
    local b, err = new_backend({ kind = 'policy', path = path, watch = false })
    assert.is_nil(b)
    assert.is_string(err)
    local b2, _, code = new_backend({ kind = 'policy', path = dir .. '/none.lua', watch = false })
    assert.is_nil(b2)
    assert.equal('ENOENT', code)
  end)

  it('runs the shipped examples', function()
    local ex = os.getenv('MOONSTACK_SRC') .. '/examples/policies/'
    local b = assert(new_backend({ kind = 'policy', path = ex .. 'tcb-grace-period.lua', watch = false }))
    local info = boot(A)
    assert.is_true(decide(b, 'app', info).allow)
    info.tcbStatus = 'OutOfDate' -- its grace period ends 2027-01-01; `now` is the real clock
    assert.equal(os.time() < 1798761600, decide(b, 'app', info).allow)
    info.tcbStatus = 'Revoked'
    assert.same({ allow = false, reason = 'TCB status Revoked is not accepted' }, decide(b, 'kms', info))
    b:close()
    b = assert(new_backend({ kind = 'policy', path = ex .. 'device-allow-list.lua', watch = false }))
    assert.same({ allow = true, reason = 'KMS device allowed' }, decide(b, 'kms', boot(A)))
    info = boot(A)
    info.deviceId = ('00'):rep(32)
    assert.is_false(decide(b, 'app', info).allow)
    b:close()
    b = assert(new_backend({ kind = 'policy', path = ex .. 'allow-apps-and-images.lua', watch = false }))
    local d = decide(b, 'app', boot(A))
    assert.same({ allow = false, reason = 'app ' .. ('0d'):rep(20) .. ' is not registered' }, d)
    b:close()
  end)

  it('swaps policies while decisions flow without a failed decision; a broken file is refused', function()
    assert(fs.write_atomic(path, policy('v1', A)))
    local b = assert(new_backend({ kind = 'policy', path = path, watch = false }))
    local results, stop = {}, false
    local t = task.spawn(function()
      while not stop do
        results[#results + 1] = b:authorize_app(boot(A))
        task.sleep(1)
      end
    end)
    local reloaded, broken_err, after_broken
    loop.run_task(function()
      task.sleep(30)
      assert(fs.write_atomic(path, policy('v2', B)))
      reloaded = b:reload()
      task.sleep(30)
      assert(fs.write_atomic(path, 'return { name = "spec", version = "v3", on_auth = function( }'))
      local ok
      ok, broken_err = b:reload()
      assert.is_nil(ok)
      after_broken = #results
      task.sleep(30)
      stop = true
    end, 5000)
    loop.run_until(function() return t:status() == 'done' end, 1000)
    assert.equal('v2', reloaded.version)
    assert.is_string(broken_err)
    local seen = {}
    for i, d in ipairs(results) do
      if d.reason == 'v1 allow' then
        assert.is_nil(seen.v2, 'v1 answer after v2 at ' .. i)
        seen.v1 = true
      elseif d.reason == 'v2 deny' then
        seen.v2 = true
      else
        error('unexpected decision ' .. require('cjson').encode(d))
      end
    end
    assert.is_true(seen.v1 and seen.v2)
    assert.is_true(#results > after_broken) -- decisions went on after the broken reload
    assert.equal('v2 deny', results[#results].reason)
    local st = b:status()
    assert.equal('v2', st.version)
    assert.equal(1, st.reload_failures)
    assert.equal(0, st.errors)
    b:close()
  end)

  it('reloads when the file changes on disk, and ignores a broken change', function()
    assert(fs.write_atomic(path, policy('v1', A)))
    local b = assert(new_backend({ kind = 'policy', path = path, debounce_ms = 20 }))
    assert.is_true(b:status().watching)
    assert.is_true(decide(b, 'app', boot(A)).allow)
    assert(fs.write_atomic(path, policy('v2', B)))
    assert.is_true(loop.run_until(function() return b:status().version == 'v2' end, 3000))
    assert.same({ allow = false, reason = 'v2 deny' }, decide(b, 'app', boot(A)))
    -- a broken edit in place (not atomic): refused, v2 keeps deciding
    local f = assert(io.open(path, 'w'))
    f:write('return { name = "spec", version = "v3" }')
    f:close()
    assert.is_true(loop.run_until(function() return b:status().reload_failures >= 1 end, 3000))
    assert.equal('v2', b:status().version)
    assert.same({ allow = true, reason = 'v2 allow', gateway_app_id = 'gw-v2' }, decide(b, 'app', boot(B)))
    b:close()
    loop.settle(30)
  end)

  it('publishes every decision and every reload on the event bus', function()
    local got = {}
    local sub = events.subscribe(nil, function(ev)
      if ev.topic == 'kms.decision' or ev.topic == 'policy.reload' then
        got[#got + 1] = ev
      end
    end)
    local first = events.last_seq()
    assert(fs.write_atomic(path, policy('v1', A, KMS_HOOK)))
    local b = assert(new_backend({ kind = 'policy', path = path, watch = false }))
    decide(b, 'app', boot(A))
    decide(b, 'kms', boot(B))
    decide(b, 'app', { appId = 'not hex' })
    assert(fs.write_atomic(path, 'return {}'))
    assert.is_nil(loop.run_task(function() return b:reload() end, 10000))
    sub:close()
    b:close()
    assert.same({ 'policy.reload', 'kms.decision', 'kms.decision', 'kms.decision', 'policy.reload' },
      { got[1].topic, got[2].topic, got[3].topic, got[4].topic, got[5].topic })
    local load = got[1].data
    assert.same({ host = 'kms-auth', ok = true, name = 'spec', version = 'v1', path = path, tests = 1 },
      { host = load.host, ok = load.ok, name = load.name, version = load.version, path = load.path,
        tests = load.tests })
    assert.matches('^%x+$', load.sha256)
    assert.same({ backend = 'policy', scope = 'app', app_id = ('0d'):rep(20), compose_hash = A,
      instance_id = '', allowed = true, reason = 'v1 allow', policy = 'spec', policy_version = 'v1',
      policy_sha256 = load.sha256 }, got[2].data)
    assert.equal('kms', got[3].data.scope)
    assert.is_true(got[3].data.allowed)
    assert.same({ backend = 'policy', scope = 'app', allowed = false,
      reason = got[4].data.reason }, got[4].data) -- invalid boot info: no identifiers, no policy
    assert.matches('^invalid boot info', got[4].data.reason)
    assert.is_false(got[5].data.ok)
    assert.is_string(got[5].data.error)
    assert.equal(load.sha256, got[5].data.active_sha256)
    for i = 2, 5 do
      assert.is_true(got[i].seq > got[i - 1].seq)
    end
    assert.is_true(got[1].seq > first)
    -- the ring has them for a dashboard that connects later
    local kept = events.since(first, 'kms.')
    assert.equal(3, #kept)
    assert.equal(got[2].seq, kept[1].seq)
  end)
end)
