-- SPDX-License-Identifier: Apache-2.0
-- A strict YAML subset for docker-compose files: block mappings and sequences (a sequence may
-- sit at its key's indent, as compose files write it), plain / single- / double-quoted
-- scalars, comments, block scalars (| and >, with - or + chomping), flow sequences and maps
-- (also spanning lines). What it does not understand is refused with the line number rather
-- than guessed: anchors, aliases, tags, merge keys, complex keys, directives, several
-- documents, tabs in indentation, multi-line plain or quoted scalars, duplicate keys.
-- Values: mappings are tables (their key order: keys(map)), sequences are json.array()s,
-- null is json.null, true/false are booleans, plain integers/decimals are numbers, everything
-- else is a string. parse() also returns where each path starts: lines['services.web.ports[0]'].
local json = require('moonstack.core.json')

local M = {}

--- The null value (the same sentinel as moonstack.core.json).
M.null = json.null

--- Largest document accepted (bytes).
M.MAX_BYTES = 1024 * 1024
--- Deepest nesting accepted.
M.MAX_DEPTH = 64

local ORDER = setmetatable({}, { __mode = 'k' })

--- The keys of a mapping returned by parse(), in the order of the file.
function M.keys(map)
  return ORDER[map] or {}
end

local Parser = {}
Parser.__index = Parser

local function fail(n, msg)
  error({ yaml = true, msg = ('EPARSE: line %d: %s'):format(n, msg) }, 0)
end

-- Strip a comment (a '#' at the start or after a blank, outside quotes) and trailing blanks.
-- A quote opens a quoted scalar only where a scalar can start.
local function strip_comment(s)
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

-- The content lines: { n = line number, indent, text (comment stripped) }; blank and
-- comment-only lines are skipped (block scalars read the raw lines).
function Parser:scan()
  local raw = {}
  for line in (self.src .. '\n'):gmatch('([^\n]*)\n') do
    raw[#raw + 1] = (line:gsub('\r$', ''))
  end
  self.raw = raw
  local lines = {}
  for n, line in ipairs(raw) do
    local lead = line:match('^[ \t]*')
    local text = strip_comment(line:sub(#lead + 1))
    if text ~= '' then
      if lead:find('\t') then
        fail(n, 'a tab in the indentation')
      end
      if #lead == 0 and text:match('^%%') then
        fail(n, 'directives (%) are not supported')
      end
      if #lead == 0 and (text == '---' or text:match('^%-%-%-%s')) then
        if #lines > 0 or self.doc_start then
          fail(n, 'only one YAML document is supported')
        end
        self.doc_start = true
        if text ~= '---' then
          fail(n, 'content after --- is not supported')
        end
      elseif #lead == 0 and text == '...' then
        fail(n, 'document end markers (...) are not supported')
      else
        lines[#lines + 1] = { n = n, indent = #lead, text = text }
      end
    end
  end
  self.lines = lines
  self.pos = 1
end

function Parser:peek()
  return self.lines[self.pos]
end

-- Where a mapping key ends: the index of the ':' that is followed by a blank or the end,
-- outside quotes and flow brackets; nil when `s` is not `key: ...`.
local function key_colon(s)
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

-- A quoted scalar starting at s[i]; returns the string and the index after it.
local function quoted(s, i, n)
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
          fail(n, 'bad \\' .. e .. ' escape in a double-quoted string')
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
          fail(n, 'escapes beyond U+FFFF are not supported')
        end
        j = j + 2 + len
      else
        fail(n, 'unknown escape \\' .. e .. ' in a double-quoted string')
      end
    else
      out[#out + 1] = c
      j = j + 1
    end
  end
  fail(n, 'unterminated ' .. (q == '"' and 'double' or 'single') ..
    '-quoted string (multi-line quoted strings are not supported)')
end

-- A plain scalar's value: booleans, null, numbers, else the string.
local function typed(s)
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

-- Refuse plain scalars starting with an indicator this subset does not handle.
local function check_plain(s, n)
  local c = s:sub(1, 1)
  if c == '&' then
    fail(n, 'anchors (&) are not supported')
  elseif c == '*' then
    fail(n, 'aliases (*) are not supported')
  elseif c == '!' then
    fail(n, 'tags (!) are not supported')
  elseif c == '?' and (#s == 1 or s:sub(2, 2):match('%s')) then
    fail(n, 'complex keys (?) are not supported')
  elseif c == '@' or c == '`' or c == '%' then
    fail(n, ("a plain scalar cannot start with '%s': quote it"):format(c))
  end
end

-- Flow collections: parse s from i; returns value, next index.
local function flow(s, i, n, depth)
  if depth > M.MAX_DEPTH then
    fail(n, 'nested too deep')
  end
  local function skip(j)
    return s:find('[^%s]', j) or #s + 1
  end
  local function scalar(j)
    local c = s:sub(j, j)
    if c == '"' or c == "'" then
      return quoted(s, j, n)
    elseif c == '[' or c == '{' then
      return flow(s, j, n, depth + 1)
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
    check_plain(text, n)
    return typed(text), k
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
      fail(n, 'unterminated flow ' .. (open == '[' and 'sequence' or 'mapping'))
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
        fail(n, 'flow mapping keys must be scalars')
      end
      k = tostring(k)
      if out[k] ~= nil then
        fail(n, ('duplicate key "%s"'):format(k))
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
      fail(n, 'unterminated flow ' .. (open == '[' and 'sequence' or 'mapping'))
    elseif c == ',' then
      j = skip(j + 1)
      if s:sub(j, j) == close then -- trailing comma
        break
      end
    elseif c == close then
      break
    else
      fail(n, ("expected ',' or '%s' in a flow collection"):format(close))
    end
  end
  if open == '{' then
    ORDER[out] = keys
  end
  return out, j + 1
end

-- An inline value (the text after `key:` or `- `): flow collection or scalar.
function Parser:inline(text, line)
  local c = text:sub(1, 1)
  if c == '[' or c == '{' then
    -- a flow collection may go on over the next lines (deeper than the parent)
    local s = text
    while true do
      local ok, v, j = pcall(flow, s, 1, line.n, 0)
      if ok then
        if s:sub(j):match('%S') then
          fail(line.n, 'unexpected text after a flow collection')
        end
        return v
      end
      local nxt = self:peek()
      if type(v) ~= 'table' or not v.msg:find('unterminated flow', 1, true) or not nxt
          or nxt.indent <= line.indent then
        error(v, 0)
      end
      s = s .. ' ' .. nxt.text
      self.pos = self.pos + 1
    end
  elseif c == '"' or c == "'" then
    local v, j = quoted(text, 1, line.n)
    if text:sub(j):match('%S') then
      fail(line.n, 'unexpected text after a quoted string')
    end
    return v
  end
  check_plain(text, line.n)
  return typed(text)
end

-- A block scalar (| or >) whose header is on `line`; its content is every following raw line
-- more indented than `parent` (or blank).
function Parser:block_scalar(header, line, parent)
  local style, chomp = header:sub(1, 1), header:sub(2)
  if chomp ~= '' and chomp ~= '-' and chomp ~= '+' then
    fail(line.n, 'block scalar indicators other than - and + are not supported')
  end
  local body, indent = {}, nil
  local last = line.n
  local nxt_pos = self.pos
  while self.lines[nxt_pos] and self.lines[nxt_pos].indent > parent do
    last = self.lines[nxt_pos].n
    nxt_pos = nxt_pos + 1
  end
  local stop = self.lines[nxt_pos] and self.lines[nxt_pos].n or #self.raw + 1
  -- blank lines up to the next content line belong to the scalar (for + chomping)
  for n = line.n + 1, stop - 1 do
    local raw = self.raw[n]
    if raw:match('^%s*$') then
      body[#body + 1] = ''
    elseif n <= last then
      local lead = #raw:match('^ *')
      indent = indent or lead
      if lead < indent then
        fail(n, 'a block scalar line less indented than its first line')
      end
      body[#body + 1] = raw:sub(indent + 1)
    else
      body[#body + 1] = '' -- a comment line after the scalar at a lower indent
    end
  end
  self.pos = nxt_pos
  local trail = 0
  while #body > 0 and body[#body] == '' do
    body[#body] = nil
    trail = trail + 1
  end
  local text
  if style == '|' then
    text = table.concat(body, '\n')
  else
    local parts = {}
    for i, l in ipairs(body) do
      if i > 1 then
        local prev = body[i - 1]
        if l == '' or prev == '' or l:match('^%s') or prev:match('^%s') then
          parts[#parts + 1] = '\n'
        else
          parts[#parts + 1] = ' '
        end
        if l == '' and prev ~= '' and not prev:match('^%s') then
          parts[#parts] = '' -- a blank line between folded lines is the line break itself
        end
      end
      parts[#parts + 1] = l
    end
    text = table.concat(parts)
  end
  if #body == 0 then
    return ''
  elseif chomp == '-' then
    return text
  elseif chomp == '+' then
    return text .. string.rep('\n', trail + 1)
  end
  return text .. '\n'
end

-- The value after `key:` / `- ` with `rest` text on `line`, the parent at indent `ind`.
function Parser:value_after(rest, line, ind, path, depth, seq_ok)
  if rest == '' then
    local nxt = self:peek()
    if nxt and nxt.indent > ind then
      return self:block(nxt.indent, path, depth + 1)
    elseif seq_ok and nxt and nxt.indent == ind and nxt.text:match('^%-$')
        or seq_ok and nxt and nxt.indent == ind and nxt.text:match('^%-%s') then
      return self:sequence(ind, path, depth + 1)
    end
    return M.null
  end
  local h = rest:match('^([|>][-+0-9]*)$')
  if h then
    return self:block_scalar(h, line, ind)
  end
  local v = self:inline(rest, line)
  local nxt = self:peek()
  if nxt and nxt.indent > ind then
    fail(nxt.n, 'unexpected indentation (multi-line plain scalars are not supported: use | or >)')
  end
  return v
end

function Parser:mapping(ind, path, depth)
  local map, keys = {}, {}
  ORDER[map] = keys
  while true do
    local line = self:peek()
    if not line or line.indent < ind then
      break
    end
    if line.indent > ind then
      fail(line.n, 'unexpected indentation')
    end
    if line.text:match('^%-$') or line.text:match('^%-%s') then
      fail(line.n, 'a sequence item where a mapping key was expected')
    end
    local colon = key_colon(line.text)
    if not colon then
      fail(line.n, 'expected "key: value"')
    end
    local ktext = line.text:sub(1, colon - 1):gsub('%s+$', '')
    local key
    local c = ktext:sub(1, 1)
    if c == '"' or c == "'" then
      key = quoted(ktext, 1, line.n)
    else
      if ktext == '<<' then
        fail(line.n, 'merge keys (<<) are not supported')
      end
      check_plain(ktext, line.n)
      key = ktext
    end
    if map[key] ~= nil then
      fail(line.n, ('duplicate key "%s"'):format(key))
    end
    self.pos = self.pos + 1
    local kpath = path == '' and key or path .. '.' .. key
    self.where[kpath] = line.n
    local rest = line.text:sub(colon + 1):gsub('^%s+', '')
    map[key] = self:value_after(rest, line, ind, kpath, depth, true)
    keys[#keys + 1] = key
  end
  return map
end

function Parser:sequence(ind, path, depth)
  local seq = json.array()
  while true do
    local line = self:peek()
    if not line or line.indent < ind then
      break
    end
    if line.indent > ind then
      fail(line.n, 'unexpected indentation')
    end
    if not (line.text:match('^%-$') or line.text:match('^%-%s')) then
      break -- the parent mapping goes on (a sequence at its key's indent)
    end
    local ipath = ('%s[%d]'):format(path, #seq)
    self.where[ipath] = line.n
    local rest = line.text:sub(2):gsub('^%s+', '')
    if rest ~= '' and (rest:match('^%-$') or rest:match('^%-%s') or key_colon(rest)) then
      -- `- key: v` or `- - x`: the item is a block starting on this line
      local off = #line.text - #rest
      line.indent = ind + off
      line.text = rest
      seq[#seq + 1] = self:block(line.indent, ipath, depth + 1)
    else
      self.pos = self.pos + 1
      seq[#seq + 1] = self:value_after(rest, line, ind, ipath, depth, false)
    end
  end
  return seq
end

-- A block node at indent `ind`: a sequence, a mapping, or a lone scalar.
function Parser:block(ind, path, depth)
  if depth > M.MAX_DEPTH then
    fail(self:peek().n, 'nested too deep')
  end
  local line = self:peek()
  if line.text:match('^%-$') or line.text:match('^%-%s') then
    return self:sequence(ind, path, depth)
  elseif key_colon(line.text) then
    return self:mapping(ind, path, depth)
  end
  self.pos = self.pos + 1
  return self:value_after(line.text, line, ind - 1, path, depth, false)
end

--- Parse YAML text (the subset above). Returns value, lines ({ path = line number }) or
--- nil, 'EPARSE: line N: why', 'EPARSE'. An empty document is json.null.
function M.parse(text)
  if type(text) ~= 'string' then
    return nil, 'EPARSE: not a string', 'EPARSE'
  end
  if #text > M.MAX_BYTES then
    return nil, ('EPARSE: larger than %d bytes'):format(M.MAX_BYTES), 'EPARSE'
  end
  if text:sub(1, 3) == '\239\187\191' then
    text = text:sub(4)
  end
  local p = setmetatable({ src = text, where = {} }, Parser)
  local ok, v = pcall(function()
    p:scan()
    if not p:peek() then
      return M.null
    end
    local first = p:peek()
    local value = p:block(first.indent, '', 0)
    local rest = p:peek()
    if rest then
      fail(rest.n, 'unexpected content (check the indentation)')
    end
    return value
  end)
  if not ok then
    if type(v) == 'table' and v.yaml then
      return nil, v.msg, 'EPARSE'
    end
    error(v, 0)
  end
  return v, p.where
end

return M
