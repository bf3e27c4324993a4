-- SPDX-License-Identifier: Apache-2.0
-- The scanner pieces of moonstack.compose.yaml: comment stripping, where a mapping key ends,
-- quoted and plain scalars (typed: booleans, null, numbers, strings; indicators this subset
-- does not handle refused), and flow collections ([...] and {...}). Errors are raised as
-- { yaml = true, msg = 'EPARSE: line N: why' } (fail); yaml.parse turns them into returns.
local json = require('moonstack.core.json')

local M = {}

--- The null value (json.null).
M.null = json.null
--- Deepest nesting accepted.
M.MAX_DEPTH = 64
--- The key order of each mapping (weak keys): ORDER[map] = { keys }.
M.ORDER = setmetatable({}, { __mode = 'k' })

local ORDER = M.ORDER

--- Raise the parse error of line `n`.
function M.fail(n, msg)
  error({ yaml = true, msg = ('EPARSE: line %d: %s'):format(n, msg) }, 0)
end

--- Strip a comment (a '#' at the start or after a blank, outside quotes) and trailing blanks.
--- A quote opens a quoted scalar only where a scalar can start.
function M.strip_comment(s)
  local i, n, q = 1, #s, nil
  local prev = ' '
  while i <= n do
    local c = s:sub(i, i)
    if q then
      if q == "'" and c == "'" then
        if s:sub(i + 1, i + 1) == "'" then
          i = i + 1
        else
          q = nil
        end
      elseif q == '"' and c == '\\' then
        i = i + 1
      elseif q == '"' and c == '"' then
        q = nil
      end
    elseif c == '#' and prev:match('%s') then
      return (s:sub(1, i - 1):gsub('%s+$', ''))
    elseif (c == '"' or c == "'") and prev:match('[%s:%-%[{,?]') then
      q = c
    end
    prev = c
    i = i + 1
  end
  return (s:gsub('%s+$', ''))
end

