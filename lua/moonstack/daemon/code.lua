-- SPDX-License-Identifier: Apache-2.0
-- Hot reload of orchestration code (DESIGN.md §5.3): a running daemon swaps the Lua modules of
-- its own service (every module under a prefix such as `moonstack.kms`) for new ones read
-- from a source tree, without a restart.
--
--   local staged = assert(code.stage(dir, 'moonstack.kms'))  -- load and check everything
--   code.swap(staged)                                         -- then publish it
--
-- stage() reads every file of the prefix's folder under `dir` (a `lua/` root, as --lua-dir),
-- refuses bytecode, compiles each file and runs it, so a syntax error, a runtime error at load
-- or a missing module fails the whole reload before anything changes. Modules of the prefix
-- required while loading resolve to the staged versions (a staged module never sees a mix of
-- old and new code); everything else resolves to the running modules. swap() replaces
-- package.loaded entries; functions already running (requests in flight) keep the code they
-- started with. What must survive a swap (listeners, connections, caches) belongs in the
-- service's state, which the new code adopts (see `rebind` in the service's init.lua).
-- The code's hash (SHA-256 over every file's name and bytes, in name order) names the code
-- for attestation: a CVM records it in RTMR3 before it runs the new code.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')

local M = {}

--- Largest module file read (bytes).
M.MAX_FILE = 1024 * 1024

-- Every *.lua file under `root`/`rel` (recursively), as module names, sorted.
local function list_modules(root, rel, prefix, out)
  local req = uv.fs_scandir(root .. '/' .. rel)
  if not req then
    return out
  end
  while true do
    local name, kind = uv.fs_scandir_next(req)
    if not name then
      break
    end
    local path = rel .. '/' .. name
    if kind == 'directory' then
      list_modules(root, path, prefix .. '.' .. name, out)
    elseif kind == 'file' and name:match('%.lua$') then
      local base = name:gsub('%.lua$', '')
      out[#out + 1] = { name = base == 'init' and prefix or prefix .. '.' .. base, path = path }
    end
  end
  return out
end

--- Load and check every module under `prefix` from `dir` (a lua/ root). Returns staged =
--- { prefix, dir, modules = { name = value }, names = {...}, hash = hex SHA-256, files = n } or
--- nil, 'CODE: message', CODE (ENOENT no such folder, EINVAL bytecode or too large, ELOAD a
--- compile or load error, naming the file). Nothing outside the staging area changes.
function M.stage(dir, prefix)
  assert(type(dir) == 'string' and type(prefix) == 'string' and prefix:match('^moonstack%.[%w_]+$'),
    'code.stage: dir and a service prefix (moonstack.<service>) required')
  local rel = prefix:gsub('%.', '/')
  if not uv.fs_stat(dir .. '/' .. rel) then
    return errors.fail('ENOENT', ('no service code at %s/%s'):format(dir, rel))
  end
  local files = list_modules(dir, rel, prefix, {})
  table.sort(files, function(a, b) return a.name < b.name end)
  local chunks, parts, names = {}, {}, {}
  for _, f in ipairs(files) do
    local text, err, code = fs.read_file(dir .. '/' .. f.path, M.MAX_FILE)
    if not text then
      return nil, err, code
    end
    if text:byte(1) == 27 then
      return errors.fail('EINVAL', ('%s/%s: bytecode is not loaded'):format(dir, f.path))
    end
    local chunk, cerr = loadstring(text, '@' .. dir .. '/' .. f.path)
    if not chunk then
      return errors.fail('ELOAD', cerr)
    end
    chunks[f.name] = chunk
    names[#names + 1] = f.name
    parts[#parts + 1] = f.name .. '\0' .. #text .. '\0' .. text
  end
  if #names == 0 then
    return errors.fail('ENOENT', ('no modules under %s/%s'):format(dir, rel))
  end
  local modules, loading = {}, {}
  local real_require = require
  local function staged_require(name)
    if chunks[name] == nil then
      return real_require(name)
    end
    if modules[name] ~= nil then
      return modules[name]
    end
    if loading[name] then
      error(("loop while loading module '%s'"):format(name), 2)
    end
    loading[name] = true
    local value = chunks[name](name)
    loading[name] = nil
    modules[name] = value == nil and true or value
    return modules[name]
  end
  -- The staged chunks see the daemon's globals, with `require` resolving inside the stage.
  local env = setmetatable({ require = staged_require }, { __index = _G, __newindex = _G })
  for _, chunk in pairs(chunks) do
    setfenv(chunk, env)
  end
  for _, name in ipairs(names) do
    local ok, err = pcall(staged_require, name)
    if not ok then
      return errors.fail('ELOAD', ('%s: %s'):format(name, tostring(err)))
    end
  end
  return { prefix = prefix, dir = dir, modules = modules, names = names, files = #names,
    hash = crypto.hex(crypto.sha256(table.concat(parts, '\0'))) }
end

--- Publish staged modules: package.loaded points at the new code from now on. Modules of the
--- prefix that the new tree no longer has are forgotten. Returns `previous`, for undo().
function M.swap(staged)
  local previous = {}
  for name, value in pairs(package.loaded) do
    if name == staged.prefix or name:sub(1, #staged.prefix + 1) == staged.prefix .. '.' then
      previous[name] = value
      package.loaded[name] = nil
    end
  end
  for name, value in pairs(staged.modules) do
    package.loaded[name] = value
  end
  return previous
end

--- Put back the modules swap() replaced (`previous` is what it returned).
function M.undo(staged, previous)
  for name in pairs(staged.modules) do
    package.loaded[name] = nil
  end
  for name, value in pairs(previous) do
    package.loaded[name] = value
  end
end

return M
