-- SPDX-License-Identifier: Apache-2.0
-- The `docker-compose` runner: app-compose's docker_compose_file is written to
-- <work_dir>/docker-compose.yaml and started with `docker compose up --remove-orphans -d
-- --build` (after the pre_launch_script, in the launcher), as upstream's app-compose.sh does.
-- Compose is the `docker compose` plugin where it answers, else compose v1 (`docker-compose`,
-- what Debian 12 ships): runner.compose = 'auto' | 'plugin' | 'standalone'. The project name is
-- explicit (-p, runner.compose_project or the work dir's name) so both find the same
-- containers. The engine is the one at runner.docker_host (DOCKER_HOST), or, with
-- runner.dockerd, an engine of this CVM's own (moonstack.cvm.dockerd) started first
-- (its images loaded) and stopped after the app. `docker info` is probed (with a timeout) and
-- an absent engine or compose is a clear EUNAVAILABLE error. Each container's output is
-- followed (`docker logs -f`) into the log store under the container's name, so the logs
-- endpoint serves it like the bash runner's. stop() runs compose stop (-t: the runner's grace),
-- ends the followers, then stops the engine. Same interface as moonstack.agent.runner.bash.
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')
local launch = require('moonstack.agent.runner.launch')
local dockerd = require('moonstack.cvm.dockerd')
local process = require('moonstack.core.process')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- The compose file name in the work dir.
M.COMPOSE_FILE = 'docker-compose.yaml'

local function docker_env(cfg, env, work_dir)
  local e = launch.base_env(cfg, env, work_dir)
  for _, k in ipairs({ 'DOCKER_HOST', 'DOCKER_CONFIG', 'DOCKER_CONTEXT' }) do
    if os.getenv(k) and e[k] == nil then
      e[k] = os.getenv(k)
    end
  end
  if cfg.docker_host then
    e.DOCKER_HOST = cfg.docker_host
  end
  return e
end

local function first_line(s)
  return (s or ''):match('[^\n]*[^\n%s]') or ''
end

local function unavailable(what, r, err)
  local why = r and ('(exit %d): %s'):format(r.exit_code, first_line(r.stderr ~= '' and r.stderr
    or r.stdout)) or (': ' .. tostring(err))
  return errors.fail('EUNAVAILABLE', ('the docker-compose runner needs %s, but it failed %s')
    :format(what, why))
end

local function run(cfg, file, args, env, work_dir)
  return process.run({ file = file, args = args, env = env, cwd = work_dir,
    timeout_ms = cfg.docker_probe_timeout_ms or 5000 })
end

--- Whether a Docker engine answers (inside a task): true, or nil, 'EUNAVAILABLE: ...'. `env`
--- is the app's env (docker_env adds DOCKER_HOST); opts.env gives the final env as is.
function M.probe(cfg, env, work_dir, opts)
  local e = opts and opts.env or docker_env(cfg, env, work_dir or '/')
  local docker = cfg.docker or 'docker'
  local r, err = run(cfg, docker, { 'info' }, e, work_dir)
  if not r or r.exit_code ~= 0 then
    return unavailable(('a Docker engine (`%s info`)'):format(docker), r, err)
  end
  return true
end

--- The compose command (inside a task): { program, args prefix } per runner.compose, or nil,
--- 'EUNAVAILABLE: ...' when neither the plugin nor compose v1 answers.
function M.compose_command(cfg, env, work_dir)
  local docker, v1 = cfg.docker or 'docker', cfg.docker_compose or 'docker-compose'
  local mode = cfg.compose or 'auto'
  if mode ~= 'standalone' then
    local r, err = run(cfg, docker, { 'compose', 'version' }, env, work_dir)
    if r and r.exit_code == 0 then
      return { docker, 'compose' }
    elseif mode == 'plugin' then
      return unavailable(('the compose plugin (`%s compose version`)'):format(docker), r, err)
    end
  end
  local r, err = run(cfg, v1, { 'version' }, env, work_dir)
  if r and r.exit_code == 0 then
    return { v1 }
  end
  return unavailable(mode == 'auto' and ('`%s compose` or `%s`'):format(docker, v1)
    or ('compose v1 (`%s version`)'):format(v1), r, err)
end

-- containers are restarted by Docker's own policy: the app does not end by itself (yet)
local App = require('moonstack.agent.runner.app').class()

