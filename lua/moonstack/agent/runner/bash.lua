-- SPDX-License-Identifier: Apache-2.0
-- The `bash` runner: the app is app-compose's bash_script, run by bash (after the
-- pre_launch_script, in the launcher of moonstack.agent.runner.launch) with the decrypted,
-- allowed env only plus a minimal PATH/HOME, in the app's work dir. Its output is captured as
-- the log service 'app'. The process is supervised: its exit is recorded and reported
-- (on_state 'exited' for status 0, 'failed' otherwise), and stop() ends its whole process
-- group (SIGTERM, then SIGKILL after the grace period).
--
-- Runner interface (both runners): start(opts) inside a task, opts = { app_compose, env,
-- work_dir, logs, config = the runner config }; returns an app object with :stop() (inside a
-- task), :services(), :watch(fn) (fn(state, info) once the app ends by itself: state
-- 'exited' for status 0, 'failed' otherwise; called at once if it already has) and .kind, or
-- nil, msg, code.
local errors = require('moonstack.core.errors')
local launch = require('moonstack.agent.runner.launch')

local M = {}

--- The log service name of the app's main process.
M.SERVICE = 'app'

local App = require('moonstack.agent.runner.app').class()

--- Stop the app's process tree (inside a task).
function App:stop()
  if self.proc then
    self.proc:stop(self.config.stop_grace_ms)
  end
  return true
end

--- Start the app (see the top). Needs app_compose.bash_script.
function M.start(opts)
  local app = opts.app_compose
  if type(app.bash_script) ~= 'string' or app.bash_script == '' then
    return errors.fail('EINVAL', 'the bash runner needs bash_script in app-compose.json')
  end
  local main, err, code = launch.write_file(opts.work_dir, '.bash-script.sh', app.bash_script)
  if not main then
    return nil, err, code
  end
  local self = setmetatable({ kind = 'bash', logs = opts.logs, config = opts.config or {} }, App)
  local proc
  proc, err, code = launch.start({
    service = M.SERVICE, argv = { 'bash', main }, pre_launch = app.pre_launch_script,
    env = launch.base_env(self.config, opts.env, opts.work_dir), work_dir = opts.work_dir,
    logs = opts.logs,
    on_exit = function(p)
      if not p.stopping then
        self:_ended(p.status == 'exited' and 'exited' or 'failed',
          { service = M.SERVICE, exit_code = p.exit_code, signal = p.signal })
      end
    end,
  })
  if not proc then
    return nil, err, code
  end
  self.proc = proc
  return self
end

return M