--- Where a mapping key ends: the index of the ':' that is followed by a blank or the end,
--- outside quotes and flow brackets; nil when `s` is not `key: ...`.
function M.key_colon(s)
  local first = s:sub(1, 1)
  if first == '"' or first == "'" then
    local i = 2
    while i <= #s do
      local c = s:sub(i, i)
      if first == '"' and c == '\\' then
        i = i + 1
      elseif c == first then
        if first == "'" and s:sub(i + 1, i + 1) == "'" then
          i = i + 1
        else
          local rest = s:sub(i + 1)
          local sp, colon = rest:match('^(%s*)():')
          if colon and (#rest == #sp + 1 or rest:sub(#sp + 2, #sp + 2):match('%s')) then
            return i + #sp + 1
          end
          return nil
        end
      end
      i = i + 1
    end
    return nil
  end
  if first == '[' or first == '{' then
    return nil
  end
  local i = 1
  while true do
    local at = s:find(':', i, true)
    if not at then
      return nil
    end
    local after = s:sub(at + 1, at + 1)
    if after == '' or after:match('%s') then
      return at
    end
    i = at + 1
  end
end

local ESCAPES = { n = '\n', t = '\t', r = '\r', ['"'] = '"', ['\\'] = '\\', ['/'] = '/',
  ['0'] = '\0', a = '\a', b = '\b', e = '\27', f = '\f', v = '\v', [' '] = ' ' }

--- A quoted scalar starting at s[i]; returns the string and the index after it.
function M.quoted(s, i, n)
  local q = s:sub(i, i)
  local out = {}
  local j = i + 1
  while j <= #s do
    local c = s:sub(j, j)
    if q == "'" and c == "'" then
      if s:sub(j + 1, j + 1) == "'" then
        out[#out + 1] = "'"
        j = j + 2
      else
        return table.concat(out), j + 1
      end
    elseif q == '"' and c == '"' then
      return table.concat(out), j + 1
    elseif q == '"' and c == '\\' then
      local e = s:sub(j + 1, j + 1)
      if ESCAPES[e] then
        out[#out + 1] = ESCAPES[e]
        j = j + 2
      elseif e == 'x' or e == 'u' or e == 'U' then
        local len = ({ x = 2, u = 4, U = 8 })[e]
        local hex = s:sub(j + 2, j + 1 + len)
        if #hex ~= len or not hex:match('^%x+$') then
          M.fail(n, 'bad \\' .. e .. ' escape in a double-quoted string')
        end
        local cp = tonumber(hex, 16)
        if cp < 0x80 then
          out[#out + 1] = string.char(cp)
        elseif cp < 0x800 then
          out[#out + 1] = string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
        elseif cp < 0x10000 then
          out[#out + 1] = string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64,
            0x80 + cp % 64)
        else
          M.fail(n, 'escapes beyond U+FFFF are not supported')
        end
        j = j + 2 + len
      else
        M.fail(n, 'unknown escape \\' .. e .. ' in a double-quoted string')
      end
    else
      out[#out + 1] = c
      j = j + 1
    end
  end
  M.fail(n, 'unterminated ' .. (q == '"' and 'double' or 'single') ..
    '-quoted string (multi-line quoted strings are not supported)')
end

--- A plain scalar's value: booleans, null, numbers, else the string.
function M.typed(s)
  if s == 'true' or s == 'True' or s == 'TRUE' then
    return true
  elseif s == 'false' or s == 'False' or s == 'FALSE' then
    return false
  elseif s == '' or s == '~' or s == 'null' or s == 'Null' or s == 'NULL' then
    return M.null
  elseif s:match('^[-+]?%d+$') and #s <= 15 then
    return tonumber(s)
  elseif s:match('^[-+]?%d*%.%d+$') and #s <= 20 then
    return tonumber(s)
  end
  return s
end

--- Refuse plain scalars starting with an indicator this subset does not handle.
function M.check_plain(s, n)
  local c = s:sub(1, 1)
  if c == '&' then
    M.fail(n, 'anchors (&) are not supported')
  elseif c == '*' then
    M.fail(n, 'aliases (*) are not supported')
  elseif c == '!' then
    M.fail(n, 'tags (!) are not supported')
  elseif c == '?' and (#s == 1 or s:sub(2, 2):match('%s')) then
    M.fail(n, 'complex keys (?) are not supported')
  elseif c == '@' or c == '`' or c == '%' then
    M.fail(n, ("a plain scalar cannot start with '%s': quote it"):format(c))
  end
end

--- Flow collections: parse s from i; returns value, next index.
function M.flow(s, i, n, depth)
  if depth > M.MAX_DEPTH then
    M.fail(n, 'nested too deep')
  end
  local function skip(j)
    return s:find('[^%s]', j) or #s + 1
  end
  local function scalar(j)
    local c = s:sub(j, j)
    if c == '"' or c == "'" then
      return M.quoted(s, j, n)
    elseif c == '[' or c == '{' then
      return M.flow(s, j, n, depth + 1)
    end
    local stop = '[,%]}]'
    local k = j
    while k <= #s do
      local ch = s:sub(k, k)
      if ch:match(stop) then
        break
      end
      if ch == ':' and (s:sub(k + 1, k + 1):match('[%s,%]}]') or k == #s) then
        break
      end
      k = k + 1
    end
    local text = s:sub(j, k - 1):gsub('%s+$', '')
    M.check_plain(text, n)
    return M.typed(text), k
  end
  local open = s:sub(i, i)
  local close = open == '[' and ']' or '}'
  local out = open == '[' and json.array() or {}
  local keys = {}
  local j = skip(i + 1)
  if s:sub(j, j) == close then
    if open == '{' then
      ORDER[out] = keys
    end
    return out, j + 1
  end
  while true do
    if j > #s then
      M.fail(n, 'unterminated flow ' .. (open == '[' and 'sequence' or 'mapping'))
    end
    if open == '[' then
      local v
      v, j = scalar(j)
      out[#out + 1] = v
    else
      local k
      k, j = scalar(j)
      j = skip(j)
      if type(k) == 'table' then
        M.fail(n, 'flow mapping keys must be scalars')
      end
      k = tostring(k)
      if out[k] ~= nil then
        M.fail(n, ('duplicate key "%s"'):format(k))
      end
      local v = M.null
      if s:sub(j, j) == ':' then
        j = skip(j + 1)
        if s:sub(j, j) ~= ',' and s:sub(j, j) ~= '}' then
          v, j = scalar(j)
        end
      end
      out[k] = v
      keys[#keys + 1] = k
    end
    j = skip(j)
    local c = s:sub(j, j)
    if j > #s then
      M.fail(n, 'unterminated flow ' .. (open == '[' and 'sequence' or 'mapping'))
    elseif c == ',' then
      j = skip(j + 1)
      if s:sub(j, j) == close then -- trailing comma
        break
      end
    elseif c == close then
      break
    else
      M.fail(n, ("expected ',' or '%s' in a flow collection"):format(close))
    end
  end
  if open == '{' then
    ORDER[out] = keys
  end
  return out, j + 1
end


return M
