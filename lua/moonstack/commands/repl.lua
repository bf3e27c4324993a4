-- SPDX-License-Identifier: Apache-2.0
-- `moonstack repl [SOCKET|vmm|kms|gateway] [-e EXPR] [--json]`: attach to a running daemon's
-- control socket (by default the dev stack's VMM). Interactive on a terminal (line editing,
-- history, Tab completion, Ctrl-C), line by line from a pipe otherwise.
local args = require('moonstack.core.args')

--- The daemons of the dev stack whose control sockets `moonstack repl NAME` finds.
local DEV_DAEMONS = { vmm = true, kms = true, gateway = true }

local spec = {
  usage = 'moonstack repl [SOCKET|vmm|kms|gateway] [-e EXPR] [--json] [--timeout SECONDS]',
  summary = "evaluate Lua in a running daemon through its control socket",
  description = table.concat({
    'Each line is evaluated in the daemon (as an expression, else as a statement) and the',
    'result is printed. On a terminal you get line editing, Tab completion of names and',
    'history (in $MOONSTACK_HISTORY, default ~/.moonstack_history); Ctrl-C clears the line or',
    'interrupts the running evaluation; Ctrl-D leaves. From a pipe, each line is sent in turn.',
    'help() lists the daemon\'s helpers; \\help the server commands.',
    '',
    'Without SOCKET: the dev stack\'s VMM; vmm, kms or gateway: that daemon of the dev stack',
    '(its <name>.ctl in --dir, else $MOONSTACK_DEV_DIR, else ./.moonstack-dev).',
    '',
    'exit status: 0 done; 1 the -e evaluation failed; 2 cannot connect or connection lost.',
  }, '\n'),
  positional = { { 'SOCKET', help = "the daemon's control socket, or vmm, kms, gateway (default vmm)" } },
  options = {
    { '--dir', arg = 'DIR', help = 'the dev stack directory (default $MOONSTACK_DEV_DIR, else ' ..
      './.moonstack-dev)' },
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

-- The socket to attach to and its prompt name, or nil and the message when the dev stack's
-- socket is missing.
local function resolve(target, dir_opt)
  local uv = require('luv')
  if target and not (DEV_DAEMONS[target] and not uv.fs_stat(target)) then
    return target
  end
  local name = target or 'vmm'
  local layout = require('moonstack.devstack.layout')
  local dir = layout.dir(dir_opt)
  local path = layout.control_socket(dir, name)
  if not uv.fs_stat(path) then
    return nil, ("no %s control socket in the dev stack directory %s (%s is missing): "
      .. "`moonstack dev up` starts the dev stack; or give the socket's path"):format(name, dir,
        path)
  end
  return path, name
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
    local path, name = resolve(opts.args[1], opts.dir)
    if not path then
      io.stderr:write('moonstack repl: ', name, '\n')
      return 2
    end
    local client = require('moonstack.native.replclient')
    return client.run(path, {
      name = name,
      expr = opts.eval,
      json = opts.json,
      timeout = timeout,
      history = history_file(),
    })
  end,
}
