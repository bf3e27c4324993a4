-- SPDX-License-Identifier: Apache-2.0
-- A small declarative schema validator for config tables and other plain data. It returns a
-- validated copy with defaults applied, or every violation, each naming its key path:
--   config.http.listen[2].port: expected integer, got string
--
-- A schema node is a table (or a type name as shorthand: 'string' = {type = 'string'}):
--   type      'string' | 'number' | 'integer' | 'boolean' | 'table' | 'function' | 'any'
--   optional  true: nil is allowed (the key stays absent)
--   default   value used when nil (tables are copied, then validated like a given value)
--   enum      array of allowed values
--   min, max  numbers: value bounds; strings: length bounds; tables: number of entries
--   pattern   Lua pattern a string must match (anchor it yourself: '^%w+$')
--   fields    table: { key = node } for known keys (a record)
--   unknown   table with fields: 'error' (default) or 'allow' (unknown keys copied as is)
--   items     table: node for every element; the table must be a sequence (an array)
--   keys, values   table: nodes for the keys / values of every entry not in `fields` (a map)
--   check     function(value) -> true | nil/false, reason; runs last, on the validated copy
--   description    free text for documentation (ignored)
-- A mistake in the schema itself (unknown keyword, bad type name) raises.
local M = {}

local TYPES = {
  string = true, number = true, integer = true, boolean = true, table = true,
  ['function'] = true, any = true,
}
local KEYWORDS = {
  type = true, optional = true, default = true, enum = true, min = true, max = true,
  pattern = true, fields = true, unknown = true, items = true, keys = true, values = true,
  check = true, description = true,
}

local checked = setmetatable({}, { __mode = 'k' }) -- schema nodes already checked

local function is_identifier(s)
  return type(s) == 'string' and s:match('^[%a_][%w_]*$') ~= nil
end

--- Append key `k` to path `p`: config.http, config.listen[2], config["a b"].
function M.join_path(p, k)
  if is_identifier(k) then
    return p .. '.' .. k
  elseif type(k) == 'string' then
    return ('%s[%q]'):format(p, k)
  end
  return ('%s[%s]'):format(p, tostring(k))
end

local function normalize(node)
  if type(node) == 'string' then
    return { type = node }
  end
  return node
end

-- Raise on a malformed schema node (once per node table).
local function check_node(node, where)
  if type(node) == 'string' then
    node = { type = node }
  end
  if type(node) ~= 'table' then
    error(('schema: node at %s must be a table or a type name, got %s'):format(where, type(node)), 0)
  end
  if checked[node] then
    return
  end
  for k in pairs(node) do
    if not KEYWORDS[k] then
      error(("schema: unknown keyword '%s' at %s"):format(tostring(k), where), 0)
    end
  end
  if not TYPES[node.type] then
    error(("schema: bad or missing type '%s' at %s"):format(tostring(node.type), where), 0)
  end
  if node.unknown ~= nil and node.unknown ~= 'error' and node.unknown ~= 'allow' then
    error(("schema: unknown must be 'error' or 'allow' at %s"):format(where), 0)
  end
  if node.enum ~= nil and type(node.enum) ~= 'table' then
    error(('schema: enum must be an array at %s'):format(where), 0)
  end
  if node.check ~= nil and type(node.check) ~= 'function' then
    error(('schema: check must be a function at %s'):format(where), 0)
  end
  if node.pattern ~= nil and type(node.pattern) ~= 'string' then
    error(('schema: pattern must be a string at %s'):format(where), 0)
  end
  local nested = node.fields or node.items or node.keys or node.values
  if nested and node.type ~= 'table' then
    error(("schema: fields/items/keys/values need type 'table' at %s"):format(where), 0)
  end
  if node.items and (node.fields or node.keys or node.values) then
    error(('schema: items cannot be combined with fields/keys/values at %s'):format(where), 0)
  end
  if node.fields then
    if type(node.fields) ~= 'table' then
      error(('schema: fields must be a table at %s'):format(where), 0)
    end
    for k, sub in pairs(node.fields) do
      check_node(sub, M.join_path(where, k))
    end
  end
  if node.items then
    check_node(node.items, where .. '[]')
  end
  if node.keys then
    check_node(node.keys, where .. '<key>')
  end
  if node.values then
    check_node(node.values, where .. '[*]')
  end
  checked[node] = true
end

--- Check that `s` is a well-formed schema; raises naming the faulty node otherwise.
function M.check_schema(s)
  check_node(s, '<schema>')
  return true
end

--- A deep copy of plain data (see moonstack.core.tables.copy).
M.copy = require('moonstack.core.tables').copy

local function describe(v)
  local t = type(v)
  if t == 'string' then
    return ('%q'):format(v)
  end
  return tostring(v)
end

local function type_error(node, v)
  local got = type(v)
  if got == 'number' and (node.type == 'integer' or node.type == 'number') then
    return ('expected %s, got %s'):format(node.type, describe(v))
  end
  return ('expected %s, got %s'):format(node.type, got)
