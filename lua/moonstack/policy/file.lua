-- SPDX-License-Identifier: Apache-2.0
-- One operator policy file served by a policy host (moonstack.policy.host) and kept in step
-- with the file: loaded at open (a file that does not load, validate or pass its own tests
-- fails the open), read again on request (SIGHUP, the control socket) and, when watched, when
-- it changes on disk (moonstack.policy.watch); a refused version leaves the previous policy
-- deciding. Used by the KMS's policy auth backend and the gateway's routing policy. open()
-- and reload() wait on the policy workers: call them from a task.
--
--   local f, summary = pfile.open({ path, name, required = { 'on_route' }, workers, limits,
--     watch = true, debounce_ms = 200, log, label, on_reload })
--   f.host:decide(hook, input); f:reload(); f:watching(); f:close()
local phost = require('moonstack.policy.host')
local watch = require('moonstack.policy.watch')

local M = {}

local File = {}
File.__index = File

--- Open the policy file opts.path in a new host. opts = { path, name (the host's name, in
--- logs), required (hooks the policy must define), workers?, limits? (policy VM limits),
--- watch (reload when the file changes), debounce_ms?, log?, label? (task name prefix,
--- default name), on_reload? (fn(ok) called after each reload the watch makes, ok: whether
--- it loaded) }. Returns the file
--- ({ host, path }) and the loaded policy's summary, or nil, msg, code (the workers closed).
function M.open(opts)
  assert(type(opts) == 'table' and type(opts.path) == 'string', 'policy.file.open: path required')
  local host = phost.new({ name = opts.name, limits = opts.limits, required = opts.required,
    workers = opts.workers })
  local summary, err, code = host:load_file(opts.path)
  if not summary then
    host:close()
    return nil, err, code
  end
  local self = setmetatable({ host = host, path = opts.path }, File)
  if opts.watch then
    self.watch = watch.start(host, opts.path, { debounce_ms = opts.debounce_ms, log = opts.log,
      label = opts.label or opts.name, on_reload = opts.on_reload })
  end
  return self, summary
end

--- Read the file again now. Returns the active policy's summary, or nil, msg, code (the
--- previous policy stays; the watch forgets the version it last refused, as this reload has
--- logged it).
function File:reload()
  local s, err, code = self.host:reload()
  if not s and self.watch then
    self.watch:reset()
  end
  return s, err, code
end

--- Whether changes of the file are being watched (false when unwatched or unwatchable).
function File:watching()
  return self.watch ~= nil and self.watch.active
end

--- Stop watching and kill the policy workers.
function File:close()
  if self.watch then
    self.watch:close()
    self.watch = nil
  end
  self.host:close()
end

return M
