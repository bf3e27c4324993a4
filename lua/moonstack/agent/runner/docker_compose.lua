-- SPDX-License-Identifier: Apache-2.0
-- The `docker-compose` runner: app-compose's docker_compose_file is written to
-- <work_dir>/docker-compose.yaml and started with `docker compose up --remove-orphans -d
-- --build` (after the pre_launch_script, in the launcher), as upstream's app-compose.sh does.
-- It needs a Docker engine: `docker info` is probed first (with a timeout) and its absence is
-- a clear EUNAVAILABLE error. Each container's output is followed (`docker logs -f`) into the
-- log store under the container's name, so the logs endpoint serves it like the bash
-- runner's. stop() runs `docker compose stop` and ends the followers. Same interface as
-- moonstack.agent.runner.bash.
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')
local launch = require('moonstack.agent.runner.launch')
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
  return e
end

local function first_line(s)
  return (s or ''):match('[^\n]*[^\n%s]') or ''
end

--- Whether a Docker engine answers (inside a task): true, or nil, 'EUNAVAILABLE: ...'.
function M.probe(cfg, env, work_dir)
  local r, err = process.run({ file = cfg.docker or 'docker', args = { 'info' },
    env = docker_env(cfg, env, work_dir or '/'), cwd = work_dir,
    timeout_ms = cfg.docker_probe_timeout_ms or 5000 })
  if not r then
    return errors.fail('EUNAVAILABLE', ('the docker-compose runner needs a Docker engine, but '
      .. '`%s info` failed: %s'):format(cfg.docker or 'docker', tostring(err)))
  end
  if r.exit_code ~= 0 then
    return errors.fail('EUNAVAILABLE', ('the docker-compose runner needs a Docker engine, but '
      .. '`%s info` failed (exit %d): %s'):format(cfg.docker or 'docker', r.exit_code,
      first_line(r.stderr ~= '' and r.stderr or r.stdout)))
  end
  return true
end

-- containers are restarted by Docker's own policy: the app does not end by itself (yet)
local App = require('moonstack.agent.runner.app').class()

function App:_docker(args, timeout_ms)
  local argv = { 'compose', '-f', self.compose_file }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  return process.run({ file = self.config.docker or 'docker', args = argv, env = self.env,
    cwd = self.work_dir, timeout_ms = timeout_ms or 60000 })
end

-- Containers of the project: { { id, name, status } }.
function App:containers()
  local r, err, code = self:_docker({ 'ps', '-a', '--format', '{{.ID}}\t{{.Names}}\t{{.State}}' })
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

function App:stop()
  local r, err = self:_docker({ 'stop' }, 120000)
  if not r or r.exit_code ~= 0 then
    log.warn('docker compose stop failed', { error = r and first_line(r.stderr) or err })
  end
  for _, p in pairs(self.followers) do
    p:stop(self.config.stop_grace_ms)
  end
  return true
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
  local ok, err, code = M.probe(cfg, opts.env, opts.work_dir)
  if not ok then
    return nil, err, code
  end
  local file
  file, err, code = launch.write_file(opts.work_dir, M.COMPOSE_FILE, app.docker_compose_file)
  if not file then
    return nil, err, code
  end
  local self = setmetatable({ kind = 'docker-compose', logs = opts.logs, config = cfg, env = env,
    work_dir = opts.work_dir, compose_file = file, followers = {} }, App)
  local proc
  proc, err, code = launch.start({ service = 'compose', pre_launch = app.pre_launch_script,
    argv = { cfg.docker or 'docker', 'compose', '-f', file, 'up', '--remove-orphans', '-d',
      '--build' }, env = env, work_dir = opts.work_dir, logs = opts.logs })
  if not proc then
    return nil, err, code
  end
  proc:wait()
  if proc.exit_code ~= 0 then
    return errors.fail('EAPP', ('docker compose up failed (exit %s): %s'):format(
      tostring(proc.exit_code), launch.last_lines(opts.logs, 'compose', 3)))
  end
  task.sleep(0)
  ok, err, code = self:follow_logs()
  if not ok then
    return nil, err, code
  end
  return self
end

return M
