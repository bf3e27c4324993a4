-- SPDX-License-Identifier: Apache-2.0
-- A WireGuard device run by userspace wireguard-go (no kernel WireGuard on our machines) and
-- driven through its UAPI socket (moonstack.native.wg, native/wg/README.md). Used by the
-- gateway's hub and by the guest agent's dstack-wg0 (spec kms-vmm-gateway.md §6.6).
--
--   local wg = require('moonstack.wg')
--   local dev, err, code = wg.open({ ifname = 'wg-ms0', private_key = B64, listen_port = 51820,
--     address = '10.0.0.1/24', netns = nil | '/proc/PID/ns/net' | path | name (/run/netns) | pid,
--     run_dir = nil | dir, userspace = 'wireguard-go', routes = { '10.0.0.1/32' }?,
--     timeout_ms = 5000, restart = true }, log)          -- inside a task
--   dev:set_peers(peers [, cb]); dev:add_peer(peer [, cb]); dev:remove_peer(public_key [, cb])
--     peer = { public_key, allowed_ips = { '10.0.0.2/32' }, endpoint = 'a.b.c.d:port'?,
--              persistent_keepalive = 25? }   (endpoints numeric: resolve names first)
--   dev:handshakes([cb]) -> { [public_key] = last handshake, unix seconds (0: never) }
--   dev:peers([cb]) -> the device's peers as moonstack.native.wg reads them
--   dev:public_key(); dev:socket(); dev:alive(); dev:close()
--   wg.render_config(conf)  the wg-quick text (moonstack.wg.config); wg.public_key_of(priv)
-- With cb the UAPI exchange runs on the thread pool and cb(result | nil, msg, code) is called
-- on the loop; without one the call must be made inside a task and returns the result.
--
-- wireguard-go runs in the foreground (WG_PROCESS_FOREGROUND=1, `-f`) as a supervised process
-- (moonstack.core.process), in `netns` when given (through the hidden `moonstack ns-exec`).
-- Its UAPI socket is /var/run/wireguard/<ifname>.sock, a path wireguard-go does not let one
-- change (WG_UAPI_FD still watches that path); with `run_dir` it runs in a private mount
-- namespace where run_dir is bind-mounted on /run/wireguard, so the socket is
-- <run_dir>/<ifname>.sock (<run_dir> a short dir of its own under /run when that would be too
-- long for a socket path) and two namespaces may each have a device of the same name. The
-- private key only travels through the UAPI socket: never in argv, the environment or logs.
-- If wireguard-go dies, it is restarted (1 s, then up to 30 s apart) with the same key, port,
-- address and the last peer set given (peers without an endpoint get the one they were last
-- seen at by handshakes()/peers(), so the hub can reach its roaming clients again at once).
local uv = require('luv')
local native = require('moonstack.native.wg')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local process = require('moonstack.core.process')
local task = require('moonstack.core.task')
local netns = require('moonstack.netns')
local config = require('moonstack.wg.config')
local requests = require('moonstack.wg.requests')
local crypto = require('moonstack.crypto')

-- The longest unix socket path (sun_path minus its NUL).
local MAX_SOCKET_PATH = 107

-- The run dir to use for `run_dir`: itself, or, when <run_dir>/<ifname>.sock would be longer
-- than a socket path may be (a deep work dir), a short one of its own under /run (made
-- and removed with the device; wireguard-go sees it as /run/wireguard either way).
local function short_run_dir(run_dir, ifname)
  if #run_dir + #ifname + 6 <= MAX_SOCKET_PATH then
    return run_dir, false
  end
  local base = uv.fs_access('/run', 'w') and '/run' or (os.getenv('TMPDIR') or '/tmp')
  return base .. '/moonstack-wg-' .. crypto.hex(crypto.sha256(run_dir)):sub(1, 16), true
end

local M = {}

local PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

M.render_config = config.render

--- The public key (base64) of a private key (base64 or hex); raises on a malformed key.
function M.public_key_of(private_key)
  return native.pubkey(private_key)
end

local Dev = {}
Dev.__index = Dev

function Dev:__tostring()
  return ('wg<%s %s>'):format(self.ifname, self.closed and 'closed' or (self:alive() and 'up' or 'down'))
end

