-- SPDX-License-Identifier: Apache-2.0
-- KMS auth backends behind one interface: new(cfg) picks the backend by cfg.kind ('dev',
-- 'webhook', 'policy', 'eth'; a backend is the module moonstack.kms.auth.<kind> or one registered
-- with register()) and wraps it so that authorize_app/authorize_kms never raise and always
-- return a well-formed decision { allow, reason, gateway_app_id? }, published on the event bus
-- (moonstack.core.events) as 'kms.decision'. See README.md.
local bootinfo = require('moonstack.kms.auth.bootinfo')
local events = require('moonstack.core.events')
local logging = require('moonstack.core.log')

local M = {}

local log = logging.new('kms-auth')
local registry = {}

--- Register a backend constructor for `kind`: ctor(cfg) -> backend | nil, msg, code. The
--- backend has authorize(boot_info, scope) -> decision [, facts] (scope 'app' or 'kms',
--- boot_info normalised; facts = { name, version, sha256 } of the policy that decided) and
--- may have reload(), status(), close().
function M.register(kind, ctor)
  if type(kind) ~= 'string' or not kind:match('^[%w_]+$') then
    error('kms.auth.register: kind must be a word', 2)
  end
  if type(ctor) ~= 'function' then
    error('kms.auth.register: ctor must be a function', 2)
  end
  registry[kind] = ctor
end

-- The backends shipped with moonstack: modules moonstack.kms.auth.<kind>, and 'dev'
-- (moonstack.kms.dev_auth, which moonstack.kms also registers).
local BUILTIN = { 'dev', 'eth', 'policy', 'webhook' }

