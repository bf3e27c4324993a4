-- SPDX-License-Identifier: Apache-2.0
-- A real single-member etcd (Debian etcd-server) for binding specs: started on free loopback
-- ports with its data dir under /dev/shm when there is one (the WAL preallocates 64 MB),
-- stopped with SIGKILL (a graceful stop can take seconds), its data dir removed.
local uv = require('luv')
local loop = require('loop')
local fixtures = require('fixtures')

local M = {}

--- Whether etcd is installed.
function M.available()
  return uv.fs_stat('/usr/bin/etcd') ~= nil
end

-- A CA and a server certificate for 127.0.0.1 (and a client certificate), made with openssl
-- in `dir`: ca.pem, server.pem/server.key, client.pem/client.key.
local function make_certs(dir)
  local key = 'openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=%s '
    .. '-keyout %s.key -out %s.csr'
  local sign = 'openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 '
    .. '-extfile %s -out %s.pem'
  local sh = '(' .. table.concat({
    'cd %q',
    'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 '
      .. '-subj /CN=etcd-test-ca -keyout ca.key -out ca.pem',
    key:format('127.0.0.1', 'server', 'server'),
    "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > ext.cnf",
    sign:format('server', 'ext.cnf', 'server'),
    key:format('client', 'client', 'client'),
    "printf 'extendedKeyUsage=clientAuth\\n' > cext.cnf",
    sign:format('client', 'cext.cnf', 'client'),
  }, ' && ') .. ') >/dev/null 2>&1'
  assert(os.execute(sh:format(dir)) == 0, 'openssl could not make the test certificates')
end

--- Start one member; returns { url, port, dir, stop = fn() }. opts.tls: serve HTTPS with a
--- test CA (files in e.dir: ca.pem, client.pem, client.key) and require client certificates.
--- Waits (loop turning) until its /health answers (bounded: 15 s).
function M.start(opts)
  opts = opts or {}
  local base = uv.fs_stat('/dev/shm') and '/dev/shm' or nil
  local dir = base and assert(uv.fs_mkdtemp(base .. '/ms-etcd-XXXXXX')) or fixtures.tmpdir('etcd')
  local cport, pport = fixtures.free_port(), fixtures.free_port()
  local scheme = opts.tls and 'https' or 'http'
  local curl, purl = scheme .. '://127.0.0.1:' .. cport, 'http://127.0.0.1:' .. pport
  local log = assert(uv.fs_open(dir .. '.log', 'w', 384))
  local exited = false
  local args = { '--name', 's1', '--data-dir',
    dir .. '/data', '--listen-client-urls', curl, '--advertise-client-urls', curl,
    '--listen-peer-urls', purl, '--initial-advertise-peer-urls', purl, '--initial-cluster',
    's1=' .. purl, '--logger=zap' }
  if opts.tls then
    make_certs(dir)
    for _, a in ipairs({ '--cert-file', dir .. '/server.pem', '--key-file', dir .. '/server.key',
      '--trusted-ca-file', dir .. '/ca.pem', '--client-cert-auth' }) do
      args[#args + 1] = a
    end
  end
  local handle = assert(uv.spawn('/usr/bin/etcd', { args = args, stdio = { nil, log, log } },
    function() exited = true end))
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
  local tls = opts.tls and { ca = fixtures.read(dir .. '/ca.pem'),
    cert = fixtures.read(dir .. '/client.pem'), key = fixtures.read(dir .. '/client.key') } or nil
  local ok = loop.run_task(function()
    for _ = 1, 150 do
      local r = http.request({ url = curl .. '/health', timeout_ms = 500, tls = tls })
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
