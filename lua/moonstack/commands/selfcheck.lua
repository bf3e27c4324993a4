-- SPDX-License-Identifier: Apache-2.0
-- `moonstack selfcheck`: a short end-to-end check of the runtime on this machine: the loop and
-- tasks, HTTP over TCP and a unix socket (server and client), the control socket, and the
-- policy sandbox. `make run` runs it until the full local stack exists.
local args = require('moonstack.core.args')
local task = require('moonstack.core.task')
local uv = require('luv')

local spec = {
  usage = 'moonstack selfcheck [--json]',
  summary = 'check the runtime end to end on this machine (loop, HTTP, control socket, policy VM)',
  options = { { '--json', help = 'print the results as one JSON object' } },
}

local function temp_dir()
  local base = os.getenv('TMPDIR') or '/tmp'
  return assert(uv.fs_mkdtemp(base .. '/moonstack-selfcheck.XXXXXX'))
end

local function remove_dir(dir)
  local req = uv.fs_scandir(dir)
  while req do
    local name = uv.fs_scandir_next(req)
    if not name then
      break
    end
    uv.fs_unlink(dir .. '/' .. name)
  end
  uv.fs_rmdir(dir)
end

-- Each check returns a short detail string, or raises.
local function checks(dir)
  local server = require('moonstack.http.server')
  local client = require('moonstack.http.client')
  local list = {}
  local srvs = {}
  local function add(name, fn)
    list[#list + 1] = { name = name, fn = fn }
  end

  add('loop and tasks', function()
    local t0 = uv.hrtime()
    task.sleep(20)
    local ms = (uv.hrtime() - t0) / 1e6
    assert(ms >= 19, 'task.sleep(20) returned after ' .. ms .. ' ms')
    return ('task.sleep(20) took %.1f ms'):format(ms)
  end)

  add('HTTP over TCP', function()
    local s = server.new({ name = 'selfcheck-tcp', listen = { host = '127.0.0.1', port = 0 } })
    s:post('/echo', function(req) return 200, assert(req:json()) end)
    assert(s:listen())
    srvs[#srvs + 1] = s
    local v, resp = client.post_json('http://127.0.0.1:' .. s:port() .. '/echo', { n = 42 })
    assert(v and v.n == 42, 'echo failed: ' .. tostring(resp))
    return 'POST /echo on ' .. s:address()
  end)

  add('HTTP over a unix socket (0600)', function()
    local path = dir .. '/api.sock'
    local s = server.new({ name = 'selfcheck-unix', listen = { unix = path } })
    s:get('/ping', function() return 200, { pong = true } end)
    assert(s:listen())
    srvs[#srvs + 1] = s
    local mode = uv.fs_stat(path).mode % 512
    assert(mode == 384, ('socket mode is %o, want 600'):format(mode))
    local resp = assert(client.request({ unix = path, path = '/ping' }))
    assert(resp.status == 200 and resp.json().pong == true, 'bad answer ' .. resp.body)
    return 'GET /ping on ' .. s:address()
  end)

  add('control socket (REPL)', function()
    local control = require('moonstack.control')
    local path = dir .. '/control.sock'
    local srv = assert(control.listen(path, {}))
    local pipe = uv.new_pipe(false)
    local reply = task.await(function(resume)
      local buf = ''
      pipe:connect(path, function(err)
        if err then
          return resume(nil, err)
        end
        pipe:write('\\json\n1+1\n')
        pipe:read_start(function(rerr, data)
          if rerr or not data then
            return resume(nil, rerr or 'closed')
          end
          buf = buf .. data
          local line = buf:match('(%b{})%s*$')
          if line and line:find('"results"', 1, true) then
            resume(line)
          end
        end)
      end)
    end, { timeout = 5000 })
    pipe:close()
    srv:close()
    assert(reply and reply:find('2', 1, true), 'no answer: ' .. tostring(reply))
    return '1+1 evaluated over ' .. path
  end)

  add('policy sandbox', function()
    local host = require('moonstack.policy.host').new({ name = 'selfcheck' })
    assert(host:load_string([[
      return { name = 'selfcheck', version = '1',
        on_auth = function(info) return { allow = info.app == 'ok', reason = 'by name' } end,
        tests = { { hook = 'on_auth', input = { app = 'ok' }, expect = { allow = true } } } }
    ]], '=selfcheck'))
    assert(host:decide('on_auth', { app = 'ok' }).allow == true, 'policy did not allow')
    local d = host:decide('on_auth', { app = 'nope' })
    assert(d.allow == false, 'policy did not deny')
    host:close()
    return 'allow/deny decided in a policy worker (memory-capped VM in its own process)'
  end)

  return list, srvs
end

local function run(opts)
  local dir = temp_dir()
  local list, srvs = checks(dir)
  local results, failed = {}, 0
  for _, c in ipairs(list) do
    local t0 = uv.hrtime()
    local ok, detail = pcall(c.fn)
    local ms = (uv.hrtime() - t0) / 1e6
    if not ok then
      failed = failed + 1
    end
    results[#results + 1] = { check = c.name, ok = ok, detail = tostring(detail), ms = ms }
    if not opts.json then
      io.stdout:write(('%s %-32s %7.1f ms  %s\n'):format(ok and 'ok  ' or 'FAIL', c.name, ms,
        tostring(detail)))
    end
  end
  for _, s in ipairs(srvs) do
    s:close()
  end
  task.sleep(10)
  remove_dir(dir)
  if opts.json then
    io.stdout:write(require('cjson').encode({ ok = failed == 0, checks = results }), '\n')
  else
    io.stdout:write(('%d passed, %d failed\n'):format(#results - failed, failed))
  end
  require('moonstack.native.runtime').set_exit_code(failed == 0 and 0 or 1)
end

return {
  name = 'selfcheck',
  summary = spec.summary,
  run = function(argv)
    local opts, code = args.parse_command('moonstack selfcheck', spec, argv)
    if not opts then
      return code
    end
    task.spawn(run, opts)
    return nil
  end,
}
