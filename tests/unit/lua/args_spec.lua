-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.args: option parsing for subcommands (flags, values, defaults, repeated
-- options, positionals, rest) with errors naming the option, and the --help text.
local args = require('moonstack.core.args')

local SPEC = {
  usage = 'moonstack x [OPTIONS] FILE [MORE...]',
  summary = 'does x',
  options = {
    { '-c', '--config', arg = 'FILE', help = 'config file', default = 'x.lua' },
    { '-v', '--verbose', help = 'say more' },
    { '--listen-port', arg = 'PORT', help = 'port' },
    { '-t', '--tag', arg = 'TAG', multiple = true, help = 'a tag' },
  },
  positional = { { 'FILE', help = 'input', required = true } },
}

local function parse(argv, spec)
  return args.parse(spec or SPEC, argv)
end

describe('core.args', function()
  it('parses flags, values (both spellings), defaults and repeated options', function()
    local o = assert(parse({ '-v', '--listen-port=80', '-t', 'a', '--tag', 'b', 'in.txt' }))
    assert.are.same({ config = 'x.lua', verbose = true, listen_port = '80', tag = { 'a', 'b' },
      args = { 'in.txt' } }, o)
    o = assert(parse({ 'f', '--config', 'y.lua' }))
    assert.are.same({ config = 'y.lua', verbose = false, tag = {}, args = { 'f' } }, o)
  end)

  it('takes everything after -- as positional, and - as a value', function()
    local o = assert(args.parse({ positional = { { 'A' }, { 'B' } } }, { '--', '-v' }))
    assert.are.same({ '-v' }, o.args)
    o = assert(args.parse({ positional = { { 'A' } } }, { '-' }))
    assert.are.same({ '-' }, o.args)
  end)

  it('reports errors naming the option or argument', function()
    assert.are.same({ nil, "unknown option '--nope' (see --help)" }, { parse({ '--nope', 'f' }) })
    assert.are.same({ nil, "option '--config' needs a value FILE" }, { parse({ 'f', '--config' }) })
    assert.are.same({ nil, "option '--verbose' takes no value" }, { parse({ '--verbose=yes', 'f' }) })
    assert.are.same({ nil, 'missing argument FILE' }, { parse({ '-v' }) })
    assert.are.same({ nil, "unexpected argument 'g'" }, { parse({ 'f', 'g' }) })
    local req = { options = { { '--key', arg = 'K', required = true } } }
    assert.are.same({ nil, "option '--key' is required" }, { args.parse(req, {}) })
    assert.are.same({ key = 'k', args = {} }, args.parse(req, { '--key', 'k' }))
  end)

  it('with rest, passes everything after the positionals through untouched', function()
    local spec = { options = { { '-q' } }, positional = { { 'SCRIPT', required = true } }, rest = true }
    local o = assert(args.parse(spec, { '-q', 's.lua', '-q', '--x', 'y' }))
    assert.are.same({ 's.lua', '-q', '--x', 'y' }, o.args)
    assert.is_true(o.q)
  end)

  it('sets help and skips required checks when -h/--help is given', function()
    local o = assert(parse({ '--help' }))
    assert.is_true(o.help)
    assert.is_true(assert(parse({ '-h' })).help)
  end)

  it('renders help with usage, arguments, options and defaults', function()
    local text = args.help(SPEC)
    assert.matches('^usage: moonstack x %[OPTIONS%] FILE %[MORE%.%.%.%]\n\ndoes x\n', text)
    assert.matches('\narguments:\n  FILE +input\n', text)
    assert.matches('\n  %-c, %-%-config FILE +config file %(default: x%.lua%)\n', text)
    assert.matches('\n  %-v, %-%-verbose +say more\n', text)
    assert.matches('\n  %-h, %-%-help +show this help and exit\n$', text)
  end)
end)
