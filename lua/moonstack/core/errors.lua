-- SPDX-License-Identifier: Apache-2.0
-- Error objects that cross services: {code, msg, detail}, with a stable upper-case code.
-- Only the API layer maps a code to an HTTP status (see status_for()).
local M = {}

local Error = {}
Error.__index = Error

function Error.__tostring(e)
  if e.detail ~= nil then
    local detail = e.detail
    if type(detail) == 'table' then
      local ok, cjson = pcall(require, 'cjson.safe')
      detail = ok and cjson.encode(detail) or tostring(detail)
    end
    return ('%s: %s (%s)'):format(e.code, e.msg, tostring(detail))
  end
  return ('%s: %s'):format(e.code, e.msg)
end

local function check_code(code, level)
  if type(code) ~= 'string' or not code:match('^E[A-Z0-9_]+$') then
    error(('errors: code must be an upper-case string starting with E, got %s'):format(
      tostring(code)), level + 1)
  end
end

--- Create an error object.
---@param code string stable upper-case code such as 'EDENIED'
---@param msg string human-readable message
---@param detail any optional structured detail
function M.new(code, msg, detail)
  check_code(code, 2)
  return setmetatable({ code = code, msg = tostring(msg), detail = detail }, Error)
end

--- Whether `v` is an error object (optionally with the given code).
function M.is(v, code)
  return getmetatable(v) == Error and (code == nil or v.code == code)
end

--- Raise an error object (never returns).
function M.raise(code, msg, detail)
  error(M.new(code, msg, detail), 2)
end

--- The expected-failure contract: returns nil, message, code.
function M.fail(code, msg)
  check_code(code, 2)
  return nil, ('%s: %s'):format(code, msg), code
end

--- Turn anything raised (error object, string, other) into an error object. Strings become
--- code `EINTERNAL` unless they start with an upper-case code and a colon.
function M.wrap(v, default_code)
  if M.is(v) then
    return v
  end
  local text = tostring(v)
  local code, rest = text:match('^(E[A-Z0-9_]+): (.*)$')
  if code then
    return M.new(code, rest)
  end
  return M.new(default_code or 'EINTERNAL', text)
end

-- Code -> HTTP status, for the API layer.
local STATUS = {
  EINVAL = 400,
  EPARSE = 400,
  EDENIED = 403,
  EPERM = 403,
  EAUTH = 401,
  ENOENT = 404,
  ENOTFOUND = 404,
  EEXIST = 409,
  ECONFLICT = 409,
  ETOOBIG = 413,
  ETIMEDOUT = 504,
  EUNAVAILABLE = 503,
}

--- HTTP status for an error object or code (500 when unknown).
function M.status_for(e)
  local code = type(e) == 'string' and e or (type(e) == 'table' and e.code)
  return STATUS[code] or 500
end

return M
