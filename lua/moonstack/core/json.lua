-- SPDX-License-Identifier: Apache-2.0
-- JSON for the verifier, where lua-cjson falls short: a decoder that keeps arrays apart from
-- objects (cjson decodes [] and {} alike), rejects duplicate keys and can give the raw text of
-- a member (Intel signs the exact bytes of `tcbInfo`); and an encoder with sorted keys, compact
-- output and serde_json's escaping (no '\/', non-ASCII raw, \u00xx for other controls). The
-- canonical form is what Atlas hashes for an `app_compose` given as a JSON value:
-- SHA-256(serde_json::to_string(value)) with serde_json's default sorted maps.
local M = {}

local byte, char, sub, find, concat = string.byte, string.char, string.sub, string.find, table.concat
local floor, HUGE = math.floor, math.huge

local ARRAY_MT = { __name = 'moonstack.core.json.array' }
local FLOAT_MT = { __name = 'moonstack.core.json.float' } -- canonical(): 1.0 vs 1

--- The JSON null (decode returns it for null; encode writes it as null).
M.null = setmetatable({}, { __tostring = function() return 'null' end, __name = 'json.null' })

--- Mark `t` (default {}) as a JSON array, so an empty one encodes as [] and not {}.
function M.array(t)
  return setmetatable(t or {}, ARRAY_MT)
end

--- Whether `t` was marked as an array (decode marks every array it returns).
function M.is_array(t)
  return type(t) == 'table' and getmetatable(t) == ARRAY_MT
end

-- Decoder ---------------------------------------------------------------------------------

local ESC = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r',
  t = '\t' }

