-- SPDX-License-Identifier: Apache-2.0
-- The agent's boot sequence (dstack-util setup + app-compose.sh, spec kms-vmm-gateway.md §1.3):
--   1. read the shared folder (app-compose.json, .sys-config.json, .instance_info,
--      .encrypted-env, .user-config) and check the compose's policy (manifest, requirements:
--      platforms, launch_token_hash against .user-config)
--   2. open the TEE backend; start RTMR3 and the runtime event log afresh
--   3. compute compose_hash, app_id, instance_id; emit system-preparing, app-id, compose-hash,
--      init-script-hash*, [gpu-policy-hash], instance-id, boot-mr-done
--   4. obtain the app keys (KMS / local / none / keys file); [os-image-hash]; check
--      MR_CONFIG_ID and the key_provider_id pin; emit key-provider
--   5. save .appkeys.json and .instance_info (state_dir, 0600); emit storage-fs, system-ready
--   6. decrypt the env with env_crypt_key, keep allowed_envs; the APP_LAUNCH_TOKEN check
--   7. (launch, in a task of its own) wait for the API sockets, run the init scripts, then the
--      runner (pre_launch_script first), and follow the app's state
-- run(cfg) does 1–6 and returns the context (moonstack.agent.context) with the launch under
-- way; any failure before that returns nil, 'CODE: <step>: message', CODE. A failed launch
-- puts the context in 'failed' (ctx.error) while the agent keeps serving.
-- Simulator mode builds its context in moonstack.agent.simulator.context.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')
local context = require('moonstack.agent.context')
local compose = require('moonstack.cvm.app_compose')
local shared = require('moonstack.cvm.shared_folder')
local steps = require('moonstack.agent.boot.steps')
local keys_mod = require('moonstack.agent.boot.keys')
local env_mod = require('moonstack.agent.boot.env')
local teeboot = require('moonstack.agent.boot.tee')
local logs_mod = require('moonstack.agent.runner.logs')
local launch_mod = require('moonstack.agent.runner.launch')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- The platform name this agent satisfies in requirements.platforms.
M.PLATFORM = 'dstack-tdx'

-- requirements the guest checks before measuring (launch token: before any key).
local function check_policy(sh)
  local req = sh.app_compose.requirements
  if type(req) ~= 'table' then
    return true
  end
  if type(req.platforms) == 'table' then
    local found = false
    for _, p in ipairs(req.platforms) do
      found = found or p == M.PLATFORM
    end
    if not found then
      return errors.fail('EDENIED', ('requirements.platforms does not allow %s'):format(M.PLATFORM))
    end
  end
  if req.os_version ~= nil then
    log.warn('requirements.os_version is not checked by this agent', { os_version = req.os_version })
  end
  if type(req.launch_token_hash) == 'string' then
    return env_mod.check_launch_token(req.launch_token_hash, sh.user_config_text)
  elseif req.launch_token_hash ~= nil then
    return errors.fail('EINVAL', 'requirements.launch_token_hash must be a hex string')
  end
  return true
end

-- The instance_id seed: .instance_info's (from the host), else the one this agent saved, else
-- new; always new with key provider none (stateless apps get a new instance each boot).
local function seed_for(sh, saved, kp)
  if kp == 'none' then
    return crypto.random(20)
  end
  if sh.instance_info.instance_id_seed ~= '' then
    return sh.instance_info.instance_id_seed
  end
  if saved and saved.instance_id_seed ~= '' then
    return saved.instance_id_seed
  end
  return crypto.random(20)
end

local function write_secret(dir, name, text)
  return fs.write_atomic(dir .. '/' .. name, text, 384)
end

