-- Metadata for moonstack's pure-Lua modules (lua/moonstack). The modules are compiled into the
-- moonstack binary and need its natives (moonstack.native.*); this rockspec documents them and
-- the development dependencies. Builds and CI use Debian's packages (see README.md).
rockspec_format = '3.0'
package = 'moonstack'
version = 'scm-1'
source = { url = 'git+https://example.invalid/moonstack.git' }
description = {
  summary = 'Confidential computing on Intel TDX, dstack-compatible: the Lua orchestration layer',
  license = 'Apache-2.0',
}
dependencies = { 'lua == 5.1' }
test_dependencies = { 'busted', 'luassert', 'luacheck' }
build = {
  type = 'builtin',
  modules = {},
  copy_directories = { 'lua' },
}
