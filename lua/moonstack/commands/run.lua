-- SPDX-License-Identifier: Apache-2.0
-- `moonstack run SCRIPT.lua [ARGS...]`: run a script in a fully set-up runtime, like
-- `nvim -l`: the global `arg` holds the arguments, the loop runs until no work is left, and
-- the process exits with the number the script returns (0 otherwise; 1 if it raises).
local args = require('moonstack.core.args')

local spec = {
  usage = 'moonstack run SCRIPT.lua [ARGS...]',
  summary = 'run a Lua script in the runtime (luv loop, natives, cjson), then the loop',
  positional = { { 'SCRIPT', help = "Lua file to run ('-' reads standard input)", required = true } },
  rest = true,
}

return {
  name = 'run',
  summary = spec.summary,
  run = function(argv)
    -- Only options before SCRIPT belong to us; everything after it is the script's.
    if argv[1] == '-h' or argv[1] == '--help' then
      io.stdout:write(args.help(spec))
      return 0
    end
    local opts, err = args.parse(spec, argv)
    if not opts then
      io.stderr:write('moonstack run: ', err, '\n')
      return 2
    end
    local script = opts.args[1]
    local chunk, lerr
    if script == '-' then
      chunk, lerr = loadstring(io.stdin:read('*a'), '=stdin')
    else
      chunk, lerr = loadfile(script)
    end
    if not chunk then
      io.stderr:write('moonstack run: ', lerr, '\n')
      return 2
    end
    local script_args = { [0] = script }
    for i = 2, #opts.args do
      script_args[i - 1] = opts.args[i]
    end
    rawset(_G, 'arg', script_args)
    local result = chunk(unpack(script_args))
    if type(result) == 'number' then
      return result
    end
    return nil
  end,
}
