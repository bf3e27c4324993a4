-- SPDX-License-Identifier: Apache-2.0
-- The docker-compose runner's engine and compose choices, with stand-in programs (the real
-- engine runs in tests/functional/docker_engine_test.sh): `docker compose` when the plugin
-- answers, compose v1 (`docker-compose`) where it does not, a clear EUNAVAILABLE when neither
-- does; runner.docker_host as DOCKER_HOST; the agent config's runner.dockerd section; and the
-- per-CVM engine's refusals (socket path too long, no dockerd, a dockerd that dies at start:
-- its last lines in the message, nothing left running).
local uv = require('luv')
local loop = require('tests.helpers.loop')
local fixtures = require('tests.helpers.fixtures')
local config = require('moonstack.agent.config')
local docker = require('moonstack.agent.runner.docker_compose')
local dockerd = require('moonstack.cvm.dockerd')

local PATH = '/usr/local/bin:/usr/bin:/bin'

-- An executable script at dir/name.
local function script(dir, name, body)
  local path = dir .. '/' .. name
  local f = assert(io.open(path, 'w'))
  f:write('#!/bin/sh\n' .. body .. '\n')
  f:close()
  assert(uv.fs_chmod(path, 493))
  return path
end

-- A fake docker CLI: `info` answers, `compose version` answers when plugin is true; every
-- call's DOCKER_HOST and arguments go to dir/calls.
local function fake_docker(dir, plugin)
  return script(dir, 'docker', ([[
echo "$DOCKER_HOST $*" >> %s/calls
case "$1 $2" in
  "info "*) echo ok ;;
  "compose version") %s ;;
  *) exit 3 ;;
esac]]):format(dir, plugin and 'echo v2' or 'echo "unknown command: docker compose" >&2; exit 1'))
end

local function compose_cmd(cfg)
  return loop.run_task(function()
    return docker.compose_command(cfg, { PATH = PATH }, '/')
  end, 10000)
end

describe('docker-compose runner: compose and engine choices', function()
  local dir
  before_each(function()
    dir = fixtures.tmpdir('agent-dockerd', true)
  end)
  after_each(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  it('uses the compose plugin when it answers, else compose v1, else refuses', function()
    local v1 = script(dir, 'docker-compose', '[ "$1" = version ] && echo 1.29.2')
    local cfg = { docker = fake_docker(dir, true), docker_compose = v1 }
    assert.are.same({ cfg.docker, 'compose' }, compose_cmd(cfg))
    cfg.compose = 'standalone'
    assert.are.same({ v1 }, compose_cmd(cfg))
    cfg = { docker = fake_docker(dir, false), docker_compose = v1 }
    assert.are.same({ v1 }, compose_cmd(cfg)) -- Debian 12: no plugin
    cfg.compose = 'plugin'
    local cmd, err, code = compose_cmd(cfg)
    assert.is_nil(cmd)
    assert.are.equal('EUNAVAILABLE', code)
    assert.matches('needs the compose plugin', err)
    cfg = { docker = fake_docker(dir, false), docker_compose = '/nonexistent/docker-compose' }
    cmd, err, code = compose_cmd(cfg)
    assert.is_nil(cmd)
    assert.are.equal('EUNAVAILABLE', code)
    assert.matches('needs `.-docker compose` or `/nonexistent/docker%-compose`', err)
  end)

  it('gives runner.docker_host to every docker command as DOCKER_HOST', function()
    local cfg = { docker = fake_docker(dir, true), docker_host = 'unix:///x/cvm.sock',
      path = PATH }
    uv.os_setenv('DOCKER_HOST', 'unix:///agent/own.sock')
    local ok = loop.run_task(function() return docker.probe(cfg, {}, dir) end, 10000)
    uv.os_unsetenv('DOCKER_HOST')
    assert.is_true(ok)
    assert.are.equal('unix:///x/cvm.sock info\n', fixtures.read(dir .. '/calls'))
  end)

  it('validates runner.dockerd in the agent config', function()
    local base = { tee = { name = 'sim', dir = '/s', cvm = 'c' } }
    base.runner = { dockerd = { images = { '/img/a.tar', { file = '/r.tar', tag = 'x:1' } } },
      docker_host = 'unix:///run/d.sock' }
    local cfg = assert(config.validate(base))
    assert.are.equal('bridge', cfg.runner.dockerd.network)
    assert.is_true(cfg.runner.dockerd.private_mounts)
    assert.are.equal('auto', cfg.runner.compose)
    base.runner = { dockerd = { images = { { file = '/r.tar' } } } }
    local bad, err = config.validate(base)
    assert.is_nil(bad)
    assert.matches('config%.runner%.dockerd%.images%[1%]: expected a docker%-save tarball', err)
    base.runner = { dockerd = { network = 'host' } }
    bad, err = config.validate(base)
    assert.is_nil(bad)
    assert.matches('config%.runner%.dockerd%.network', err)
    base.runner = { docker_host = '/run/d.sock' }
    assert.is_nil((config.validate(base)))
  end)

  it('refuses an engine whose socket path is too long, or without dockerd', function()
    local long = dir .. '/' .. ('d'):rep(100)
    local e, err, code = loop.run_task(function() return dockerd.start({ dir = long }) end)
    assert.is_nil(e)
    assert.are.equal('EINVAL', code)
    assert.matches('longer than 107 bytes', err)
    e, err, code = loop.run_task(function()
      return dockerd.start({ dir = dir .. '/e', dockerd = '/nonexistent/dockerd',
        ready_timeout_ms = 5000 })
    end, 10000)
    assert.is_nil(e)
    assert.are.equal('EUNAVAILABLE', code)
    assert.matches('dockerd exited with status 127', err)
    assert.matches('cannot execute /nonexistent/dockerd', err)
    assert.has_error(function() dockerd.start({}) end, 'dockerd.start: opts.dir is required')
  end)

  it('reports a dockerd that dies at start with its last lines, and one never ready', function()
    local fake = script(dir, 'dockerd', 'echo "starting $*"; echo "failed to start daemon: boom" >&2; exit 1')
    local e, err, code = loop.run_task(function()
      return dockerd.start({ dir = dir .. '/e', dockerd = fake, private_mounts = false,
        ready_timeout_ms = 5000 })
    end, 10000)
    assert.is_nil(e)
    assert.are.equal('EUNAVAILABLE', code)
    assert.matches('dockerd exited with status 1: .*failed to start daemon: boom', err)
    local slow = script(dir, 'slow-dockerd', 'echo "pid $$"; exec sleep 30')
    local t0 = uv.now()
    e, err, code = loop.run_task(function()
      return dockerd.start({ dir = dir .. '/s', dockerd = slow, ready_timeout_ms = 300,
        stop_timeout_ms = 1000 })
    end, 10000)
    assert.is_nil(e)
    assert.are.equal('EUNAVAILABLE', code)
    assert.matches('not ready within 300 ms', err)
    assert.is_true(uv.now() - t0 < 5000)
    local pid = tonumber(err:match('pid (%d+)'))
    assert.is_truthy(pid)
    assert.are_not.equal(0, uv.kill(pid, 0))
  end)
end)