local function utf8_char(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
    0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local Parser = {}
Parser.__index = Parser

function Parser:fail(msg, pos)
  error({ json_error = ('%s at offset %d'):format(msg, (pos or self.pos) - 1) }, 0)
end

function Parser:skip()
  local _, e = find(self.text, '^[ \t\r\n]*', self.pos)
  self.pos = e + 1
end

function Parser:string()
  local text, pos = self.text, self.pos + 1 -- after the opening quote
  local parts = {}
  while true do
    local s, e = find(text, '^[^"\\%c]+', pos)
    if s then
      parts[#parts + 1] = sub(text, s, e)
      pos = e + 1
    end
    local c = sub(text, pos, pos)
    if c == '"' then
      self.pos = pos + 1
      return concat(parts)
    elseif c == '\\' then
      local x = sub(text, pos + 1, pos + 1)
      if ESC[x] then
        parts[#parts + 1] = ESC[x]
        pos = pos + 2
      elseif x == 'u' then
        local h = sub(text, pos + 2, pos + 5)
        if not h:match('^%x%x%x%x$') then
          self:fail('bad \\u escape', pos)
        end
        local cp = tonumber(h, 16)
        pos = pos + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = sub(text, pos, pos + 5):match('^\\u(%x%x%x%x)$')
          lo = lo and tonumber(lo, 16)
          if not lo or lo < 0xDC00 or lo > 0xDFFF then
            self:fail('unpaired surrogate', pos)
          end
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          pos = pos + 6
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          self:fail('unpaired surrogate', pos)
        end
        parts[#parts + 1] = utf8_char(cp)
      else
        self:fail('bad escape', pos)
      end
    elseif c == '' then
      self:fail('unterminated string', pos)
    else
      self:fail('control character in a string', pos)
    end
  end
end

function Parser:number()
  local text, start = self.text, self.pos
  local pos = start
  if sub(text, pos, pos) == '-' then
    pos = pos + 1
  end
  local _, e = find(text, '^0', pos)
  if not e then
    _, e = find(text, '^[1-9]%d*', pos)
  end
  if not e then
    self:fail('bad number', start)
  end
  pos = e + 1
  if sub(text, pos, pos) == '.' then
    _, e = find(text, '^%d+', pos + 1)
    if not e then
      self:fail('bad number', start)
    end
    pos = e + 1
  end
  if find(text, '^[eE]', pos) then
    _, e = find(text, '^[-+]?%d+', pos + 1)
    if not e then
      self:fail('bad number', start)
    end
    pos = e + 1
  end
  self.pos = pos
  local lit = sub(text, start, pos - 1)
  local n = tonumber(lit)
  if n == nil or n == HUGE or n == -HUGE then
    -- past the doubles (1e400), as serde_json says; LuaJIT's tonumber even gives nil for
    -- exponents of 20 digits or so, and an array would silently lose the element
    self:fail('number out of range', start)
  end
  if self.exact and n == floor(n) and find(lit, '[.eE]') then
    return setmetatable({ n }, FLOAT_MT) -- serde_json keeps it a float: 1.0 stays 1.0
  end
  return n
end

function Parser:value(depth)
  if depth > 128 then
    self:fail('nesting too deep')
  end
  self:skip()
  local text, pos = self.text, self.pos
  local c = sub(text, pos, pos)
  if c == '{' then
    local obj, seen = {}, {}
    self.pos = pos + 1
    self:skip()
    if sub(text, self.pos, self.pos) == '}' then
      self.pos = self.pos + 1
      return obj
    end
    while true do
      self:skip()
      if sub(text, self.pos, self.pos) ~= '"' then
        self:fail('expected a string key')
      end
      local kpos = self.pos
      local k = self:string()
      if seen[k] then
        self:fail(('duplicate key "%s"'):format(k), kpos)
      end
      seen[k] = true
      self:skip()
      if sub(text, self.pos, self.pos) ~= ':' then
        self:fail("expected ':'")
      end
      self.pos = self.pos + 1
      local vstart = self.pos
      obj[k] = self:value(depth + 1)
      if depth == 0 and self.spans then
        self.spans[k] = { vstart, self.pos - 1 }
      end
      self:skip()
      local d = sub(text, self.pos, self.pos)
      self.pos = self.pos + 1
      if d == '}' then
        return obj
      elseif d ~= ',' then
        self:fail("expected ',' or '}'", self.pos - 1)
      end
    end
  elseif c == '[' then
    local arr = M.array()
    self.pos = pos + 1
    self:skip()
    if sub(text, self.pos, self.pos) == ']' then
      self.pos = self.pos + 1
      return arr
    end
    while true do
      arr[#arr + 1] = self:value(depth + 1)
      self:skip()
      local d = sub(text, self.pos, self.pos)
      self.pos = self.pos + 1
      if d == ']' then
        return arr
      elseif d ~= ',' then
        self:fail("expected ',' or ']'", self.pos - 1)
      end
    end
  elseif c == '"' then
    return self:string()
  elseif c == 't' and sub(text, pos, pos + 3) == 'true' then
    self.pos = pos + 4
    return true
  elseif c == 'f' and sub(text, pos, pos + 4) == 'false' then
    self.pos = pos + 5
    return false
  elseif c == 'n' and sub(text, pos, pos + 3) == 'null' then
    self.pos = pos + 4
    return M.null
  elseif c == '-' or c:match('%d') then
    return self:number()
  elseif c == '' then
    self:fail('unexpected end of input')
  end
  self:fail(('unexpected character %q'):format(c))
end

local function parse(text, spans, exact)
  if type(text) ~= 'string' then
    error('json.decode: text must be a string', 3)
  end
  local p = setmetatable({ text = text, pos = 1, spans = spans, exact = exact }, Parser)
  local ok, v = pcall(function()
    local value = p:value(0)
    p:skip()
    if p.pos <= #text then
      p:fail('trailing characters')
    end
    return value
  end)
  if not ok then
    if type(v) == 'table' and v.json_error then
      return nil, 'EPARSE: invalid JSON: ' .. v.json_error, 'EPARSE'
    end
    error(v, 0)
  end
  return v
end

--- Decode JSON text. Arrays come back marked (is_array), null as json.null; duplicate keys
--- and trailing characters are errors. Returns the value or nil, 'EPARSE: ...', 'EPARSE'.
---@param text string
function M.decode(text)
  return parse(text)
end

--- Decode a JSON object and also return the raw text of each top-level member's value:
--- value, { key = raw_text } or nil, msg, code.
---@param text string
function M.decode_with_raw(text)
  local spans = {}
  local v, err, code = parse(text, spans)
  if v == nil then
    return nil, err, code
  end
  local raw = {}
  for k, s in pairs(spans) do
    local a, b = s[1], s[2]
    while find(sub(text, a, a), '^[ \t\r\n]') do
      a = a + 1
    end
    raw[k] = sub(text, a, b)
  end
  return v, raw
end

-- Encoder ---------------------------------------------------------------------------------

local SHORT = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n',
  ['\r'] = '\\r', ['\t'] = '\\t' }

local function quote(s)
  return '"' .. s:gsub('[%z\1-\31"\\]', function(c)
    return SHORT[c] or ('\\u%04x'):format(byte(c))
  end) .. '"'
end

-- serde_json prints integers as integers and floats with ryu (shortest round trip, always a
-- '.' or an exponent). Floats with exponents follow ryu only approximately.
local function number(n)
  if n ~= n or n == math.huge or n == -math.huge then
    error('json.encode: cannot encode NaN or infinity', 0)
  end
  if n == floor(n) and n > -2 ^ 63 and n < 2 ^ 63 then
    return ('%.0f'):format(n)
  end
  local s
  for prec = 15, 17 do
    s = ('%.' .. prec .. 'g'):format(n)
    if tonumber(s) == n then
      break
    end
  end
  local mant, exp = s:match('^(.-)e([-+]%d+)$')
  if mant then
    return mant .. 'e' .. tostring(tonumber(exp))
  end
  return s
end

local function is_sequence(t)
  local n = #t
  if n == 0 then
    return false
  end
  local count = 0
  for k in pairs(t) do
    if type(k) ~= 'number' or k < 1 or k > n or k ~= floor(k) then
      return false
    end
    count = count + 1
  end
  return count == n
end

local encode

local function encode_table(t, out, depth)
  if depth > 128 then
    error('json.encode: nesting too deep (a cycle?)', 0)
  end
  if getmetatable(t) == FLOAT_MT then
    out[#out + 1] = number(t[1]) .. (find(number(t[1]), '[e.]') and '' or '.0')
    return
  end
  if getmetatable(t) == ARRAY_MT or is_sequence(t) then
    out[#out + 1] = '['
    for i = 1, #t do
      if i > 1 then
        out[#out + 1] = ','
      end
      encode(t[i], out, depth + 1)
    end
    out[#out + 1] = ']'
    return
  end
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= 'string' then
      error(('json.encode: object key %s is not a string'):format(tostring(k)), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys) -- byte order, as Rust's BTreeMap<String, _>
  out[#out + 1] = '{'
  for i, k in ipairs(keys) do
    if i > 1 then
      out[#out + 1] = ','
    end
    out[#out + 1] = quote(k)
    out[#out + 1] = ':'
    encode(t[k], out, depth + 1)
  end
  out[#out + 1] = '}'
end

encode = function(v, out, depth)
  local t = type(v)
  if v == M.null or v == nil then
    out[#out + 1] = 'null'
  elseif t == 'boolean' then
    out[#out + 1] = v and 'true' or 'false'
  elseif t == 'number' then
    out[#out + 1] = number(v)
  elseif t == 'string' then
    out[#out + 1] = quote(v)
  elseif t == 'table' then
    encode_table(v, out, depth)
  else
    error(('json.encode: cannot encode a %s'):format(t), 0)
  end
end

--- Encode `v` compactly with sorted object keys (the canonical form). Tables marked with
--- array(), or non-empty sequences, are arrays; other tables are objects (an unmarked empty
--- table is {}). Raises on values JSON cannot hold (functions, NaN, non-string keys, cycles).
function M.encode(v)
  local out = {}
  local ok, err = pcall(encode, v, out, 0)
  if not ok then
    error(err, 2)
  end
  return concat(out)
end

--- The canonical form of JSON text (decode then encode): sorted keys, compact, serde_json
--- escaping. Returns the text or nil, 'EPARSE: ...', 'EPARSE'.
function M.canonical(text)
  if type(text) ~= 'string' then
    error('json.canonical: text must be a string', 2)
  end
  local v, err, code = parse(text, nil, true)
  if v == nil then
    return nil, err, code
  end
  return M.encode(v)
end

return M
