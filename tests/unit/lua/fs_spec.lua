-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.fs: reading with the failure contract, atomic 0600 writes, mkdir -p.
local uv = require('luv')
local fs = require('moonstack.core.fs')
local fixtures = require('fixtures')

describe('moonstack.core.fs', function()
  local dir
  before_each(function()
    dir = fixtures.tmpdir('fs')
  end)
  after_each(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  it('reads a file whole, and names why it cannot', function()
    assert.is_true(fs.write_atomic(dir .. '/a', 'hello\0world'))
    assert.are.equal('hello\0world', fs.read_file(dir .. '/a'))
    local v, msg, code = fs.read_file(dir .. '/missing')
    assert.is_nil(v)
    assert.are.equal('ENOENT', code)
    assert.matches('^ENOENT: .*missing', msg)
    v, msg, code = fs.read_file(dir)
    assert.is_nil(v)
    assert.are.equal('EISDIR', code)
    assert.matches('^EISDIR: ', msg)
    assert.has_error(function() fs.read_file(42) end, 'fs.read_file: path must be a string')
  end)

  it('refuses files over max_bytes and accepts one exactly at it', function()
    assert.is_true(fs.write_atomic(dir .. '/b', ('x'):rep(10)))
    assert.are.equal(('x'):rep(10), fs.read_file(dir .. '/b', 10))
    local v, msg, code = fs.read_file(dir .. '/b', 9)
    assert.is_nil(v)
    assert.are.equal('ETOOBIG', code)
    assert.matches('larger than 9 bytes', msg)
  end)

  it('writes atomically with mode 0600 by default and leaves no temporary file', function()
    local path = dir .. '/secret'
    assert.is_true(fs.write_atomic(path, 'v1'))
    assert.is_true(fs.write_atomic(path, 'v2'))
    assert.are.equal('v2', fs.read_file(path))
    assert.are.equal(384, uv.fs_stat(path).mode % 512)
    assert.is_true(fs.write_atomic(dir .. '/public', 'x', 420))
    assert.are.equal(420, uv.fs_stat(dir .. '/public').mode % 512)
    local names, req = {}, uv.fs_scandir(dir)
    while true do
      local name = uv.fs_scandir_next(req)
      if not name then
        break
      end
      names[#names + 1] = name
    end
    table.sort(names)
    assert.are.same({ 'public', 'secret' }, names)
  end)

  it('fails to write into a missing directory without leaving anything', function()
    local ok, msg, code = fs.write_atomic(dir .. '/no/such/file', 'x')
    assert.is_nil(ok)
    assert.are.equal('ENOENT', code)
    assert.is_string(msg)
  end)

  it('creates nested directories with mode 0700, and accepts existing ones', function()
    assert.is_true(fs.mkdir_p(dir .. '/a/b/c'))
    assert.is_true(fs.mkdir_p(dir .. '/a/b/c'))
    assert.are.equal(448, uv.fs_stat(dir .. '/a/b/c').mode % 512)
    assert.is_true(fs.write_atomic(dir .. '/file', 'x'))
    local ok, _, code = fs.mkdir_p(dir .. '/file/sub')
    assert.is_nil(ok)
    assert.are.equal('ENOTDIR', code)
  end)
end)
