-- SPDX-License-Identifier: Apache-2.0
-- The config checks of `moonstack audit` (moonstack.verifier.audit): plain http:// / ws:// URLs
-- where TLS is expected, admin listeners without auth, the aTLS proxy's allowlist (open or
-- wildcard), its user (root) and listener (plain ws), secrets put on command lines by config
-- values, and development settings (dev auth, simulators). A config is { file, kind, cfg }:
-- kind 'kms' | 'gateway' | 'vmm' | 'verifier' | 'agent' | 'proxy', cfg as its daemon loaded it.
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

--- Call fn(path, key, value) for every value under table `t` (depth first, keys sorted);
--- paths read `a.b[2].c`.
function M.walk(t, fn, prefix, seen)
  seen = seen or {}
  if seen[t] then
    return
  end
  seen[t] = true
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    local path
    if type(k) == 'number' then
      path = ('%s[%d]'):format(prefix or '', k)
    else
      path = prefix and prefix .. '.' .. tostring(k) or tostring(k)
    end
    fn(path, k, v)
    if type(v) == 'table' then
      M.walk(v, fn, path, seen)
    end
  end
end

--- The host of a URL or host:port text, lowercased, without brackets.
function M.host_of(s)
  local authority = s:match('^%a[%w+.-]*://([^/?#]*)') or s
  authority = authority:gsub('^.*@', '')
  local host = authority:match('^%[([^%]]*)%]') or authority:match('^([^:]*)')
  return (host or ''):lower()
end

--- 'loopback', 'internal' (a single-label name or a private address) or 'public'.
function M.reach(host)
  if host == 'localhost' or host == '::1' or host:match('^127%.') then
    return 'loopback'
  end
  if host:match('^10%.') or host:match('^192%.168%.') or host:match('^169%.254%.')
    or host:match('^172%.(%d+)%.') and tonumber(host:match('^172%.(%d+)%.')) >= 16
      and tonumber(host:match('^172%.(%d+)%.')) <= 31
    or host:match('^f[cd]') and host:find(':') then
    return 'internal'
  end
  if not host:find('%.') and not host:find(':') and host ~= '' then
    return 'internal'
  end
  return 'public'
end

local SECRET_NAME = { 'token', 'password', 'passwd', 'secret', 'api_?key', 'private_?key',
  '^key$', 'seed', 'mnemonic', 'credential', 'bearer' }

--- Whether a flag or setting name names a secret value (not a file or directory of one).
function M.secret_name(name)
  name = name:lower():gsub('%-', '_')
  if name:match('_file$') or name:match('_dir$') or name:match('_path$') then
    return false
  end
  for _, pat in ipairs(SECRET_NAME) do
    if name:find(pat) then
      return true
    end
  end
  return false
end

-- A flag value naming a file (`--key /etc/proxy/key.pem`) rather than holding the secret.
local function looks_like_path(v)
  return v:match('^[/~]') or v:match('^%.%.?/') or v:match('%.pem$') or v:match('%.key$')
    or v:match('%.der$') or v:match('%.json$')
end

