-- SPDX-License-Identifier: Apache-2.0
-- `moonstack policy check FILE [--json]`: compile an operator policy in a policy worker (the
-- sandbox in its own process), validate its shape and run its own tests, offline, exactly as a
-- reload would. Exit 0 when it would be accepted, 1 when it would be rejected (including a
-- policy that crashes or stalls its worker: ECRASH, ETIMEDOUT), 2 for usage errors and
-- unreadable files.
local args = require('moonstack.core.args')
local host = require('moonstack.policy.host')
local task = require('moonstack.core.task')
local runtime = require('moonstack.native.runtime')

local check_spec = {
  usage = 'moonstack policy check FILE [--json]',
  summary = 'compile, validate and self-test a policy file as a reload would',
  description = 'Exit status: 0 the policy would be accepted, 1 it would be rejected (syntax,\n'
    .. 'runtime or shape error, failing tests, a crash or a timeout of its worker), 2 usage\n'
    .. 'error or unreadable file.',
  positional = { { 'FILE', help = 'the policy (a Lua file returning {name, version, on_*, tests})',
    required = true } },
  options = { { '--json', help = 'print the report as one JSON object' } },
}

local HELP = table.concat({
  'usage: moonstack policy COMMAND [ARGS...]',
  '',
  'Operator policies (KMS auth, gateway routing) run in a sandboxed, memory- and time-capped',
  'Lua VM in worker processes the daemon kills at the deadline; any error, timeout, crash or',
  'invalid answer means deny. The sandbox guards against mistakes, not hostile code.',
  '',
  'commands:',
  '  check FILE [--json]   ' .. check_spec.summary,
  '',
  "Run 'moonstack policy check --help' for details.",
  '',
}, '\n')

local function print_text(out, file, report)
  local w = function(...)
    out:write(...)
    out:write('\n')
  end
  w(('file      %s'):format(file))
  if report.name ~= nil then
    local version = report.version == nil and '(no version)' or tostring(report.version)
    w(('policy    %s %s'):format(tostring(report.name), version))
  end
  w(('sha256    %s'):format(report.sha256))
  if #report.hooks > 0 then
    w(('hooks     %s'):format(table.concat(report.hooks, ', ')))
  end
  local t = report.tests
  if t.passed + t.failed > 0 then
    w(('tests     %d passed, %d failed'):format(t.passed, t.failed))
    for _, r in ipairs(t.results) do
      if r.ok then
        w(('  ok      %s (%s)'):format(r.name, r.hook))
      else
        w(('  FAIL    %s (%s): %s'):format(r.name, r.hook, r.message))
      end
    end
  elseif report.ok then
    w('tests     none (consider adding some)')
  end
  for _, line in ipairs(report.output) do
    w(('print     %s'):format(line))
  end
  if report.ok then
    w('result    ok')
  else
    w(('result    rejected: %s'):format(report.error))
  end
end

local function run_check(opts)
  local file = opts.args[1]
  local report, rerr = host.check_file(file)
  if not report then
    io.stderr:write('moonstack policy check: ', rerr, '\n')
    return 2
  end
  if opts.json then
    local json = require('cjson').encode({
      ok = report.ok, file = file, name = report.name, version = report.version,
      sha256 = report.sha256, hooks = report.hooks, tests = report.tests, output = report.output,
      error = report.error, code = report.code,
    })
    io.stdout:write(json, '\n')
  else
    print_text(io.stdout, file, report)
  end
  return report.ok and 0 or 1
end

local function check(argv)
  local opts, code = args.parse_command('moonstack policy check', check_spec, argv)
  if not opts then
    return code
  end
  -- the check waits on a policy worker: run it in a task, and exit when it is done
  task.spawn_named('policy-check', function()
    local ok, rc = pcall(run_check, opts)
    if not ok then
      io.stderr:write('moonstack policy check: ', tostring(rc), '\n')
      rc = 2
    end
    runtime.set_exit_code(rc)
  end)
  return nil
end

return {
  name = 'policy',
  summary = 'operator policies: check a policy file (compile, validate, self-test)',
  run = function(argv)
    return args.dispatch('moonstack policy', HELP, { check = check }, argv)
  end,
}
