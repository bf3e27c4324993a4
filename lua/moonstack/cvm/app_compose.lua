-- SPDX-License-Identifier: Apache-2.0
-- app-compose.json as the guest reads it (spec kms-vmm-gateway.md §1.1–1.2): decoding with
-- upstream's defaults, the manifest version rule, the effective key provider, init scripts,
-- the public_* flags, and the identity values: compose_hash = SHA-256 of the raw file bytes,
-- app_id (deploy-time value, else compose_hash[0..20]) and instance_id
-- (SHA-256(seed || app_id)[0..20], empty with no_instance_id).
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local json = require('moonstack.core.json')
local errors = require('moonstack.core.errors')

local M = {}

--- The highest manifest_version this guest understands (upstream's MAX_SUPPORTED).
M.MAX_MANIFEST_VERSION = 3
--- At most this many init scripts.
M.MAX_INIT_SCRIPTS = 5
--- Runners a guest knows (nerdctl-compose is recognised but not supported here).
M.RUNNERS = { ['docker-compose'] = true, ['nerdctl-compose'] = true, bash = true }

local function is_null(v)
  return v == nil or v == cjson.null
end

local function bool(v, default)
  if is_null(v) then
    return default
  end
  return v == true
end

--- SHA-256 of the raw app-compose.json bytes (no canonicalisation).
function M.compose_hash(raw)
  if type(raw) ~= 'string' then
    error('compose.compose_hash: raw must be a string', 2)
  end
  return crypto.sha256(raw)
end

--- manifest_version as an integer: numbers 1 and 2, or a canonical positive-integer string
--- ("3"; not "03", "+3", "0", ""). nil, msg when invalid.
function M.manifest_version(v)
  if type(v) == 'number' then
    if v == 1 or v == 2 then
      return v
    end
    return nil, ('manifest_version %s: numbers are accepted only for 1 and 2'):format(tostring(v))
  end
  if type(v) == 'string' then
    if v:match('^[1-9]%d*$') and #v <= 9 then
      return tonumber(v)
    end
    return nil, ('manifest_version "%s" is not a canonical positive integer'):format(v)
  end
  return nil, 'manifest_version is missing or not a number/string'
end

--- The effective key provider: key_provider if set, else kms (kms_enabled), local
--- (local_key_provider_enabled) or none.
function M.key_provider(app)
  local kp = app.key_provider
  if not is_null(kp) then
    return kp
  end
  if app.kms_enabled == true then
    return 'kms'
  elseif app.local_key_provider_enabled == true then
    return 'local'
  end
  return 'none'
end

--- init_script as a list (a string is one script; absent is none).
function M.init_scripts(app)
  local s = app.init_script
  if is_null(s) then
    return {}
  elseif type(s) == 'string' then
    return { s }
  end
  return s
end

--- The public_* flags: { sysinfo = false, tcbinfo = true, logs = false } by default.
function M.public_flags(app)
  return { sysinfo = bool(app.public_sysinfo, false), tcbinfo = bool(app.public_tcbinfo, true),
    logs = bool(app.public_logs, false) }
end

--- Decode and check app-compose.json text. Returns the table (cjson: null is cjson.null) or
--- nil, 'EINVAL: app-compose.json: ...', 'EINVAL'. Checks what the guest enforces before
--- measuring: JSON object, name, runner, manifest version, key provider, init scripts,
--- allowed_envs, key_provider_id, requirements (needs manifest "3"; unknown keys rejected).
function M.parse(raw)
  local app, derr = cjson.decode(raw)
  if type(app) ~= 'table' or #app > 0 then
    return errors.fail('EINVAL', 'app-compose.json: not a JSON object' ..
      (derr and (' (' .. tostring(derr) .. ')') or ''))
  end
  local function bad(msg)
    return errors.fail('EINVAL', 'app-compose.json: ' .. msg)
  end
  local version, verr = M.manifest_version(app.manifest_version)
  if not version then
    return bad(verr)
  end
  if version > M.MAX_MANIFEST_VERSION then
    return bad(('unsupported manifest_version %d (max %d)'):format(version, M.MAX_MANIFEST_VERSION))
  end
  if type(app.name) ~= 'string' then
    return bad('name is required (a string)')
  end
  if type(app.runner) ~= 'string' or not M.RUNNERS[app.runner] then
    return bad(('runner must be docker-compose, nerdctl-compose or bash, got %s'):format(
      tostring(app.runner)))
  end
  local kp = M.key_provider(app)
  if kp ~= 'none' and kp ~= 'kms' and kp ~= 'local' and kp ~= 'tpm' then
    return bad(('key_provider must be none, kms, local or tpm, got %s'):format(tostring(kp)))
  end
  local scripts = M.init_scripts(app)
  if type(scripts) ~= 'table' then
    return bad('init_script must be a string or a list of strings')
  end
  if #scripts > M.MAX_INIT_SCRIPTS then
    return bad(('at most %d init scripts'):format(M.MAX_INIT_SCRIPTS))
  end
  if #scripts > 1 and version < 3 then
    return bad('more than one init_script needs manifest_version "3"')
  end
  for i, s in ipairs(scripts) do
    if type(s) ~= 'string' then
      return bad(('init_script[%d] must be a string'):format(i))
    end
  end
  for _, k in ipairs({ 'bash_script', 'pre_launch_script', 'docker_compose_file' }) do
    if not is_null(app[k]) and type(app[k]) ~= 'string' then
      return bad(k .. ' must be a string')
    end
  end
  if not is_null(app.allowed_envs) then
    if type(app.allowed_envs) ~= 'table' then
      return bad('allowed_envs must be a list of strings')
    end
    for i, k in ipairs(app.allowed_envs) do
      if type(k) ~= 'string' then
        return bad(('allowed_envs[%d] must be a string'):format(i))
      end
    end
  end
  if not is_null(app.key_provider_id) then
    if type(app.key_provider_id) ~= 'string' or not crypto.unhex(app.key_provider_id) then
      return bad('key_provider_id must be a hex string')
    end
  end
  local req = app.requirements
  if not is_null(req) then
    if type(req) ~= 'table' then
      return bad('requirements must be an object')
    end
    if version < 3 then
      return bad('requirements needs manifest_version "3"')
    end
    local known = { os_version = true, platforms = true, tdx_measure_acpi_tables = true,
      launch_token_hash = true, gpu_policy = true }
    for k in pairs(req) do
      if not known[k] then
        return bad(('requirements.%s is not a known requirement'):format(tostring(k)))
      end
    end
  end
  if not is_null(app.event_log_version) and app.event_log_version ~= 1
      and app.event_log_version ~= 2 then
    return bad('event_log_version must be 1 or 2')
  end
  return app
end

--- The allowed_envs set ({ KEY = true }).
function M.allowed_envs(app)
  local set = {}
  if type(app.allowed_envs) == 'table' then
    for _, k in ipairs(app.allowed_envs) do
      set[k] = true
    end
  end
  return set
end

--- The key_provider_id pin as bytes ('' when not pinned).
function M.key_provider_id(app)
  if is_null(app.key_provider_id) or app.key_provider_id == '' then
    return ''
  end
  return (crypto.unhex(app.key_provider_id))
end

--- The runtime event digest version (event_log_version, default 1).
function M.event_log_version(app)
  return is_null(app.event_log_version) and 1 or app.event_log_version
end

--- app_id: the deploy-time value (20 bytes; '' = unset) or compose_hash[0..20].
--- Returns the 20 bytes or nil, msg, 'EINVAL'.
function M.app_id(compose_hash, deploy_app_id)
  local id = deploy_app_id
  if id == nil or id == '' then
    id = compose_hash:sub(1, 20)
  end
  if #id ~= 20 then
    return errors.fail('EINVAL', ('invalid app id length: expected 20 bytes, got %d'):format(#id))
  end
  return id
end

-- The fields of an app-compose made by new(), in the order upstream's vmm-cli `compose` writes
-- them (bash_script where it puts docker_compose_file).
local NEW_ORDER = { 'manifest_version', 'name', 'runner', 'docker_compose_file', 'bash_script',
  'kms_enabled', 'gateway_enabled', 'local_key_provider_enabled', 'key_provider_id',
  'public_logs', 'public_sysinfo', 'public_tcbinfo', 'allowed_envs', 'no_instance_id',
  'secure_time', 'key_provider', 'pre_launch_script', 'swap_size', 'event_log_version' }

--- An app-compose.json text as upstream's vmm-cli `compose` makes it (keys in its order,
--- 4-space indent): opts = { name (required), runner = 'docker-compose' | 'bash',
--- docker_compose_file (text, for docker-compose) | bash_script (text, for bash),
--- kms_enabled = true, gateway_enabled = true, local_key_provider_enabled = false,
--- key_provider_id = '', public_logs = true, public_sysinfo = true, public_tcbinfo = true,
--- allowed_envs = {}, no_instance_id = false, secure_time = false, key_provider?,
--- pre_launch_script?, swap_size? (bytes), event_log_version? (2; 1 is left out),
--- omit = { key = true }? (keys left out: the guest's default applies; vmm-cli writes no
--- public_tcbinfo) }.
--- The same inputs give the same bytes (the compose hash, hence the app id, is stable).
--- Returns the text or nil, 'EINVAL: <field>: why'.
function M.new(opts)
  local runner = opts.runner or 'docker-compose'
  local body = runner == 'bash' and 'bash_script' or 'docker_compose_file'
  if runner ~= 'bash' and runner ~= 'docker-compose' then
    return nil, 'EINVAL: runner: docker-compose or bash'
  end
  if type(opts[body]) ~= 'string' or opts[body] == '' then
    return nil, ('EINVAL: %s: empty'):format(body)
  end
  if type(opts.name) ~= 'string' or opts.name == '' then
    return nil, 'EINVAL: name: required'
  end
  local function flag(k, default)
    if opts[k] == nil then
      return default
    end
    return opts[k] == true
  end
  local v = {
    manifest_version = 2, name = opts.name, runner = runner, [body] = opts[body],
    kms_enabled = flag('kms_enabled', true), gateway_enabled = flag('gateway_enabled', true),
    local_key_provider_enabled = flag('local_key_provider_enabled', false),
    key_provider_id = opts.key_provider_id or '', public_logs = flag('public_logs', true),
    public_sysinfo = flag('public_sysinfo', true), public_tcbinfo = flag('public_tcbinfo', true),
    allowed_envs = opts.allowed_envs or {},
    no_instance_id = flag('no_instance_id', false), secure_time = flag('secure_time', false),
    key_provider = opts.key_provider, pre_launch_script = opts.pre_launch_script,
    swap_size = opts.swap_size, event_log_version = opts.event_log_version,
  }
  local lines = {}
  local omit = opts.omit or {}
  for _, k in ipairs(NEW_ORDER) do
    if v[k] ~= nil and not omit[k] then
      local val = v[k]
      local text
      if type(val) == 'table' then
        local items = {}
        for i, item in ipairs(val) do
          items[i] = '        ' .. json.encode(item)
        end
        text = #items == 0 and '[]' or '[\n' .. table.concat(items, ',\n') .. '\n    ]'
      else
        text = json.encode(val)
      end
      lines[#lines + 1] = ('    %s: %s'):format(json.encode(k), text)
    end
  end
  return '{\n' .. table.concat(lines, ',\n') .. '\n}'
end

--- instance_id = SHA-256(seed || app_id)[0..20], or '' when `no_instance_id`.
function M.instance_id(seed, app_id, no_instance_id)
  if no_instance_id then
    return ''
  end
  return crypto.sha256(seed .. app_id):sub(1, 20)
end

return M