-- The namespace path of opts.netns (nil: the caller's own).
local function netns_path(spec)
  if spec == nil then
    return nil
  elseif type(spec) == 'number' and spec > 0 and spec % 1 == 0 then
    return ('/proc/%d/ns/net'):format(spec)
  elseif type(spec) == 'string' and spec:find('/', 1, true) then
    return spec
  elseif type(spec) == 'string' and spec:match('^[%w_.-]+$') and spec ~= '.' and spec ~= '..' then
    return '/run/netns/' .. spec
  end
  error('wg.open: netns must be a pid, a path or a name', 3)
end

-- file, args running `prog args` in the device's namespaces (net: ns_path; mount: run_dir).
local function command(self, prog, args, mount)
  if not self.ns_path and not mount then
    return prog, args
  end
  local opts = { join = self.ns_path, mount = mount or nil }
  if mount then
    local script = 'mkdir -p /run/wireguard && mount --bind "$1" /run/wireguard && shift && exec "$@"'
    local inner = { '-c', script, 'wg-run', self.run_dir, prog }
    for _, a in ipairs(args) do
      inner[#inner + 1] = a
    end
    return netns.command(opts, '/bin/sh', inner)
  end
  return netns.command(opts, prog, args)
end

-- Run `ip args` in the device's namespace (inside a task): true or nil, msg, code.
local function ip(self, args)
  local file, argv = command(self, 'ip', args)
  local r, err, code = process.run({ service = 'wg:ip', file = file, args = argv,
    env = { PATH = PATH }, timeout_ms = 10000 })
  if not r then
    return nil, err, code
  end
  if r.exit_code ~= 0 or r.signal then
    return errors.fail('EIO', ('ip %s: %s'):format(table.concat(args, ' '),
      (r.stderr:gsub('%s+$', '')):sub(1, 300)))
  end
  return true
end

-- Whether a device already answers at `path` (inside a task).
local function answers(path)
  local r = requests.uapi(native.get, path, nil, nil)
  return r ~= nil
end

-- Start wireguard-go and configure it (inside a task): true or nil, msg, code.
local function start(self)
  local path = self.path
  if uv.fs_stat(path) then
    if answers(path) then
      return errors.fail('EADDRINUSE', ('a WireGuard device already answers at %s'):format(path))
    end
    os.remove(path) -- a stale socket left by a crashed daemon
  end
  local file, args = command(self, self.userspace, { '-f', self.ifname }, self.run_dir ~= nil)
  local tail = {}
  local proc, err, code = process.spawn({ service = 'wg:' .. self.ifname, file = file, args = args,
    env = { PATH = PATH, WG_PROCESS_FOREGROUND = '1', LOG_LEVEL = self.log_level },
    on_output = function(_, data)
      for line in data:gmatch('[^\n]+') do
        tail[#tail + 1] = line
        if #tail > 20 then
          table.remove(tail, 1)
        end
        self.log.debug('wireguard-go', { ifname = self.ifname, line = line:sub(1, 300) })
      end
    end,
    on_exit = function(p)
      self:_exited(p)
    end })
  if not proc then
    return nil, err, code
  end
  self.proc = proc
  local deadline = uv.now() + self.timeout_ms
  while true do
    if proc.exited then
      return errors.fail('EIO', ('wireguard-go for %s exited (status %s): %s'):format(self.ifname,
        tostring(proc.exit_code), table.concat(tail, ' | '):sub(1, 500)))
    end
    local st = uv.fs_stat(path)
    if st and st.type == 'socket' then
      break
    end
    if uv.now() >= deadline then
      proc:stop(1000)
      return errors.fail('ETIMEDOUT', ('wireguard-go for %s: no UAPI socket at %s after %d ms')
        :format(self.ifname, path, self.timeout_ms))
    end
    task.sleep(20)
    uv.update_time()
  end
  local peers = requests.copy_peers(self.desired)
  for _, p in ipairs(peers) do -- after a crash: where peers were last seen (a hub's clients roam)
    p.endpoint = p.endpoint or self.learned[p.public_key]
  end
  -- wireguard-go binds the socket (the file appears) a moment before it listens: a refused
  -- connection until then is not a failure
  local ok
  repeat
    ok, err, code = requests.uapi(native.set, path, { private_key = self.private_key,
      listen_port = self.listen_port, replace_peers = true, peers = peers })
    local again = not ok and code == 'ECONNREFUSED' and not proc.exited and uv.now() < deadline
    if again then
      task.sleep(20)
      uv.update_time()
    end
  until not again
  if ok and self.address then
    ok, err, code = ip(self, { 'address', 'add', self.address, 'dev', self.ifname })
  end
  if ok then
    ok, err, code = ip(self, { 'link', 'set', 'dev', self.ifname, 'up' })
  end
  for _, r in ipairs(ok and self.routes or {}) do
    ok, err, code = ip(self, { 'route', 'replace', r, 'dev', self.ifname })
    if not ok then
      break
    end
  end
  if not ok then
    proc:stop(1000)
    return nil, err, code
  end
  return true
end

-- wireguard-go ended: unless we closed it, restart it with backoff.
function Dev:_exited(p)
  if self.closed or p ~= self.proc or not self.started or not self.restart then
    return
  end
  self.log.error('wireguard-go ended: restarting', { ifname = self.ifname, exit_code = p.exit_code,
    signal = p.signal })
  if self.restarter then
    return
  end
  self.restarter = task.spawn_named('wg:restart:' .. self.ifname, function()
    local delay = 1000
    while not self.closed do
      task.sleep(delay)
      if self.closed then
        break
      end
      local ok, err = start(self)
      if ok then
        self.restarts = self.restarts + 1
        self.log.info('wireguard-go restarted', { ifname = self.ifname })
        break
      end
      self.log.warn('restarting wireguard-go failed', { ifname = self.ifname, error = err })
      delay = math.min(delay * 2, 30000)
    end
    self.restarter = nil
  end)
end

--- Start a device (inside a task). Returns the device or nil, msg, code (EADDRINUSE when a
--- device already answers at the socket, EIO when wireguard-go or ip fails, ETIMEDOUT, ENOENT
--- when the userspace program is missing). Misuse (bad names, keys, ports) raises.
function M.open(opts, log)
  if type(opts) ~= 'table' then
    error('wg.open: expected a table of options', 2)
  end
  local ifname = opts.ifname
  if type(ifname) ~= 'string' or not ifname:match('^[%w_.-]+$') or #ifname > 15 then
    error('wg.open: ifname must be 1..15 characters of letters, digits, _ . -', 2)
  end
  if type(opts.private_key) ~= 'string' or not pcall(native.pubkey, opts.private_key) then
    error('wg.open: private_key must be a base64 or hex WireGuard key', 2)
  end
  local port = opts.listen_port or 0
  if type(port) ~= 'number' or port % 1 ~= 0 or port < 0 or port > 65535 then
    error('wg.open: listen_port must be 0..65535', 2)
  end
  for _, a in ipairs({ opts.address, unpack(opts.routes or {}) }) do
    local ok, why = config.check_cidr(a)
    if not ok then
      error('wg.open: address/routes: ' .. why, 2)
    end
  end
  if opts.run_dir ~= nil and (type(opts.run_dir) ~= 'string' or opts.run_dir:sub(1, 1) ~= '/') then
    error('wg.open: run_dir must be an absolute path', 2)
  end
  if not task.current() then
    error('wg.open: call inside a task', 2)
  end
  local run_dir, short = opts.run_dir, false
  if run_dir == '/run/wireguard' or run_dir == '/var/run/wireguard' then
    run_dir = nil
  elseif run_dir then
    run_dir, short = short_run_dir(run_dir, ifname)
  end
  local self = setmetatable({ ifname = ifname, private_key = opts.private_key,
    pub = native.pubkey(opts.private_key), listen_port = port, address = opts.address,
    routes = opts.routes or {}, ns_path = netns_path(opts.netns), run_dir = run_dir,
    short_run_dir = short,
    timeout_ms = opts.timeout_ms or 5000, restart = opts.restart ~= false, restarts = 0,
    log = log or require('moonstack.core.log').new('wg'), desired = {}, learned = {},
    log_level = opts.log_level or 'error' }, Dev)
  self.userspace = process.which(opts.userspace or 'wireguard-go')
  if not self.userspace then
    return errors.fail('ENOENT', ('%s is not installed'):format(opts.userspace or 'wireguard-go'))
  end
  if run_dir then
    local ok, err, code = fs.mkdir_p(run_dir, 448)
    if not ok then
      return nil, err, code
    end
  end
  local path, perr, pcode = native.socket_path(ifname, run_dir)
  if not path then
    return nil, perr, pcode
  end
  self.path = path
  local ok, err, code = start(self)
  if not ok then
    return nil, err, code
  end
  self.started = true
  self.log.info('WireGuard device up', { ifname = ifname, listen_port = port,
    address = opts.address, public_key = self.pub, netns = self.ns_path })
  return self
end

--- The device's public key (base64).
function Dev:public_key()
  return self.pub
end

--- The UAPI socket path.
function Dev:socket()
  return self.path
end

--- Whether wireguard-go is running.
function Dev:alive()
  return self.proc ~= nil and not self.proc.exited
end

-- Remember the intended peer set (replayed after a restart).
local function remember(self, op, peer_or_key)
  if op == 'set' then
    self.desired = {}
    for i, p in ipairs(peer_or_key) do
      self.desired[i] = p
    end
    return
  end
  local key = op == 'add' and peer_or_key.public_key or peer_or_key
  for i = #self.desired, 1, -1 do
    if self.desired[i].public_key == key then
      table.remove(self.desired, i)
    end
  end
  if op == 'add' then
    self.desired[#self.desired + 1] = peer_or_key
  end
end

local function check_open(self, what)
  if self.closed then
    error(('wg: %s on a closed device'):format(what), 3)
  end
end

--- Replace the peer set: unlisted peers removed, the others updated in place (their sessions
--- and learned endpoints kept).
function Dev:set_peers(peers, cb)
  check_open(self, 'set_peers')
  if type(peers) ~= 'table' then
    error('wg: set_peers: expected a list of peers', 2)
  end
  local wanted, path = requests.copy_peers(peers), self.path
  remember(self, 'set', peers)
  if not cb then
    local dev, err, code = requests.uapi(native.get, path, nil, nil)
    if not dev then
      return nil, err, code
    end
    return requests.uapi(native.set, path, requests.sync_request(dev, wanted), nil)
  end
  return requests.uapi(native.get, path, nil, function(dev, err, code)
    if dev then
      dev, err, code = requests.uapi(native.set, path, requests.sync_request(dev, wanted), cb)
    end
    if not dev then
      cb(nil, err, code)
    end
  end)
end

--- Add (or update) one peer.
function Dev:add_peer(peer, cb)
  check_open(self, 'add_peer')
  local conf = { peers = { requests.native_peer(peer, 'peer') } }
  remember(self, 'add', peer)
  return requests.uapi(native.set, self.path, conf, cb)
end

--- Remove one peer by public key.
function Dev:remove_peer(public_key, cb)
  check_open(self, 'remove_peer')
  if type(public_key) ~= 'string' then
    error('wg: remove_peer: expected a public key', 2)
  end
  remember(self, 'remove', public_key)
  return requests.uapi(native.set, self.path, { peers = { { public_key = public_key, remove = true } } }, cb)
end

-- The peers of a `get` answer; the endpoints they roamed from are kept for a restart.
local function peers_of(self, dev)
  local learned = {}
  for _, p in ipairs(dev.peers or {}) do
    learned[p.public_key] = p.endpoint
  end
  self.learned = learned
  return dev.peers or {}
end

--- { [public_key] = last handshake in unix seconds (0: none yet) }.
function Dev:handshakes(cb)
  check_open(self, 'handshakes')
  return requests.uapi(native.get, self.path, nil, cb, function(dev)
    local out = {}
    for _, p in ipairs(peers_of(self, dev)) do
      out[p.public_key] = p.last_handshake_time_sec or 0
    end
    return out
  end)
end

--- The peers as the device reports them (public_key, endpoint, allowed_ips, rx/tx bytes,
--- last_handshake_time_sec ...): no key material of the device.
function Dev:peers(cb)
  check_open(self, 'peers')
  return requests.uapi(native.get, self.path, nil, cb, function(dev)
    return peers_of(self, dev)
  end)
end

-- Stop wireguard-go and remove what it leaves (inside a task).
local function stop(self)
  if self.restarter then
    self.restarter:cancel('closed')
    self.restarter = nil
  end
  if self.proc then
    self.proc:stop(2000)
  end
  if uv.fs_stat(self.path) then
    os.remove(self.path)
  end
  if self.short_run_dir then
    uv.fs_rmdir(self.run_dir)
  end
end

--- Stop the device: wireguard-go ends (its interface goes with it) and the socket is removed.
--- Idempotent. Inside a task it returns once everything is gone; elsewhere it does that in a
--- task of its own.
function Dev:close()
  if self.closed then
    return true
  end
  self.closed = true
  self.private_key = nil
  if task.current() then
    stop(self)
  else
    task.spawn_named('wg:close:' .. self.ifname, stop, self)
  end
  self.log.info('WireGuard device closed', { ifname = self.ifname })
  return true
end

return M
