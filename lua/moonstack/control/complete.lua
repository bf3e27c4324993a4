-- SPDX-License-Identifier: Apache-2.0
-- Tab completion for the REPL (the control socket's `\complete PREFIX`): the names that
-- complete the last name of a line — globals of the REPL's environment (its own assignments,
-- the daemon's helpers, the daemon's globals), fields after `a.b.` and methods after `obj:`.
-- It only reads tables (rawget, next; __index followed only when it is a table, else the
-- metatable's __complete table, for a view such as the KMS's `kms`): completing never runs
-- code of the daemon.
local M = {}

--- At most this many candidates are returned.
M.MAX = 256

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch('%a+') do
  KEYWORDS[#KEYWORDS + 1] = w
end

-- The names of `t` (string keys that are identifiers) into `set`, and those of the tables its
-- metatable's __index chain holds (an object's methods). `only_fns`: functions only.
local function collect(t, set, only_fns, depth)
  if type(t) ~= 'table' or depth > 8 then
    return
  end
  for k, v in next, t do
    if type(k) == 'string' and k:match('^[%a_][%w_]*$') and (not only_fns or type(v) == 'function') then
      set[k] = true
    end
  end
  local mt = getmetatable(t)
  local idx = type(mt) == 'table' and rawget(mt, '__index')
  if type(idx) ~= 'table' and type(mt) == 'table' then
    idx = rawget(mt, '__complete') -- a view whose __index is a function names its target
  end
  if type(idx) == 'table' and idx ~= t then
    collect(idx, set, only_fns, depth + 1)
  end
end

-- The value named by the dotted `path` ('a.b'), its first name found by `lookup`, following
-- only tables.
local function resolve(path, lookup)
  local v
  for name in path:gmatch('[^.]+') do
    if v == nil then
      v = lookup(name)
    elseif type(v) == 'table' then
      local x = rawget(v, name)
      local mt = getmetatable(v)
      local idx = type(mt) == 'table' and rawget(mt, '__index')
      if type(idx) ~= 'table' and type(mt) == 'table' then
        idx = rawget(mt, '__complete')
      end
      if x == nil and type(idx) == 'table' then
        x = rawget(idx, name)
      end
      v = x
    else
      return nil
    end
    if v == nil then
      return nil
    end
  end
  return v
end

--- The completions of `line` (the text left of the cursor) in the REPL environment `env`
--- (moonstack.control.eval.new_env; its layers are read through `layers`, a list of tables:
--- the env itself, the helpers, the globals). Returns a sorted list of whole words to put in
--- place of the line's last name (e.g. 'vm.li' -> { 'vm.list' }), at most M.MAX.
function M.candidates(line, layers)
  if type(line) ~= 'string' then
    error('complete.candidates: line must be a string', 2)
  end
  local word = line:match('[%a_][%w_.:]*$') or ''
  local function lookup(name)
    for _, t in ipairs(layers) do
      local v = rawget(t, name)
      if v ~= nil then
        return v
      end
    end
    return nil
  end
  local base, sep, partial = word:match('^(.*)([.:])([%w_]*)$')
  local set = {}
  if base then
    if base:find(':', 1, true) or base == '' then
      return {}
    end
    local v = resolve(base, lookup)
    if type(v) ~= 'table' then
      return {}
    end
    collect(v, set, sep == ':', 1)
  else
    base, sep, partial = nil, '', word
    for _, t in ipairs(layers) do
      collect(t, set, false, 1)
    end
    for _, k in ipairs(KEYWORDS) do
      set[k] = true
    end
  end
  local out = {}
  for name in pairs(set) do
    if name:sub(1, #partial) == partial then
      out[#out + 1] = (base and (base .. sep) or '') .. name
    end
  end
  table.sort(out)
  while #out > M.MAX do
    out[#out] = nil
  end
  return out
end

return M
