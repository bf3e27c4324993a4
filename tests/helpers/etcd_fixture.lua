-- SPDX-License-Identifier: Apache-2.0
-- A real single-member etcd (Debian etcd-server) for binding specs: started on free loopback
-- ports with its data dir under /dev/shm when there is one (the WAL preallocates 64 MB),
-- stopped with SIGKILL (a graceful stop can take seconds), its data dir removed.
local uv = require('luv')
local loop = require('loop')
local fixtures = require('fixtures')

local M = {}

local function free_port()
  local s = uv.new_tcp()
  assert(s:bind('127.0.0.1', 0))
  local port = s:getsockname().port
  s:close()
  return port
end

--- Whether etcd is installed.
function M.available()
  return uv.fs_stat('/usr/bin/etcd') ~= nil
end

--- Start one member; returns { url, port, stop = fn() }. Waits (loop turning) until its
--- /health answers (bounded: 15 s).
function M.start()
  local base = uv.fs_stat('/dev/shm') and '/dev/shm' or nil
  local dir = base and assert(uv.fs_mkdtemp(base .. '/ms-etcd-XXXXXX')) or fixtures.tmpdir('etcd')
  local cport, pport = free_port(), free_port()
  local curl, purl = 'http://127.0.0.1:' .. cport, 'http://127.0.0.1:' .. pport
  local log = assert(uv.fs_open(dir .. '.log', 'w', 384))
  local exited = false
  local handle = assert(uv.spawn('/usr/bin/etcd', { args = { '--name', 's1', '--data-dir',
    dir .. '/data', '--listen-client-urls', curl, '--advertise-client-urls', curl,
    '--listen-peer-urls', purl, '--initial-advertise-peer-urls', purl, '--initial-cluster',
    's1=' .. purl, '--logger=zap' }, stdio = { nil, log, log } }, function() exited = true end))
  local e = { url = curl, port = cport, dir = dir }
  function e.stop()
    if not exited then
      handle:kill('sigkill')
      loop.run_until(function() return exited end, 3000)
    end
    if not handle:is_closing() then
      handle:close()
    end
    uv.fs_close(log)
    os.execute(('rm -rf %q %q'):format(dir, dir .. '.log'))
  end
  local http = require('moonstack.http.client')
  local ok = loop.run_task(function()
    for _ = 1, 150 do
      local r = http.request({ url = curl .. '/health', timeout_ms = 500 })
      if r and r.status == 200 then
        return true
      end
      require('moonstack.core.task').sleep(100)
    end
  end, 20000)
  if not ok then
    e.stop()
    error('etcd did not become healthy')
  end
  return e
end

return M
