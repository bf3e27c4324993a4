-- SPDX-License-Identifier: Apache-2.0
-- The boot steps shared by a real boot (moonstack.agent.boot.run) and simulator mode
-- (moonstack.agent.simulator.context): identity values, the measured events around the key
-- request (app stage, keys, os-image-hash, MR_CONFIG_ID and key_provider_id checks,
-- key-provider, storage-fs, system-ready), and filling the context.
local crypto = require('moonstack.crypto')
local compose = require('moonstack.cvm.app_compose')
local shared = require('moonstack.cvm.shared_folder')
local measure = require('moonstack.agent.boot.measure')
local keys_mod = require('moonstack.agent.boot.keys')
local mrconfig = require('moonstack.agent.boot.mrconfig')

local M = {}

--- A boot step's failure: nil, 'CODE: <step>: message', CODE.
function M.fail(step, err, code)
  local msg = tostring(err):gsub('^E[A-Z0-9_]+: ', '')
  return nil, ('%s: %s: %s'):format(code or 'EBOOT', step, msg), code or 'EBOOT'
end

-- Steps 3–5 on an open backend (shared by run and simulate). id = { app_compose,
-- app_compose_text, compose_hash, app_id, instance_id, vm_config, os_image_hash,
-- sys_config }. Returns the key result or nil, msg, code.
function M.measure_and_keys(ctx, id, kcfg, storage_fs)
  local app = id.app_compose
  local version = compose.event_log_version(app)
  local tee = ctx.tee
  local events = measure.app_events({ app_id = id.app_id, compose_hash = id.compose_hash,
    init_scripts = compose.init_scripts(app), instance_id = id.instance_id,
    gpu_policy_hash = measure.gpu_policy_hash(id.app_compose_text) })
  ctx:step('measure', { events = #events })
  local ok, err, code = measure.emit(tee, events, version)
  if not ok then
    return M.fail('measure', err, code)
  end
  ctx:step('keys')
  local kp = compose.key_provider(app)
  local result
  result, err, code = keys_mod.get({ config = kcfg, compose_key_provider = kp,
    key_provider_id = compose.key_provider_id(app), app_id = id.app_id,
    instance_id = id.instance_id, compose_hash = id.compose_hash, app_compose = app,
    sys_config = id.sys_config, vm_config = id.vm_config, os_image_hash = id.os_image_hash,
    tee = tee })
  if not result then
    return M.fail('keys', err, code)
  end
  if result.os_image_hash then
    ok, err, code = measure.emit(tee, { { name = 'os-image-hash', payload = result.os_image_hash } },
      version)
    if not ok then
      return M.fail('keys', err, code)
    end
  end
  ctx:step('verify')
  local mci
  mci, err, code = mrconfig.read(tee)
  if not mci then
    return M.fail('verify', err, code)
  end
  local hashes = {}
  for i, s in ipairs(compose.init_scripts(app)) do
    hashes[i] = crypto.sha256(s)
  end
  ok, err, code = mrconfig.check(mci, { compose_hash = id.compose_hash, app_id = id.app_id,
    instance_id = id.instance_id, key_provider = kp, key_provider_id = result.provider_id,
    init_script_hashes = hashes,
    mr_config_document = type(id.sys_config.mr_config) == 'string' and id.sys_config.mr_config or nil })
  if not ok then
    return M.fail('verify', err, code)
  end
  local kp_json = keys_mod.info_json(result.info)
  ok, err, code = measure.emit(tee, measure.key_events({ key_provider_json = kp_json }), version)
  if not ok then
    return M.fail('verify', err, code)
  end
  result.key_provider_json = kp_json
  local fs_name = storage_fs or (type(app.storage_fs) == 'string' and app.storage_fs) or 'zfs'
  ok, err, code = measure.emit(tee, measure.final_events(fs_name), version)
  if not ok then
    return M.fail('ready', err, code)
  end
  return result
end

--- Fill the context's identity and key fields from the identity and the key result.
function M.fill(ctx, id, result)
  ctx.app_id, ctx.instance_id, ctx.compose_hash = id.app_id, id.instance_id, id.compose_hash
  ctx.device_id = crypto.sha256('')
  ctx.app_name = id.app_compose.name
  ctx.app_compose_text, ctx.app_compose = id.app_compose_text, id.app_compose
  ctx.sys_config, ctx.vm_config = id.sys_config, id.vm_config
  ctx.os_image_hash = id.os_image_hash ~= '' and id.os_image_hash or (result.os_image_hash or '')
  ctx.key_provider_info = result.info
  ctx.key_provider_info_json = result.key_provider_json
  ctx.keys = result.keys
  ctx.sign_cert = result.sign_cert -- the KMS's SignCert when it gave the keys (certs.lua)
  ctx.public = compose.public_flags(id.app_compose)
end

--- The identity values of a (shared-folder-like) input sh = { app_compose, app_compose_text,
--- sys_config }: compose_hash, app_id (deploy value or compose_hash[0..20]), instance_id from
--- `seed`, vm_config, os_image_hash. Returns id or nil, msg, code.
function M.identity(sh, app_id_deploy, seed)
  local app = sh.app_compose
  local id = { app_compose = app, app_compose_text = sh.app_compose_text,
    sys_config = sh.sys_config, compose_hash = compose.compose_hash(sh.app_compose_text) }
  local err, code
  id.app_id, err, code = compose.app_id(id.compose_hash, app_id_deploy)
  if not id.app_id then
    return nil, err, code
  end
  id.seed = seed
  id.instance_id = compose.instance_id(seed, id.app_id, app.no_instance_id == true)
  id.vm_config = type(sh.sys_config.vm_config) == 'string' and sh.sys_config.vm_config or ''
  id.os_image_hash = shared.vm_config_os_image_hash(id.vm_config)
  return id
end

return M
