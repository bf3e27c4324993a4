-- SPDX-License-Identifier: Apache-2.0
-- Plain-data table helpers shared by the core: deep copy, deep equality, sorted keys, varargs
-- packing.
local M = {}

--- A deep copy of plain data (tables copied, cycles preserved; other values shared).
function M.copy(v, seen)
  if type(v) ~= 'table' then
    return v
  end
  seen = seen or {}
  if seen[v] then
    return seen[v]
  end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do
    out[M.copy(k, seen)] = M.copy(x, seen)
  end
  return out
end

local function equal(a, b, seen)
  if a == b then
    return true
  end
  if type(a) ~= 'table' or type(b) ~= 'table' then
    return false
  end
  if seen[a] == b then
    return true
  end
  seen[a] = b
  for k, v in pairs(a) do
    if not equal(v, b[k], seen) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

--- Deep equality of plain data: tables by content (cycle-safe), other values by ==.
function M.equal(a, b)
  return equal(a, b, {})
end

--- Whether the array `list` holds `value` (compared with ==).
function M.contains(list, value)
  for _, v in ipairs(list) do
    if v == value then
      return true
    end
  end
  return false
end

--- The number of keys of table `t` (every key, not only the array part).
function M.count(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n
end

--- The keys of `t` sorted: numbers before strings (by type name, then by value; keys of other
--- types by their tostring()).
function M.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then
      return ta < tb
    end
    if ta == 'number' or ta == 'string' then
      return a < b
    end
    return tostring(a) < tostring(b)
  end)
  return keys
end

--- Pack varargs with their count: { n = select('#', ...), ... }.
function M.pack(...)
  return { n = select('#', ...), ... }
end

return M
