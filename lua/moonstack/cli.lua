-- SPDX-License-Identifier: Apache-2.0
-- The command line: global help and version, `-e CODE`, and dispatch to subcommands. A
-- subcommand is a module under moonstack.commands returning
-- { name, summary, usage?, run = function(argv) -> exit code? }; dropping a file there
-- registers it (embedded, or in --lua-dir during development).
local native = require('moonstack.native.runtime')

local M = {}

local PREFIX = 'lua/moonstack/commands/'

local function command_names()
  local names, seen = {}, {}
  local function add(name)
    if not seen[name] then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  for _, path in ipairs(native.embedded_list(PREFIX)) do
    local name = path:sub(#PREFIX + 1):match('^([%w_]+)%.lua$')
    if name then
      add(name)
    end
  end
  local dir = native.lua_dir()
  if dir then
    local uv = require('luv')
    local req = uv.fs_scandir(dir .. '/moonstack/commands')
    while req do
      local name = uv.fs_scandir_next(req)
      if not name then
        break
      end
      local base = name:match('^([%w_]+)%.lua$')
      if base then
        add(base)
      end
    end
  end
  table.sort(names)
  return names
end

--- Load the command `name` (module moonstack.commands.<name>), or nil, message.
function M.find(name)
  if not name:match('^[%w_%-]+$') then
    return nil, ("unknown command '%s'"):format(name)
  end
  local module = name:gsub('%-', '_') -- ct-monitor is moonstack.commands.ct_monitor
  for _, known in ipairs(command_names()) do
    if known == module then
      return require('moonstack.commands.' .. module)
    end
  end
  return nil, ("unknown command '%s' (see 'moonstack --help')"):format(name)
end

--- Every registered command, sorted by name.
function M.commands()
  local list = {}
  for _, name in ipairs(command_names()) do
    local ok, cmd = pcall(require, 'moonstack.commands.' .. name)
    if ok and type(cmd) == 'table' and not cmd.hidden then
      list[#list + 1] = cmd
    end
  end
  return list
end

--- The global help text.
function M.help()
  local lines = {
    'moonstack ' .. native.version() .. ' - confidential computing on Intel TDX, dstack-compatible',
    '',
    'usage: moonstack [RUNTIME OPTIONS] COMMAND [ARGS...]',
    '       moonstack -e CODE [ARGS...]',
    '',
    'commands:',
  }
  for _, cmd in ipairs(M.commands()) do
    lines[#lines + 1] = ('  %-12s %s'):format(cmd.name, cmd.summary or '')
  end
  local tail = {
    '',
    'runtime options (before the command):',
    '  --lua-dir DIR        load Lua modules from DIR before the embedded ones, and the UI',
    '                       files from DIR/../ui (development); also MOONSTACK_LUA_DIR',
    '  --log-level LEVEL    debug, info, warn or error (default info); also MOONSTACK_LOG_LEVEL',
    '  --log-json           write log records as JSON lines; also MOONSTACK_LOG_JSON=1',
    '  -e CODE              run Lua CODE in the runtime, then the loop until no work is left',
    '  -h, --help           show this help',
    '',
    "Run 'moonstack COMMAND --help' for a command's options.",
  }
  for _, l in ipairs(tail) do
    lines[#lines + 1] = l
  end
  return table.concat(lines, '\n') .. '\n'
end

local function eval(code, argv)
  local chunk, err = loadstring(code, '=(command line)')
  if not chunk then
    io.stderr:write('moonstack: ', err, '\n')
    return 2
  end
  local args = { [0] = '-e' }
  for i = 1, #argv do
    args[i] = argv[i]
  end
  rawset(_G, 'arg', args)
  local result = chunk(unpack(args))
  return type(result) == 'number' and result or nil
end

--- Entry point called by the C host with the command line (args[0] is the program).
--- Returns the exit code, or nil to run the loop and exit 0 (or with the code set later).
function M.main(args)
  local first = args[1]
  if first == nil then
    io.stderr:write(M.help())
    return 2
  end
  if first == '-h' or first == '--help' or first == 'help' then
    if first == 'help' and args[2] then
      local cmd, err = M.find(args[2])
      if not cmd then
        io.stderr:write('moonstack: ', err, '\n')
        return 2
      end
      return cmd.run({ '--help' })
    end
    io.stdout:write(M.help())
    return 0
  end
  if first == '--version' or first == '-v' then
    first = 'version'
  end
  if first == '-e' then
    if args[2] == nil then
      io.stderr:write('moonstack: -e needs CODE\n')
      return 2
    end
    return eval(args[2], { select(3, unpack(args)) })
  end
  if first:sub(1, 1) == '-' then
    io.stderr:write(("moonstack: unknown runtime option '%s' (see 'moonstack --help')\n"):format(first))
    return 2
  end
  local cmd, err = M.find(first)
  if not cmd then
    io.stderr:write('moonstack: ', err, '\n')
    return 2
  end
  return cmd.run({ select(2, unpack(args)) })
end

return M
