-- SPDX-License-Identifier: Apache-2.0
-- The REPL's pretty-printer: any Lua value as readable text (quoted strings, sorted keys,
-- nested tables with cycle detection and a depth limit), and as a JSON-encodable copy.
local codec = require('moonstack.core.codec')

local M = {}

local DEFAULTS = { depth = 6, width = 80, max_items = 1000, indent = '  ' }

local RESERVED = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch('%a+') do
  RESERVED[w] = true
end

local ESCAPES = {
  ['\\'] = '\\\\', ['"'] = '\\"', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
  ['\a'] = '\\a', ['\b'] = '\\b', ['\f'] = '\\f', ['\v'] = '\\v', ['\0'] = '\\0',
}

--- Quote a string as a one-line Lua literal (control bytes and DEL escaped as \ddd).
function M.quote(s)
  local body = s:gsub('[%c\\"\127]', function(c)
    return ESCAPES[c] or ('\\%03d'):format(c:byte())
  end)
  return '"' .. body .. '"'
end

--- A number as text: integers without exponent, others with enough digits to round-trip.
function M.number(n)
  if n ~= n then
    return '0/0'
  elseif n == math.huge then
    return 'math.huge'
  elseif n == -math.huge then
    return '-math.huge'
  elseif n == math.floor(n) and math.abs(n) < 2 ^ 53 then
    return ('%d'):format(n)
  end
  local s = ('%.14g'):format(n)
  if tonumber(s) ~= n then
    s = ('%.17g'):format(n)
  end
  return s
end

local function describe_function(f)
  local info = debug.getinfo(f, 'S')
  if info and info.what ~= 'C' and (info.linedefined or -1) >= 0 and info.short_src and
    not info.short_src:match('^%[builtin') then
    return ('<function %s:%d>'):format(info.short_src, info.linedefined or 0)
  end
  return '<' .. tostring(f) .. '>'
end

-- Order of key types when sorting keys of mixed types.
local TYPE_RANK = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return (TYPE_RANK[ta] or 9) < (TYPE_RANK[tb] or 9) or
      ((TYPE_RANK[ta] or 9) == (TYPE_RANK[tb] or 9) and ta < tb)
  end
  if ta == 'number' or ta == 'string' then
    return a < b
  end
  if ta == 'boolean' then
    return (not a) and b
  end
  return tostring(a) < tostring(b)
end

