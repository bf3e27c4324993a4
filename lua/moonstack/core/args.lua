-- SPDX-License-Identifier: Apache-2.0
-- Command-line parsing for subcommands: a declarative spec gives parsing, clear errors that
-- name the option and the reason, and the --help text.
local M = {}

--- A spec is
---   { usage = 'moonstack x [OPTIONS] FILE', summary = '...', description = '...',
---     options = { { '-c', '--config', arg = 'FILE', help = '...', default = ..., required = bool,
---                   multiple = bool }, { '--json', help = '...' } },
---     positional = { { 'FILE', help = '...', required = true } }, rest = bool }
--- An option with `arg` takes a value; otherwise it is a boolean flag. The option's key in
--- the result is its long name without dashes, with '-' turned into '_'.

local function key_of(opt)
  local long
  for _, name in ipairs(opt) do
    if name:sub(1, 2) == '--' then
      long = name
    end
  end
  local name = long or opt[1]
  return (name:gsub('^%-+', ''):gsub('-', '_'))
end

--- The usage line of a spec: spec.usage, with every option it does not mention appended
--- (`[--name ARG]`, or without brackets when required), so the line never misses one; a
--- usage that says [OPTIONS] is left as it is.
function M.usage(spec)
  local usage = spec.usage or ''
  if usage:find('OPTIONS', 1, true) then
    return usage
  end
  for _, o in ipairs(spec.options or {}) do
    local name = o[#o]
    local at = usage:find(name, 1, true)
    local after = at and usage:sub(at + #name, at + #name)
    if not at or after:match('[%w-]') then
      local part = name .. (o.arg and ' ' .. o.arg or '')
      usage = usage .. ' ' .. (o.required and part or '[' .. part .. ']')
    end
  end
  return usage
end

--- Render the help text for a spec.
function M.help(spec)
  local lines = { 'usage: ' .. M.usage(spec) }
  if spec.summary then
    lines[#lines + 1] = ''
    lines[#lines + 1] = spec.summary
  end
  if spec.description then
    lines[#lines + 1] = ''
    lines[#lines + 1] = spec.description
  end
  if spec.positional and #spec.positional > 0 then
    lines[#lines + 1] = ''
    lines[#lines + 1] = 'arguments:'
    for _, p in ipairs(spec.positional) do
      lines[#lines + 1] = ('  %-24s %s'):format(p[1], p.help or '')
    end
  end
  lines[#lines + 1] = ''
  lines[#lines + 1] = 'options:'
  local opts = {}
  for _, o in ipairs(spec.options or {}) do
    opts[#opts + 1] = o
  end
  opts[#opts + 1] = { '-h', '--help', help = 'show this help and exit' }
  for _, o in ipairs(opts) do
    local names = table.concat(o, ', ')
    if o.arg then
      names = names .. ' ' .. o.arg
    end
    local help = o.help or ''
    if o.default ~= nil then
      help = help .. (' (default: %s)'):format(tostring(o.default))
    end
    lines[#lines + 1] = ('  %-24s %s'):format(names, help)
  end
  return table.concat(lines, '\n') .. '\n'
end

-- The runtime's own options (runtime/src/main.c): given after a command, they get a hint.
local RUNTIME_OPTIONS = { ['--lua-dir'] = true, ['--log-level'] = true, ['--log-json'] = true }

--- Parse `argv` (array of strings) against `spec`.
--- Returns `opts` (keyed by option key, plus `opts.args`: positional values in order, and
--- `opts.help = true` when -h/--help was given), or nil, message.
function M.parse(spec, argv)
  local by_name = {}
  local result = { args = {} }
  for _, o in ipairs(spec.options or {}) do
    for _, name in ipairs(o) do
      by_name[name] = o
    end
    local k = key_of(o)
    if o.multiple then
      result[k] = {}
    elseif o.default ~= nil then
      result[k] = o.default
    elseif not o.arg then
      result[k] = false
    end
  end
  local i = 1
  local only_positional = false
  while i <= #argv do
    local a = argv[i]
    if only_positional or a == '-' or a:sub(1, 1) ~= '-' then
      result.args[#result.args + 1] = a
      if spec.rest and #result.args >= #(spec.positional or {}) then
        -- everything after the last declared positional goes to the command untouched
        only_positional = true
      end
    elseif a == '--' then
      only_positional = true
    elseif a == '-h' or a == '--help' then
      result.help = true
    else
      local name, value = a:match('^(%-%-[^=]+)=(.*)$')
      name = name or a
      local o = by_name[name]
      if not o then
        if RUNTIME_OPTIONS[name] then
          return nil, ("'%s' is a runtime option: it goes before the command "
            .. "(moonstack %s ... COMMAND ...)"):format(name, name)
        end
        return nil, ("unknown option '%s' (see --help)"):format(name)
      end
      local k = key_of(o)
      if o.arg then
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then
            return nil, ("option '%s' needs a value %s"):format(name, o.arg)
          end
        end
        if o.multiple then
          local list = result[k]
          list[#list + 1] = value
        else
          result[k] = value
        end
      else
        if value ~= nil then
          return nil, ("option '%s' takes no value"):format(name)
        end
        result[k] = true
      end
    end
    i = i + 1
  end
  if result.help then
    return result
  end
  for _, o in ipairs(spec.options or {}) do
    if o.required and result[key_of(o)] == nil then
      return nil, ("option '%s' is required"):format(o[#o])
    end
  end
  local declared = spec.positional or {}
  for idx, p in ipairs(declared) do
    if p.required and result.args[idx] == nil then
      return nil, ('missing argument %s'):format(p[1])
    end
  end
  if not spec.rest and #result.args > #declared then
    return nil, ("unexpected argument '%s'"):format(result.args[#declared + 1])
  end
  return result
end

--- Parse a subcommand's `argv` the usual way: on --help print the help and return nil, 0; on
--- an error print it (prefixed with `prog`) and return nil, 2; otherwise return the options.
--- Use as: `local opts, code = args.parse_command('moonstack x', spec, argv)`
--- `if not opts then return code end`.
function M.parse_command(prog, spec, argv)
  local opts, err = M.parse(spec, argv)
  if not opts then
    io.stderr:write(prog, ': ', err, '\n')
    return nil, 2
  end
  if opts.help then
    io.stdout:write(M.help(spec))
    return nil, 0
  end
  return opts
end

--- Dispatch a command group (`moonstack quote show ...`): `subcommands` maps a name to a
--- function(argv) -> exit code. With no name, print `help` to stderr and return 2; with -h or
--- --help print it to stdout and return 0; an unknown name is an error naming it (exit 2).
function M.dispatch(prog, help, subcommands, argv)
  local sub = argv[1]
  if sub == '-h' or sub == '--help' then
    io.stdout:write(help)
    return 0
  end
  if sub == nil then
    io.stderr:write(help)
    return 2
  end
  local fn = subcommands[sub]
  if not fn then
    io.stderr:write(("%s: unknown command '%s' (see '%s --help')\n"):format(prog, sub, prog))
    return 2
  end
  return fn({ select(2, unpack(argv)) })
end

--- Report a usage or config error of command `prog` on stderr ("prog: msg") and return the
--- exit code for it, 2.
function M.fail(prog, msg)
  io.stderr:write(prog, ': ', tostring(msg), '\n')
  return 2
end

return M