--- Boot from the config (inside a task). Returns the context, or nil, msg, code. opts.serve =
--- fn(ctx) -> true | nil, msg, code is called once the context is complete and before the app
--- starts (the API opens its sockets there, so the app finds them); opts.launch = false
--- leaves the app unstarted (call M.launch(ctx) yourself); opts.on_context(ctx) is called
--- with the new context before the first step (to follow its steps and states).
function M.run(cfg, opts)
  opts = opts or {}
  if type(cfg) ~= 'table' or type(cfg.shared_dir) ~= 'string' or type(cfg.tee) ~= 'table' then
    error('boot.run: cfg must be a validated agent config (moonstack.agent.config)', 2)
  end
  local ctx = context.new({ config = cfg })
  if opts.on_context then
    opts.on_context(ctx)
  end
  ctx:step('shared')
  local sh, err, code = shared.load(cfg.shared_dir)
  if not sh then
    return steps.fail('shared folder', err, code)
  end
  local ok
  ok, err, code = check_policy(sh)
  if not ok then
    return steps.fail('policy', err, code)
  end
  ok, err, code = fs.mkdir_p(cfg.state_dir)
  if not ok then
    return steps.fail('state dir', err, code)
  end
  ctx:step('tee')
  local tee
  tee, err, code = teeboot.open(cfg.tee)
  if not tee then
    return steps.fail('tee', err, code)
  end
  ctx.tee, ctx.own_tee = tee, true
  local fail = function(...)
    if tee.close then
      tee:close()
    end
    return ...
  end
  local logged = teeboot.runtime_events(tee)
  if #logged > 0 and not (tee.simulated and cfg.tee.reset ~= false) then
    return fail(steps.fail('tee', 'the runtime event log already holds events: this TEE has '
      .. 'booted an app already (restart the TD, or reset the sim CVM)', 'EEXIST'))
  end
  local app = sh.app_compose
  ok, err, code = teeboot.prepare(tee, compose.event_log_version(app), true)
  if not ok then
    return fail(steps.fail('tee', err, code))
  end
  local saved = shared.parse_instance_info(fs.read_file(cfg.state_dir .. '/.instance_info') or '')
  local kp = compose.key_provider(app)
  local id
  id, err, code = steps.identity(sh, sh.instance_info.app_id, seed_for(sh, saved, kp))
  if not id then
    return fail(steps.fail('identity', err, code))
  end
  local result
  result, err, code = steps.measure_and_keys(ctx, id, cfg.key_provider, cfg.storage_fs)
  if not result then
    return fail(nil, err, code)
  end
  steps.fill(ctx, id, result)
  ctx.instance_info = { app_id = id.app_id, instance_id_seed = id.seed, instance_id = id.instance_id }
  ok, err, code = write_secret(cfg.state_dir, '.appkeys.json', keys_mod.appkeys_json(result.keys))
  if ok then
    ok, err, code = write_secret(cfg.state_dir, '.instance_info',
      shared.instance_info_json(ctx.instance_info))
  end
  if not ok then
    return fail(steps.fail('state', err, code))
  end
  ctx:step('env')
  local env, dropped
  env, dropped, code = env_mod.decrypt(result.keys.env_crypt_key, sh.encrypted_env,
    compose.allowed_envs(app))
  if not env then
    return fail(steps.fail('env', dropped, code))
  end
  ok, err, code = env_mod.check_app_launch_token(app.launch_token_hash, env)
  if not ok then
    return fail(steps.fail('launch token', err, code))
  end
  ctx.env, ctx.env_dropped = env, dropped
  ok, err, code = write_secret(cfg.state_dir, '.decrypted-env', env_mod.dotenv(env))
  if ok then
    ok, err, code = write_secret(cfg.state_dir, '.decrypted-env.json', env_mod.json(env))
  end
  if not ok then
    return fail(steps.fail('env', err, code))
  end
  ctx.logs, err, code = logs_mod.new({ buffer_bytes = cfg.runner.log_buffer_bytes,
    dir = cfg.runner.log_files and cfg.log_dir or nil, max_file_bytes = cfg.runner.log_file_max_bytes,
    echo = cfg.runner.echo and io.stdout or nil })
  if not ctx.logs then
    return fail(steps.fail('logs', err, code))
  end
  ctx:set_state('starting')
  if opts.serve then
    ok, err, code = opts.serve(ctx)
    if not ok then
      return fail(steps.fail('serve', err, code))
    end
  end
  if opts.launch ~= false then
    ctx.launch_task = task.spawn_named('agent:launch', M.launch, ctx)
  end
  return ctx
end

-- Wait until the API's unix sockets exist (upstream: Docker waits for both), bounded.
local function wait_sockets(cfg)
  local paths = {}
  for _, name in ipairs({ 'dstack', 'tappd' }) do
    local l = cfg.listen and cfg.listen[name]
    if type(l) == 'table' and l.unix then
      paths[#paths + 1] = l.unix
    end
  end
  local deadline = uv.now() + (cfg.runner.wait_sockets_ms or 0)
  while true do
    local missing
    for _, p in ipairs(paths) do
      if not uv.fs_stat(p) then
        missing = p
      end
    end
    if not missing then
      return true
    end
    if uv.now() >= deadline then
      log.warn('starting the app before the API socket exists', { socket = missing })
      return false
    end
    task.sleep(50)
    uv.update_time()
  end
end

--- Start the app of a booted context (inside a task): init scripts, then the runner named by
--- app-compose (pre_launch_script first). Sets ctx.state to 'running', then 'exited'/'failed'
--- when the app ends; a failure to start sets 'failed' with ctx.error. Returns true or nil,
--- msg, code.
function M.launch(ctx)
  local cfg = ctx.config
  wait_sockets(cfg)
  local work_dir = cfg.state_dir .. '/app'
  local ok, err, code = fs.mkdir_p(work_dir)
  if not ok then
    ctx:fail('app: ' .. tostring(err))
    return nil, err, code
  end
  local env = launch_mod.base_env(cfg.runner, ctx.env, work_dir)
  ctx:step('init')
  ok, err, code = launch_mod.run_init({ scripts = compose.init_scripts(ctx.app_compose), env = env,
    work_dir = work_dir, logs = ctx.logs })
  if not ok then
    ctx:fail(err)
    return nil, err, code
  end
  local runner_name = ctx.app_compose.runner
  local modname = ({ bash = 'bash', ['docker-compose'] = 'docker_compose' })[runner_name]
  if not modname then
    err = ('ENOTSUP: the %s runner is not supported by this agent'):format(runner_name)
    ctx:fail(err)
    return nil, err, 'ENOTSUP'
  end
  ctx:step('runner', { runner = runner_name })
  local app
  app, err, code = require('moonstack.agent.runner.' .. modname).start({
    app_compose = ctx.app_compose, env = ctx.env, work_dir = work_dir, logs = ctx.logs,
    config = cfg.runner })
  if not app then
    ctx:fail(err)
    return nil, err, code
  end
  if ctx.closed then
    app:stop()
    return true
  end
  ctx.app = app
  ctx:set_state('running', { runner = runner_name })
  app:watch(function(state, info)
    if ctx.state == 'running' then
      if state == 'failed' then
        ctx.error = ('app exited with status %s%s'):format(tostring(info.exit_code),
          info.signal and (' (signal ' .. tostring(info.signal) .. ')') or '')
      end
      ctx:set_state(state, info)
    end
    ctx.events:emit('service', info)
  end)
  return true
end

return M
