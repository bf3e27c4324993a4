-- SPDX-License-Identifier: Apache-2.0
-- The UI assets: the files of the top-level ui/ folder, compiled into the binary (DESIGN.md
-- §4). In development (--lua-dir DIR or MOONSTACK_LUA_DIR) they are read from the ui/ folder
-- beside DIR instead, on every call, so an edit shows on the next reload of the page. Asset
-- names are relative to ui/ and checked strictly: plain segments only, so no name can leave it.
local native = require('moonstack.native.runtime')
local fs = require('moonstack.core.fs')

local M = {}

--- Largest asset read from the development folder (embedded ones have no limit).
M.MAX_DEV_BYTES = 16 * 1024 * 1024

-- A segment: starts with a letter, digit, '_' or '-' (no '.', '..', hidden files), then those
-- and '.'. Everything else ('%', '\', NUL, ':', spaces, empty segments) is refused.
local SEGMENT = '^[%w_%-][%w_%-%.]*$'

--- Is `name` a valid asset name ('kms/onboarding/index.html')? Returns true, or nil and why.
function M.valid(name)
  if type(name) ~= 'string' or name == '' then
    return nil, 'empty name'
  end
  if #name > 512 then
    return nil, 'name too long'
  end
  if name:sub(1, 1) == '/' then
    return nil, 'absolute name'
  end
  for seg in (name .. '/'):gmatch('([^/]*)/') do
    if not seg:match(SEGMENT) then
      return nil, 'invalid segment'
    end
  end
  return true
end

-- The parent of a directory name, lexically (DIR may be a symlink: '..' would follow it).
local function parent(dir)
  dir = dir:gsub('/+$', '')
  if dir == '' then
    return '/'
  end
  local up = dir:match('^(.*)/[^/]+$')
  if up then
    return up == '' and '/' or up
  end
  if dir == '.' or dir == '..' then
    return dir .. '/..'
  end
  return '.'
end

--- The development ui/ folder (the one beside --lua-dir, lexically), or nil when the assets
--- come from the binary.
function M.dir()
  local lua_dir = native.lua_dir()
  if not lua_dir or lua_dir == '' then
    return nil
  end
  local up = parent(lua_dir)
  return (up == '/' and '' or up) .. '/ui'
end

--- The bytes of the asset `name` (relative to ui/). Returns them, or nil, 'CODE: message',
--- code: EINVAL for a name valid() refuses, ENOENT when there is no such asset (the message
--- never holds the name), EIO when a development file cannot be read (permissions, size).
function M.read(name)
  local ok = M.valid(name)
  if not ok then
    return nil, 'EINVAL: invalid asset name', 'EINVAL'
  end
  local dir = M.dir()
  if not dir then
    local data = native.embedded('ui/' .. name)
    if not data then
      return nil, 'ENOENT: no such asset', 'ENOENT'
    end
    return data
  end
  local data, _, code = fs.read_file(dir .. '/' .. name, M.MAX_DEV_BYTES)
  if not data then
    if code == 'EACCES' or code == 'ETOOBIG' then
      return nil, 'EIO: asset unreadable', 'EIO'
    end
    return nil, 'ENOENT: no such asset', 'ENOENT' -- also a directory, or a file as a folder
  end
  return data
end

--- Are the assets read from the development folder (so nothing derived from them may be
--- cached)?
function M.dev()
  return M.dir() ~= nil
end

return M