--- The backend kinds new() accepts: the built-in ones and those registered, sorted.
function M.kinds()
  local seen, out = {}, {}
  for _, k in ipairs(BUILTIN) do
    seen[k] = true
  end
  for k in pairs(registry) do
    seen[k] = true
  end
  for k in pairs(seen) do
    out[#out + 1] = k
  end
  table.sort(out)
  return out
end

--- Whether `kind` names a backend new() accepts; else false and the reason with the valid kinds.
function M.known(kind)
  for _, k in ipairs(M.kinds()) do
    if k == kind then
      return true
    end
  end
  return false, ("unknown auth kind '%s' (valid: %s)"):format(tostring(kind),
    table.concat(M.kinds(), ', '))
end

local function constructor(kind)
  if registry[kind] then
    return registry[kind]
  end
  local ok, mod = pcall(require, kind == 'dev' and 'moonstack.kms.dev_auth' or 'moonstack.kms.auth.' .. kind)
  if ok and type(mod) == 'table' and type(mod.new) == 'function' then
    registry[kind] = mod.new
    return mod.new
  end
  return nil
end

local Backend = {}
Backend.__index = Backend

local function deny(reason)
  return { allow = false, reason = reason }
end

-- Make `d` a decision with exactly allow, reason (a string) and gateway_app_id (allowed only).
local function clean(d)
  if type(d) ~= 'table' or type(d.allow) ~= 'boolean' then
    return deny('auth backend returned no valid decision')
  end
  local out = { allow = d.allow, reason = type(d.reason) == 'string' and d.reason or '' }
  if d.allow and type(d.gateway_app_id) == 'string' then
    out.gateway_app_id = d.gateway_app_id
  end
  return out
end

local function scalar(v)
  local t = type(v)
  return (t == 'string' or t == 'number') and v or nil
end

-- Publish the decision on the event bus as 'kms.decision': identifiers and the outcome only
-- (BootInfo holds no secret; neither does a decision).
local function publish(kind, scope, info, d, facts)
  info, facts = info or {}, type(facts) == 'table' and facts or {}
  events.publish('kms.decision', {
    backend = kind, scope = scope, app_id = scalar(info.appId),
    compose_hash = scalar(info.composeHash), instance_id = scalar(info.instanceId),
    allowed = d.allow, reason = d.reason, policy = scalar(facts.name),
    policy_version = scalar(facts.version), policy_sha256 = scalar(facts.sha256),
  })
end

function Backend:_authorize(info, scope)
  local norm, err = bootinfo.normalize(info)
  if not norm then
    log.warn('invalid boot info; denying', { kind = self.kind, scope = scope, error = err })
    local d = deny('invalid boot info: ' .. err:gsub('^EINVAL: ', ''))
    publish(self.kind, scope, nil, d)
    return d
  end
  local ok, d, facts = pcall(self.impl.authorize, self.impl, norm, scope)
  if not ok then
    log.error('auth backend failed; denying', { kind = self.kind, scope = scope, error = tostring(d) })
    d = deny(('auth backend %s failed'):format(self.kind))
    publish(self.kind, scope, norm, d)
    return d
  end
  d = clean(d)
  publish(self.kind, scope, norm, d, facts)
  return d
end

--- May the app CVM described by `boot_info` (spec §3.7, camelCase keys, hex) get its keys?
--- Call from a task (a backend may wait on I/O). Never raises: returns { allow = bool,
--- reason = string, gateway_app_id = string? } (gateway_app_id only when allowed).
function Backend:authorize_app(boot_info)
  return self:_authorize(boot_info, 'app')
end

--- Same as authorize_app, for a KMS (self-check, onboarding peer): upstream's /bootAuth/kms.
function Backend:authorize_kms(boot_info)
  return self:_authorize(boot_info, 'kms')
end

--- Try the backend on `boot_info` without deciding for real (the REPL's policy.test): no
--- event, no count, no log. scope 'app' (default) or 'kms'. Call from a task. Returns
--- { allow, reason, gateway_app_id?, policy, policy_version, policy_sha256, error?, output? },
--- or nil, msg, code: invalid boot info (EINVAL), a backend that cannot be tried without a
--- side effect (ENOTSUP: the webhook would be asked for real).
function Backend:test(boot_info, scope)
  scope = scope or 'app'
  if scope ~= 'app' and scope ~= 'kms' then
    return nil, "EINVAL: scope must be 'app' or 'kms'", 'EINVAL'
  end
  local norm, err, code = bootinfo.normalize(boot_info)
  if not norm then
    return nil, err, code
  end
  local d, facts, ferr, output
  if self.impl.test then
    d, facts, ferr, output = self.impl.test(self.impl, norm, scope)
  elseif self.kind == 'dev' then
    d = { allow = true, reason = 'dev mode', gateway_app_id = self.impl.gateway_app_id }
  else
    return nil, ('ENOTSUP: the %s auth backend cannot be tried without asking it for real')
      :format(self.kind), 'ENOTSUP'
  end
  d = clean(d)
  facts = type(facts) == 'table' and facts or {}
  d.policy, d.policy_version, d.policy_sha256 = facts.name, facts.version, facts.sha256
  d.error = ferr
  if output and #output > 0 then
    d.output = output
  end
  return d
end

--- Reload the backend's configuration (the policy file); a failure keeps the previous one.
--- Returns the backend's status table, or nil, message, code.
function Backend:reload()
  if not self.impl.reload then
    return self:status()
  end
  local ok, res, err, code = pcall(self.impl.reload, self.impl)
  if not ok then
    return nil, 'EIO: ' .. tostring(res), 'EIO'
  end
  if res == nil then
    return nil, err, code
  end
  return self:status()
end

--- A table describing the backend: { kind = ..., plus backend-specific fields }.
function Backend:status()
  local st = {}
  if self.impl.status then
    local ok, s = pcall(self.impl.status, self.impl)
    if ok and type(s) == 'table' then
      st = s
    end
  end
  st.kind = self.kind
  return st
end

--- GetMeta's facts from the backend: { gateway_app_id?, kms_contract_address?, chain_id?,
--- app_auth_implementation? } ({} for backends without any), or nil, 'EUNAVAILABLE: ...',
--- 'EUNAVAILABLE'. Call from a task (the webhook asks its server).
function Backend:info()
  if not self.impl.info then
    return {}
  end
  local ok, info, err = pcall(self.impl.info, self.impl)
  if not ok or type(info) ~= 'table' then
    return nil, 'EUNAVAILABLE: auth backend info: ' .. tostring(ok and err or info), 'EUNAVAILABLE'
  end
  return info
end

--- Release the backend's resources (file watches, policy VM). Idempotent.
function Backend:close()
  if self.impl.close and not self.closed then
    self.closed = true
    pcall(self.impl.close, self.impl)
  end
end

--- Create the backend described by `cfg` = { kind = 'dev'|'webhook'|'policy', ... } (see the
--- backend modules for their keys). Returns the backend, or nil, message, code for a bad
--- configuration (EINVAL) or a backend that cannot start (e.g. an unloadable policy file).
function M.new(cfg)
  if type(cfg) ~= 'table' then
    error('kms.auth.new: cfg must be a table', 2)
  end
  if type(cfg.kind) ~= 'string' then
    return nil, 'EINVAL: auth kind must be a string', 'EINVAL'
  end
  local ctor = cfg.kind:match('^[%w_]+$') and constructor(cfg.kind)
  if not ctor then
    local _, why = M.known(cfg.kind)
    return nil, 'EINVAL: ' .. (why or ("unknown auth kind '%s'"):format(cfg.kind)), 'EINVAL'
  end
  local impl, err, code = ctor(cfg)
  if not impl then
    return nil, err, code
  end
  return setmetatable({ kind = cfg.kind, impl = impl }, Backend)
end

return M
