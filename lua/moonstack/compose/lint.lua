-- SPDX-License-Identifier: Apache-2.0
-- `moonstack compose lint`: upstream's production security practices as rules over an
-- app-compose.json or a docker-compose file. Each finding is { id, severity = 'error' |
-- 'warning' | 'info', field (a path: `public_logs`, `docker_compose_file.services.web.image`),
-- line? (in the docker-compose text), message, fix }. The docker-compose rules live in
-- moonstack.compose.services; the app-compose rules here. A rule is waived for one file by a
-- comment in its docker-compose text, `# moonstack-lint: ignore RULE-ID reason` (the reason
-- is required; the finding is kept, marked suppressed, and no longer counts).
local json = require('moonstack.core.json')
local app_compose = require('moonstack.cvm.app_compose')
local services = require('moonstack.compose.services')
local yaml = require('moonstack.compose.yaml')

local M = {}

local null = json.null

--- Every rule: id -> { severity, summary }.
M.RULES = {
  ['env-not-allowed'] = { 'error', '${VAR} used in the compose but not in allowed_envs' },
  ['public-logs'] = { 'warning', 'public_logs: the containers\' logs served to anyone' },
  ['public-sysinfo'] = { 'warning', 'public_sysinfo: system metrics served to anyone' },
  ['public-tcbinfo'] = { 'info', 'public_tcbinfo: TCB info and VM config served to anyone' },
  ['key-provider-not-pinned'] = { 'warning', 'a key provider without key_provider_id' },
  ['secure-time-off'] = { 'warning', 'secure_time false: boot does not wait for a synced clock' },
  ['encrypted-env-unauthenticated'] = { 'warning',
    'encrypted env without an authenticity check (LAUNCH_TOKEN pattern)' },
  ['user-config-unchecked'] = { 'warning', 'user_config read without a hash check' },
  ['init-script'] = { 'warning', 'init_script runs as root before the runner: review it' },
  ['pre-launch-script'] = { 'info', 'pre_launch_script runs as root before the containers' },
  ['no-instance-id-gateway'] = { 'error', 'no_instance_id with the gateway enabled' },
}
for id, r in pairs(services.RULES) do
  M.RULES[id] = r
end

local SEVERITY_RANK = { error = 1, warning = 2, info = 3 }

local function is_null(v)
  return v == nil or v == null
end

-- The suppressions a docker-compose text declares: { id = reason }.
local function suppressions(text)
  local out = {}
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do
    local id, reason = line:match('#%s*moonstack%-lint:%s*ignore%s+([%w-]+)%s*(.*)$')
    if id and reason:match('%S') then
      out[id] = reason:gsub('%s+$', '')
    end
  end
  return out
end

-- Whether some line of `text` mentions `what` (a Lua pattern) and a SHA-256 (sha256sum,
-- sha256 or a *_HASH variable).
local function hashed_on_a_line(text, what)
  if type(text) ~= 'string' then
    return false
  end
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do
    if line:match(what) and (line:find('sha256', 1, true) or line:find('SHA256', 1, true)) then
      return true
    end
  end
  return false
end

-- Whether the LAUNCH_TOKEN pattern is in a script: the token's sha256 compared, and an exit.
local function launch_token_check(script)
  return hashed_on_a_line(script, 'LAUNCH_TOKEN') and script:find('exit', 1, true) ~= nil
end

local function reads_user_config(text)
  return type(text) == 'string' and (text:find('user_config', 1, true) or
    text:find('user-config', 1, true)) ~= nil
end

-- Whether user_config's hash is checked: a line hashing it, or a USER_CONFIG_HASH compared.
local function hash_checked(text)
  return hashed_on_a_line(text, '[Uu][Ss][Ee][Rr][_-][Cc][Oo][Nn][Ff][Ii][Gg]')
end

