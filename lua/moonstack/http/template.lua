-- SPDX-License-Identifier: Apache-2.0
-- A tiny HTML template language for the pages served from ui/ that must work without
-- JavaScript. Every value is inserted as text, HTML-escaped: there is no raw form, so no value
-- can ever become markup.
--   {{name}}               the value of `name` (a string, number or boolean; nil and false
--                          give ''), looked up in the innermost section's item, then outwards
--   {{.}}                  the current item of a list of strings
--   {{#name}}...{{/name}}  a section: once per element of a list (each element becomes the
--                          innermost item), once for any other true value, never for nil,
--                          false or an empty list
--   {{^name}}...{{/name}}  an inverted section: once when `name` is nil, false or an empty list
-- A malformed template (an unknown tag, an unclosed or mismatched section) raises.
local M = {}

local ESCAPE = { ['&'] = '&amp;', ['<'] = '&lt;', ['>'] = '&gt;', ['"'] = '&quot;', ["'"] = '&#39;' }

--- `s` as HTML text (also safe inside a quoted attribute value).
function M.escape(s)
  return (tostring(s):gsub('[&<>"\']', ESCAPE))
end

-- Parse `text` into a list of nodes: strings, { var = name }, { section = name, invert =
-- bool, body = nodes }.
local function parse(text)
  local root = {}
  local stack = { { body = root } }
  local pos = 1
  while true do
    local open = text:find('{{', pos, true)
    local top = stack[#stack]
    if not open then
      top.body[#top.body + 1] = text:sub(pos)
      break
    end
    top.body[#top.body + 1] = text:sub(pos, open - 1)
    local close = text:find('}}', open + 2, true)
    if not close then
      error(('template: unterminated tag at byte %d'):format(open), 0)
    end
    local inner = text:sub(open + 2, close - 1)
    local sigil, name = inner:match('^%s*([#^/]?)%s*([%w_]+)%s*$')
    if not sigil and inner:match('^%s*%.%s*$') then
      sigil, name = '', '.'
    end
    if not sigil then
      error(('template: invalid tag {{%s}} at byte %d'):format(inner, open), 0)
    end
    if sigil == '' then
      top.body[#top.body + 1] = { var = name }
    elseif sigil == '/' then
      if #stack == 1 or top.section ~= name then
        error(('template: {{/%s}} at byte %d closes no open section'):format(name, open), 0)
      end
      stack[#stack] = nil
    else
      local node = { section = name, invert = sigil == '^', body = {} }
      top.body[#top.body + 1] = node
      stack[#stack + 1] = node
    end
    pos = close + 2
  end
  if #stack > 1 then
    error(('template: section {{#%s}} is not closed'):format(stack[#stack].section), 0)
  end
  return root
end

local function lookup(scopes, name)
  for i = #scopes, 1, -1 do
    local s = scopes[i]
    if name == '.' then
      return s['.']
    end
    local v = s[name]
    if v ~= nil then
      return v
    end
  end
  return nil
end

local function render(nodes, scopes, out)
  for _, n in ipairs(nodes) do
    if type(n) == 'string' then
      out[#out + 1] = n
    elseif n.var then
      local v = lookup(scopes, n.var)
      if type(v) == 'table' or type(v) == 'function' or type(v) == 'userdata' then
        error(('template: {{%s}} is a %s, not text'):format(n.var, type(v)), 0)
      end
      if v ~= nil and v ~= false then
        out[#out + 1] = M.escape(v)
      end
    else
      local v = lookup(scopes, n.section)
      local is_list = type(v) == 'table' and (v[1] ~= nil or next(v) == nil)
      local empty = v == nil or v == false or (is_list and v[1] == nil)
      if n.invert then
        if empty then
          render(n.body, scopes, out)
        end
      elseif is_list then
        for _, item in ipairs(v) do
          scopes[#scopes + 1] = type(item) == 'table' and item or { ['.'] = item }
          render(n.body, scopes, out)
          scopes[#scopes] = nil
        end
      elseif not empty then
        if type(v) == 'table' then
          scopes[#scopes + 1] = v
          render(n.body, scopes, out)
          scopes[#scopes] = nil
        else
          render(n.body, scopes, out)
        end
      end
    end
  end
end

--- Render the template `text` with `values` (a table). Returns the text; raises on a
--- malformed template or a table where text is expected.
function M.render(text, values)
  if type(text) ~= 'string' then
    error('template.render: text must be a string', 2)
  end
  if values ~= nil and type(values) ~= 'table' then
    error('template.render: values must be a table', 2)
  end
  local out = {}
  render(parse(text), { values or {} }, out)
  return table.concat(out)
end

return M