end

local function type_ok(node, v)
  local t = node.type
  if t == 'any' then
    return true
  elseif t == 'integer' then
    return type(v) == 'number' and v == math.floor(v) and v - v == 0
  elseif t == 'number' then
    return type(v) == 'number' and v == v
  end
  return type(v) == t
end

local count = require('moonstack.core.tables').count
local sorted_keys = require('moonstack.core.tables').sorted_keys

local validate

local function bounds(node, v, path, errs)
  local size, what
  if type(v) == 'number' then
    size, what = v, 'value'
  elseif type(v) == 'string' then
    size, what = #v, 'length'
  elseif type(v) == 'table' then
    size, what = count(v), 'number of entries'
  else
    return
  end
  if node.min and size < node.min then
    errs[#errs + 1] = ('%s: %s must be >= %s, got %s'):format(path, what, node.min, size)
  elseif node.max and size > node.max then
    errs[#errs + 1] = ('%s: %s must be <= %s, got %s'):format(path, what, node.max, size)
  end
end

local function validate_table(node, v, path, errs)
  local out = {}
  if node.items then
    local n = #v
    for k in pairs(v) do
      if type(k) ~= 'number' or k < 1 or k > n or k ~= math.floor(k) then
        errs[#errs + 1] = ('%s: expected an array, got key %s'):format(path, describe(k))
        return out
      end
    end
    for i = 1, n do
      out[i] = validate(node.items, v[i], M.join_path(path, i), errs)
    end
    return out
  end
  local fields = node.fields
  if fields then
    for _, k in ipairs(sorted_keys(fields)) do
      local x = validate(fields[k], v[k], M.join_path(path, k), errs)
      if x ~= nil then
        out[k] = x
      end
    end
  end
  local is_map = node.keys or node.values
  for _, k in ipairs(sorted_keys(v)) do
    if not (fields and fields[k] ~= nil) then
      local kpath = M.join_path(path, k)
      if is_map then
        local key = k
        if node.keys then
          local before = #errs
          key = validate(node.keys, k, kpath .. ' (key)', errs)
          if #errs > before then
            key = nil
          end
        end
        local x = node.values and validate(node.values, v[k], kpath, errs) or M.copy(v[k])
        if key ~= nil then
          out[key] = x
        end
      elseif fields == nil or node.unknown == 'allow' then
        out[M.copy(k)] = M.copy(v[k])
      else
        errs[#errs + 1] = ('%s: unknown key'):format(kpath)
      end
    end
  end
  return out
end

-- Validate v against node at path; append messages to errs; return the validated copy.
validate = function(node, v, path, errs)
  node = normalize(node)
  if v == nil then
    if node.default ~= nil then
      v = M.copy(node.default)
    elseif node.optional then
      return nil
    else
      errs[#errs + 1] = ('%s: missing (expected %s)'):format(path, node.type)
      return nil
    end
  end
  if not type_ok(node, v) then
    errs[#errs + 1] = ('%s: %s'):format(path, type_error(node, v))
    return nil
  end
  local before = #errs
  if node.enum then
    local found = false
    for _, allowed in ipairs(node.enum) do
      if allowed == v then
        found = true
        break
      end
    end
    if not found then
      local names = {}
      for i, allowed in ipairs(node.enum) do
        names[i] = describe(allowed)
      end
      errs[#errs + 1] = ('%s: expected one of %s, got %s'):format(path, table.concat(names, ', '),
        type(v) == 'table' and 'a table' or describe(v))
    end
  end
  bounds(node, v, path, errs)
  if node.pattern and type(v) == 'string' and not v:find(node.pattern) then
    -- the value is not echoed: it may be a secret
    errs[#errs + 1] = ('%s: does not match pattern %q'):format(path, node.pattern)
  end
  local out
  if type(v) == 'table' and (node.fields or node.items or node.keys or node.values) then
    out = validate_table(node, v, path, errs)
  else
    out = M.copy(v)
  end
  if node.check and #errs == before then
    local ok, res, reason = pcall(node.check, out)
    if not ok then
      errs[#errs + 1] = ('%s: check failed: %s'):format(path, tostring(res))
    elseif not res then
      errs[#errs + 1] = ('%s: %s'):format(path, reason ~= nil and tostring(reason) or 'invalid value')
    end
  end
  return out
end

--- Validate `value` against schema `s`. `root` names the value in messages (default
--- 'config'). Returns a validated copy with defaults applied (the input is not modified), or
--- nil, 'EINVAL: <path>: <reason>[; <path>: <reason>...]', 'EINVAL', {each message}.
--- Messages come in a stable order: declared fields by key, then the other keys by key.
function M.validate(value, s, root)
  check_node(s, root or 'config')
  local errs = {}
  local out = validate(s, value, root or 'config', errs)
  if #errs > 0 then
    return nil, 'EINVAL: ' .. table.concat(errs, '; '), 'EINVAL', errs
  end
  return out
end

return M
