-- SPDX-License-Identifier: Apache-2.0
-- Simulator mode (`moonstack agent --simulator`): a context for app developers without TDX,
-- built from an upstream appkeys.json and an app-compose.json — no shared folder, no app
-- runner, no encrypted env. The boot events are the real boot's (system-preparing … system-
-- ready, in the same order and with the same payload rules) emitted into a `sim` backend's
-- RTMR3, so its quotes, event log and Info agree with each other.
--
--   local ctx = assert(context.simulate({ keys = 'appkeys.json', compose = 'app-compose.json',
--     state_dir = dir }))
--
-- opts (the `_file` names are accepted too: keys_file, compose_file, sys_config_file):
--   keys        path of an appkeys.json (upstream simulator format)           required
--   compose     path of an app-compose.json                                   required
--   state_dir   the simulator state: sim/ (the simulated platform, CVM
--               'agent'), runtime/ (the runtime event log), instance-seed     required
--   sys_config  path of a sys-config.json (vm_config, os_image_hash)          optional
--   vm_config   the vm_config string when there is no sys-config (default: this host's
--               {"cpu_count","memory_size"})
--   app_id      20 bytes, raw or hex; default compose_hash[0..20]
--   instance_id 20 bytes hex (else from instance_id_seed hex, else from the seed kept in
--               <state_dir>/instance-seed, created on first use)
--   ccel_file   a CCEL whose replay gives RTMR0..2 (and whose events lead the event log)
--   storage_fs  the storage-fs event payload (default app-compose storage_fs, else zfs)
-- Each call starts the CVM afresh (RTMR3 zero, MR_CONFIG_ID = 01 || compose_hash as a VMM
-- pinning the compose would set it, an empty runtime log) and measures the boot events.
-- With the upstream simulator's appkeys.json (KeyProvider None) and an app-compose asking
-- for a KMS, key_provider_info is { name = 'kms', id = SPKI of ca_cert } as in the
-- simulator's fixture; app_id must then be the one its k256_signature was made for
-- (5bb4ff9a… for the upstream file) for signature chains to verify.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local context = require('moonstack.agent.context')
local compose = require('moonstack.cvm.app_compose')
local shared = require('moonstack.cvm.shared_folder')
local steps = require('moonstack.agent.boot.steps')
local teeboot = require('moonstack.agent.boot.tee')
local mrconfig = require('moonstack.agent.boot.mrconfig')
local sim = require('moonstack.sim')

local M = {}

--- Name of the simulated CVM in <state_dir>/sim.
M.CVM = 'agent'

local function bytes_opt(v, what, len)
  if v == nil then
    return nil
  end
  if type(v) == 'string' and len and #v == len then
    return v
  end
  local b = type(v) == 'string' and crypto.unhex(v)
  if not b or (len and #b ~= len) then
    return errors.fail('EINVAL', ('%s must be %s'):format(what, len and (len .. ' bytes (raw or hex)')
      or 'hex'))
  end
  return b
end

--- The vm_config reported when there is no sys-config: this host's CPUs and memory.
function M.default_vm_config()
  local n = #(uv.cpu_info() or {})
  return ('{"cpu_count":%d,"memory_size":%d}'):format(n > 0 and n or 1,
    math.floor(uv.get_total_memory()))
end

-- 20 random bytes kept in <state_dir>/instance-seed (hex), created on first use.
local function instance_seed(state_dir)
  local path = state_dir .. '/instance-seed'
  local text = fs.read_file(path, 1024)
  local seed = text and crypto.unhex((text:gsub('%s+', '')))
  if seed and #seed == 20 then
    return seed
  end
  seed = crypto.random(20)
  local ok, err, code = fs.write_atomic(path, crypto.hex(seed) .. '\n', 384)
  if not ok then
    return nil, err, code
  end
  return seed
end

--- Build the simulator context (see the top). Returns ctx or nil, msg, code.
function M.simulate(opts)
  if type(opts) ~= 'table' then
    error('simulator.context: opts must be a table', 2)
  end
  local keys_path = opts.keys or opts.keys_file
  local compose_path = opts.compose or opts.compose_file
  local sys_path = opts.sys_config or opts.sys_config_file
  if type(keys_path) ~= 'string' or type(compose_path) ~= 'string' then
    error('simulator.context: opts.keys and opts.compose (paths) are required', 2)
  end
  if type(opts.state_dir) ~= 'string' then
    error('simulator.context: opts.state_dir is required', 2)
  end
  local ok, err, code = fs.mkdir_p(opts.state_dir, 448)
  if not ok then
    return nil, err, code
  end
  local sh = { sys_config = { vm_config = opts.vm_config or M.default_vm_config() } }
  sh.app_compose_text, err, code = fs.read_file(compose_path, shared.FILES.app_compose.max)
  if not sh.app_compose_text then
    return nil, err, code
  end
  sh.app_compose, err, code = compose.parse(sh.app_compose_text)
  if not sh.app_compose then
    return nil, err, code
  end
  if sys_path then
    local text
    text, err, code = fs.read_file(sys_path, shared.FILES.sys_config.max)
    if not text then
      return nil, err, code
    end
    sh.sys_config, err, code = shared.parse_sys_config(text)
    if not sh.sys_config then
      return nil, err, code
    end
  end
  local app_id, instance_id, seed
  app_id, err, code = bytes_opt(opts.app_id, 'app_id', 20)
  if err then
    return nil, err, code
  end
  instance_id, err, code = bytes_opt(opts.instance_id, 'instance_id', 20)
  if err then
    return nil, err, code
  end
  seed, err, code = bytes_opt(opts.instance_id_seed, 'instance_id_seed')
  if err then
    return nil, err, code
  end
  if not seed then
    seed, err, code = instance_seed(opts.state_dir)
    if not seed then
      return nil, err, code
    end
  end
  local id
  id, err, code = steps.identity(sh, app_id, seed)
  if not id then
    return nil, err, code
  end
  if instance_id and sh.app_compose.no_instance_id ~= true then
    id.instance_id = instance_id
  end
  local tee
  tee, err, code = sim.new({ dir = opts.state_dir .. '/sim', cvm = M.CVM, create = true,
    reset = true, td = { mr_config_id = mrconfig.v1(id.compose_hash) }, ccel_file = opts.ccel_file,
    runtime_log_dir = opts.state_dir .. '/runtime' })
  if not tee then
    return nil, err, code
  end
  local ctx = context.new({ config = { simulator = true }, simulated = true, tee = tee,
    own_tee = true })
  local result
  ok, err, code = teeboot.prepare(tee, compose.event_log_version(sh.app_compose), true)
  if ok then
    result, err, code = steps.measure_and_keys(ctx, id, { kind = 'keys_file', file = keys_path },
      opts.storage_fs)
  end
  if not result then
    tee:close()
    return nil, err, code
  end
  steps.fill(ctx, id, result)
  ctx.instance_info = { app_id = id.app_id, instance_id_seed = id.seed, instance_id = id.instance_id }
  ctx.env = {}
  ctx:set_state('running', { simulator = true })
  return ctx
end

return M
