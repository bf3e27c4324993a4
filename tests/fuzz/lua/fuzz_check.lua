-- SPDX-License-Identifier: Apache-2.0
-- What the Lua fuzz drivers accept as a clean outcome of a parser: a result, or nil with an
-- error in the project's shapes ('ECODE: message' strings, moonstack.core.errors objects). Any
-- other outcome raises (the harness turns it into a crash).
local M = {}

-- The last clean error seen, digits dropped (offsets, lengths): with the JIT on and no line hook,
-- fuzz_lua.c turns it into a coverage feature (which field failed, and why).
local function outcome(err)
  _G.FUZZ_OUTCOME = tostring(err):gsub('%d+', '#'):sub(1, 120)
end

--- Check `res, err, code` returned by a parser; returns res. A nil result must come with an
--- error string 'ECODE: ...' (code matching when given) or an error object with a code.
function M.result(what, res, err, code)
  if res ~= nil then
    _G.FUZZ_OUTCOME = what .. ': ok'
    return res
  end
  if type(err) == 'table' and type(err.code) == 'string' and err.code:match('^E[A-Z0-9_]+$')
    and type(err.msg) == 'string' then
    outcome(err.code .. ': ' .. err.msg)
    return nil
  end
  if type(err) == 'string' and err:match('^E[A-Z0-9_]+: .') then
    if code ~= nil and not err:find('^' .. code .. ': ') then
      error(('%s: error %q does not start with its code %s'):format(what, err, tostring(code)), 0)
    end
    outcome(err)
    return nil
  end
  error(('%s: not a clean error: %s, %s'):format(what, tostring(err), tostring(code)), 0)
end

--- Record `msg` as the outcome of the input (a clean error the driver checked itself).
function M.outcome(msg)
  outcome(msg)
end

--- Raise unless `cond`.
function M.check(cond, what)
  if not cond then
    error('invariant failed: ' .. what, 0)
  end
end

return M