--- The secret flags in an argument list: { { index, flag } } (never the values).
function M.secret_flags(argv)
  local found = {}
  for i, a in ipairs(argv) do
    local flag, value = a:match('^(%-%-?[%w][%w_%-]*)=(.*)$')
    if not flag then
      flag = a:match('^(%-%-?[%w][%w_%-]*)$')
      value = argv[i + 1]
      if value and value:sub(1, 1) == '-' then
        value = nil
      end
    end
    if flag and value and value ~= '' and not looks_like_path(value)
      and M.secret_name(flag:gsub('^%-+', '')) then
      found[#found + 1] = { index = i, flag = flag }
    end
  end
  return found
end

--- The open entries of an aTLS proxy allowlist (text 'host:port,...' or a list):
--- { { entry, why } }; empty or missing lists give { { '', 'empty' } }.
function M.open_allowlist(list)
  local entries = {}
  if type(list) == 'string' then
    for e in list:gmatch('[^,%s]+') do
      entries[#entries + 1] = e
    end
  elseif type(list) == 'table' then
    for _, e in ipairs(list) do
      entries[#entries + 1] = tostring(e)
    end
  end
  if #entries == 0 then
    return { { '', 'the allowlist is missing or empty (an Atlas proxy then refuses to start; '
      .. 'a proxy without one is open)' } }
  end
  local bad = {}
  for _, e in ipairs(entries) do
    local why
    if e:find('*', 1, true) then
      why = 'a wildcard'
    elseif e:find('/', 1, true) then
      why = 'a network range (' .. (e:match('/%d+$') == '/0' and 'everything' or 'CIDR') .. ')'
    elseif e:match('^0%.0%.0%.0') or e:match('^%[?::%]?:') then
      why = 'the any-address'
    elseif not e:match(':%d+$') then
      why = 'no exact port'
    end
    if why then
      bad[#bad + 1] = { e, why }
    end
  end
  return bad
end

--- Flag the plain http:// and ws:// URLs to non-loopback hosts under `c.cfg` (c = { file, cfg }).
function M.plain_urls(c, out)
  M.walk(c.cfg, function(path, _, v)
    if type(v) ~= 'string' then
      return
    end
    local scheme = v:match('^(%a[%w+.-]*)://')
    if scheme ~= 'http' and scheme ~= 'ws' then
      return
    end
    local reach = M.reach(M.host_of(v))
    if reach == 'loopback' then
      return
    end
    out.add('tls.plain_url', reach == 'public' and 'error' or 'warning', c.file, path,
      ('plain %s:// URL to %s host %s: no TLS (readable and forgeable on the way)')
        :format(scheme, reach == 'public' and 'a non-loopback' or 'an internal',
          M.host_of(v)), ('use %s:// (TLS in front)'):format(scheme == 'ws' and 'wss' or 'https'))
  end)
end

local ARGV_KEYS = { args = true, argv = true, command = true, cmd = true, exec = true }

local function argv_secrets(c, out)
  M.walk(c.cfg, function(path, k, v)
    if type(k) == 'string' and ARGV_KEYS[k] and type(v) == 'table' then
      local argv = {}
      for i, a in ipairs(v) do
        argv[i] = tostring(a)
      end
      for _, f in ipairs(M.secret_flags(argv)) do
        out.add('argv.secret_in_config', 'error', c.file, ('%s[%d]'):format(path, f.index),
          ('the command line gets a secret (%s): any local user reads it in /proc/PID/cmdline')
            :format(f.flag), 'pass it in a 0600 file or the environment')
      end
    end
  end)
end

local function listen_host(l)
  return type(l) == 'table' and type(l.host) == 'string' and l.host:lower() or nil
end

local function admin_checks(c, out, admin, prefix)
  if type(admin) ~= 'table' then
    return
  end
  if admin.insecure_no_auth == true then
    out.add('admin.no_auth', 'error', c.file, prefix .. '.insecure_no_auth',
      'the admin listener takes requests without credentials',
      'remove insecure_no_auth; set token_file (0600) or htpasswd_file')
  end
  local host = listen_host(admin.listen)
  if host and M.reach(host) ~= 'loopback' then
    out.add('admin.exposed', 'error', c.file, prefix .. '.listen.host',
      ('the admin listener (plain HTTP) is on %s: its token crosses the network in clear')
        :format(host), "listen on '127.0.0.1' (reach it over SSH or a TLS front)")
  end
end

local CHECKS = {}

function CHECKS.kms(c, out)
  local cfg = c.cfg
  admin_checks(c, out, cfg.admin, 'admin')
  if type(cfg.auth) == 'table' and cfg.auth.kind == 'dev' then
    out.add('kms.dev_auth', 'error', c.file, 'auth.kind',
      "auth.kind = 'dev' gives keys to every app", "use 'webhook', 'policy' or 'eth'")
  end
  local att = cfg.attestation
  if type(att) == 'table' and (att.allow_simulator or att.simulator_dir) then
    out.add('policy.simulator', 'error', c.file,
      att.simulator_dir and 'attestation.simulator_dir' or 'attestation.allow_simulator',
      'simulated quotes are accepted from callers', 'remove allow_simulator / simulator_dir')
  end
end

function CHECKS.gateway(c, out)
  admin_checks(c, out, c.cfg.admin, 'admin')
  local dbg = c.cfg.debug
  if type(dbg) == 'table' and dbg.insecure_localhost_backend then
    out.add('gateway.localhost_backend', 'warning', c.file, 'debug.insecure_localhost_backend',
      'the `localhost` app id reaches the gateway host\'s 127.0.0.1', 'remove it in production')
  end
end

function CHECKS.vmm(c, out)
  local cfg = c.cfg
  local tcp = listen_host(cfg.listen)
  local auth_on = type(cfg.auth) == 'table' and cfg.auth.enabled == true
  if tcp and not auth_on then
    out.add('admin.no_auth', 'error', c.file, 'auth.enabled',
      ('the VMM API listens on TCP (%s) with auth disabled: anyone reaching it runs VMs')
        :format(tcp), 'set auth = { enabled = true, token_file = ... } or listen on a unix socket')
  end
  local d = cfg.dashboard
  if type(d) == 'table' then
    local host = listen_host(d.listen)
    if not d.auth and not auth_on and not d.login_token_file then
      out.add('admin.no_auth', 'error', c.file, 'dashboard.auth',
        'the dashboard has no credentials (no dashboard.auth or login_token_file, VMM auth '
          .. 'disabled)',
        'set dashboard.auth = { token_file = ... } or enable the VMM\'s auth')
    end
    if host and M.reach(host) ~= 'loopback' then
      out.add('admin.exposed', 'warning', c.file, 'dashboard.listen.host',
        ('the dashboard (plain HTTP) listens on %s'):format(host),
        "listen on '127.0.0.1' behind a TLS front")
    end
  end
end

function CHECKS.proxy(c, out)
  local cfg = c.cfg
  local list = cfg.allowlist
  local key = 'allowlist'
  if list == nil then
    list, key = cfg.ATLS_PROXY_ALLOWLIST, 'ATLS_PROXY_ALLOWLIST'
  end
  for _, bad in ipairs(M.open_allowlist(list)) do
    out.add('proxy.open_allowlist', 'error', c.file, key,
      bad[1] == '' and bad[2] or ('entry %q is %s: the proxy relays to targets nobody listed')
        :format(bad[1], bad[2]),
      'list each TEE endpoint exactly as host:port (no *, ranges or 0.0.0.0)')
  end
  local user, ukey = cfg.user, 'user'
  if user == nil then
    user, ukey = cfg.ATLS_PROXY_USER, 'ATLS_PROXY_USER'
  end
  if user == 'root' or user == '0' or user == 0 then
    out.add('proxy.root', 'error', c.file, ukey,
      'the proxy keeps running as root after binding',
      "drop to an unprivileged user (moonstack atls proxy --user nobody, the default)")
  end
  local listen, lkey = cfg.listen, 'listen'
  if listen == nil then
    listen, lkey = cfg.ATLS_PROXY_LISTEN, 'ATLS_PROXY_LISTEN'
  end
  if type(listen) == 'table' then
    listen = listen.host
  end
  if type(listen) == 'string' and M.reach(M.host_of(listen)) ~= 'loopback'
    and not (cfg.cert or cfg.tls) then
    out.add('tls.plain_ws', 'error', c.file, lkey,
      ('the proxy serves plain ws:// on %s'):format(listen),
      'serve wss (cert and key) or put a TLS terminator in front and listen on 127.0.0.1')
  end
end

--- Check the config `c` = { file, kind, cfg }, adding findings to `out`.
function M.check(c, out)
  M.plain_urls(c, out)
  argv_secrets(c, out)
  local fn = CHECKS[c.kind]
  if fn then
    fn(c, out)
  end
end

return M
