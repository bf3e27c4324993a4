-- SPDX-License-Identifier: Apache-2.0
-- `moonstack version`: the version of moonstack and of what it links.
local args = require('moonstack.core.args')
local native = require('moonstack.native.runtime')

local spec = {
  usage = 'moonstack version [--json]',
  summary = 'print the moonstack version and the versions of its runtime libraries',
  options = { { '--json', help = 'print a JSON object' } },
}

local function versions()
  local uv = require('luv')
  return {
    moonstack = native.version(),
    luajit = jit.version,
    libuv = uv.version_string(),
  }
end

return {
  name = 'version',
  summary = spec.summary,
  run = function(argv)
    local opts, code = args.parse_command('moonstack version', spec, argv)
    if not opts then
      return code
    end
    local v = versions()
    if opts.json then
      io.stdout:write(require('cjson').encode(v), '\n')
    else
      io.stdout:write(('moonstack %s (%s, libuv %s)\n'):format(v.moonstack, v.luajit, v.libuv))
    end
    return 0
  end,
}
