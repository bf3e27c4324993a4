-- SPDX-License-Identifier: Apache-2.0
-- QEMU for the VMM's qemu backend, over moonstack.native.qemu (contract: native/qemu/README.md):
--
--   qemu.argv(desc)                   -> { qemu, '-accel', ... } or nil, 'EINVAL: <field>: ...'
--                                        (the launch command line, upstream's order, §4.6)
--   qemu.mac_address(vm_id, nic, prefix) the MAC of NIC `nic` (from 0), as upstream derives it
--   qemu.probe_accel(opts)            -> 'tdx' | 'kvm' | 'tcg', reason   (in a task)
--   qemu.probe_guest(opts)            -> true, ms | nil, reason, code     (in a task)
--   qemu.version(qemu)                -> '7.2.22' | nil, err, code        (in a task)
--   local qmp = assert(qemu.qmp_connect(path, { timeout_ms, on_event = fn(ev), on_close = fn(err) }))
--   qmp:execute('query-status')       -> the decoded "return" | nil, 'EQMP: <class>: <desc>', 'EQMP'
--   qmp:execute_cb(cmd, args, cb)     the callback form: cb(result | nil, err, code)
--   qmp:wait_close(ms), qmp:close(), qmp.greeting, qmp.version, qmp.closed
--
-- Blocking calls (probe_*, version, qmp_connect, execute, wait_close) run inside a task
-- (moonstack.core.task) and raise outside one.
local uv = require('luv')
local cjson = require('cjson.safe')
local native = require('moonstack.native.qemu')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')
local process = require('moonstack.core.process')
local log = require('moonstack.core.log').new('qemu')

local M = {}

M.QMP_TIMEOUT_MS = 5000 -- connect + greeting + capabilities
M.EXECUTE_TIMEOUT_MS = 30000 -- one command's answer
M.PROBE_TIMEOUT_MS = 3000 -- the probe guest under KVM (QEMU start and firmware included)

local DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

--- The QEMU command line of one launch: a Lua array of strings (argv[1] is the binary), or
--- nil, 'EINVAL: <field>: <why>', 'EINVAL'. The fields of `desc` are in native/qemu/README.md.
function M.argv(desc)
  if type(desc) ~= 'table' then
    error('qemu.argv: desc must be a table', 2)
  end
  return native.argv(desc)
end

--- The MAC address of NIC number `nic` (0 for net0) of VM `vm_id`, with an optional
--- `prefix` of 0..3 hex bytes ('52:54:00').
function M.mac_address(vm_id, nic, prefix)
  return native.mac_address(vm_id, nic or 0, prefix)
end

local function env()
  return { PATH = os.getenv('PATH') or DEFAULT_PATH }
end

-- Run argv to its end or kill it after timeout_ms. Returns { exit_code, signal, stderr, ms }
-- or nil, msg, code (cannot start), and `timed_out` as the second value when it was killed.
local function run_bounded(argv, timeout_ms)
  local stderr, size = {}, 0
  local p, err, code = process.spawn({ service = 'qemu-probe', file = argv[1],
    args = { unpack(argv, 2) }, env = env(),
    on_output = function(channel, data)
      if channel == 'stderr' and size < 8192 then
        stderr[#stderr + 1] = data
        size = size + #data
      end
    end })
  if not p then
    return nil, err, code
  end
  local t0 = uv.hrtime()
  local done = p:wait(timeout_ms)
  local ms = math.floor((uv.hrtime() - t0) / 1e6)
  if not done then
    p:kill('sigkill') -- the whole group: a vCPU stuck in the kernel may never see SIGTERM
    p:wait(2000)
    p:stop(0) -- closes the output pipes
    return { ms = ms, stderr = table.concat(stderr) }, true
  end
  p:stop(0) -- the group is gone: this only closes the output pipes
  return { exit_code = p.exit_code, signal = p.signal, stderr = table.concat(stderr), ms = ms }
end

local function last_line(text)
  local line
  for l in (text or ''):gmatch('[^\n]+') do
    line = l
  end
  return line and line:sub(1, 200) or ''
end

local probe_seq = 0

--- Run the probe guest (or opts.kernel, a guest keeping its contract: QEMU exits with
--- native.PROBE_EXIT through an isa-debug-exit device at 0xf4) under opts.accel ('kvm' by
--- default, or 'tcg') with a deadline. opts = { qemu, accel, timeout_ms, kernel, dir (where the
--- probe guest is written, default $TMPDIR or /tmp) }. Returns true, ms when the guest ran to
--- its end; else nil, reason, code (ETIMEDOUT: killed at the deadline; EFAIL: QEMU failed).
function M.probe_guest(opts)
  opts = opts or {}
  local accel = opts.accel or 'kvm'
  local timeout = opts.timeout_ms or M.PROBE_TIMEOUT_MS
  local kernel, tmp = opts.kernel, nil
  if not kernel then
    probe_seq = probe_seq + 1
    tmp = ('%s/moonstack-probe-%d-%d-%d.bin'):format(opts.dir or os.getenv('TMPDIR') or '/tmp',
      uv.os_getpid(), uv.hrtime() % 1e9, probe_seq)
    local ok, err, code = native.probe_write_payload(tmp)
    if not ok then
      return nil, 'cannot write the probe guest: ' .. err, code
    end
    kernel = tmp
  end
  local argv, aerr, acode = native.probe_argv(opts.qemu or 'qemu-system-x86_64', accel, kernel)
  if not argv then
    if tmp then
      os.remove(tmp)
    end
    return nil, aerr, acode
  end
  local res, timed_out, code = run_bounded(argv, timeout)
  if tmp then
    os.remove(tmp)
  end
  if not res then
    return nil, timed_out, code
  end
  if timed_out then
    return errors.fail('ETIMEDOUT', ('the probe guest did not finish within %d ms under %s'):format(
      timeout, accel))
  end
  if res.exit_code == native.PROBE_EXIT and not res.signal then
    return true, res.ms
  end
  local how = res.signal and ('was killed by signal %d'):format(res.signal) or
    ('exited with status %d'):format(res.exit_code)
  return errors.fail('EFAIL', ('QEMU %s before the probe guest finished: %s'):format(how,
    last_line(res.stderr)))
end

--- Which accelerator launches should use, and why. 'tdx' when the host reports TDX
--- (<sysfs_root>/sys/module/kvm_intel/parameters/tdx is Y; detected, not run); 'kvm' only when
--- the probe guest actually ran under KVM within opts.timeout_ms; else 'tcg' with the reason.
--- QEMU is killed at the deadline, so this never hangs. opts = { qemu, timeout_ms, kernel,
--- dir, sysfs_root, kvm_device (default /dev/kvm) }.
function M.probe_accel(opts)
  opts = opts or {}
  local tdx = native.host_tdx(opts.sysfs_root)
  if tdx then
    return 'tdx', 'tdx: the host reports TDX (kvm_intel parameter tdx=Y)'
  end
  local dev = opts.kvm_device or '/dev/kvm'
  local ok, aerr = uv.fs_access(dev, 'rw')
  if not ok then
    return 'tcg', ('kvm: %s is not usable: %s'):format(dev, tostring(aerr))
  end
  local ran, why = M.probe_guest({ qemu = opts.qemu, accel = 'kvm', timeout_ms = opts.timeout_ms,
    kernel = opts.kernel, dir = opts.dir })
  if ran then
    return 'kvm', ('kvm: the probe guest ran in %d ms'):format(why)
  end
  log.info('KVM is present but cannot run the probe guest: using TCG', { reason = why })
  return 'tcg', 'kvm: ' .. why
end

--- The version of a QEMU binary ('7.2.22': the token after "version", without a +suffix), or
--- nil, msg, code.
function M.version(qemu)
  local res, err, code = process.run({ file = qemu or 'qemu-system-x86_64', args = { '--version' },
    env = env(), timeout_ms = 10000 })
  if not res then
    return nil, err, code
  end
  local v = res.stdout:match('version%s+([%w%.]+)')
  if res.exit_code ~= 0 or not v then
    return errors.fail('EFAIL', ('cannot read the version of %s: %s'):format(qemu or 'qemu',
      last_line(res.stderr ~= '' and res.stderr or res.stdout)))
  end
  return (v:gsub('%+.*$', ''))
end

-- ---- QMP ----

local Qmp = {}
Qmp.__index = Qmp

function Qmp:__tostring()
  return ('qmp<%s, %s>'):format(self.path, self.closed and 'closed' or 'ready')
end

function Qmp:_event(line)
  local ev = cjson.decode(line)
  if type(ev) ~= 'table' then
    log.warn('undecodable QMP event', { path = self.path })
    return
  end
  if self.on_event then
    self.on_event(ev)
  end
end

function Qmp:_closed(err, code)
  self.closed, self.close_reason, self.close_code = true, err, code
  local waiters = self.close_waiters
  self.close_waiters = {}
  if self.on_close then
    local ok, cerr = pcall(self.on_close, err, code)
    if not ok then
      log.error('QMP on_close callback failed', { path = self.path, error = tostring(cerr) })
    end
  end
  for _, resume in ipairs(waiters) do
    resume(true)
  end
end

--- Connect to QEMU's QMP socket `path` (retrying until opts.timeout_ms, QMP_TIMEOUT_MS by
--- default: QEMU creates it a little after exec), read the greeting, negotiate capabilities.
--- opts = { timeout_ms, max_line (bytes, 1 MiB), retry_ms, on_event = fn(event table),
--- on_close = fn(err | nil, code) (once; err nil when qmp:close() ended it) }.
--- Returns the session or nil, msg, code (ETIMEDOUT, EPROTO: not QMP, EACCES, EINVAL, ...).
function M.qmp_connect(path, opts)
  if type(path) ~= 'string' then
    error('qemu.qmp_connect: path must be a string', 2)
  end
  opts = opts or {}
  local self = setmetatable({ path = path, on_event = opts.on_event, on_close = opts.on_close,
    closed = false, close_waiters = {} }, Qmp)
  local ready = false
  local conn
  local ok, greeting, code = task.await(function(resume)
    local err, ecode
    conn, err, ecode = native.qmp_connect(path, {
      timeout_ms = opts.timeout_ms or M.QMP_TIMEOUT_MS, max_line = opts.max_line,
      retry_ms = opts.retry_ms,
      on_ready = function(line)
        ready = true
        resume(true, line)
      end,
      on_event = function(line)
        self:_event(line)
      end,
      on_close = function(cerr, ccode)
        if ready then
          self:_closed(cerr, ccode)
        else
          resume(nil, cerr, ccode)
        end
      end,
    })
    if not conn then
      resume(nil, err, ecode)
      return
    end
    return function() -- the wait was abandoned (the task was cancelled)
      conn:close()
    end
  end)
  if not ok then
    return nil, greeting, code
  end
  self.conn = conn
  self.greeting = cjson.decode(greeting) or {}
  local v = type(self.greeting.QMP) == 'table' and type(self.greeting.QMP.version) == 'table' and
    self.greeting.QMP.version.qemu
  if type(v) == 'table' then
    self.version = ('%s.%s.%s'):format(tostring(v.major), tostring(v.minor), tostring(v.micro))
  end
  return self
end

-- The arguments as one JSON object text (nil: none), or nil, msg, code.
local function encode_args(args)
  if args == nil then
    return false
  end
  if type(args) ~= 'table' then
    error('qmp:execute: args must be a table', 3)
  end
  if next(args) == nil then
    return '{}'
  end
  local text, err = cjson.encode(args)
  if not text or text:sub(1, 1) ~= '{' then
    return errors.fail('EINVAL', 'arguments: ' .. (err or 'must be an object, not an array'))
  end
  return text
end

-- Turn an answer line into the decoded "return", or nil, 'EQMP: class: desc', 'EQMP'.
local function answer(line, err, code)
  if not line then
    return nil, err, code
  end
  local msg = cjson.decode(line)
  if type(msg) ~= 'table' then
    return errors.fail('EPROTO', 'undecodable QMP answer')
  end
  if msg.error ~= nil then
    local e = type(msg.error) == 'table' and msg.error or {}
    return errors.fail('EQMP', ('%s: %s'):format(tostring(e.class), tostring(e.desc)))
  end
  return msg['return']
end

--- Run a command; `cb(result | nil, err, code)` is called once with the decoded "return" or an
--- error (EQMP: QEMU's error class and description; ECLOSED / ECANCELED: the connection ended
--- first). Returns true, or nil, msg, code when it cannot be sent.
function Qmp:execute_cb(command, args, cb)
  if type(command) ~= 'string' then
    error('qmp:execute: command must be a string', 2)
  end
  local json, err, code = encode_args(args)
  if json == nil then
    return nil, err, code
  end
  if self.closed then
    return errors.fail('EPIPE', 'the QMP connection is closed')
  end
  local id, xerr, xcode = self.conn:execute(command, json or nil, function(line, e, c)
    cb(answer(line, e, c))
  end)
  if not id then
    return nil, xerr, xcode
  end
  return true
end

--- Run a command inside a task and wait for its answer (at most opts.timeout_ms,
--- EXECUTE_TIMEOUT_MS by default): the decoded "return" (a table; {} for an empty answer), or
--- nil, 'EQMP: <class>: <desc>', 'EQMP' / ETIMEDOUT / ECLOSED / EINVAL.
function Qmp:execute(command, args, opts)
  if type(command) ~= 'string' then
    error('qmp:execute: command must be a string', 2)
  end
  local timeout = opts and opts.timeout_ms or M.EXECUTE_TIMEOUT_MS
  return task.await(function(resume)
    local ok, err, code = self:execute_cb(command, args, resume)
    if not ok then
      resume(nil, err, code)
    end
  end, { timeout = timeout, what = 'QMP ' .. command })
end

--- Wait (inside a task) until the connection is closed, at most `ms`. Returns true, or nil,
--- 'ETIMEDOUT: ...', 'ETIMEDOUT'.
function Qmp:wait_close(ms)
  if self.closed then
    return true
  end
  return task.await(function(resume)
    self.close_waiters[#self.close_waiters + 1] = resume
  end, { timeout = ms, what = 'QMP close' })
end

--- Close the connection (idempotent). Waiting commands end with ECANCELED; on_close is then
--- called with nil.
function Qmp:close()
  if self.conn then
    self.conn:close()
  end
end

return M
