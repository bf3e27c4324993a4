-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.config: loading Lua config files from disk, the safe environment, and every
-- failure code (ENOENT, EISDIR, EPARSE, EINVAL) with the key path of schema violations.
local uv = require('luv')
local config = require('moonstack.core.config')

local SCHEMA = {
  type = 'table',
  fields = {
    name = 'string',
    http = {
      type = 'table',
      fields = {
        port = { type = 'integer', min = 1, max = 65535 },
        host = { type = 'string', default = '127.0.0.1' },
      },
    },
    tags = { type = 'table', items = 'string', default = {} },
  },
}

local tmpdir

local function write(name, text)
  local path = tmpdir .. '/' .. name
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
  return path
end

describe('core.config', function()
  setup(function()
    local base = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    uv.fs_mkdir(base, tonumber('755', 8))
    tmpdir = assert(uv.fs_mkdtemp(base .. '/config_spec.XXXXXX'))
  end)

  teardown(function()
    for _, name in ipairs({ 'ok.lua', 'syntax.lua', 'notable.lua', 'bad.lua', 'runtime.lua',
      'bytecode.lua', 'env.lua', 'dir.lua' }) do
      os.remove(tmpdir .. '/' .. name)
    end
    assert(uv.fs_rmdir(tmpdir))
  end)

  it('loads a file returning a table, validated, with defaults applied', function()
    local path = write('ok.lua', [[
      local base = 8000
      return {
        name = 'gw-' .. string.upper('a'),
        http = { port = base + math.floor(80.5) },
      }
    ]])
    local cfg, err = config.load(path, SCHEMA)
    assert.is_nil(err)
    assert.are.same({ name = 'gw-A', http = { port = 8080, host = '127.0.0.1' }, tags = {} }, cfg)
    -- without a schema the table comes back as the chunk built it
    assert.are.same({ name = 'gw-A', http = { port = 8080 } }, config.load(path))
  end)

  it('gives a file chunk config_dir, its own absolute directory, whatever the cwd', function()
    local path = write('dir.lua', 'return { here = config_dir }')
    local real = assert(uv.fs_realpath(tmpdir))
    assert.are.same({ here = real }, config.load(path))
    local cwd = uv.cwd()
    assert(uv.chdir(tmpdir))
    local rel = config.load('dir.lua')
    local dotted = config.load('./dir.lua')
    assert(uv.chdir(cwd))
    assert.are.same({ here = real }, rel)
    assert.are.same({ here = real }, dotted)
    -- opts.env may still set it; a string chunk has none
    assert.are.same({ here = 'x' }, config.load(path, nil, { env = { config_dir = 'x' } }))
    local t, err = config.load_string('return { here = config_dir }', 'mem')
    assert.is_nil(t)
    assert.truthy(err:find("undefined global 'config_dir'", 1, true))
  end)

  it('reports an unreadable file with its errno code', function()
    local r = { config.load(tmpdir .. '/missing.lua', SCHEMA) }
    assert.is_nil(r[1])
    assert.are.equal('ENOENT', r[3])
    assert.matches('^ENOENT: .*missing%.lua: No such file or directory$', r[2])
    r = { config.load(tmpdir, SCHEMA) }
    assert.are.same({ nil, 'EISDIR: ' .. tmpdir .. ': Is a directory', 'EISDIR' }, r)
  end)

  it('reports a syntax error with file and line', function()
    local path = write('syntax.lua', 'return {\n  a = 1,\n  b = = 2,\n}\n')
    local cfg, msg, code = config.load(path)
    assert.is_nil(cfg)
    assert.are.equal('EPARSE', code)
    assert.matches('^EPARSE: ' .. path:gsub('%p', '%%%0') .. ":3: unexpected symbol near '='$", msg)
  end)

  it('refuses bytecode', function()
    local path = write('bytecode.lua', string.dump(function() return {} end))
    assert.are.same({ nil, 'EPARSE: ' .. path .. ': binary chunks are not allowed', 'EPARSE' },
      { config.load(path) })
    assert.are.same({ nil, 'EPARSE: dump: binary chunks are not allowed', 'EPARSE' },
      { config.load_string(string.dump(function() return {} end), 'dump') })
  end)

  it('requires the chunk to return a table', function()
    local path = write('notable.lua', 'return 42\n')
    assert.are.same({ nil, 'EINVAL: ' .. path .. ': must return a table, got number', 'EINVAL' },
      { config.load(path, SCHEMA) })
  end)

  it('reports an error raised while running the chunk, with its line', function()
    local path = write('runtime.lua', 'local x = 1\nreturn { port = PROT }\n')
    local cfg, msg, code = config.load(path)
    assert.is_nil(cfg)
    assert.are.equal('EINVAL', code)
    assert.are.equal('EINVAL: ' .. path .. ":2: undefined global 'PROT'", msg)
  end)

  it('names the key path and the reason of a schema violation', function()
    local path = write('bad.lua', "return { name = 'x', http = { port = '80' }, extra = true }\n")
    local cfg, msg, code = config.load(path, SCHEMA)
    assert.is_nil(cfg)
    assert.are.equal('EINVAL', code)
    assert.are.equal('EINVAL: ' .. path .. ': config.http.port: expected integer, got string; ' ..
      'config.extra: unknown key', msg)
    local _, msg2 = config.load(path, SCHEMA, { root = 'gateway' })
    assert.matches('gateway%.http%.port: expected integer, got string', msg2)
  end)

  it('gives the chunk only the safe globals', function()
    local path = write('env.lua', [[
      local seen = {}
      for _, name in ipairs({ 'io', 'require', 'load', 'loadstring', 'dofile', 'loadfile',
        'setfenv', 'getfenv', 'debug', 'jit', 'package', 'collectgarbage', 'print', 'rawset' }) do
        seen[name] = pcall(function() return _G[name] end)
      end
      seen.dump = string.dump ~= nil
      seen.execute = os.execute ~= nil
      seen.exit = os.exit ~= nil
      return {
        seen = seen,
        home = os.getenv('MOONSTACK_SRC'),
        n = tonumber('12'),
        joined = table.concat({ 'a', 'b' }, ','),
        host = host_name,
      }
    ]])
    local cfg = assert(config.load(path, nil, { env = { host_name = 'h1' } }))
    for name, present in pairs(cfg.seen) do
      assert.is_false(present, name .. ' is visible to config chunks')
    end
    assert.are.equal(os.getenv('MOONSTACK_SRC'), cfg.home)
    assert.are.equal(12, cfg.n)
    assert.are.equal('a,b', cfg.joined)
    assert.are.equal('h1', cfg.host)
    -- the chunk's library tables are copies: changing them does not leak out
    assert(config.load_string('string.upper = nil; return {}', 'mutate'))
    assert.is_function(string.upper)
    -- globals a chunk sets stay in its own environment
    assert(config.load_string('leaked_global = 1; return {}', 'set'))
    assert.is_nil(rawget(_G, 'leaked_global'))
  end)

  it('load_string names the source in messages and misuse raises', function()
    assert.are.same({ nil, 'EINVAL: inline: must return a table, got nil', 'EINVAL' },
      { config.load_string('local a = 1', 'inline') })
    assert.has_error(function() config.load(nil) end, 'config.load: path must be a string')
    assert.has_error(function() config.load_string(1) end, 'config.load_string: src must be a string')
  end)
end)
