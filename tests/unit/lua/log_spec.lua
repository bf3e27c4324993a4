-- SPDX-License-Identifier: Apache-2.0
-- moonstack.core.log: the text and JSON line formats, level filtering and structured fields,
-- checked on the real stderr of a `moonstack -e CODE` subprocess.
local cjson = require('cjson')
local log = require('moonstack.core.log')

local BIN = assert(os.getenv('MOONSTACK'), 'MOONSTACK is not set')

local function shell_quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

-- Run `moonstack [flags] -e code` with extra environment; return its stderr lines.
local function stderr_lines(code, flags, env)
  local prefix = ''
  for k, v in pairs(env or {}) do
    prefix = prefix .. k .. '=' .. shell_quote(v) .. ' '
  end
  local lua_dir = os.getenv('MOONSTACK_LUA_DIR')
  if lua_dir then
    prefix = prefix .. 'MOONSTACK_LUA_DIR=' .. shell_quote(lua_dir) .. ' '
  end
  local cmd = ('env -u MOONSTACK_LOG_JSON -u MOONSTACK_LOG_LEVEL %s%s %s -e %s 2>&1 >/dev/null')
    :format(prefix, shell_quote(BIN), flags or '', shell_quote(code))
  local p = assert(io.popen(cmd, 'r'))
  local lines = {}
  for line in p:lines() do
    lines[#lines + 1] = line
  end
  p:close()
  return lines
end

local TS = '%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ'

local EMIT_ALL = [[
  local log = require('moonstack.core.log')
  log.debug('d-msg')
  log.info('i-msg')
  log.warn('w-msg')
  log.error('e-msg')
]]

describe('core.log', function()
  it('writes text lines: time, level, component, message, fields as JSON', function()
    local lines = stderr_lines([[
      local log = require('moonstack.core.log')
      log.info('hello world', { port = 8080 })
      log.new('http').warn('slow request')
    ]])
    assert.are.equal(2, #lines, table.concat(lines, '\n'))
    assert.matches('^' .. TS .. ' info  %[moonstack%] hello world {"port":8080}$', lines[1])
    assert.matches('^' .. TS .. ' warn  %[http%] slow request$', lines[2])
  end)

  it('writes JSON lines with the fields merged into the record (--log-json and env)', function()
    local code = [[
      local log = require('moonstack.core.log')
      log.new('kms').error('bad "quote"\nsecond line', { app = 'a1', n = 3, ok = false,
        list = { 1, 2 } })
      log.info('no fields')
    ]]
    for _, variant in ipairs({ { '--log-json' }, { '', { MOONSTACK_LOG_JSON = '1' } } }) do
      local lines = stderr_lines(code, variant[1], variant[2])
      assert.are.equal(2, #lines, table.concat(lines, '\n'))
      local rec = cjson.decode(lines[1])
      assert.matches('^' .. TS .. '$', rec.ts)
      rec.ts = nil
      assert.are.same({ level = 'error', component = 'kms', msg = 'bad "quote"\nsecond line', app = 'a1',
        n = 3, ok = false, list = { 1, 2 } }, rec)
      local plain = cjson.decode(lines[2])
      plain.ts = nil
      assert.are.same({ level = 'info', component = 'moonstack', msg = 'no fields' }, plain)
    end
  end)

  it('drops records below the level (flag, env, or set_level at run time)', function()
    local function levels(lines)
      local out = {}
      for i, line in ipairs(lines) do
        out[i] = cjson.decode(line).msg
      end
      return out
    end
    assert.are.same({ 'i-msg', 'w-msg', 'e-msg' }, levels(stderr_lines(EMIT_ALL, '--log-json')))
    assert.are.same({ 'd-msg', 'i-msg', 'w-msg', 'e-msg' },
      levels(stderr_lines(EMIT_ALL, '--log-json --log-level debug')))
    assert.are.same({ 'w-msg', 'e-msg' },
      levels(stderr_lines(EMIT_ALL, '--log-json', { MOONSTACK_LOG_LEVEL = 'warn' })))
    assert.are.same({ 'e-msg' }, levels(stderr_lines(
      "require('moonstack.core.log').set_level('error')\n" .. EMIT_ALL, '--log-json')))
  end)

  it('renders values JSON cannot hold, and survives cyclic tables', function()
    local lines = stderr_lines([[
      local log = require('moonstack.core.log')
      local cyc = {}
      cyc.self = cyc
      log.info('odd', { fn = print, cyc = cyc, s = 'x' })
    ]], '--log-json')
    assert.are.equal(1, #lines, table.concat(lines, '\n'))
    local rec = cjson.decode(lines[1])
    assert.matches('^function', rec.fn)
    assert.matches('^table', rec.cyc)
    assert.are.equal('x', rec.s)
  end)

  it('switches format at run time with set_json', function()
    local lines = stderr_lines([[
      local log = require('moonstack.core.log')
      log.info('as text')
      log.set_json(true)
      log.info('as json')
    ]])
    assert.matches('^' .. TS .. ' info  %[moonstack%] as text$', lines[1])
    assert.are.equal('as json', cjson.decode(lines[2]).msg)
  end)

  it('answers level queries and raises on unknown levels', function()
    local before = log.level()
    log.set_level('warn')
    assert.are.equal('warn', log.level())
    assert.is_false(log.enabled('info'))
    assert.is_true(log.enabled('error'))
    assert.is_false(log.enabled('loud'))
    log.set_level(before)
    assert.has_error(function() log.set_level('loud') end, "log.set_level: unknown level 'loud'")
    assert.has_error(function() log.emit('loud', 'x', 'y') end, "log.emit: unknown level 'loud'")
  end)
end)
