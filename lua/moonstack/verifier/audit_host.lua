-- SPDX-License-Identifier: Apache-2.0
-- The host checks of `moonstack audit` (moonstack.verifier.audit): the modes of the key files,
-- token files, key directories and control sockets a config names (readable or writable by
-- group or others: mode & 0077), and the running moonstack / aTLS proxy processes under /proc
-- (secrets in their command lines, an open allowlist, a proxy still running as root). Secret
-- values are never copied into a finding: only the flag's name.
local bit = require('bit')
local uv = require('luv')
local cfgcheck = require('moonstack.verifier.audit_config')
local procfs = require('moonstack.core.procfs')

local M = {}

-- The kind of secret path a config key names: 'dir' (its files too), 'socket' or 'file'.
local function path_kind(path, key)
  if type(key) ~= 'string' then
    return nil
  end
  if key == 'key_dir' then
    return 'dir'
  end
  if key == 'control' or (key == 'unix' and path:match('listen%.unix$')) then
    return 'socket'
  end
  if key == 'key' or (key == 'file' and path:match('key_provider')) then
    return 'file'
  end
  local base = key:match('^(.*)_file$')
  if base and (base:find('htpasswd') or cfgcheck.secret_name(base)) then
    return 'file'
  end
  return nil
end

local function perm(st)
  return bit.band(st.mode, 511)
end

local function check_mode(out, file, key, path, st, what)
  local p = perm(st)
  if bit.band(p, 63) ~= 0 then
    out.add('perm.readable', 'error', file, key,
      ('%s %s has mode %04o: group or others can %s it'):format(what, path, p,
        bit.band(p, 36) ~= 0 and 'read' or 'write or reach'),
      ('chmod %s %s'):format(what == 'directory' and '0700' or '0600', path))
  end
end

--- Stat the secret paths config `c` = { file, cfg, dir } names and add a finding for each
--- one group or others can read or write. Paths that do not exist are skipped.
function M.modes(c, out)
  cfgcheck.walk(c.cfg, function(keypath, key, v)
    local kind = type(v) == 'string' and v ~= '' and path_kind(keypath, key)
    if not kind then
      return
    end
    local path = v
    if path:sub(1, 1) ~= '/' and c.dir then
      path = c.dir .. '/' .. path
    end
    local st = uv.fs_stat(path)
    if not st then
      return
    end
    if kind == 'dir' and st.type == 'directory' then
      check_mode(out, c.file, keypath, path, st, 'directory')
      local h = uv.fs_scandir(path)
      while h do
        local name, t = uv.fs_scandir_next(h)
        if not name then
          break
        end
        local fst = t ~= 'directory' and uv.fs_stat(path .. '/' .. name)
        if fst then
          check_mode(out, c.file, keypath, path .. '/' .. name, fst, 'key file')
        end
      end
    elseif kind == 'socket' then
      check_mode(out, c.file, keypath, path, st, 'socket')
    elseif st.type == 'file' then
      check_mode(out, c.file, keypath, path, st, 'secret file')
    end
  end)
end

local function read(path)
  local f = io.open(path, 'rb')
  if not f then
    return nil
  end
  local s = f:read(1048576)
  f:close()
  return s
end

local function split0(s)
  local t = {}
  for a in s:gmatch('([^%z]*)%z') do
    t[#t + 1] = a
  end
  return t
end

local function is_ours(argv)
  local base = (argv[1] or ''):match('([^/]*)$')
  return base:find('moonstack', 1, true) or base:find('atlas', 1, true)
    or base:find('atls', 1, true) or base:find('dstack', 1, true)
end

local function flag_value(argv, name)
  for i, a in ipairs(argv) do
    if a == name then
      return argv[i + 1]
    end
    local v = a:match('^' .. name:gsub('%-', '%%-') .. '=(.*)$')
    if v then
      return v
    end
  end
  return nil
end

local function proxy_process(out, dir, pid, argv)
  local cmdline = dir .. '/cmdline'
  local list, key = flag_value(argv, '--allowlist'), '--allowlist'
  if not list then
    local env = read(dir .. '/environ') or ''
    list = env:match('%f[^%z]ATLS_PROXY_ALLOWLIST=([^%z]*)') or env:match('^ATLS_PROXY_ALLOWLIST=([^%z]*)')
    key = 'ATLS_PROXY_ALLOWLIST'
    cmdline = dir .. '/environ'
  end
  for _, bad in ipairs(cfgcheck.open_allowlist(list)) do
    out.add('proxy.open_allowlist', 'error', cmdline, key,
      ('proxy process %d: %s'):format(pid, bad[1] == '' and bad[2]
        or ('entry %q is %s'):format(bad[1], bad[2])),
      'restart it with an exact host:port allowlist')
  end
  local listen = flag_value(argv, '--listen')
  if listen and cfgcheck.reach(cfgcheck.host_of(listen)) ~= 'loopback'
    and not flag_value(argv, '--cert') then
    out.add('tls.plain_ws', 'error', dir .. '/cmdline', '--listen',
      ('proxy process %d serves plain ws:// on %s'):format(pid, listen),
      'give --cert/--key (wss) or listen on 127.0.0.1 behind a TLS front')
  end
  local status = read(dir .. '/status') or ''
  local euid = status:match('\nUid:%s+%d+%s+(%d+)')
  if euid == '0' then
    out.add('proxy.root', 'error', dir .. '/status', 'Uid',
      ('proxy process %d runs as root'):format(pid),
      'start it with --user (moonstack atls proxy drops root after binding)')
  end
end

--- Scan the processes under `proc` (normally '/proc'): moonstack, dstack and aTLS proxy
--- processes with a secret on their command line, and aTLS proxies with an open allowlist or
--- running as root. This process is skipped.
function M.processes(proc, out)
  local self_pid = uv.os_getpid()
  for _, pid in ipairs(procfs.pids(proc)) do
    if pid == self_pid then
      goto next_pid
    end
    local dir = ('%s/%d'):format(proc, pid)
    local argv = split0(read(dir .. '/cmdline') or '')
    if is_ours(argv) then
      local name = (argv[1] or ''):match('([^/]*)$')
      for _, f in ipairs(cfgcheck.secret_flags(argv)) do
        out.add('argv.secret', 'error', dir .. '/cmdline', f.flag,
          ('process %d (%s) has a secret on its command line (%s): any local user reads it')
            :format(pid, name, f.flag), 'pass it in a 0600 file or the environment')
      end
      local joined = table.concat(argv, ' ')
      if joined:find('atls proxy', 1, true) or name:find('proxy', 1, true) then
        proxy_process(out, dir, pid, argv)
      end
    end
    ::next_pid::
  end
end

return M
