-- SPDX-License-Identifier: Apache-2.0
-- Config files: a Lua chunk (text only, never bytecode) that returns a table, run in an
-- environment with a small safe set of globals, then validated against a schema
-- (moonstack.core.schema). Failures follow the error contract: nil, 'CODE: message', CODE.
--
-- Globals a config chunk sees (nothing else; reading any other global raises, which catches
-- typos such as `port = PROT`):
--   assert error ipairs next pairs pcall select tonumber tostring type unpack xpcall
--   string (without string.dump), table, math: copies of the standard libraries
--   os.getenv, os.time, os.date, os.clock
--   config_dir: the absolute directory of the config file (load() only), so a config can name
--     files next to it and work from any current directory
--   anything passed in opts.env (e.g. host-provided values)
-- A chunk may set globals; they stay in its private environment.
local schema_mod = require('moonstack.core.schema')

local M = {}

local SAFE = {
  'assert', 'error', 'ipairs', 'next', 'pairs', 'pcall', 'select', 'tonumber', 'tostring', 'type',
  'unpack', 'xpcall',
}

local function copy_lib(lib, skip)
  local out = {}
  for k, v in pairs(lib) do
    if not (skip and skip[k]) then
      out[k] = v
    end
  end
  return out
end

--- A fresh environment for one config chunk (see the top of this file).
function M.env(extra)
  local env = {}
  for _, name in ipairs(SAFE) do
    env[name] = _G[name]
  end
  env.string = copy_lib(string, { dump = true })
  env.table = copy_lib(table)
  env.math = copy_lib(math)
  env.os = { getenv = os.getenv, time = os.time, date = os.date, clock = os.clock }
  for k, v in pairs(extra or {}) do
    env[k] = v
  end
  env._G = env
  return setmetatable(env, {
    __index = function(_, k)
      error(("undefined global '%s'"):format(tostring(k)), 2)
    end,
  })
end

local fail = require('moonstack.core.errors').fail

-- Lua shortens long chunk names in messages ('...ild/tests/x.lua:3: ...'): put the whole
-- name back so the operator sees which file failed.
local function full_source(msg, label)
  local src, rest = msg:match('^(.-)(:%d+: .*)$')
  if src and src:sub(1, 3) == '...' and #src > 3 and label:sub(-(#src - 3)) == src:sub(4) then
    return label .. rest
  end
  return msg
end

--- Load config text `src`. `name` is used in messages (e.g. the file path). `schema` is
--- optional; `opts.env` adds globals; `opts.root` names the value in key paths (default
--- 'config'); `opts.finish(cfg)` -> cfg | nil, msg, code runs after the schema (checks across
--- keys, derived defaults). Returns the validated table (a copy with defaults applied), or nil, msg, code
--- with code EPARSE (syntax error, bytecode) or EINVAL (error while running the chunk, no
--- table returned, schema violation).
function M.load_string(src, name, schema, opts)
  if type(src) ~= 'string' then
    error('config.load_string: src must be a string', 2)
  end
  name = name or '=config'
  opts = opts or {}
  local label = name:gsub('^[@=]', '')
  if src:byte(1) == 27 then
    return fail('EPARSE', label .. ': binary chunks are not allowed')
  end
  local chunkname = name:match('^[@=]') and name or '@' .. name
  local chunk, perr = load(src, chunkname, 't', M.env(opts.env))
  if not chunk then
    return fail('EPARSE', full_source(perr, label))
  end
  local ok, result = pcall(chunk)
  if not ok then
    return fail('EINVAL', full_source(tostring(result), label))
  end
  if type(result) ~= 'table' then
    return fail('EINVAL', ('%s: must return a table, got %s'):format(label, type(result)))
  end
  if schema == nil then
    return result
  end
  local out, msg, code = schema_mod.validate(result, schema, opts.root or 'config')
  if out and opts.finish then
    out, msg, code = opts.finish(out)
  end
  if not out then
    return fail(code or 'EINVAL', label .. ': ' .. (tostring(msg):gsub('^E[A-Z0-9_]+: ', '')))
  end
  return out
end

local ERRNO = { [2] = 'ENOENT', [13] = 'EACCES', [21] = 'EISDIR' }

--- The absolute directory (symlinks resolved) of the file at `path`: `config_dir` of its chunk.
function M.dir_of(path)
  local dir = path:match('^(.*)/[^/]*$')
  if dir == nil then
    dir = '.'
  elseif dir == '' then
    dir = '/'
  end
  return require('luv').fs_realpath(dir) or dir
end

--- Load the config file at `path` (see load_string). Adds codes ENOENT, EACCES, EISDIR or
--- EIO when the file cannot be read.
function M.load(path, schema, opts)
  if type(path) ~= 'string' then
    error('config.load: path must be a string', 2)
  end
  local f, oerr, errno = io.open(path, 'rb')
  if not f then
    return fail(ERRNO[errno] or 'EIO', oerr)
  end
  local src, rerr, rerrno = f:read('*a')
  f:close()
  if not src then
    return fail(ERRNO[rerrno] or 'EIO', ('%s: %s'):format(path, tostring(rerr)))
  end
  local o = {}
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  o.env = { config_dir = M.dir_of(path) }
  for k, v in pairs(opts and opts.env or {}) do
    o.env[k] = v
  end
  return M.load_string(src, '@' .. path, schema, o)
end

--- Give the config module `mod` of a service its two entry points, over `mod.schema` and the
--- optional `mod.finish(cfg)` -> cfg | nil, msg, code (checks across keys, derived defaults;
--- both looked up at each call):
---   mod.validate(tbl) -> a validated copy with defaults, or nil, 'EINVAL: ...', 'EINVAL'
---     (every message names the field);
---   mod.load(path) -> the config of the file, or nil, msg, code (ENOENT, EPARSE, EINVAL...).
--- Returns `mod`.
function M.define(mod)
  function mod.validate(tbl)
    local cfg, err, code = schema_mod.validate(tbl, mod.schema, 'config')
    if cfg and mod.finish then
      return mod.finish(cfg)
    end
    return cfg, err, code
  end
  function mod.load(path)
    return M.load(path, mod.schema, { finish = mod.finish })
  end
  return mod
end

--- The documentation of a config module: the comment at the top of the embedded source of
--- `module` (e.g. 'moonstack.kms.config', which lists every key with its default), without the
--- SPDX line and the comment markers, for a command's --help. '' when it has none.
function M.doc(module)
  local src = require('moonstack.native.runtime').embedded('lua/' .. module:gsub('%.', '/') .. '.lua')
  local out = {}
  for line in (src or ''):gmatch('([^\n]*)\n') do
    local text = line:match('^%-%- ?(.*)$')
    if not text then
      break
    end
    if not text:match('^SPDX%-License%-Identifier') then
      out[#out + 1] = text
    end
  end
  return table.concat(out, '\n')
end

return M
