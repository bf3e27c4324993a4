-- SPDX-License-Identifier: Apache-2.0
-- Policy decision cost: a KMS-style on_auth policy loaded by moonstack.policy.host, asked
-- COUNT times about a BootInfo-shaped input by CONCURRENCY tasks at once. Prints one
-- "key value" line per figure: decisions, errors, p50_us, p99_us, max_us, dps (decisions
-- per second, wall clock). Usage: moonstack run decide.lua COUNT CONCURRENCY [WORKERS]
local uv = require('luv')
local task = require('moonstack.core.task')
local phost = require('moonstack.policy.host')

local count = tonumber(arg[1]) or 20000
local conc = tonumber(arg[2]) or 1
local workers = tonumber(arg[3])

local POLICY = [[
local ALLOWED = { [('33'):rep(32)] = true }
return { name = 'bench', version = '1',
  on_auth = function(b)
    if b.tcbStatus ~= 'UpToDate' then return { allow = false, reason = 'tcb ' .. b.tcbStatus } end
    if ALLOWED[b.composeHash] then return { allow = true, reason = 'bench', gateway_app_id = 'any' } end
    return { allow = false, reason = 'not the bench app' }
  end,
  tests = { { hook = 'on_auth', input = { tcbStatus = 'UpToDate', composeHash = ('33'):rep(32) },
    expect = { allow = true } } } }
]]

local function boot(i)
  return { teeVariant = 'dstack-tdx', composeHash = ('33'):rep(32), appId = ('0d'):rep(20),
    instanceId = ('%040x'):format(i), mrAggregated = ('0a'):rep(32), deviceId = ('d2'):rep(32),
    tcbStatus = 'UpToDate', keyProviderInfo = '', osImageHash = ('1f'):rep(32), advisoryIds = {},
    now = os.time() }
end

local result
task.spawn(function()
  local h = phost.new({ name = 'bench', workers = workers or conc })
  assert(h:load_string(POLICY, '=bench'))
  -- warm up (JIT traces of the host side, worker start)
  for i = 1, 200 do
    assert(h:decide('on_auth', boot(i)).allow)
  end
  local lat, errors, next_i = {}, 0, 0
  local t0 = uv.hrtime()
  local done = 0
  local runners = {}
  for r = 1, conc do
    runners[r] = task.spawn(function()
      while next_i < count do
        next_i = next_i + 1
        local input = boot(next_i)
        local s = uv.hrtime()
        local d = h:decide('on_auth', input)
        lat[#lat + 1] = (uv.hrtime() - s) / 1e3
        if not d.allow then
          errors = errors + 1
        end
      end
      done = done + 1
    end)
  end
  for _, r in ipairs(runners) do
    r:join()
  end
  local secs = (uv.hrtime() - t0) / 1e9
  table.sort(lat)
  local function pct(p)
    return lat[math.max(1, math.ceil(#lat * p))]
  end
  result = { decisions = #lat, errors = errors, p50_us = pct(0.5), p99_us = pct(0.99),
    max_us = lat[#lat], dps = #lat / secs }
  h:close()
end)

local timer = uv.new_timer()
timer:start(0, 50, function()
  if result then
    timer:close()
    for _, k in ipairs({ 'decisions', 'errors', 'p50_us', 'p99_us', 'max_us', 'dps' }) do
      print(('%s %.1f'):format(k, result[k]))
    end
  end
end)
