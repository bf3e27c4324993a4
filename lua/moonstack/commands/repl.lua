-- SPDX-License-Identifier: Apache-2.0
-- `moonstack repl SOCKET [-e EXPR] [--json]`: attach to a running daemon's control socket.
-- Interactive on a terminal (line editing, history), line by line from a pipe otherwise.
local args = require('moonstack.core.args')

local spec = {
  usage = 'moonstack repl SOCKET [-e EXPR] [--json] [--timeout SECONDS]',
  summary = "evaluate Lua in a running daemon through its control socket",
  description = table.concat({
    'Each line is evaluated in the daemon (as an expression, else as a statement) and the',
    'result is printed. On a terminal you get line editing and history (in $MOONSTACK_HISTORY,',
    'default ~/.moonstack_history); Ctrl-D leaves. From a pipe, each line is sent in turn.',
    'Type \\help in a session for the server commands.',
    '',
    'exit status: 0 done; 1 the -e evaluation failed; 2 cannot connect or connection lost.',
  }, '\n'),
  positional = { { 'SOCKET', help = "the daemon's control socket", required = true } },
  options = {
    { '-e', '--eval', arg = 'EXPR', help = 'evaluate EXPR, print the result and exit' },
    { '--json', help = 'JSON mode: print one raw JSON reply per line' },
    { '--timeout', arg = 'SECONDS', help = 'give up when a reply takes longer (default: wait)' },
  },
}

local function history_file()
  local env = os.getenv('MOONSTACK_HISTORY')
  if env and env ~= '' then
    return env
  end
  local home = os.getenv('HOME')
  if home and home ~= '' then
    return home .. '/.moonstack_history'
  end
  return nil
end

return {
  name = 'repl',
  summary = spec.summary,
  run = function(argv)
    local opts, code = args.parse_command('moonstack repl', spec, argv)
    if not opts then
      return code
    end
    local timeout
    if opts.timeout then
      timeout = tonumber(opts.timeout)
      if not timeout or timeout < 0 then
        io.stderr:write(("moonstack repl: --timeout: '%s' is not a number of seconds\n")
          :format(opts.timeout))
        return 2
      end
    end
    local client = require('moonstack.native.replclient')
    return client.run(opts.args[1], {
      expr = opts.eval,
      json = opts.json,
      timeout = timeout,
      history = history_file(),
    })
  end,
}
