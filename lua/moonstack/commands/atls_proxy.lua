-- SPDX-License-Identifier: Apache-2.0
-- `moonstack atls proxy` (dispatched by `moonstack atls`; hidden as a command of its own): the
-- WebSocket -> TCP bridge of moonstack.atls.proxy on the runtime's HTTP server, wss with
-- --cert/--key, GET /metrics, and least privilege: after binding, a process started as root
-- drops to --user (default nobody) before serving.
local args = require('moonstack.core.args')
local fs = require('moonstack.core.fs')

local PROG = 'moonstack atls proxy'

local spec = {
  usage = 'moonstack atls proxy --listen HOST:PORT --allowlist HOST:PORT[,HOST:PORT] '
    .. '[--cert FILE --key FILE] [--user NAME] [--rate N] [--max-conns N] [--per-client N] '
    .. '[--bytes-per-sec N]',
  summary = 'the WebSocket -> TCP bridge for browser aTLS clients (exact allowlist)',
  description = table.concat({
    'Browsers open ws[s]://LISTEN/?target=HOST:PORT; binary messages are piped to that TCP',
    'target. The allowlist (--allowlist or env ATLS_PROXY_ALLOWLIST) is required and matched',
    'exactly; other targets are refused before the upgrade. wss with --cert/--key. GET',
    '/metrics gives Prometheus counters. Limits per client address: --rate new connections',
    'per second (burst 2N), --per-client open ones. Started as root, it drops to --user (default',
    'nobody) after binding.',
  }, '\n'),
  options = {
    { '--listen', arg = 'HOST:PORT', help = 'where to accept websockets' },
    { '--allowlist', arg = 'LIST', help = 'allowed targets host:port[,host:port]' },
    { '--cert', arg = 'FILE', help = 'TLS certificate (PEM): wss' },
    { '--key', arg = 'FILE', help = 'its key (PEM)' },
    { '--user', arg = 'NAME', help = 'the user to run as when started as root',
      default = 'nobody' },
    { '--rate', arg = 'N', help = 'new connections per second (burst 2N)', default = '20' },
    { '--max-conns', arg = 'N', help = 'open connections at most', default = '256' },
    { '--per-client', arg = 'N', help = 'open connections per client address', default = '32' },
    { '--bytes-per-sec', arg = 'N', help = 'per connection, browser to target',
      default = '4194304' },
  },
}

local function say(...)
  io.stderr:write(PROG, ': ', ...)
  io.stderr:write('\n')
end

-- Drop root for `user` (setgroups, setgid, setuid). True, or nil, msg.
local function drop_root(user)
  local ffi = require('ffi')
  pcall(ffi.cdef, [[
    struct passwd { char *pw_name; char *pw_passwd; unsigned int pw_uid; unsigned int pw_gid;
      char *pw_gecos; char *pw_dir; char *pw_shell; };
    struct passwd *getpwnam(const char *name);
    int setgroups(size_t size, const unsigned int *list);
    int setgid(unsigned int gid); int setuid(unsigned int uid);
    unsigned int getuid(void); unsigned int geteuid(void);
  ]])
  if ffi.C.geteuid() ~= 0 then
    return true
  end
  local pw = ffi.C.getpwnam(user)
  if pw == nil then
    return nil, 'no such user: ' .. user
  end
  local uid, gid = pw.pw_uid, pw.pw_gid
  if uid == 0 then
    return nil, '--user must not be root'
  end
  if ffi.C.setgroups(0, nil) ~= 0 or ffi.C.setgid(gid) ~= 0 or ffi.C.setuid(uid) ~= 0 then
    return nil, 'cannot drop privileges to ' .. user
  end
  if ffi.C.setuid(0) == 0 then
    return nil, 'privileges could be regained'
  end
  return true
end

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  local proxy = require('moonstack.atls.proxy')
  local allow, err = proxy.parse_allowlist(opts.allowlist or os.getenv('ATLS_PROXY_ALLOWLIST'))
  if not allow then
    say(err, ' (--allowlist or ATLS_PROXY_ALLOWLIST)')
    return 2
  end
  local host, port = (opts.listen or ''):match('^%[?([^%]]+)%]?:(%d+)$')
  port = tonumber(port)
  local limits = { rate = tonumber(opts.rate), max_conns = tonumber(opts.max_conns),
    per_client = tonumber(opts.per_client),
    bytes_per_sec = tonumber(opts.bytes_per_sec) }
  if not host or not port or not limits.rate or not limits.max_conns or not limits.per_client
      or not limits.bytes_per_sec then
    say('--listen HOST:PORT is required; --rate, --max-conns, --bytes-per-sec are numbers')
    return 2
  end
  limits.burst = 2 * limits.rate
  local tls
  if opts.cert or opts.key then
    local cert, key = opts.cert and fs.read_file(opts.cert, 1024 * 1024),
      opts.key and fs.read_file(opts.key, 64 * 1024)
    if not cert or not key then
      say('--cert and --key must both be readable PEM files')
      return 2
    end
    tls = { cert = cert, key = key }
  end
  local p = proxy.new(allow, limits)
  local server = require('moonstack.http.server').new({ name = 'atls-proxy',
    listen = { host = host, port = port }, tls = tls, max_body = 1024 })
  p:mount(server)
  local ok, lerr = server:listen()
  if not ok then
    say(tostring(lerr))
    return 1
  end
  local dropped, derr = drop_root(opts.user)
  if not dropped then
    say(derr)
    return 1
  end
  io.stdout:write(('atls proxy: %s on %s:%d, %d allowed target(s), running as uid %d\n'):format(
    tls and 'wss' or 'ws', host, server:port(), select(2, proxy.parse_allowlist(
      opts.allowlist or os.getenv('ATLS_PROXY_ALLOWLIST'))), require('ffi').C.getuid()))
  io.stdout:flush()
  return nil
end

return { name = 'atls-proxy', hidden = true, summary = spec.summary, run = run }