function App:_compose(args, timeout_ms)
  local argv = {}
  for i = 2, #self.compose do
    argv[#argv + 1] = self.compose[i]
  end
  for _, a in ipairs({ '-p', self.project, '-f', self.compose_file }) do
    argv[#argv + 1] = a
  end
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  return process.run({ file = self.compose[1], args = argv, env = self.env, cwd = self.work_dir,
    timeout_ms = timeout_ms or 60000 })
end

-- Containers of the project: { { id, name, status } } (docker ps by compose's project label:
-- compose v1's ps has no --format).
function App:containers()
  local r, err, code = process.run({ file = self.config.docker or 'docker', args = { 'ps', '-a',
    '--filter', 'label=com.docker.compose.project=' .. self.project, '--format',
    '{{.ID}}\t{{.Names}}\t{{.State}}' }, env = self.env, cwd = self.work_dir, timeout_ms = 60000 })
  if not r then
    return nil, err, code
  end
  local list = {}
  for line in r.stdout:gmatch('[^\n]+') do
    local id, name, state = line:match('^(%S+)\t([^\t]+)\t?(.*)$')
    if id then
      list[#list + 1] = { id = id, name = (name:gsub('^/', '')), status = state }
    end
  end
  return list
end

-- Follow every container's output into the log store.
function App:follow_logs()
  local list, err, code = self:containers()
  if not list then
    return nil, err, code
  end
  for _, c in ipairs(list) do
    if not self.followers[c.name] then
      local p, perr = process.spawn({ service = c.name, file = self.config.docker or 'docker',
        args = { 'logs', '-f', c.id }, env = self.env, cwd = self.work_dir, logs = self.logs })
      if p then
        self.followers[c.name] = p
        self.logs:set_status(c.name, c.status ~= '' and c.status or 'running')
      else
        log.warn('cannot follow container logs', { container = c.name, error = perr })
      end
    end
  end
  return true
end

--- Stop the containers (compose stop, -t the runner's grace), the log followers, then the
--- CVM's own engine if it has one (inside a task).
function App:stop()
  local grace = math.ceil((self.config.stop_grace_ms or 5000) / 1000)
  local r, err = self:_compose({ 'stop', '-t', tostring(grace) }, 120000)
  if not r or r.exit_code ~= 0 then
    log.warn('docker compose stop failed', { error = r and first_line(r.stderr) or err })
  end
  for _, p in pairs(self.followers) do
    p:stop(self.config.stop_grace_ms)
  end
  if self.engine then
    self.engine:stop()
  end
  return true
end

-- The CVM's own engine (runner.dockerd): started, its images loaded; DOCKER_HOST set in env.
local function start_engine(cfg, env, opts)
  local d = cfg.dockerd
  local o = { logs = opts.logs, docker = cfg.docker, path = cfg.path }
  for k, v in pairs(d) do
    o[k] = v
  end
  o.dir = d.dir or ((opts.work_dir:match('^(.*)/[^/]+/*$') or opts.work_dir) .. '/docker')
  local engine, err, code = dockerd.start(o)
  if not engine then
    return nil, err, code
  end
  env.DOCKER_HOST = engine.host
  return engine
end

-- The guest API sockets a compose file mounts by their CVM path, and the runner.env variable
-- that names where they are when not there (the process backend: in the VM's work dir).
local SOCKETS = { { '/var/run/dstack.sock', 'DSTACK_SIMULATOR_ENDPOINT' },
  { '/var/run/tappd.sock', 'TAPPD_SIMULATOR_ENDPOINT' } }

--- The compose text with its bind mounts of the guest API sockets (/var/run/dstack.sock,
--- /var/run/tappd.sock: short syntax `- SRC:DST`, long syntax `source: SRC`) pointed at where
--- the sockets are, as `env` (runner.env) names them; unchanged where env names none. Without
--- it, an app written for a CVM would make Docker create a directory at the missing path.
function M.map_sockets(text, env)
  for _, s in ipairs(SOCKETS) do
    local real = env and env[s[2]]
    if type(real) == 'string' and real ~= '' and real ~= s[1] then
      local pat = s[1]:gsub('%p', '%%%0')
      local rep = real:gsub('%%', '%%%%')
      text = text:gsub('([%s"\'])' .. pat .. ':', '%1' .. rep .. ':')
      text = text:gsub('(source:%s*["\']?)' .. pat .. '(["\']?%s)', '%1' .. rep .. '%2')
    end
  end
  return text
end

--- Start the app (see moonstack.agent.runner.bash). Needs docker_compose_file.
function M.start(opts)
  local app, cfg = opts.app_compose, opts.config or {}
  if type(app.docker_compose_file) ~= 'string' or app.docker_compose_file == '' then
    return errors.fail('EINVAL', 'the docker-compose runner needs docker_compose_file in app-compose.json')
  end
  if app.snapshotter ~= nil then
    return errors.fail('EINVAL', 'snapshotter is only supported by the nerdctl-compose runner')
  end
  local env = docker_env(cfg, opts.env, opts.work_dir)
  local self = setmetatable({ kind = 'docker-compose', logs = opts.logs, config = cfg, env = env,
    work_dir = opts.work_dir, followers = {},
    project = cfg.compose_project or ((opts.work_dir:match('([^/]+)/*$') or 'app'):lower()
      :gsub('[^a-z0-9_-]', '')) }, App)
  if self.project == '' then
    self.project = 'app'
  end
  local function fail(_, err, code) -- (nil, msg, code): the engine goes with a failed start
    if self.engine then
      self.engine:stop()
    end
    return nil, err, code
  end
  local ok, err, code
  if cfg.dockerd then
    self.engine, err, code = start_engine(cfg, env, opts)
    if not self.engine then
      return nil, err, code
    end
  end
  ok, err, code = M.probe(cfg, nil, opts.work_dir, { env = env })
  if not ok then
    return fail(nil, err, code)
  end
  self.compose, err, code = M.compose_command(cfg, env, opts.work_dir)
  if not self.compose then
    return fail(nil, err, code)
  end
  self.compose_file, err, code = launch.write_file(opts.work_dir, M.COMPOSE_FILE,
    M.map_sockets(app.docker_compose_file, cfg.env))
  if not self.compose_file then
    return fail(nil, err, code)
  end
  local argv = { unpack(self.compose) }
  for _, a in ipairs({ '-p', self.project, '-f', self.compose_file, 'up', '--remove-orphans',
    '-d', '--build' }) do
    argv[#argv + 1] = a
  end
  local proc
  proc, err, code = launch.start({ service = 'compose', pre_launch = app.pre_launch_script,
    argv = argv, env = env, work_dir = opts.work_dir, logs = opts.logs })
  if not proc then
    return fail(nil, err, code)
  end
  proc:wait()
  if proc.exit_code ~= 0 then
    return fail(errors.fail('EAPP', ('docker compose up failed (exit %s): %s'):format(
      tostring(proc.exit_code), launch.last_lines(opts.logs, 'compose', 3))))
  end
  task.sleep(0)
  ok, err, code = self:follow_logs()
  if not ok then
    return fail(nil, err, code)
  end
  return self
end

return M
