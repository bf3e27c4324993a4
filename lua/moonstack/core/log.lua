-- SPDX-License-Identifier: Apache-2.0
-- Logging for Lua code: levels, text or JSON lines, structured fields. Records go through the
-- runtime's C sink so C and Lua lines share one format and one destination.
local native = require('moonstack.native.runtime')
local cjson = require('cjson.safe')

local M = {}

local LEVELS = { debug = 0, info = 1, warn = 2, error = 3 }

--- Encode fields as a JSON object text, or nil when there are none. Values cjson cannot
--- encode (functions, userdata) are rendered with tostring.
local function encode_fields(fields)
  if fields == nil or next(fields) == nil then
    return nil
  end
  local clean = {}
  for k, v in pairs(fields) do
    local t = type(v)
    if t == 'string' or t == 'number' or t == 'boolean' or t == 'table' then
      clean[tostring(k)] = v
    else
      clean[tostring(k)] = tostring(v)
    end
  end
  local text = cjson.encode(clean)
  if not text then
    -- tables with cycles or mixed keys: fall back to tostring per field
    for k, v in pairs(clean) do
      if type(v) == 'table' then
        clean[k] = tostring(v)
      end
    end
    text = cjson.encode(clean)
  end
  -- lua-cjson escapes every '/' as '\/'; paths and tracebacks read better without. Sound,
  -- because cjson escapes every '/': a '\/' pair here always starts a fresh escape.
  return text and (text:gsub('\\/', '/'))
end

--- Write one record. `component` names the emitting part ("http", "kms"...).
---@param level string 'debug'|'info'|'warn'|'error'
---@param component string
---@param msg string
---@param fields table|nil
function M.emit(level, component, msg, fields)
  if LEVELS[level] == nil then
    error(("log.emit: unknown level '%s'"):format(tostring(level)), 2)
  end
  if LEVELS[level] < LEVELS[native.log_level()] then
    return
  end
  native.log(level, component, tostring(msg), encode_fields(fields))
end

--- Set the minimum level ('debug', 'info', 'warn', 'error').
function M.set_level(level)
  if LEVELS[level] == nil then
    error(("log.set_level: unknown level '%s'"):format(tostring(level)), 2)
  end
  native.set_log_level(level)
end

--- The current minimum level.
function M.level()
  return native.log_level()
end

--- Switch between JSON lines (true) and text lines (false).
function M.set_json(on)
  native.set_log_json(on and true or false)
end

--- Whether `level` would be written.
function M.enabled(level)
  return LEVELS[level] ~= nil and LEVELS[level] >= LEVELS[native.log_level()]
end

--- A logger bound to a component: `local log = require('moonstack.core.log').new('http')`,
--- then `log.info('listening', {port = 80})`.
function M.new(component)
  local logger = { component = component }
  for level in pairs(LEVELS) do
    logger[level] = function(msg, fields)
      M.emit(level, component, msg, fields)
    end
  end
  return logger
end

for level in pairs(LEVELS) do
  M[level] = function(msg, fields)
    M.emit(level, 'moonstack', msg, fields)
  end
end

return M
