-- SPDX-License-Identifier: Apache-2.0
-- The host-shared folder the VMM prepares for a CVM (spec kms-vmm-gateway.md §1.3, §4.4):
-- app-compose.json (required, ≤ 50 MiB), .sys-config.json (required, ≤ 32 KiB),
-- .instance_info (≤ 10 KiB), .encrypted-env (≤ 256 KiB, raw binary), .user-config
-- (≤ 50 MiB). Files are read with upstream's size caps and decoded; a missing optional file
-- is empty.
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local compose = require('moonstack.cvm.app_compose')

local M = {}

--- File names and their size caps (bytes), as upstream copies them.
M.FILES = {
  app_compose = { name = 'app-compose.json', max = 50 * 1024 * 1024, required = true },
  sys_config = { name = '.sys-config.json', max = 32 * 1024, required = true },
  instance_info = { name = '.instance_info', max = 10 * 1024 },
  encrypted_env = { name = '.encrypted-env', max = 256 * 1024 },
  user_config = { name = '.user-config', max = 50 * 1024 * 1024 },
}

local function read(dir, which)
  local f = M.FILES[which]
  local path = dir .. '/' .. f.name
  local data, err, code = fs.read_file(path, f.max)
  if not data then
    if code == 'ENOENT' and not f.required then
      return ''
    end
    if code == 'ENOENT' then
      return errors.fail('ENOENT', ('%s is missing from the shared folder %s'):format(f.name, dir))
    end
    return nil, err, code
  end
  return data
end

--- Decode .sys-config.json text: a JSON object (vm_config is a JSON string). Returns the table.
function M.parse_sys_config(text)
  local sc = cjson.decode(text)
  if type(sc) ~= 'table' then
    return errors.fail('EINVAL', '.sys-config.json: not a JSON object')
  end
  if sc.vm_config ~= nil and sc.vm_config ~= cjson.null and type(sc.vm_config) ~= 'string' then
    return errors.fail('EINVAL', '.sys-config.json: vm_config must be a JSON string')
  end
  return sc
end

--- os_image_hash (bytes, '' when absent) from a vm_config string (or an object with a nested
--- vm_config string, as some callers pass).
function M.vm_config_os_image_hash(vm_config)
  local v = type(vm_config) == 'string' and cjson.decode(vm_config) or vm_config
  if type(v) ~= 'table' then
    return ''
  end
  if type(v.os_image_hash) ~= 'string' and type(v.vm_config) == 'string' then
    return M.vm_config_os_image_hash(v.vm_config)
  end
  if type(v.os_image_hash) ~= 'string' then
    return ''
  end
  return crypto.unhex(v.os_image_hash) or ''
end

local function hex_field(obj, key, len)
  local v = obj[key]
  if v == nil or v == cjson.null or v == '' then
    return ''
  end
  local b = type(v) == 'string' and crypto.unhex(v)
  if not b or (len and #b ~= len) then
    return nil, ('%s must be %s hex'):format(key, len and (len .. '-byte') or 'a')
  end
  return b
end

--- Decode .instance_info text ('' = nothing yet): { app_id = bytes or '', instance_id_seed =
--- bytes or '', instance_id = bytes or '' }.
function M.parse_instance_info(text)
  local out = { app_id = '', instance_id_seed = '', instance_id = '' }
  if text == nil or text:match('^%s*$') then
    return out
  end
  local obj = cjson.decode(text)
  if type(obj) ~= 'table' then
    return errors.fail('EINVAL', '.instance_info: not a JSON object')
  end
  for _, f in ipairs({ { 'app_id' }, { 'instance_id_seed' }, { 'instance_id' } }) do
    local b, err = hex_field(obj, f[1], f[2])
    if not b then
      return errors.fail('EINVAL', '.instance_info: ' .. err)
    end
    out[f[1]] = b
  end
  return out
end

--- The .instance_info JSON the guest reports: {"instance_id_seed","instance_id","app_id"}.
function M.instance_info_json(info)
  return ('{"instance_id_seed":"%s","instance_id":"%s","app_id":"%s"}'):format(
    crypto.hex(info.instance_id_seed or ''), crypto.hex(info.instance_id or ''),
    crypto.hex(info.app_id or ''))
end

--- Read and decode the shared folder `dir`. Returns { dir, app_compose_text, app_compose,
--- sys_config_text, sys_config, instance_info, encrypted_env, user_config_text } or nil, msg,
--- code.
function M.load(dir)
  if type(dir) ~= 'string' then
    error('shared.load: dir must be a string', 2)
  end
  local out = { dir = dir }
  local err, code
  out.app_compose_text, err, code = read(dir, 'app_compose')
  if not out.app_compose_text then
    return nil, err, code
  end
  out.app_compose, err, code = compose.parse(out.app_compose_text)
  if not out.app_compose then
    return nil, err, code
  end
  out.sys_config_text, err, code = read(dir, 'sys_config')
  if not out.sys_config_text then
    return nil, err, code
  end
  out.sys_config, err, code = M.parse_sys_config(out.sys_config_text)
  if not out.sys_config then
    return nil, err, code
  end
  local text
  text, err, code = read(dir, 'instance_info')
  if not text then
    return nil, err, code
  end
  out.instance_info, err, code = M.parse_instance_info(text)
  if not out.instance_info then
    return nil, err, code
  end
  out.encrypted_env, err, code = read(dir, 'encrypted_env')
  if not out.encrypted_env then
    return nil, err, code
  end
  out.user_config_text, err, code = read(dir, 'user_config')
  if not out.user_config_text then
    return nil, err, code
  end
  return out
end

return M
