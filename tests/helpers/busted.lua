-- SPDX-License-Identifier: Apache-2.0
-- Runs busted inside the moonstack binary (`moonstack run tests/helpers/busted.lua SPEC...`),
-- so specs get the real natives and the real loop, as Neovim runs its specs with `nvim -l`.
local src = os.getenv('MOONSTACK_SRC') or '.'
-- appended, not prepended: this file is itself named busted.lua and busted requires 'busted'
package.path = package.path .. ';' .. src .. '/tests/helpers/?.lua'
require('busted.runner')({ standalone = false })
-- reached only when every spec passed (busted raises on failures): no temporary directory is
-- left behind then; a failing run keeps them to look at
require('fixtures').cleanup()
