-- SPDX-License-Identifier: Apache-2.0
-- Running the host tools an image build needs (apt-get, dpkg, depmod, xz, gzip, ldd,
-- debootstrap, mkfs.ext4, sha256sum ...), inside a task: argv lists, never a shell; a fixed
-- environment (PATH, LC_ALL=C, HOME, the proxy variables apt may need, plus what the caller
-- adds), so a build does not depend on the caller's locale or variables; stdout captured or
-- written to a file; a failure names the command and ends with the last lines of its stderr.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')

local M = {}

M.PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

local PASS = { 'HOME', 'TMPDIR', 'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY',
  'HTTPS_PROXY', 'NO_PROXY' }

--- The environment of every command: PATH, LC_ALL=C, a few of ours (HOME, TMPDIR, proxies),
--- then `extra` ({ KEY = value }) over them. Returns a list of "KEY=value", sorted.
function M.env(extra)
  local env = { PATH = M.PATH, LC_ALL = 'C', LANG = 'C' }
  for _, k in ipairs(PASS) do
    env[k] = os.getenv(k)
  end
  for k, v in pairs(extra or {}) do
    env[k] = v
  end
  return require('moonstack.core.process').env_list(env)
end

local function close(h)
  if h and not h:is_closing() then
    h:close()
  end
end

-- The last `n` lines of `s`, indented, for an error message.
local function tail(s, n)
  local lines = {}
  for line in s:gmatch('[^\n]+') do
    lines[#lines + 1] = line
  end
  local from = math.max(1, #lines - n + 1)
  return table.concat(lines, '\n  ', from)
end

--- Run `argv` (argv[1] is looked up in PATH) to completion, inside a task. opts = { env =
--- { KEY = value } (added to M.env()), cwd, stdout = PATH (write stdout to this file, created
--- or truncated, instead of capturing it), ok_codes = { [n] = true } (exit codes that are not
--- a failure; default only 0) }. Returns stdout (or '' when written to a file), exit code,
--- stderr; or nil, 'ECMD: <cmd> failed (exit N): <stderr tail>', 'ECMD'.
function M.run(argv, opts)
  opts = opts or {}
  local out_pipe, err_pipe = uv.new_pipe(false), uv.new_pipe(false)
  local stdio = { nil, out_pipe, err_pipe }
  local fd
  if opts.stdout then
    close(out_pipe)
    out_pipe = nil
    local ferr, fcode
    fd, ferr, fcode = uv.fs_open(opts.stdout, 'w', 420)
    if not fd then
      close(err_pipe)
      return nil, ferr, fcode
    end
    stdio[2] = fd
  end
  local chunks = { out = {}, err = {} }
  local exit_code, signal
  local open = 1 -- the exit, then one per pipe being read
  local resume_me
  local function done()
    open = open - 1
    if open == 0 and resume_me then
      resume_me(true)
    end
  end
  local handle, pid_or_err = uv.spawn(argv[1], { args = { unpack(argv, 2) },
    env = M.env(opts.env), cwd = opts.cwd, stdio = stdio },
    function(code, sig)
      exit_code, signal = code, sig
      done()
    end)
  if fd then
    uv.fs_close(fd)
  end
  if not handle then
    close(out_pipe)
    close(err_pipe)
    return errors.fail('ECMD', ('cannot run %s: %s'):format(argv[1], tostring(pid_or_err)))
  end
  local function reader(pipe, into)
    open = open + 1
    pipe:read_start(function(_, data)
      if data then
        into[#into + 1] = data
        return
      end
      close(pipe)
      done()
    end)
  end
  if out_pipe then
    reader(out_pipe, chunks.out)
  end
  reader(err_pipe, chunks.err)
  if open > 0 then
    task.await(function(resume)
      resume_me = resume
    end)
  end
  close(handle)
  local stdout, stderr = table.concat(chunks.out), table.concat(chunks.err)
  local ok_codes = opts.ok_codes or { [0] = true }
  if signal ~= 0 or not ok_codes[exit_code] then
    local how = signal ~= 0 and ('signal %d'):format(signal) or ('exit %d'):format(exit_code)
    local cmd = table.concat(argv, ' ')
    if #cmd > 200 then
      cmd = cmd:sub(1, 200) .. '...'
    end
    return errors.fail('ECMD', ('%s failed (%s)%s'):format(cmd, how,
      stderr ~= '' and (':\n  ' .. tail(stderr, 12)) or ''))
  end
  return stdout, exit_code, stderr
end

--- Whether `prog` is found in M.PATH (an absolute path is checked as it is).
function M.which(prog)
  if prog:sub(1, 1) == '/' then
    return uv.fs_access(prog, 'X') and prog or nil
  end
  for dir in M.PATH:gmatch('[^:]+') do
    local p = dir .. '/' .. prog
    if uv.fs_access(p, 'X') then
      return p
    end
  end
  return nil
end

--- Fail with the programs of `progs` that are missing, naming the Debian packages that bring
--- them (`progs` = { { 'depmod', 'kmod' }, ... }). Returns true or nil, 'ENOENT: ...'.
function M.require_tools(progs)
  local missing, pkgs = {}, {}
  for _, p in ipairs(progs) do
    if not M.which(p[1]) then
      missing[#missing + 1] = p[1]
      pkgs[#pkgs + 1] = p[2]
    end
  end
  if #missing > 0 then
    return errors.fail('ENOENT', ('missing tools: %s (apt-get install %s, or scripts/install-deps.sh)')
      :format(table.concat(missing, ', '), table.concat(pkgs, ' ')))
  end
  return true
end

return M
