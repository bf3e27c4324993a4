-- SPDX-License-Identifier: Apache-2.0
-- Test helper: where the shared test vectors are, reading them, temporary directories and free
-- loopback ports.
local uv = require('luv')

local M = {}

--- The shared vectors directory: $MOONSTACK_VECTORS, else $MOONSTACK_SRC/../shared/vectors.
function M.vectors_dir()
  local dir = os.getenv('MOONSTACK_VECTORS')
  if not dir or dir == '' then
    dir = (os.getenv('MOONSTACK_SRC') or '.') .. '/../shared/vectors'
  end
  return dir
end

--- Path of the vector `rel` (e.g. 'dcap-qvl/tdx_quote'); raises if it is missing.
function M.vector(rel)
  local path = M.vectors_dir() .. '/' .. rel
  assert(uv.fs_stat(path), 'test vector missing (set MOONSTACK_VECTORS): ' .. path)
  return path
end

--- The whole content of a file (binary).
function M.read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

--- The content of the vector `rel`.
function M.read_vector(rel)
  return M.read(M.vector(rel))
end

--- A new temporary directory under $MOONSTACK_TEST_TMP (or /tmp), named PREFIX-XXXXXX. With
--- `short`, it stays short enough for unix socket paths (107 bytes at most).
-- The directories tmpdir() made, removed by cleanup(). Kept in the registry: busted insulates
-- each spec file (its modules are loaded afresh), and the list must outlive that.
local function made()
  local reg = debug.getregistry()
  reg.moonstack_test_tmpdirs = reg.moonstack_test_tmpdirs or {}
  return reg.moonstack_test_tmpdirs
end

function M.tmpdir(prefix, short)
  local base = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
  os.execute(('mkdir -p %q'):format(base))
  if short and #base > 60 then
    base = '/tmp'
  end
  local dir = assert(uv.fs_mkdtemp(base .. '/' .. (prefix or 'test') .. '-XXXXXX'))
  local list = made()
  list[#list + 1] = dir
  return dir
end

--- Remove every directory tmpdir() made (the spec run passed: nothing to look at).
function M.cleanup()
  for _, dir in ipairs(made()) do
    os.execute(('rm -rf %q'):format(dir))
  end
  debug.getregistry().moonstack_test_tmpdirs = {}
end

--- A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
function M.free_port()
  local s = uv.new_tcp()
  assert(s:bind('127.0.0.1', 0))
  local port = s:getsockname().port
  s:close()
  return port
end

return M
