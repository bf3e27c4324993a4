-- luacheck configuration: LuaJIT, no globals but `arg` (set by `moonstack run`).
std = 'luajit'
max_line_length = 110
read_globals = { 'arg' }
globals = {}
exclude_files = { 'build*/**', '**/node_modules/**' }
files['tests/**/*_spec.lua'] = { std = '+busted' }
files['tests/helpers/busted.lua'] = { std = '+busted' }
-- config files see config_dir (moonstack.core.config: the file's own directory)
files['examples/configs/*.lua'] = { read_globals = { 'config_dir' } }