-- The app-compose rules over `app` (decoded), the docker-compose variables `vars`.
local function app_rules(app, vars, add)
  local flags = app_compose.public_flags(app)
  if flags.logs then
    add('public-logs', 'warning', 'public_logs', nil,
      'the agent serves every container\'s logs to anyone who can reach it: secrets an app '
        .. 'prints leak', 'set public_logs to false unless the logs are meant to be public')
  end
  if flags.sysinfo then
    add('public-sysinfo', 'warning', 'public_sysinfo', nil,
      'the agent serves system metrics to anyone who can reach it',
      'set public_sysinfo to false unless they are meant to be public')
  end
  if flags.tcbinfo then
    add('public-tcbinfo', 'info', 'public_tcbinfo', nil,
      'Info shows the TCB info and VM config to anyone (what a verifier needs; also what an '
        .. 'attacker learns)', 'keep it if users verify the app; else set public_tcbinfo false')
  end
  local kp = app_compose.key_provider(app)
  if (kp == 'kms' or kp == 'local') and app_compose.key_provider_id(app) == '' then
    add('key-provider-not-pinned', 'warning', 'key_provider_id', nil,
      ('the %s key provider is not pinned: any provider the host points the CVM at can hand '
        .. 'out its keys'):format(kp),
      kp == 'kms' and 'set key_provider_id to the KMS root CA key\'s DER SubjectPublicKeyInfo (hex)'
        or 'set key_provider_id to the local key provider\'s MRENCLAVE (hex)')
  end
  if app.secure_time == false then
    add('secure-time-off', 'warning', 'secure_time', nil,
      'secure_time is false: the app starts before the clock is synced (certificate and '
        .. 'token expiry checks can be fooled)', 'set secure_time to true')
  end
  local allowed = app_compose.allowed_envs(app)
  for _, v in ipairs(vars) do
    if not allowed[v.name] then
      add('env-not-allowed', v.has_default and 'warning' or 'error',
        'docker_compose_file.' .. v.field, v.line,
        ('${%s} is used but %s is not in allowed_envs: the guest drops it, the container gets %s')
          :format(v.name, v.name, v.has_default and 'the default' or 'an empty value'),
        ('add "%s" to allowed_envs'):format(v.name))
    end
  end
  local pre = app.pre_launch_script
  local has_env = type(app.allowed_envs) == 'table' and #app.allowed_envs > 0
  local req = type(app.requirements) == 'table' and app.requirements or {}
  if has_env and is_null(req.launch_token_hash) and not launch_token_check(pre) then
    add('encrypted-env-unauthenticated', 'warning', 'allowed_envs', nil,
      'encrypted env is not authenticated: the env key is public, so the host can encrypt '
        .. 'envs of its own choosing',
      'use the LAUNCH_TOKEN pattern: LAUNCH_TOKEN_HASH in the pre_launch_script, LAUNCH_TOKEN '
        .. 'in the encrypted env, exit when sha256 differs (or requirements.launch_token_hash)')
  end
  local scripts = app_compose.init_scripts(app)
  local texts = {} -- { { field, text } } of what runs or is run
  for _, k in ipairs({ 'pre_launch_script', 'docker_compose_file', 'bash_script' }) do
    if type(app[k]) == 'string' then
      texts[#texts + 1] = { k, app[k] }
    end
  end
  for i, sc in ipairs(scripts) do
    texts[#texts + 1] = { #scripts == 1 and type(app.init_script) == 'string' and 'init_script'
      or ('init_script[%d]'):format(i - 1), sc }
  end
  local checked = false
  for _, t in ipairs(texts) do
    checked = checked or hash_checked(t[2])
  end
  for _, t in ipairs(texts) do
    if not checked and reads_user_config(t[2]) then
      add('user-config-unchecked', 'warning', t[1], nil,
        'user_config comes from the host unauthenticated and is read without a hash check',
        'compare its sha256 with a hash in the compose (measured) before using it')
      break
    end
  end
  for i in ipairs(scripts) do
    add('init-script', 'warning', #scripts == 1 and type(app.init_script) == 'string'
      and 'init_script' or ('init_script[%d]'):format(i - 1), nil,
      'an init script runs as root before the runner, with the disks mounted',
      'review it: it is part of the compose hash, so users must be able to read it')
  end
  if type(pre) == 'string' and pre ~= '' then
    add('pre-launch-script', 'info', 'pre_launch_script', nil,
      'the pre-launch script runs as root before the containers', 'review it')
  end
  local gateway = app.gateway_enabled == true or app.tproxy_enabled == true
  if type(app.features) == 'table' then
    for _, f in ipairs(app.features) do
      gateway = gateway or f == 'tproxy-net'
    end
  end
  if app.no_instance_id == true and gateway then
    add('no-instance-id-gateway', 'error', 'no_instance_id', nil,
      'no_instance_id with the gateway enabled: the CVM cannot register with the gateway',
      'set no_instance_id to false, or disable the gateway')
  end
end

-- Parse a docker-compose text: doc, lines or nil, msg.
local function parse_docker(text, what)
  local doc, lines = yaml.parse(text)
  if not doc then
    return nil, ('EPARSE: %s: %s'):format(what, tostring(lines):gsub('^EPARSE: ', ''))
  end
  if type(doc) ~= 'table' or doc == null or #doc > 0 then
    return nil, ('EINVAL: %s: not a mapping'):format(what)
  end
  if type(doc.services) ~= 'table' or doc.services == null or #doc.services > 0 then
    return nil, ('EINVAL: %s: services: a mapping of services is required'):format(what)
  end
  return doc, lines
end

--- Lint `text`, an app-compose.json (a JSON object) or a docker-compose file. Returns
--- { kind = 'app-compose' | 'docker-compose', findings (sorted: severity, then field),
--- counts = { error, warning, info, suppressed } } or nil, 'EPARSE|EINVAL: field: why'.
function M.lint(text)
  if type(text) ~= 'string' then
    return nil, 'EINVAL: no compose text'
  end
  local findings = {}
  local sup = {}
  local function add(id, severity, field, line, message, fix)
    findings[#findings + 1] = { id = id, severity = severity, field = field, line = line,
      message = message, fix = fix }
  end
  local kind
  if text:match('^%s*{') then
    kind = 'app-compose'
    local app, err = app_compose.parse(text)
    if not app then
      return nil, err
    end
    local vars = {}
    if app.runner ~= 'bash' and type(app.docker_compose_file) == 'string'
        and app.docker_compose_file:match('%S') then -- the SDK's defaults have an empty one
      local doc, lines = parse_docker(app.docker_compose_file, 'docker_compose_file')
      if not doc then
        return nil, lines
      end
      services.check(doc, lines, 'docker_compose_file.', add)
      vars = services.variables(doc, lines)
      sup = suppressions(app.docker_compose_file)
    elseif app.runner ~= 'bash' and type(app.docker_compose_file) ~= 'string' then
      return nil, 'EINVAL: docker_compose_file: required for the docker-compose runner'
    end
    app_rules(app, vars, add)
  else
    kind = 'docker-compose'
    local doc, lines = parse_docker(text, 'docker-compose')
    if not doc then
      return nil, lines
    end
    services.check(doc, lines, '', add)
    sup = suppressions(text)
  end
  local counts = { error = 0, warning = 0, info = 0, suppressed = 0 }
  for _, f in ipairs(findings) do
    if sup[f.id] then
      f.suppressed = sup[f.id]
      counts.suppressed = counts.suppressed + 1
    else
      counts[f.severity] = counts[f.severity] + 1
    end
  end
  for i, f in ipairs(findings) do
    f.order = i
  end
  table.sort(findings, function(a, b)
    if (a.suppressed ~= nil) ~= (b.suppressed ~= nil) then
      return b.suppressed ~= nil
    end
    if a.severity ~= b.severity then
      return SEVERITY_RANK[a.severity] < SEVERITY_RANK[b.severity]
    end
    return a.order < b.order
  end)
  for _, f in ipairs(findings) do
    f.order = nil
  end
  return { kind = kind, findings = findings, counts = counts }
end

--- The findings as text lines (one per finding, the fix indented below).
function M.format(result, name)
  local out = {}
  for _, f in ipairs(result.findings) do
    out[#out + 1] = ('%s: %s %s %s%s: %s%s'):format(name, f.severity, f.id, f.field,
      f.line and (' (line %d)'):format(f.line) or '', f.message,
      f.suppressed and (' [suppressed: %s]'):format(f.suppressed) or '')
    out[#out + 1] = '    fix: ' .. f.fix
  end
  local c = result.counts
  out[#out + 1] = ('%s: %s, %d error(s), %d warning(s), %d info%s'):format(name, result.kind,
    c.error, c.warning, c.info, c.suppressed > 0 and (', %d suppressed'):format(c.suppressed) or '')
  return table.concat(out, '\n') .. '\n'
end

return M
