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
local lex = require('moonstack.compose.yaml_flow')

local M = {}

--- The null value (the same sentinel as moonstack.core.json).
M.null = json.null

--- Largest document accepted (bytes).
M.MAX_BYTES = 1024 * 1024
--- Deepest nesting accepted.
M.MAX_DEPTH = lex.MAX_DEPTH
--- Most lines a flow collection may continue over (each retry re-scans it).
M.MAX_FLOW_LINES = 64

local ORDER = lex.ORDER
local fail, strip_comment, key_colon, quoted = lex.fail, lex.strip_comment, lex.key_colon, lex.quoted
local typed, check_plain, flow = lex.typed, lex.check_plain, lex.flow

--- The keys of a mapping returned by parse(), in the order of the file.
function M.keys(map)
  return ORDER[map] or {}
end

local Parser = {}
Parser.__index = Parser

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

-- An inline value (the text after `key:` or `- `): flow collection or scalar.
function Parser:inline(text, line)
  local c = text:sub(1, 1)
  if c == '[' or c == '{' then
    -- a flow collection may go on over the next lines (deeper than the parent)
    local s, joined = text, 0
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
      joined = joined + 1
      if joined > M.MAX_FLOW_LINES then
        fail(line.n, ('a flow collection over more than %d lines'):format(M.MAX_FLOW_LINES))
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
  local c = rest:sub(1, 1)
  if c ~= '"' and c ~= "'" and c ~= '[' and c ~= '{' and key_colon(rest) then
    fail(line.n, 'a plain scalar holding ": " (a mapping is not allowed here: quote the value)')
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
