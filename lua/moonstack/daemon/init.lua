-- SPDX-License-Identifier: Apache-2.0
-- The life of a long-running daemon: start its services in a task, open its control socket
-- (REPL), stop gracefully on SIGTERM/SIGINT (bounded), reload on SIGHUP, and report status.
-- Every daemon command (kms, vmm, gateway, agent...) runs through daemon.run; a service in the
-- service shape (<svc>/init.lua, api.lua, repl.lua) runs through daemon.serve, which adds the
-- config reload (SIGHUP: the config file is read again and the changed top-level keys are
-- handed to the service; any failure keeps the running config) and the code reload
-- (reload.code() in the REPL or SIGUSR2: moonstack.daemon.code).
local uv = require('luv')
local control = require('moonstack.control')
local runtime = require('moonstack.native.runtime')
local task = require('moonstack.core.task')
local tables = require('moonstack.core.tables')
local code_loader = require('moonstack.daemon.code')
local args = require('moonstack.core.args')

local M = {}

local Daemon = {}
Daemon.__index = Daemon

--- Start a daemon. spec:
---   name     string, used in logs
---   control  control socket path or table (see moonstack.control.open), or nil
---   env      table of helpers visible as globals in REPL chunks (the daemon is `daemon`),
---            or function(d) -> that table, called once started
---   start    function(d) run in a task; raise or return nil, msg to fail startup (exit 1)
---   stop     function(d) run in a task on shutdown (bounded by stop_timeout_ms)
---   reload   function(d) run in a task on SIGHUP (or d:reload()); failures are logged
---   stop_timeout_ms  default 10000
--- Returns the daemon object; the runtime's loop keeps it running until stopped.
function M.run(spec)
  assert(type(spec) == 'table' and type(spec.name) == 'string', 'daemon.run: spec.name required')
  local log = require('moonstack.core.log').new(spec.name)
  local d = setmetatable({ spec = spec, name = spec.name, log = log, state = 'starting',
    signals = {}, started_at = os.time() }, Daemon)

  for _, sig in ipairs({ 'sigterm', 'sigint', 'sighup', 'sigusr2' }) do
    local h = uv.new_signal()
    h:start(sig, function()
      if sig == 'sighup' then
        task.spawn_named(spec.name .. ':reload', function() d:reload() end)
      elseif sig == 'sigusr2' then
        task.spawn_named(spec.name .. ':reload-code', function()
          if spec.reload_code then
            spec.reload_code(d)
          else
            log.info('code reload requested: this daemon has no service code to swap')
          end
        end)
      else
        log.info('signal received, stopping', { signal = sig })
        d:stop(0)
      end
    end)
    d.signals[#d.signals + 1] = h
  end

  task.spawn_named(spec.name .. ':start', function()
    -- a control socket that cannot open fails the start before the services create anything
    local cok, check_err = control.check(spec.control)
    if not cok then
      log.error('cannot open the control socket', { error = check_err })
      d:stop(1)
      return
    end
    local ok, res, err = pcall(spec.start or function() return true end, d)
    if not ok or res == nil and err ~= nil then
      log.error('startup failed', { error = tostring(ok and err or res) })
      d:stop(1)
      return
    end
    if d.state ~= 'starting' then
      return -- stopped while starting
    end
    if spec.control then
      local env = { daemon = d }
      local extra = spec.env
      if type(extra) == 'function' then
        extra = extra(d)
      end
      for k, v in pairs(extra or {}) do
        env[k] = v
      end
      local srv, cerr = control.open(spec.control, env)
      if srv == nil then
        log.error('cannot open the control socket', { error = cerr })
        d:stop(1)
        return
      end
      d.control = srv or nil
    end
    d.state = 'running'
    log.info('running', { pid = uv.os_getpid(), control = d.control and d.control.path or nil })
  end)
  return d
end

--- Run the spec's reload function (SIGHUP does this). Returns true or nil, msg.
function Daemon:reload()
  if not self.spec.reload then
    self.log.info('reload requested: nothing to reload')
    return true
  end
  local ok, err = pcall(self.spec.reload, self)
  if not ok then
    self.log.error('reload failed; the previous version stays', { error = tostring(err) })
    return nil, tostring(err)
  end
  self.log.info('reloaded')
  return true
end

--- Stop the daemon: the spec's stop function (bounded), then the control socket and signal
--- handlers; the process exits with `code` once the loop is idle.
function Daemon:stop(code)
  if self.state == 'stopping' or self.state == 'stopped' then
    return
  end
  self.state = 'stopping'
  runtime.set_exit_code(code or 0)
  task.spawn_named(self.name .. ':stop', function()
    if self.spec.stop then
      local ok, err, ecode = task.timeout(self.spec.stop_timeout_ms or 10000, self.spec.stop, self)
      if not ok and ecode then
        self.log.error('stop did not finish cleanly', { error = err })
      end
    end
    if self.control then
      self.control:close()
      self.control = nil
    end
    for _, h in ipairs(self.signals) do
      if not h:is_closing() then
        h:close()
      end
    end
    self.signals = {}
    self.state = 'stopped'
    self.log.info('stopped', { exit_code = code or 0 })
    -- Whatever is still open now is a leak; do not let it keep the process alive.
    local grace = uv.new_timer()
    grace:start(2000, 0, function()
      grace:close()
      self.log.warn('handles still open after stop; exiting anyway')
      runtime.exit(code or 0)
    end)
    grace:unref()
  end)
end

--- A snapshot for REPL users and dashboards.
function Daemon:status()
  return { name = self.name, state = self.state, pid = uv.os_getpid(),
    uptime_s = os.time() - self.started_at, control = self.control and self.control.path or nil,
    code = self.code }
end

-- The top-level keys whose values differ between two configs, sorted.
local function changed_keys(old, new)
  local keys, seen = {}, {}
  for _, t in ipairs({ old, new }) do
    for k in pairs(t) do
      if not seen[k] and not tables.equal(old[k], new[k]) then
        keys[#keys + 1] = k
      end
      seen[k] = true
    end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end
M.changed_keys = changed_keys

-- reload.config() and SIGHUP: read the config again, hand the changed keys to the service.
local function reload_config(state, def)
  local d = state.daemon
  local cfg = state.cfg
  if def.config_path and def.load_config then
    local new, err = def.load_config(def.config_path)
    if not new then
      d.log.error('config reload failed; the running config stays', { error = tostring(err) })
      return nil, err
    end
    cfg = new
  end
  local changed = state.cfg and cfg ~= state.cfg and changed_keys(state.cfg, cfg) or {}
  local ok, err = state.svc:reload(cfg, changed)
  if not ok then
    d.log.error('reload failed; the running config stays', { error = tostring(err),
      changed = changed })
    return nil, err
  end
  state.cfg = cfg
  d.log.info('reloaded', { changed = changed })
  return true
end

-- reload.code([dir]) and SIGUSR2: stage, check, record, swap, rebind (moonstack.daemon.code).
local function reload_code(state, def, dir)
  local d = state.daemon
  local c = def.code
  if not c then
    return nil, 'ENOTSUP: this daemon has no service code to swap'
  end
  if c.allowed ~= true then
    local why = type(c.allowed) == 'string' and c.allowed or 'code reload is off in the config'
    d.log.warn('code reload refused', { reason = why })
    return nil, 'EPERM: ' .. why
  end
  dir = dir or c.dir or runtime.lua_dir()
  if not dir then
    return nil, 'EINVAL: no code directory (start with --lua-dir DIR or set code_dir)'
  end
  local staged, err = code_loader.stage(dir, c.prefix)
  if not staged then
    d.log.error('code reload refused; the running code stays', { error = err })
    return nil, err
  end
  if c.before_swap then
    local ok, berr = c.before_swap(state.svc, staged)
    if not ok then
      d.log.error('code reload refused; the running code stays', { error = berr })
      return nil, berr
    end
  end
  local previous = code_loader.swap(staged)
  local ok, rerr = pcall(package.loaded[c.prefix].rebind, state.svc)
  if not ok then -- the new code could not adopt the service: back to the old code
    code_loader.undo(staged, previous)
    package.loaded[c.prefix].rebind(state.svc)
    d.log.error('code reload failed while adopting the service; the old code is back',
      { error = tostring(rerr) })
    return nil, 'ELOAD: rebind: ' .. tostring(rerr), 'ELOAD'
  end
  d.code = { hash = staged.hash, files = staged.files, dir = dir, at = os.time() }
  d.log.info('code reloaded', d.code)
  return d.code
end

--- Run a service in the service shape as a daemon. def:
---   name        the daemon's name (logs; the service object's name in the REPL)
---   service     the service module: start(cfg, log) -> svc | nil, msg, code; the object has
---               stop(), status(), reload(cfg, changed) -> true | nil, msg, code (changed = the
---               top-level config keys that differ, {} for a plain SIGHUP), and the module
---               has rebind(svc) to adopt a swapped copy of its own code
---   cfg         the validated config (loaded by the command: a bad file exits 2 there)
---   config_path, load_config(path) -> cfg | nil, msg    to read the config again on SIGHUP
---   control     the control socket (path or table), or nil
---   repl        function(svc, d) -> helpers, doc: REPL globals and { name = 'what it does' }
---               for help()
---   code        { prefix = 'moonstack.<svc>', dir = lua/ root or nil (the runtime's
---               --lua-dir), allowed = true | false | 'reason refused', before_swap =
---               function(svc, staged) -> true | nil, msg (e.g. record the hash in RTMR3) }
--- In the REPL: `<name>` (the service object), help(), status(), reload.config(),
--- reload.code([dir]).
function M.serve(def)
  assert(type(def) == 'table' and type(def.name) == 'string' and type(def.service) == 'table',
    'daemon.serve: name and service required')
  local state = { cfg = def.cfg }
  local d
  d = M.run({
    name = def.name,
    control = def.control,
    stop_timeout_ms = def.stop_timeout_ms,
    start = function(dd)
      local svc, err, ecode = def.service.start(state.cfg, dd.log)
      if not svc then
        return nil, err, ecode
      end
      state.svc = svc
      dd.service = svc
      return true
    end,
    stop = function()
      if state.svc then
        state.svc:stop()
      end
    end,
    reload = function() assert(reload_config(state, def)) end,
    reload_code = function() reload_code(state, def) end,
    env = function(dd)
      local env, doc = {}, {}
      if def.repl then
        env, doc = def.repl(state.svc, dd)
        env, doc = env or {}, doc or {}
      end
      if env[def.name] == nil then -- unless the service's REPL offers its own view of it
        env[def.name] = state.svc
      end
      env.reload = { config = function() return reload_config(state, def) end,
        code = function(dir) return reload_code(state, def, dir) end }
      env.status = env.status or function() return state.svc:status() end
      local all = { [def.name] = 'the ' .. def.name .. ' service object (its state and methods)',
        daemon = 'the daemon: daemon:status(), daemon:stop()',
        status = 'a snapshot of the service',
        ['reload.config'] = 'read the config file again and apply what changed (as SIGHUP)',
        ['reload.code'] = "reload.code([dir]): swap in the service's code from dir or --lua-dir",
        help = 'this list' }
      for k, v in pairs(doc) do
        all[k] = v
      end
      env.help = function() return all end
      return env
    end,
  })
  state.daemon = d
  return d
end


--- The args spec (moonstack.core.args) of a daemon's `moonstack <name> -c FILE` command:
--- `summary`, `what` as the help of -c, and as the description the keys of the config module
--- named `config_module` (its top comment: moonstack.core.config.doc).
function M.command_spec(name, summary, config_module, what)
  return {
    usage = ('moonstack %s -c FILE'):format(name),
    summary = summary,
    description = 'FILE is a Lua config (examples: share/moonstack/examples/configs). '
      .. 'Its keys:\n\n' .. require('moonstack.core.config').doc(config_module),
    options = { { '-c', '--config', arg = 'FILE', help = what, required = true } },
  }
end

--- Run a daemon's `-c FILE` command: parse `argv` against `spec` (--help: exit 0; a usage
--- error: exit 2), load FILE with load_config(path) -> cfg | nil, msg (a bad file: the message
--- on stderr, exit 2), then M.serve(make(cfg)), the def given cfg, control (cfg.control),
--- config_path and load_config where it leaves them out (SIGHUP reads FILE again). Returns
--- the exit code, or nil once the daemon runs (the loop keeps it alive).
function M.serve_command(prog, spec, argv, load_config, make)
  local opts, code = args.parse_command(prog, spec, argv)
  if not opts then
    return code
  end
  local cfg, err = load_config(opts.config)
  if not cfg then
    return args.fail(prog, err)
  end
  local def = make(cfg)
  def.cfg = def.cfg or cfg
  if def.control == nil then
    def.control = cfg.control
  end
  def.config_path = def.config_path or opts.config
  def.load_config = def.load_config or load_config
  M.serve(def)
  return nil
end

return M
