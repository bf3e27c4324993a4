-- SPDX-License-Identifier: Apache-2.0
-- The `policy` KMS auth backend: an operator's Lua file run in policy worker processes
-- (moonstack.policy.host, moonstack.policy.pool). on_auth(input) decides for apps,
-- on_kms_auth(input) for KMS instances; input = the BootInfo (camelCase, lowercase hex) plus
-- `now` (Unix seconds, since the sandbox has no clock). The file is reloaded by reload()
-- (SIGHUP, control socket) and when it changes on disk (a debounced watch of its directory, so
-- editors' rename-over works); a file that fails to load, validate or pass its own tests (or
-- crashes or stalls its worker) is refused and the last good policy keeps deciding. Every
-- decision is logged with the policy's name, version and sha256. new(), authorize() and
-- reload() wait on the workers: call them from a task.
local phost = require('moonstack.policy.host')
local pfile = require('moonstack.policy.file')
local pvm = require('moonstack.native.policyvm')
local logging = require('moonstack.core.log')

local M = {}

--- Default delay between the last change event and the reload, in milliseconds.
M.DEFAULT_DEBOUNCE_MS = 200
--- Largest `workers`.
M.MAX_WORKERS = require('moonstack.policy.pool').MAX_WORKERS

local log = logging.new('kms-auth')

local Policy = {}
Policy.__index = Policy

local HOOK = { app = 'on_auth', kms = 'on_kms_auth' }

--- Backend method (see moonstack.kms.auth): ask the policy about a normalised BootInfo.
--- Returns the decision and { name, version, sha256 } of the policy that made it.
function Policy:authorize(info, scope)
  local input = { now = os.time() }
  for k, v in pairs(info) do
    input[k] = v
  end
  local hook = HOOK[scope]
  local d, err = self.host:decide(hook, input)
  local active = self.host:active() or {}
  log.info('auth decision', {
    backend = 'policy', scope = scope, allow = d.allow, reason = d.reason, error = err,
    policy = active.name, version = active.version, sha256 = active.sha256,
    app_id = info.appId, compose_hash = info.composeHash,
  })
  return d, { name = active.name, version = active.version, sha256 = active.sha256 }
end

--- Backend method: the decision of the active policy on a normalised BootInfo (plus `now`)
--- as a dry run: nothing logged, counted or published. Returns the decision, the facts of the
--- policy ({ name, version, sha256 }), and the failure's message when it could not decide.
function Policy:test(info, scope)
  local input = { now = os.time() }
  for k, v in pairs(info) do
    input[k] = v
  end
  local d, err, _, printed = self.host:try(HOOK[scope], input)
  local active = self.host:active() or {}
  return d, { name = active.name, version = active.version, sha256 = active.sha256 }, err, printed
end

--- Backend method: re-read the policy file now. Returns the active policy's summary, or
--- nil, message, code (the previous policy stays active).
function Policy:reload()
  return self.file:reload()
end

--- Backend method: { path, name, version, sha256, loaded_at, watching, decisions, allowed,
--- denied, errors, reloads, reload_failures, workers = { size, live, idle, queued, spawned,
--- crashes, kills, pids } }.
function Policy:status()
  local st = {}
  for k, v in pairs(self.host.stats) do
    st[k] = v
  end
  local a = self.host:active() or {}
  st.path, st.name, st.version, st.sha256, st.loaded_at = self.path, a.name, a.version, a.sha256,
    a.loaded_at
  st.watching = self.file:watching()
  st.workers = self.host:workers()
  return st
end

--- Backend method: stop watching and kill the policy workers.
function Policy:close()
  self.file:close()
end

--- Create a policy backend. cfg: path (the policy file, required), watch (default true:
--- reload when the file changes), debounce_ms (default 200), limits (policy VM limits),
--- workers (policy worker processes, default 2: decisions in parallel; each costs a process
--- with up to limits.memory_limit of policy memory). The policy must define on_auth
--- (on_kms_auth is optional; without it KMS checks deny). Call from a task. Returns the
--- backend, or nil, message, code when the config is invalid or the file cannot be loaded.
function M.new(cfg)
  if type(cfg.path) ~= 'string' or cfg.path == '' then
    return nil, 'EINVAL: policy path must be a file name', 'EINVAL'
  end
  local debounce = cfg.debounce_ms or M.DEFAULT_DEBOUNCE_MS
  if type(debounce) ~= 'number' or debounce < 0 then
    return nil, 'EINVAL: policy debounce_ms must be a number >= 0', 'EINVAL'
  end
  local workers = cfg.workers or phost.DEFAULT_WORKERS
  if type(workers) ~= 'number' or workers % 1 ~= 0 or workers < 1 or workers > M.MAX_WORKERS then
    return nil, ('EINVAL: policy workers must be an integer in [1, %d]'):format(M.MAX_WORKERS),
      'EINVAL'
  end
  if cfg.limits ~= nil then
    local ok, err = pcall(pvm.frame_max, cfg.limits) -- validates every limit
    if not ok then
      return nil, 'EINVAL: policy ' .. tostring(err):gsub('^policyvm%.frame_max: ', ''), 'EINVAL'
    end
  end
  local file, err, code = pfile.open({ path = cfg.path, name = 'kms-auth', limits = cfg.limits,
    required = { 'on_auth' }, workers = workers, watch = cfg.watch ~= false,
    debounce_ms = debounce, log = log })
  if not file then
    return nil, err, code
  end
  return setmetatable({ path = cfg.path, debounce_ms = debounce, file = file, host = file.host },
    Policy)
end

return M