--- The keys of `t` in print order: the array part 1..n first, then the others sorted.
--- Returns the list and n (the length of the array part).
function M.sorted_keys(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do
    n = n + 1
  end
  local keys = {}
  for i = 1, n do
    keys[i] = i
  end
  local rest = {}
  for k in next, t do
    if not (type(k) == 'number' and k >= 1 and k <= n and k == math.floor(k)) then
      rest[#rest + 1] = k
    end
  end
  table.sort(rest, key_less)
  for _, k in ipairs(rest) do
    keys[#keys + 1] = k
  end
  return keys, n
end

-- The text of a value that is not a table (or a table shown by its __tostring).
local function scalar(v, opts)
  local t = type(v)
  if t == 'string' then
    return M.quote(v)
  elseif t == 'number' then
    return M.number(v)
  elseif t == 'nil' or t == 'boolean' then
    return tostring(v)
  elseif t == 'function' then
    return describe_function(v)
  elseif t == 'table' then
    local mt = getmetatable(v)
    if not opts.raw and type(mt) == 'table' and rawget(mt, '__tostring') then
      local ok, s = pcall(tostring, v)
      return ok and tostring(s) or ('<table: __tostring failed: %s>'):format(tostring(s))
    end
    return nil
  end
  local ok, s = pcall(tostring, v)
  return '<' .. (ok and tostring(s) or t) .. '>'
end

local function render_key(k, render)
  if type(k) == 'string' and k:match('^[%a_][%w_]*$') and not RESERVED[k] then
    return k
  end
  return '[' .. render(k, 1) .. ']'
end

-- Render `v` at nesting `level` (1 = top). `path` holds the tables being rendered.
local function make_renderer(opts)
  local path = {}
  local function render(v, level)
    local s = scalar(v, opts)
    if s then
      return s
    end
    if path[v] then
      return ('<cycle: %s>'):format(tostring(v))
    end
    if level > opts.depth then
      return next(v) == nil and '{}' or '{...}'
    end
    local keys, n = M.sorted_keys(v)
    if #keys == 0 then
      return '{}'
    end
    path[v] = true
    local items = {}
    local multiline = false
    for i, k in ipairs(keys) do
      if i > opts.max_items then
        items[#items + 1] = ('... (%d more)'):format(#keys - opts.max_items)
        break
      end
      local item = render(rawget(v, k), level + 1)
      if i > n then
        item = render_key(k, render) .. ' = ' .. item
      end
      if item:find('\n', 1, true) then
        multiline = true
      end
      items[#items + 1] = item
    end
    path[v] = nil
    local one = '{ ' .. table.concat(items, ', ') .. ' }'
    local margin = #opts.indent * (level - 1)
    if not multiline and #one + margin <= opts.width then
      return one
    end
    local pad = opts.indent:rep(level)
    for i, item in ipairs(items) do
      items[i] = pad .. item .. ','
    end
    return '{\n' .. table.concat(items, '\n') .. '\n' .. opts.indent:rep(level - 1) .. '}'
  end
  return render
end

local function with_defaults(opts)
  if opts ~= nil and type(opts) ~= 'table' then
    error('pretty: opts must be a table', 3)
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do
    o[k] = v
  end
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return o
end

--- Render one value as text.
--- opts: depth (nesting shown, default 6), width (one-line limit, 80), max_items (per
--- table, 1000), indent ('  '), raw (ignore __tostring on tables).
function M.format(v, opts)
  return make_renderer(with_defaults(opts))(v, 1)
end

--- Render `n` values from the array `values` (results of a call), one per line.
function M.format_results(values, n, opts)
  local o = with_defaults(opts)
  local lines = {}
  for i = 1, n or #values do
    lines[i] = make_renderer(o)(values[i], 1)
  end
  return table.concat(lines, '\n')
end

--- A copy of `v` that cjson can encode: UTF-8 strings, finite numbers, booleans and nil as
--- is; other strings (binary) as { hex = '...' };
--- tables as arrays (keys exactly 1..n) or objects (keys as text); cycles, deep nesting,
--- NaN/inf, functions, userdata and tables with __tostring as their text.
function M.jsonable(v, opts)
  local o = with_defaults(opts)
  local path = {}
  local function conv(x, level)
    local t = type(x)
    if t == 'string' then -- bytes that are not text (keys, digests) as { hex = ... }
      return codec.is_utf8(x) and x or { hex = codec.hex(x) }
    elseif t == 'boolean' or t == 'nil' then
      return x
    elseif t == 'number' then
      if x ~= x or x == math.huge or x == -math.huge then
        return M.number(x)
      end
      return x
    elseif t ~= 'table' then
      return scalar(x, o)
    end
    local s = scalar(x, o)
    if s then
      return s
    end
    if path[x] then
      return ('<cycle: %s>'):format(tostring(x))
    end
    if level > o.depth then
      return '{...}'
    end
    path[x] = true
    local keys, n = M.sorted_keys(x)
    local out = {}
    if n == #keys and n > 0 then
      for i = 1, math.min(n, o.max_items) do
        out[i] = conv(rawget(x, i), level + 1)
      end
    else
      for i, k in ipairs(keys) do
        if i > o.max_items then
          break
        end
        local name = type(k) == 'string' and k or M.format(k, { depth = 1 })
        out[name] = conv(rawget(x, k), level + 1)
      end
    end
    path[x] = nil
    return out
  end
  return conv(v, 1)
end

return M
