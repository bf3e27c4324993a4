-- SPDX-License-Identifier: Apache-2.0
-- Hostile policies (issue M7, items 2 and 3): what the in-process sandbox could not stop. Each
-- crashed the daemon (a C stack overflow inside LuaJIT) or held its loop for seconds to
-- minutes (a C call the instruction hook cannot interrupt). Shared by the specs and by the
-- functional test against the real KMS daemon (tests/functional/kms_policy_isolation_test.sh).
local M = {}

local BIG = 2 ^ 20

--- Decision-time cases: `body` runs in on_auth; the decision must be a deny with one of `codes`.
M.decisions = {
  { name = 'gsub recursion (C stack overflow)', codes = { ECRASH = true },
    body = [[local f; f = function() return (("x"):gsub("x", f)) end; f()]] },
  { name = 'gsub with a table whose __index recurses', codes = { ECRASH = true },
    body = [[local t; t = setmetatable({}, { __index = function() return (("x"):gsub("x", t)) end })
      local _ = ("x"):gsub("x", t)]] },
  { name = 'gsub recursion inside pcall', codes = { ECRASH = true },
    body = [[local f; f = function() return (("x"):gsub("x", f)) end; pcall(f)]] },
  { name = 'gsub recursion from a table.sort comparator', codes = { ECRASH = true },
    body = [[local f; f = function() return (("x"):gsub("x", f)) end
      table.sort({ 3, 2, 1 }, function(a, b) f() return a < b end)]] },
  -- exponential work, and deep: it ends in a timeout, or in LuaJIT's own C stack check (an error)
  { name = 'table.sort comparator that sorts again', codes = { ECRASH = true, ETIMEDOUT = true,
    EPOLICY = true },
    body = [[local cmp; cmp = function(a, b) table.sort({ 3, 2, 1 }, cmp) return a < b end
      table.sort({ 3, 2, 1 }, cmp)]] },
  { name = "backtracking pattern ('a?' x 28)", codes = { ETIMEDOUT = true },
    body = [[local r = ('a'):rep(28):find(('a?'):rep(28) .. ('a'):rep(28))]] },
  { name = "backtracking pattern ('.-.-.-.-b' over 3000 bytes)", codes = { ETIMEDOUT = true },
    body = [[local r = ('a'):rep(3000):find('.-.-.-.-b')]] },
  { name = 'plain find of a 2 MiB needle in 4 MiB', codes = { ETIMEDOUT = true },
    body = ([[local h = ('a'):rep(%d) local r = h:find(('a'):rep(%d) .. 'b', 1, true)]]):format(4 * BIG,
      2 * BIG) },
  { name = 'loop of table.sort calls', codes = { ETIMEDOUT = true },
    body = [[local t = {} for i = 1, 1e5 do t[i] = (i * 7919) % 1e5 end
      for _ = 1, 1e6 do table.sort(t) end]] },
  { name = 'loop of pattern finds', codes = { ETIMEDOUT = true },
    body = [[local s = ('a'):rep(3000) for _ = 1, 1e7 do s:find('.-b') end]] },
  { name = 'loop of plain finds', codes = { ETIMEDOUT = true },
    body = ([[local s = ('a'):rep(%d) for _ = 1, 1e7 do s:find('b', 1, true) end]]):format(BIG) },
  { name = 'loop of string.format / __tostring', codes = { ETIMEDOUT = true },
    body = ([[local t = setmetatable({}, { __tostring = function() return ('y'):rep(%d) end })
      for _ = 1, 1e7 do local _ = string.format('%%s%%s', t, t) end]]):format(BIG) },
  { name = 'huge result (10k references to a 1 MiB string)', codes = { EINVAL = true },
    body = ([[local s, t = ('x'):rep(%d), {} for i = 1, 1e4 do t[i] = s end
      do return { allow = true, t = t } end]]):format(BIG) },
}

--- A policy running `body` in on_auth unless the input has `selftest` (so that its own test
--- passes and it loads), then allowing.
function M.policy(body, version)
  return ([[
return {
  name = 'hostile', version = %q,
  on_auth = function(input)
    if input.selftest then return { allow = true, reason = 'self-test' } end
    %s
    return { allow = true, reason = 'the hostile code returned' }
  end,
  tests = { { hook = 'on_auth', input = { selftest = true }, expect = { allow = true } } },
}
]]):format(version or 'hostile', body)
end

--- Load-time cases: whole files that must be refused (with one of `codes`) at load or reload.
M.loads = {
  { name = 'gsub recursion at the top level', codes = { ECRASH = true },
    source = [[local f; f = function() return (("x"):gsub("x", f)) end; f()
      return { name = 'x', version = 1, on_auth = function() return { allow = true } end }]] },
  { name = 'backtracking pattern at the top level', codes = { ETIMEDOUT = true },
    source = [[local r = ('a'):rep(28):find(('a?'):rep(28) .. ('a'):rep(28))
      return { name = 'x', version = 1, on_auth = function() return { allow = true } end }]] },
  { name = 'a self-test that crashes its worker', codes = { EPOLICY = true }, pattern = 'ECRASH',
    source = M.policy([[local f; f = function() return (("x"):gsub("x", f)) end; f()]])
      :gsub("input = { selftest = true }", 'input = {}') },
  { name = 'a self-test stuck in a backtracking pattern', codes = { EPOLICY = true },
    pattern = 'ETIMEDOUT',
    source = M.policy([[local r = ('a'):rep(28):find(('a?'):rep(28) .. ('a'):rep(28))]])
      :gsub("input = { selftest = true }", 'input = {}') },
  { name = '3,000 self-tests that time out', codes = { EPOLICY = true },
    pattern = 'total deadline',
    source = [[local tests = {}
      for i = 1, 3000 do tests[i] = { hook = 'on_auth', expect = {} } end
      return { name = 'x', version = 1, tests = tests,
        on_auth = function() while true do end end }]] },
}

return M
