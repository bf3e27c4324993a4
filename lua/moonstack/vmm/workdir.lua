-- SPDX-License-Identifier: Apache-2.0
-- A VM's work directory `<run_dir>/<vm-uuid>/` (kms-vmm-gateway.md §4.4):
--   vm-manifest.json  the manifest (id, name, app_id, vcpu, memory, disk_size, image, port_map,
--                     created_at_ms, ... and the legacy copy `networking`)
--   vm-state.json     {"started": bool}, the desired state auto-restart follows
--   shared/           app-compose.json, .encrypted-env, .user-config, .instance_info,
--                     .sys-config.json (rewritten at each start) — the CVM's host-shared folder
--   serial.log, stdout.log, stderr.log (+ .1 .. .N)   the logs, a boot separator line per start
--   process.json      the running process as the supervisor knows it: pid + start time + boot
--                     id (moonstack.core.procfs), so a restarted VMM finds it again
--   vm-runtime.json   what the guest last reported (boot progress, boot error, events), so a
--                     restarted VMM shows it
--   .removing         RemoveVm under way (a VMM killed meanwhile finishes the removal)
-- Every file is written atomically (temporary file, fsync, rename). A new VM is assembled in
-- `<run_dir>/.creating-<id>/` and renamed into place only once complete, so a crash leaves
-- either the whole directory or a `.creating-` leftover (removed at the next start, reported),
-- never a half-written VM; a directory whose manifest is unreadable is reported and skipped.
local uv = require('luv')
local cjson = require('cjson.safe')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local json = require('moonstack.core.json')

local M = {}

M.MANIFEST = 'vm-manifest.json'
M.STATE = 'vm-state.json'
M.PROCESS = 'process.json'
M.RUNTIME = 'vm-runtime.json'
M.REMOVING = '.removing'
M.CREATING = '.creating-'

--- The shared folder's files (as the guest copies them, moonstack.cvm.shared_folder).
M.SHARED = { app_compose = 'app-compose.json', encrypted_env = '.encrypted-env',
  user_config = '.user-config', instance_info = '.instance_info', sys_config = '.sys-config.json' }

local Wd = {}
Wd.__index = Wd

--- The work directory of VM `id` under `run_dir` (nothing is created).
function M.new(run_dir, id)
  return setmetatable({ run_dir = run_dir, id = id, dir = run_dir .. '/' .. id }, Wd)
end

--- The path of `name` in the work directory.
function Wd:path(name)
  return self.dir .. '/' .. name
end

--- The path of shared file `which` (a key of M.SHARED, or a file name).
function Wd:shared(which)
  return self.dir .. '/shared/' .. (M.SHARED[which] or which)
end

-- Read a JSON file of the work directory: the decoded value, or nil, msg, code.
local function read_json(path, max)
  local text, err, code = fs.read_file(path, max or 1024 * 1024)
  if not text then
    return nil, err, code
  end
  local v = cjson.decode(text)
  if type(v) ~= 'table' then
    return errors.fail('EPARSE', path .. ': not a JSON object')
  end
  return v
end

-- The manifest as JSON: arrays stay arrays, even empty.
local function manifest_json(m)
  local copy = {}
  for k, v in pairs(m) do
    copy[k] = v
  end
  for _, k in ipairs({ 'port_map', 'kms_urls', 'gateway_urls', 'networks', 'volumes' }) do
    copy[k] = json.array(m[k] or {})
  end
  copy.gpus = { attach_mode = 'listed', gpus = json.array(), bridges = json.array() }
  return json.encode(copy)
end

--- The manifest, or nil, msg, code (ENOENT, EPARSE, EINVAL).
function Wd:manifest()
  local m, err, code = read_json(self:path(M.MANIFEST))
  if not m then
    return nil, err, code
  end
  if m.id ~= self.id or type(m.name) ~= 'string' or type(m.image) ~= 'string' then
    return errors.fail('EINVAL', self:path(M.MANIFEST) .. ': not the manifest of VM ' .. self.id)
  end
  for _, k in ipairs({ 'port_map', 'kms_urls', 'gateway_urls' }) do
    if type(m[k]) ~= 'table' then
      m[k] = {}
    end
  end
  return m
end

--- Write the manifest atomically. True or nil, msg, code.
function Wd:put_manifest(m)
  return fs.write_atomic(self:path(M.MANIFEST), manifest_json(m), 420)
end

--- The desired state: true when the VM should run (vm-state.json), false otherwise.
function Wd:started()
  local st = read_json(self:path(M.STATE))
  return st ~= nil and st.started == true
end

--- Record the desired state. True or nil, msg, code.
function Wd:set_started(on)
  return fs.write_atomic(self:path(M.STATE), on and '{"started":true}' or '{"started":false}', 420)
