-- SPDX-License-Identifier: Apache-2.0
-- REPL evaluation (Knot Resolver's eval_cmd): a line is compiled as an expression first
-- (`return <line>`), then as a statement; it runs in a protected call with a traceback, in
-- an environment layered over the daemon's globals, with an optional CPU-time limit and
-- interrupt check (moonstack.control.guard). Session:start runs it in a task, so a chunk may
-- wait on I/O (a helper asking a guest, QMP, a policy worker) without blocking the loop.
local guard = require('moonstack.control.guard')
local task = require('moonstack.core.task')

local M = {}

local CHUNKNAME = '=repl'

--- Compile `source` as an expression, then as a statement. Returns the function, or
--- nil, message, incomplete (true when the chunk only lacks its end: `'<eof>'` errors).
function M.compile(source, env, chunkname)
  if type(source) ~= 'string' then
    error('eval.compile: source must be a string', 2)
  end
  chunkname = chunkname or CHUNKNAME
  -- `return f(x)` would be a tail call that drops the chunk's frame (and the position in
  -- error messages), so the expression's values go through a local identity function.
  local fn = loadstring('local function __repl_id(...) return ... end return __repl_id(' ..
    source .. '\n)', chunkname)
  if not fn then
    local err
    fn, err = loadstring(source, chunkname)
    if not fn then
      return nil, err, err:sub(-7) == "'<eof>'"
    end
  end
  if env then
    setfenv(fn, env)
  end
  return fn
end

-- Text of an error value: strings as is, error objects through __tostring.
local function error_text(e)
  if type(e) == 'string' then
    return e
  end
  local ok, s = pcall(tostring, e)
  return ok and tostring(s) or ('(error object is a %s value)'):format(type(e))
end

-- Drop the traceback's frames below the evaluated chunk (xpcall and this module).
local function trim_traceback(tb)
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  if cut then
    tb = tb:sub(1, cut - 1)
  end
  -- and the time-limit hook's own frames
  return (tb:gsub("\n%s*%[C%]: in function 'error'\n([^\n]*control/guard%.lua:[^\n]*)", '\n%1')
    :gsub('\n[^\n]*control/eval%.lua:[^\n]*', ''):gsub('\n[^\n]*control/guard%.lua:[^\n]*', ''))
end

-- The capture buffers of the evaluations in progress (lists of strings), by coroutine: an
-- evaluation may wait while another one runs.
local MAIN = {}
local outputs = setmetatable({}, { __mode = 'k' })
local function current_output()
  return outputs[coroutine.running() or MAIN]
end

local function pack(...)
  return { n = select('#', ...), ... }
end

--- Call `fn` in a protected call. opts.timeout (seconds of CPU time, nil/0 = none) stops a
--- runaway chunk, and opts.interrupted (function() -> true once the client asked to stop)
--- interrupts it: it is run with the JIT off (so the count hook fires) under the hook of
--- moonstack.control.guard. Returns true, values (with .n), output; or false, error text
--- (with traceback), output. `output` is what the chunk printed.
function M.call(fn, opts)
  if type(fn) ~= 'function' then
    error('eval.call: fn must be a function', 2)
  end
  opts = opts or {}
  local co = coroutine.running() or MAIN
  local old_output = outputs[co]
  outputs[co] = {}
  local entry
  local function handler(e)
    if entry then
      entry.in_handler = true
    end
    return trim_traceback(debug.traceback(error_text(e), 2))
  end
  entry = guard.enter({ timeout = opts.timeout, interrupted = opts.interrupted })
  if entry then
    jit.off(fn, true)
  end
  local res = pack(xpcall(fn, handler))
  guard.leave(entry)
  local printed = table.concat(outputs[co])
  outputs[co] = old_output
  if not res[1] then
    return false, res[2], printed
  end
  local values = { n = res.n - 1 }
  for i = 2, res.n do
    values[i - 1] = res[i]
  end
  return true, values, printed
end

