-- SPDX-License-Identifier: Apache-2.0
-- What the Lua fuzz drivers accept as a clean outcome of a parser: a result, or nil with an
-- error in the project's shapes ('ECODE: message' strings, moonstack.core.errors objects). Any
-- other outcome raises (the harness turns it into a crash).
local M = {}

--- Check `res, err, code` returned by a parser; returns res. A nil result must come with an
--- error string 'ECODE: ...' (code matching when given) or an error object with a code.
function M.result(what, res, err, code)
  if res ~= nil then
    return res
  end
  if type(err) == 'table' and type(err.code) == 'string' and err.code:match('^E[A-Z0-9_]+$')
    and type(err.msg) == 'string' then
    return nil
  end
  if type(err) == 'string' and err:match('^E[A-Z0-9_]+: .') then
    if code ~= nil and not err:find('^' .. code .. ': ') then
      error(('%s: error %q does not start with its code %s'):format(what, err, tostring(code)), 0)
    end
    return nil
  end
  error(('%s: not a clean error: %s, %s'):format(what, tostring(err), tostring(code)), 0)
end

--- Raise unless `cond`.
function M.check(cond, what)
  if not cond then
    error('invariant failed: ' .. what, 0)
  end
end

return M