end

--- Write a shared file atomically (mode 0644: the guest reads it). True or nil, msg, code.
function Wd:write_shared(which, data)
  return fs.write_atomic(self:shared(which), data, 420)
end

--- Read a shared file: its content, '' when absent, or nil, msg, code.
function Wd:read_shared(which, max)
  local data, err, code = fs.read_file(self:shared(which), max or 64 * 1024 * 1024)
  if not data and code == 'ENOENT' then
    return ''
  end
  return data, err, code
end

--- Remove a shared file (absent is fine).
function Wd:remove_shared(which)
  uv.fs_unlink(self:shared(which))
end

--- The recorded process { pid, start_time, boot_id, ... } or nil.
function Wd:process()
  local p = read_json(self:path(M.PROCESS))
  if p and type(p.pid) == 'number' and type(p.start_time) == 'number' then
    return p
  end
  return nil
end

--- Record the running process (atomically). True or nil, msg, code.
function Wd:set_process(rec)
  return fs.write_atomic(self:path(M.PROCESS), json.encode(rec), 384)
end

--- Forget the recorded process.
function Wd:clear_process()
  uv.fs_unlink(self:path(M.PROCESS))
end

--- What the guest last reported ({ boot_progress, boot_error, shutdown_progress, events }), or
--- nil.
function Wd:runtime()
  return read_json(self:path(M.RUNTIME))
end

--- Keep what the guest reported (atomically). True or nil, msg, code.
function Wd:set_runtime(rt)
  local copy = {}
  for k, v in pairs(rt) do
    copy[k] = v
  end
  copy.events = json.array(rt.events or {})
  return fs.write_atomic(self:path(M.RUNTIME), json.encode(copy), 384)
end

--- Whether a removal is under way (or was interrupted).
function Wd:removing()
  return uv.fs_stat(self:path(M.REMOVING)) ~= nil
end

--- Mark the directory as being removed. True or nil, msg, code.
function Wd:set_removing()
  return fs.write_atomic(self:path(M.REMOVING), '', 384)
end

M.remove_tree = fs.remove_tree

--- Remove the whole work directory. True or nil, msg, code.
function Wd:remove()
  return fs.remove_tree(self.dir)
end

--- Create the work directory of a new VM from `files`: { manifest = table, started = bool,
--- shared = { [which] = data } } — assembled in a `.creating-<id>` directory, every file
--- fsynced, then renamed into place. Returns the Wd or nil, msg, code (nothing is left).
function M.create(run_dir, id, files)
  local tmp = M.new(run_dir, M.CREATING .. id)
  local function fail(err, code)
    M.remove_tree(tmp.dir)
    return nil, err, code
  end
  local ok, err, code = fs.mkdir_p(tmp.dir .. '/shared', 493) -- 0755: the guest reads shared/
  if not ok then
    return fail(err, code)
  end
  uv.fs_chmod(tmp.dir, 448) -- 0700: logs and process records stay the operator's
  tmp.id = id
  ok, err, code = tmp:put_manifest(files.manifest)
  if ok then
    ok, err, code = tmp:set_started(files.started)
  end
  for which, data in pairs(files.shared or {}) do
    if ok then
      ok, err, code = tmp:write_shared(which, data)
    end
  end
  if not ok then
    return fail(err, code)
  end
  local final = M.new(run_dir, id)
  ok, err, code = uv.fs_rename(tmp.dir, final.dir)
  if not ok then
    return fail(err, code)
  end
  return final
end

--- Whether `wd` holds a usable VM: a readable manifest naming it and an app-compose.json.
--- Returns the manifest or nil, msg, code.
function M.check(wd)
  local m, err, code = wd:manifest()
  if not m then
    return nil, err, code
  end
  if not uv.fs_stat(wd:shared('app_compose')) then
    return errors.fail('EINVAL', wd:shared('app_compose') .. ' is missing')
  end
  return m
end

--- The entries of `run_dir`: { ids = { VM directory names, sorted }, leftovers = { names of
--- `.creating-` directories (interrupted creations) } }.
function M.scan(run_dir)
  local out = { ids = {}, leftovers = {} }
  local h = uv.fs_scandir(run_dir)
  while h do
    local name, kind = uv.fs_scandir_next(h)
    if not name then
      break
    end
    if kind == 'directory' then
      if name:sub(1, #M.CREATING) == M.CREATING then
        out.leftovers[#out.leftovers + 1] = name
      elseif name:sub(1, 1) ~= '.' then
        out.ids[#out.ids + 1] = name
      end
    end
  end
  table.sort(out.ids)
  table.sort(out.leftovers)
  return out
end

return M
