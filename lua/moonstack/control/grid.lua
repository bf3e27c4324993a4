-- SPDX-License-Identifier: Apache-2.0
-- Lists of records as text tables, the REPL's view of vm.list(), kms.decisions(n), ...: a
-- header of the records' field names, a rule, one row per record, the count. Cells are one
-- line (nested tables in their one-line Lua form), cut at a width; text mode only (JSON mode
-- keeps the records as they are).
local pretty = require('moonstack.control.pretty')

local M = {}

--- A cell is cut to this many bytes.
M.CELL_MAX = 48
--- A list with more columns than this is not a table (it is printed as Lua).
M.COLUMNS_MAX = 14

-- Columns that come first, in this order, when records have them; the others follow sorted.
local FIRST = { 'id', 'name', 'time', 'kind', 'scope', 'app_id', 'instance_id', 'status',
  'allowed', 'reason' }
local RANK = {}
for i, k in ipairs(FIRST) do
  RANK[k] = i
end

local function plain(t)
  local mt = getmetatable(t)
  return type(t) == 'table' and not (type(mt) == 'table' and rawget(mt, '__tostring'))
end

--- Whether `v` is a list of records: a non-empty array of plain tables whose keys are all
--- strings, with at most COLUMNS_MAX field names in all. Returns the columns in print order.
function M.columns(v)
  if not plain(v) or rawget(v, 1) == nil then
    return nil
  end
  local keys, n = pretty.sorted_keys(v)
  if #keys ~= n then
    return nil
  end
  local seen, cols = {}, {}
  for i = 1, n do
    local r = rawget(v, i)
    if not plain(r) or next(r) == nil then
      return nil
    end
    for k in next, r do
      if type(k) ~= 'string' then
        return nil
      end
      if not seen[k] then
        seen[k] = true
        cols[#cols + 1] = k
        if #cols > M.COLUMNS_MAX then
          return nil
        end
      end
    end
  end
  table.sort(cols, function(a, b)
    local ra, rb = RANK[a] or 99, RANK[b] or 99
    if ra ~= rb then
      return ra < rb
    end
    return a < b
  end)
  return cols
end

local function cell(v)
  local t = type(v)
  local s
  if v == nil then
    s = ''
  elseif t == 'string' then
    s = v:find('[%c\127]') and pretty.quote(v) or v
  elseif t == 'number' then
    s = pretty.number(v)
  else
    s = pretty.format(v, { depth = 2, width = math.huge })
  end
  if #s > M.CELL_MAX then
    s = s:sub(1, M.CELL_MAX - 3) .. '...'
  end
  return s
end

--- The text table of the list of records `list` (see columns()), or nil when it is not one.
function M.format(list)
  local cols = M.columns(list)
  if not cols then
    return nil
  end
  local widths, rows = {}, {}
  for j, c in ipairs(cols) do
    widths[j] = #c
  end
  for i = 1, #list do
    local row = {}
    for j, c in ipairs(cols) do
      row[j] = cell(rawget(list[i], c))
      widths[j] = math.max(widths[j], #row[j])
    end
    rows[i] = row
  end
  local function line(cells)
    local parts = {}
    for j, s in ipairs(cells) do
      parts[j] = s .. (' '):rep(widths[j] - #s)
    end
    return (table.concat(parts, '  '):gsub('%s+$', ''))
  end
  local out, rule = { line(cols) }, {}
  for j = 1, #cols do
    rule[j] = ('-'):rep(widths[j])
  end
  out[2] = line(rule)
  for i, row in ipairs(rows) do
    out[i + 2] = line(row)
  end
  out[#out + 1] = ('(%d %s)'):format(#rows, #rows == 1 and 'row' or 'rows')
  return table.concat(out, '\n')
end

--- Render `n` values from the array `values` (results of a call), one per line: lists of
--- records as tables, the rest as pretty.format does.
function M.format_results(values, n)
  local lines = {}
  for i = 1, n or #values do
    lines[i] = M.format(values[i]) or pretty.format(values[i])
  end
  return table.concat(lines, '\n')
end

return M
