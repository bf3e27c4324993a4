-- SPDX-License-Identifier: Apache-2.0
-- Reload a policy host (moonstack.policy.host) when its file changes on disk: a watch of the
-- file's directory (so editors' rename-over works), debounced; the file is reloaded unless its
-- content is the active policy's or the version just refused (one error log per broken
-- version is enough). Used by the KMS's policy auth backend and the gateway's routing policy.
local uv = require('luv')
local phost = require('moonstack.policy.host')
local pvm = require('moonstack.native.policyvm')
local task = require('moonstack.core.task')

local M = {}

local Watch = {}
Watch.__index = Watch

-- Reload after a change event (see the module comment). Call from a task.
function Watch:changed()
  local source = phost.read_file(self.path)
  local ok = false
  if source then
    local sha = pvm.sha256(source)
    local active = self.host:active()
    if (active and active.sha256 == sha) or sha == self.failed_sha then
      return
    end
    ok = self.host:load_string(source, '@' .. self.path, self.path) and true or false
    self.failed_sha = not ok and sha or nil
  else
    self.host:load_file(self.path) -- logs why the file cannot be read; the old policy stays
  end
  if self.on_reload then
    self.on_reload(ok)
  end
end

--- Forget the last refused version (after an explicit reload, which logs on its own).
function Watch:reset()
  self.failed_sha = nil
end

--- Stop watching. Idempotent.
function Watch:close()
  for _, h in pairs({ w = self.watcher, t = self.timer }) do
    if not h:is_closing() then
      h:close()
    end
  end
  self.watcher, self.timer = nil, nil
  self.active = false
end

--- Watch `path` for `host`. opts = { debounce_ms = 200, log = a moonstack.core.log logger,
--- label = task name prefix, on_reload = fn(ok) called after each reload attempt }. Returns the
--- watch ({ active, close(), reset() }); when the directory cannot be watched it is returned
--- with active = false (and a warning logged): reloads then come from SIGHUP or the REPL.
function M.start(host, path, opts)
  opts = opts or {}
  local log = opts.log or require('moonstack.core.log').new('policy')
  local self = setmetatable({ host = host, path = path, on_reload = opts.on_reload,
    active = true }, Watch)
  local dir, base = path:match('^(.*)/([^/]+)$')
  if not dir then
    dir, base = '.', path
  end
  local debounce = opts.debounce_ms or 200
  local label = (opts.label or 'policy') .. ':policy-reload'
  self.timer = uv.new_timer()
  self.watcher = uv.new_fs_event()
  local ok, err = self.watcher:start(dir == '' and '/' or dir, {}, function(werr, name)
    if werr then
      log.warn('policy file watch error', { path = path, error = werr })
      return
    end
    if name ~= nil and name ~= base then
      return
    end
    self.timer:stop()
    self.timer:start(debounce, 0, function()
      task.spawn_named(label, function()
        local pok, perr = pcall(self.changed, self)
        if not pok then
          log.error('policy reload after a file change failed', { path = path, error = tostring(perr) })
        end
      end)
    end)
  end)
  if not ok then
    log.warn('cannot watch the policy file; reload with SIGHUP or the control socket',
      { path = path, error = err })
    self:close()
  end
  return self
end

return M
