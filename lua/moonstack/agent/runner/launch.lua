-- SPDX-License-Identifier: Apache-2.0
-- What both runners share: the app's environment (the decrypted, allowed env plus a minimal
-- PATH and HOME; nothing from the agent), script files in the work dir, the init scripts
-- (sourced in order by one bash, `set -e`; any failure fails the boot), and the launcher: a
-- bash that sources pre_launch_script under `set -euo pipefail` (as upstream's app-compose.sh)
-- and then execs the runner's command, so the script's exports reach the app. The launcher
-- reports on fd 3 that the pre-launch script succeeded; an exit before that is a failed
-- pre-launch.
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')
local process = require('moonstack.core.process')

local M = {}

local LAUNCHER = table.concat({
  'set -euo pipefail',
  'pre=$1; shift',
  'if [ -n "$pre" ]; then . "$pre"; fi',
  'set +euo pipefail',
  "printf 'launched\\n' >&3",
  'exec 3>&-',
  'exec "$@"',
}, '\n')

local INIT = 'set -e\nfor f; do . "$f"; done\n'

--- The app's environment: { PATH = cfg.path, HOME = cfg.home or work_dir } overlaid with the
--- decrypted env (an allowed PATH or HOME wins).
function M.base_env(cfg, env, work_dir)
  local out = { PATH = cfg.path or '/usr/local/bin:/usr/bin:/bin', HOME = cfg.home or work_dir }
  for k, v in pairs(cfg.env or {}) do
    out[k] = v
  end
  for k, v in pairs(env or {}) do
    out[k] = v
  end
  return out
end

--- Write `text` to <dir>/<name> (0600, atomically). Returns the path or nil, msg, code.
function M.write_file(dir, name, text)
  local path = dir .. '/' .. name
  local ok, err, code = fs.write_atomic(path, text, 384)
  if not ok then
    return nil, err, code
  end
  return path
end

-- The last `n` lines the service wrote on stderr (for error messages).
local function last_lines(logs, service, n)
  local records = logs and logs:read(service, { tail = 50 }) or {}
  local lines = {}
  for i = #records, 1, -1 do
    if records[i].channel == 'stderr' then
      table.insert(lines, 1, (records[i].message:gsub('%s+$', '')))
      if #lines >= n then
        break
      end
    end
  end
  return table.concat(lines, ' | ')
end
M.last_lines = last_lines

local function detail(logs, service)
  local l = last_lines(logs, service, 3)
  return l ~= '' and (': ' .. l) or ''
end

--- Run the init scripts (inside a task) as service 'init': one bash sources them in order
--- with `set -e`. Returns true or nil, 'EINIT: ...', 'EINIT'.
function M.run_init(opts)
  local scripts = opts.scripts or {}
  if #scripts == 0 then
    return true
  end
  local args = { '-c', INIT, 'init' }
  for i, text in ipairs(scripts) do
    local path, err, code = M.write_file(opts.work_dir, ('.init-script-%d.sh'):format(i), text)
    if not path then
      return nil, err, code
    end
    args[#args + 1] = path
  end
  local p, err, code = process.spawn({ service = 'init', file = 'bash', args = args,
    env = opts.env, cwd = opts.work_dir, logs = opts.logs })
  if not p then
    return nil, err, code
  end
  p:wait()
  if p.exit_code ~= 0 or p.signal then
    return errors.fail('EINIT', ('init_script failed (exit %s%s)%s'):format(tostring(p.exit_code),
      p.signal and (', signal ' .. p.signal) or '',
      detail(opts.logs, 'init')))
  end
  return true
end

--- Start `argv` (a list: program, args...) under the launcher (inside a task): the
--- pre-launch script (opts.pre_launch text, optional) runs first. Returns the process once
--- the pre-launch part succeeded, or nil, 'EPRELAUNCH: ...' if it failed (the process has
--- exited), or a spawn error. opts = { service, argv, pre_launch?, env, work_dir, logs,
--- on_exit?, timeout_ms? (for the pre-launch part; default none) }.
function M.start(opts)
  local pre = ''
  if opts.pre_launch and opts.pre_launch ~= '' then
    local err, code
    pre, err, code = M.write_file(opts.work_dir, '.pre-launch.sh', opts.pre_launch)
    if not pre then
      return nil, err, code
    end
  end
  local args = { '-c', LAUNCHER, 'moonstack-launch', pre }
  for _, a in ipairs(opts.argv) do
    args[#args + 1] = a
  end
  local p, err, code = process.spawn({ service = opts.service, file = 'bash', args = args,
    env = opts.env, cwd = opts.work_dir, logs = opts.logs, on_exit = opts.on_exit, extra_fds = 1 })
  if not p then
    return nil, err, code
  end
  local status = p.fds[1]
  local launched = task.await(function(resume)
    local buf = ''
    status:read_start(function(rerr, data)
      if data then
        buf = buf .. data
        if buf:find('launched\n', 1, true) then
          status:read_stop()
          resume(true)
        end
      else
        resume(rerr == nil and false or nil)
      end
    end)
    return function()
      if not status:is_closing() then
        status:read_stop()
      end
    end
  end, { timeout = opts.timeout_ms, what = 'pre_launch_script' })
  if not status:is_closing() then
    status:close()
  end
  if launched then
    return p
  end
  p:wait(2000)
  if not p.exited then
    p:stop(1000) -- the pre-launch part hung past its timeout
  end
  return errors.fail('EPRELAUNCH', ('pre_launch_script failed (exit %s)%s'):format(
    tostring(p.exit_code), detail(opts.logs, opts.service)))
end

return M