-- `print` for REPL chunks: captured into the reply while an evaluation runs.
local function repl_print(...)
  local output = current_output()
  if not output then
    return print(...)
  end
  local n = select('#', ...)
  local parts = {}
  for i = 1, n do
    parts[i] = tostring((select(i, ...)))
  end
  output[#output + 1] = table.concat(parts, '\t') .. '\n'
end

-- `io` for REPL chunks: io.write and io.stdout:write are captured like print (they would go to
-- the daemon's stdout, which nobody at the REPL sees); everything else is the real io.
local function repl_write(...)
  local output = current_output()
  if not output then
    return io.write(...)
  end
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    if type(v) ~= 'string' and type(v) ~= 'number' then
      error(("bad argument #%d to 'write' (string expected, got %s)"):format(i, type(v)), 2)
    end
    output[#output + 1] = tostring(v)
  end
end
local repl_stdout = setmetatable({
  write = function(_, ...)
    repl_write(...)
  end,
}, { __index = function(_, k)
  local v = io.stdout[k]
  return type(v) == 'function' and function(_, ...) return v(io.stdout, ...) end or v
end })
local repl_io = setmetatable({ write = repl_write, stdout = repl_stdout }, { __index = io })

local layers_of = setmetatable({}, { __mode = 'k' })

--- An evaluation environment: assignments stay in it (the daemon's _G is not touched);
--- reads fall back to `print` and `io.write` (captured), then `extra` (the daemon's helpers), then
--- `globals` (default _G). `_G` in a chunk is the daemon's real global table.
function M.new_env(extra, globals)
  if extra ~= nil and type(extra) ~= 'table' then
    error('eval.new_env: extra must be a table', 2)
  end
  globals = globals or _G
  local builtins = { print = repl_print, io = repl_io }
  local env = setmetatable({}, {
    __index = function(_, k)
      local v = builtins[k]
      if v ~= nil then
        return v
      end
      if extra then
        v = extra[k]
        if v ~= nil then
          return v
        end
      end
      return globals[k]
    end,
  })
  layers_of[env] = { env, builtins, extra or {}, globals }
  return env
end

--- The tables `env` (from new_env) reads names from, in order: its own assignments, the
--- captured builtins, the daemon's helpers, the globals (for completion).
function M.layers(env)
  return layers_of[env] or { env }
end

local Session = {}
Session.__index = Session

--- A session: one client's input state (a pending multi-line chunk) over a shared env.
--- opts: env (from new_env; a fresh one by default), timeout (seconds, see call()).
function M.session(opts)
  opts = opts or {}
  return setmetatable({ env = opts.env or M.new_env(), timeout = opts.timeout, pending = nil },
    Session)
end

-- Compile `line` (after a pending chunk): the function, or nil and the result to answer.
function Session:_compile(line, multiline)
  local source = line
  if self.pending then
    source = self.pending .. '\n' .. line
  end
  self.pending = nil
  local fn, err, incomplete = M.compile(source, self.env)
  if not fn then
    if incomplete and multiline then
      self.pending = source
      return nil, { status = 'more' }
    end
    return nil, { status = 'error', error = err, output = '' }
  end
  return fn
end

local function result(ok, res, printed)
  if ok then
    return { status = 'ok', values = res, output = printed }
  end
  return { status = 'error', error = res, output = printed }
end

--- Evaluate one line, on the calling coroutine (a chunk that waits needs to be in a task:
--- see start()). With `multiline`, an incomplete chunk is kept and the result is
--- { status = 'more' }; the next line continues it. Otherwise the result is
--- { status = 'ok', values = {..., n = N}, output = text } or
--- { status = 'error', error = text, output = text }.
function Session:eval(line, multiline)
  local fn, r = self:_compile(line, multiline)
  if not fn then
    return r
  end
  return result(M.call(fn, { timeout = self.timeout }))
end

--- Evaluate one line in a task of its own, so that the chunk may wait (on a helper's I/O);
--- `done(result)` gets the result (as eval's) once it is known: at once when the chunk does
--- not wait. opts.interrupted: see call(). Returns the task while the chunk still runs (its
--- :cancel() interrupts a chunk that waits), else nil.
function Session:start(line, multiline, done, opts)
  local fn, r = self:_compile(line, multiline)
  if not fn then
    done(r)
    return nil
  end
  local finished = false
  local t = task.spawn_named('control:eval', function()
    local res = result(M.call(fn, { timeout = self.timeout,
      interrupted = opts and opts.interrupted }))
    finished = true
    done(res)
  end)
  if finished then
    return nil
  end
  return t
end

--- Drop a pending multi-line chunk. Returns true if there was one.
function Session:reset()
  local had = self.pending ~= nil
  self.pending = nil
  return had
end

return M
