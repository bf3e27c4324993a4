-- SPDX-License-Identifier: Apache-2.0
-- The `qemu` backend (moonstack.vmm.backend): a CVM as a QEMU guest booted from a `--kind qemu`
-- image (moonstack image build: a Debian kernel booted through PVH, an initramfs with the
-- moonstack agent). The argv comes from moonstack.qemu (spec §4.6): TDX on a TDX host, KVM
-- only where a probe proved a guest runs, TCG otherwise. Per launch:
--   - user networking with restrict=on (qemu.host_access: restrict=off, the host's loopback
--     reachable as 10.0.2.2 and the sys-config's loopback KMS and gateway URLs rewritten to it);
--     the VM's port mappings as hostfwd on their address;
--   - the work dir's shared/ as the 9p share `host-shared`; the serial console to serial.log;
--   - three virtio-serial ports, each a unix socket QEMU serves (a name unique per launch: QEMU
--     unlinks its socket when it exits) and the VMM joins (moonstack.channel):
--       org.moonstack.host-api   the guest's host API calls -> the VM's host API listener
--       org.moonstack.guest-api  <wd>/guest.sock (the VMM's guest API client) -> the guest
--       org.moonstack.tee        the guest's quotes and RTMR extensions -> the VM's simulated
--                                TD in a quote service of the VMM (moonstack.sim.service) when
--                                the guest has no TDX: the attestation key stays on the host;
--                                its launch values (MRTD, RTMR0-2) derive from the image, so the
--                                same image measures the same and another differently
--   - QMP on a unix socket: powerdown (the guest's power button) for ShutdownVm, quit for a
--     hard stop, events (SHUTDOWN, POWERDOWN, RESET) into the VM's events.
-- A restarted VMM adopts a running QEMU by pid + start time + boot id and a QMP that answers.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local procfs = require('moonstack.core.procfs')
local process = require('moonstack.core.process')
local task = require('moonstack.core.task')
local crypto = require('moonstack.crypto')
local codec = require('moonstack.core.codec')
local channel = require('moonstack.channel')
local http = require('moonstack.http.server')
local sim = require('moonstack.sim')
local sim_service = require('moonstack.sim.service')
local eventlog = require('moonstack.tdx.eventlog')
local base = require('moonstack.vmm.backend')

local M = {}

--- The virtio-serial port names the guest looks for (its agent.lua names them).
M.PORTS = { host_api = 'org.moonstack.host-api', guest_api = 'org.moonstack.guest-api',
  tee = 'org.moonstack.tee' }

--- The address of the host's loopback as a guest on QEMU's user network (restrict=off) sees it.
M.HOST_ADDRESS = '10.0.2.2'

local Backend = {}
Backend.__index = Backend

--- `url` as a guest on this VM's network reaches it: with host_access, a URL whose host is
--- localhost or a 127.x address names M.HOST_ADDRESS instead (the same scheme, port and path);
--- any other URL, or without host_access, unchanged.
function M.guest_url(url, host_access)
  if not host_access or type(url) ~= 'string' then
    return url
  end
  local scheme, host, rest = url:match('^(%a[%w+.-]*://)([^/:]+)(.*)$')
  if host and (host:lower() == 'localhost' or host:match('^127%.%d+%.%d+%.%d+$')) then
    return scheme .. M.HOST_ADDRESS .. rest
  end
  return url
end

--- The kms_urls / gateway_urls list `urls` as the guest gets them in its sys-config.
function Backend:guest_urls(urls)
  local out = {}
  for i, u in ipairs(urls or {}) do
    out[i] = M.guest_url(u, self.qcfg.host_access)
  end
  return out
end

local function qemu_mod()
  local ok, mod = pcall(require, 'moonstack.qemu')
  if not ok then
    return nil, 'ENOTSUP: this build has no QEMU support (moonstack.qemu): ' .. tostring(mod):match('^[^\n]*')
  end
  return mod
end

--- A qemu backend over the VMM config `cfg` (opts = { cfg, log }).
function M.new(opts)
  local cfg = opts.cfg
  local q, err = qemu_mod()
  if not q then
    return nil, err, 'ENOTSUP'
  end
  local self = setmetatable({ name = 'qemu', cfg = cfg, qcfg = cfg.qemu, log = opts.log, q = q,
    sim_dir = cfg.process.sim_dir }, Backend)
  if not process.which(self.qcfg.binary) then
    return errors.fail('ENOENT', ('qemu.binary: %s is not installed (apt-get install '
      .. 'qemu-system-x86)'):format(self.qcfg.binary))
  end
  local ok, merr, code = fs.mkdir_p(self.sim_dir)
  if not ok then
    return nil, 'process.sim_dir: ' .. tostring(merr), code
  end
  if self.qcfg.accel == 'auto' then
    self.probing = true
    task.spawn_named('vmm:qemu-probe', function() self:_probe() end)
  end
  return self
end

-- Probe the accelerator (inside a task; once per VMM).
function Backend:_probe()
  self.probing = true
  local a, why = self.q.probe_accel({ qemu = self.qcfg.binary, timeout_ms = self.qcfg.probe_timeout_ms })
  self.probed = { a or 'tcg', why }
  self.probing = false
  self.log.info('QEMU accelerator', { accel = self.probed[1], why = why })
end

-- The accelerator (inside a task): the configured one, or the probe's answer. The probe starts
-- with the VMM (new), so the first CreateVm does not wait for it unless it comes very early.
function Backend:accel()
  if self.qcfg.accel ~= 'auto' then
    return self.qcfg.accel, 'configured'
  end
  while self.probing do
    task.sleep(50)
  end
  if not self.probed then
    self:_probe()
  end
  return self.probed[1], self.probed[2]
end

--- What this host lets the backend do.
function Backend:status()
  return { name = self.name, binary = self.qcfg.binary, accel = self.probed and self.probed[1]
    or self.qcfg.accel, accel_why = self.probed and self.probed[2], sim_dir = self.sim_dir }
end

--- Where the host API listens and where the guest API answers, on the host.
function Backend:transports(vm) -- luacheck: ignore 212/self
  return { host_api = { unix = vm.wd:path('host-api.sock') },
    guest_api = { unix = vm.wd:path('guest.sock') } }
end

--- Port mappings are hostfwd rules of the VM's user network: always possible.
function Backend:check_ports(vm) -- luacheck: ignore 212/self 212/vm
  return true
end

-- The longest unix socket path (sun_path minus its NUL), and the longest name launch_paths
-- gives a socket ('/ch-guest-' .. 8 hex .. '.sock').
local MAX_SOCKET_PATH, LONGEST_NAME = 107, 23

-- Where `vm`'s per-launch sockets go: its work dir, or, when a socket there would be longer
-- than a unix socket path may be (a deep run_dir), a short dir of its own under /run (else
-- $TMPDIR) named from the work dir, so a restarted VMM finds it again. Returns dir, is_short.
local function socket_dir(vm)
  local dir = vm.wd.dir
  if #dir + LONGEST_NAME <= MAX_SOCKET_PATH then
    return dir, false
  end
  local root = uv.fs_access('/run', 'w') and '/run' or (os.getenv('TMPDIR') or '/tmp')
  return root .. '/moonstack-qemu-' .. codec.hex(crypto.sha256(dir)):sub(1, 16), true
end

-- The per-launch socket paths of `vm` (QEMU unlinks its sockets when it exits: a late-exiting
-- old QEMU must not take a new one's). Short names: a unix path holds 107 bytes.
local function launch_paths(vm, tag)
  local dir = socket_dir(vm)
  local p = function(name) return ('%s/%s-%s.sock'):format(dir, name, tag) end
  local out = { qmp = p('qmp'), host_api = p('ch-host'), guest_api = p('ch-guest'), tee = p('ch-tee') }
  for k, v in pairs(out) do
    if #v > MAX_SOCKET_PATH then
      return errors.fail('ENAMETOOLONG', ('%s socket path %s is longer than a unix socket allows: '
        .. 'use a shorter run_dir'):format(k, v))
    end
  end
  return out
end

-- Remove the short socket dir of `vm` (when it has one) if it is empty.
local function remove_socket_dir(vm)
  local dir, short = socket_dir(vm)
  if short then
    uv.fs_rmdir(dir)
  end
end

-- The launch events of the simulated TD of `vm` (TdxEvent tables) and its launch values (raw
-- bytes): RTMR0-2 are the replay of the events, as a TDX guest's CCEL replays to its RTMRs;
-- the same image and shape measure the same, another image differently (TDX measures the
-- firmware, kernel, initrd and command line into MRTD and RTMR0-2).
local function launch(vm)
  local img, m = vm.image.info or {}, vm.manifest
  local digest = vm.image.digest or ''
  local function event(imr, name, payload)
    return { imr = imr, event_type = 0x0D, event = name, event_payload = payload, version = 1,
      digest = crypto.sha384(name .. '\0' .. payload) }
  end
  local events = {
    event(0, 'moonstack-sim: firmware and VM shape', ('image=%s vcpu=%s memory=%s'):format(digest,
      tostring(m.vcpu), tostring(m.memory))),
    event(1, 'moonstack-sim: kernel', ('image=%s kernel=%s'):format(digest, tostring(img.kernel))),
    event(2, 'moonstack-sim: command line and initrd', ('image=%s cmdline=%s initrd=%s'):format(
      digest, tostring(img.cmdline), tostring(img.initrd))),
  }
  local r = assert(eventlog.replay(events, { binary = true }))
  return events, { mrtd = crypto.sha384('moonstack-sim-mrtd\0' .. digest .. '\0' .. tostring(img.bios)),
    rtmr0 = r[1], rtmr1 = r[2], rtmr2 = r[3], rtmr3 = ('\0'):rep(48) }
end

-- Start the host's ends of `vm`'s channels and its quote service on handle `h`.
function Backend:_start_channels(vm, h)
  local paths = h.paths
  local boot_events, td = launch(vm)
  local tee, err, code = sim.new({ dir = self.sim_dir, cvm = vm.id, create = true,
    reset = not h.adopted, td = td })
  if not tee then
    return nil, 'simulated TD: ' .. tostring(err), code
  end
  h.tee = tee
  local tee_sock = vm.wd:path('tee.sock')
  local srv = http.new({ name = 'vmm-quote-service', listen = { unix = tee_sock, mode = 384 },
    max_body = sim_service.MAX_BODY })
  sim_service.attach(srv, tee, { boot_events = boot_events })
  local ok
  ok, err, code = srv:listen()
  if not ok then
    return nil, 'quote service: ' .. tostring(err), code
  end
  h.quote_srv = srv
  local relays = {}
  h.relays = relays
  local r
  r, err, code = channel.connect({ unix = paths.host_api }, self:transports(vm).host_api.unix)
  if not r then
    return nil, err, code
  end
  relays[#relays + 1] = r
  r, err, code = channel.serve({ unix = paths.guest_api }, self:transports(vm).guest_api.unix)
  if not r then
    return nil, err, code
  end
  relays[#relays + 1] = r
  r, err, code = channel.connect({ unix = paths.tee }, tee_sock)
  if not r then
    return nil, err, code
  end
  relays[#relays + 1] = r
  return true
end

-- Close what the VMM holds for handle `h` (the QEMU process is left alone).
local function close_host_side(h)
  for _, r in ipairs(h.relays or {}) do
    r:close()
  end
  h.relays = nil
  if h.quote_srv then
    h.quote_srv:close()
    h.quote_srv = nil
  end
  if h.tee then
    h.tee:close()
    h.tee = nil
  end
  if h.qmp then
    h.qmp:close()
    h.qmp = nil
  end
end

-- Connect QMP for handle `h` (inside a task); events go to the VM's events.
function Backend:_qmp(vm, h, timeout_ms)
  local qmp, err, code = self.q.qmp_connect(h.paths.qmp, { timeout_ms = timeout_ms or 10000,
    on_event = function(ev)
      local name = type(ev) == 'table' and ev.event or tostring(ev)
      vm:event('qemu.' .. tostring(name):lower(), type(ev) == 'table' and ev.data
        and require('cjson').encode(ev.data) or '')
    end })
  if not qmp then
    return nil, err, code
  end
  h.qmp = qmp
  return true
end

-- The guest's share: the docker images of a docker-flavour image, hard-linked or copied.
function Backend:_share_images(vm)
  if (vm.image.info or {}).flavour ~= 'docker' or #self.qcfg.docker_images == 0 then
    return true
  end
  local dir = vm.wd:path('shared/images')
  local ok, err, code = fs.mkdir_p(dir, 448)
  if not ok then
    return nil, err, code
  end
  for i, src in ipairs(self.qcfg.docker_images) do
    local dst = ('%s/%02d-%s'):format(dir, i, src:match('[^/]+$'))
    if not uv.fs_stat(dst) and not uv.fs_link(src, dst) then
      ok, err = uv.fs_copyfile(src, dst)
      if not ok then
        return errors.fail('EIO', ('qemu.docker_images[%d]: cannot put %s in the share: %s'):format(i,
          src, tostring(err)))
      end
    end
  end
  return true
end

-- The machine description for moonstack.qemu.argv.
function Backend:_desc(vm, paths, accel)
  local m, dir = vm.manifest, vm.image.dir
  local img = vm.image.info or {}
  local function file(name)
    if type(name) ~= 'string' or name == '' then
      return nil
    end
    return name:sub(1, 1) == '/' and name or (dir .. '/' .. name)
  end
  local fwd = {}
  for _, p in ipairs(m.port_map) do
    fwd[#fwd + 1] = { protocol = p.protocol, host_address = p.address, host_port = p.from,
      vm_port = p.to }
  end
  return {
    qemu = self.qcfg.binary, accel = accel, vm_id = vm.id, vcpu = m.vcpu, memory_mb = m.memory,
    kernel = file(img.kernel), initrd = file(img.initrd), cmdline = img.cmdline or '',
    bios = file(img.bios), rootfs = file(img.rootfs),
    serial_log = vm.wd:path('serial.log'), qmp_socket = paths.qmp,
    share = { mode = '9p', path = vm.wd:path('shared'), readonly = false, security_model = 'none' },
    nics = { { mode = 'user', restrict = not self.qcfg.host_access } },
    ports = fwd,
    serial_ports = {
      { name = M.PORTS.host_api, path = paths.host_api, server = true },
      { name = M.PORTS.guest_api, path = paths.guest_api, server = true },
      { name = M.PORTS.tee, path = paths.tee, server = true },
    },
  }
end

--- Start `vm` (its work dir ready). on_exit(handle, { exit_code, signal }) once it ends.
--- Returns the handle or nil, msg, code (nothing left running).
function Backend:launch(vm, on_exit)
  local img = vm.image
  if img.kind ~= 'qemu' or type((img.info or {}).kernel) ~= 'string' then
    return errors.fail('EINVAL', ('image: %s is not a qemu image (kind %s, no kernel)'):format(
      img.name, tostring(img.kind)))
  end
  local tag = codec.hex(crypto.random(4))
  local paths, err, code = launch_paths(vm, tag)
  if not paths then
    return nil, err, code
  end
  local ok
  ok, err, code = fs.mkdir_p((socket_dir(vm)), 448)
  if not ok then
    return nil, 'the socket directory: ' .. tostring(err), code
  end
  ok, err, code = self:_share_images(vm)
  if not ok then
    return nil, err, code
  end
  local accel = self:accel()
  local argv
  argv, err = self.q.argv(self:_desc(vm, paths, accel))
  if not argv then
    return errors.fail('EINVAL', 'qemu: ' .. tostring(err))
  end
  local h = { paths = paths, tag = tag, accel = accel }
  local p
  p, err, code = process.spawn({ service = 'qemu-' .. vm.id, file = argv[1],
    args = { unpack(argv, 2) }, cwd = vm.wd.dir,
    env = { PATH = os.getenv('PATH') or '/usr/sbin:/usr/bin:/sbin:/bin' },
    files = { stdout = vm.wd:path('stdout.log'), stderr = vm.wd:path('stderr.log') },
    on_exit = function(proc)
      if not h.exited then
        h.exited = true
        close_host_side(h)
        for _, path in pairs(paths) do
          uv.fs_unlink(path)
        end
        remove_socket_dir(vm)
        on_exit(h, { exit_code = proc.exit_code, signal = proc.signal })
      end
    end })
  if not p then
    return nil, err, code
  end
  local id = procfs.identity(p.pid) or { pid = p.pid, start_time = -1, boot_id = procfs.boot_id() }
  h.pid, h.start_time, h.boot_id, h.started_at, h.proc = id.pid, id.start_time, id.boot_id,
    os.time(), p
  h.record = { pid = id.pid, start_time = id.start_time, boot_id = id.boot_id, backend = 'qemu',
    started_at = h.started_at, tag = tag, accel = accel }
  ok, err, code = self:_start_channels(vm, h)
  if ok then
    ok, err, code = self:_qmp(vm, h)
  end
  if not ok then
    self:stop(h)
    return nil, err, code
  end
  vm:event('qemu.started', ('pid %d, accel %s'):format(h.pid, accel))
  return h
end

--- Find again a QEMU a previous VMM started (record = process.json): the very process (pid,
--- start time, boot) whose QMP answers. Returns the handle, else nil.
function Backend:adopt(vm, record, on_exit)
  if record.backend ~= 'qemu' or type(record.tag) ~= 'string' or not procfs.alive(record) then
    return nil
  end
  local paths = launch_paths(vm, record.tag)
  if not paths then
    return nil
  end
  local h = { pid = record.pid, start_time = record.start_time, boot_id = record.boot_id,
    started_at = record.started_at, paths = paths, tag = record.tag, accel = record.accel,
    adopted = true, on_exit = on_exit, record = record }
  if not self:_qmp(vm, h, 3000) then
    self.log.warn('a QEMU of this VM runs but its QMP does not answer: not adopted',
      { id = vm.id, pid = record.pid })
    return nil
  end
  local st = h.qmp:execute('query-status')
  if not st then
    close_host_side(h)
    return nil
  end
  local ok, err = self:_start_channels(vm, h)
  if not ok then
    self.log.warn('adopted QEMU: its channels could not be joined again', { id = vm.id, error = err })
  end
  return h
end

--- Whether the QEMU of handle `h` still runs.
function Backend:alive(h) -- luacheck: ignore 212/self
  return base.alive(h)
end

-- Wait (inside a task) until `h`'s QEMU is gone, at most `ms`. True if gone.
function Backend:_wait_gone(h, ms)
  local deadline = uv.now() + ms
  while self:alive(h) and uv.now() < deadline do
    task.sleep(20)
    uv.update_time()
  end
  return not self:alive(h)
end

--- ShutdownVm's first step: the guest's power button (QMP system_powerdown). True or nil, msg.
function Backend:powerdown(h) -- luacheck: ignore 212/self
  if not h.qmp then
    return errors.fail('ENOTCONN', 'no QMP connection to this VM')
  end
  local ok, err, code = h.qmp:execute('system_powerdown')
  if not ok then
    return nil, err, code
  end
  return true
end

--- Hard stop (inside a task): QMP quit, SIGKILL if QEMU is still there after 2 s; on_exit
--- follows once it is gone.
function Backend:stop(h)
  if h.qmp and self:alive(h) then
    h.qmp:execute('quit')
  end
  if not self:_wait_gone(h, 2000) then
    procfs.kill_tree(h)
    self:_wait_gone(h, 3000)
  end
  close_host_side(h)
  if not h.proc and not h.exited then
    h.exited = true
    for _, path in pairs(h.paths or {}) do
      uv.fs_unlink(path)
    end
    if h.on_exit then
      h.on_exit(h, { signal = 'sigkill' })
    end
  end
end

--- The VMM stops and leaves the VM running: let go of its channels, QMP and quote service
--- (a restarted VMM joins them again).
function Backend:release(h) -- luacheck: ignore 212/self
  close_host_side(h)
  if h.proc then
    h.proc:release()
  end
end

--- RemoveVm: the simulated TD of the VM (and its short socket dir).
function Backend:cleanup(vm)
  base.remove_sim_cvm(self.sim_dir, vm.id)
  remove_socket_dir(vm)
end

return M
