-- SPDX-License-Identifier: Apache-2.0
-- The `policy` KMS auth backend: an operator's Lua file run in the policy VM
-- (moonstack.policy.host). on_auth(input) decides for apps, on_kms_auth(input) for KMS
-- instances; input = the BootInfo (camelCase, lowercase hex) plus `now` (Unix seconds, since
-- the sandbox has no clock). The file is reloaded by reload() (SIGHUP, control socket) and when
-- it changes on disk (a debounced watch of its directory, so editors' rename-over works); a
-- file that fails to load, validate or pass its own tests is refused and the last good
-- policy keeps deciding. Every decision is logged with the policy's name, version and sha256.
local uv = require('luv')
local phost = require('moonstack.policy.host')
local pvm = require('moonstack.native.policyvm')
local logging = require('moonstack.core.log')

local M = {}

--- Default delay between the last change event and the reload, in milliseconds.
M.DEFAULT_DEBOUNCE_MS = 200

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

--- Backend method: re-read the policy file now. Returns the active policy's summary, or
--- nil, message, code (the previous policy stays active).
function Policy:reload()
  local s, err, code = self.host:reload()
  if not s then
    self.failed_sha = nil
    return nil, err, code
  end
  return s
end

-- Reload after a change event, unless the file's content is the active policy's (or the one
-- that was just refused: one error log per broken version is enough).
function Policy:_changed()
  local source = phost.read_file(self.path)
  if source then
    local sha = pvm.sha256(source)
    local active = self.host:active()
    if (active and active.sha256 == sha) or sha == self.failed_sha then
      return
    end
    if not self.host:load_string(source, '@' .. self.path, self.path) then
      self.failed_sha = sha
    else
      self.failed_sha = nil
    end
  else
    self.host:load_file(self.path) -- logs why the file cannot be read; the old policy stays
  end
end

function Policy:_watch()
  local dir, base = self.path:match('^(.*)/([^/]+)$')
  if not dir then
    dir, base = '.', self.path
  end
  self.timer = uv.new_timer()
  self.watcher = uv.new_fs_event()
  local ok, err = self.watcher:start(dir == '' and '/' or dir, {}, function(werr, name)
    if werr then
      log.warn('policy file watch error', { path = self.path, error = werr })
      return
    end
    if name ~= nil and name ~= base then
      return
    end
    self.timer:stop()
    self.timer:start(self.debounce_ms, 0, function()
      local pok, perr = pcall(self._changed, self)
      if not pok then
        log.error('policy reload after a file change failed', { path = self.path, error = tostring(perr) })
      end
    end)
  end)
  if not ok then
    log.warn('cannot watch the policy file; reload with SIGHUP or the control socket',
      { path = self.path, error = err })
    self.watcher:close()
    self.watcher = nil
  end
end

--- Backend method: { path, name, version, sha256, loaded_at, watching, decisions, allowed,
--- denied, errors, reloads, reload_failures }.
function Policy:status()
  local st = {}
  for k, v in pairs(self.host.stats) do
    st[k] = v
  end
  local a = self.host:active() or {}
  st.path, st.name, st.version, st.sha256, st.loaded_at = self.path, a.name, a.version, a.sha256,
    a.loaded_at
  st.watching = self.watcher ~= nil
  return st
end

--- Backend method: stop watching and close the policy VM.
function Policy:close()
  for _, h in pairs({ w = self.watcher, t = self.timer }) do
    if not h:is_closing() then
      h:close()
    end
  end
  self.watcher, self.timer = nil, nil
  self.host:close()
end

--- Create a policy backend. cfg: path (the policy file, required), watch (default true:
--- reload when the file changes), debounce_ms (default 200), limits (policy VM limits).
--- The policy must define on_auth (on_kms_auth is optional; without it KMS checks deny).
--- Returns the backend, or nil, message, code when the file cannot be loaded.
function M.new(cfg)
  if type(cfg.path) ~= 'string' or cfg.path == '' then
    return nil, 'EINVAL: policy path must be a file name', 'EINVAL'
  end
  local debounce = cfg.debounce_ms or M.DEFAULT_DEBOUNCE_MS
  if type(debounce) ~= 'number' or debounce < 0 then
    return nil, 'EINVAL: policy debounce_ms must be a number >= 0', 'EINVAL'
  end
  local self = setmetatable({
    path = cfg.path, debounce_ms = debounce,
    host = phost.new({ name = 'kms-auth', limits = cfg.limits, required = { 'on_auth' } }),
  }, Policy)
  local ok, err, code = self.host:load_file(cfg.path)
  if not ok then
    self.host:close()
    return nil, err, code
  end
  if cfg.watch ~= false then
    self:_watch()
  end
  return self
end

return M
