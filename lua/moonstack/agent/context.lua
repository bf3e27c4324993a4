-- SPDX-License-Identifier: Apache-2.0
-- The agent context: what the boot sequence (moonstack.agent.boot) hands to the API side
-- (moonstack.agent.api) — the app's identity, its keys, the TEE backend, the app's logs and
-- the boot/app state with an event emitter for state changes. Both M4 halves code against
-- the fields below; values are raw bytes unless stated (crypto.hex converts).
--
--   app_id            20 bytes                instance_id   20 bytes or ''
--   compose_hash      32 bytes (SHA-256 of the raw app-compose.json)
--   device_id         32 bytes (SHA-256(''): the guest cannot know its PPID, spec §5.5)
--   app_name          string                  app_compose_text  the raw file (string)
--   app_compose       table (decoded)         sys_config        table (decoded, or {})
--   vm_config         string (sys_config.vm_config, '' when absent)
--   os_image_hash     bytes ('' when unknown)
--   key_provider_info { name = 'kms'|'local-sgx'|'none'|'tpm', id = lowercase hex }
--   key_provider_info_json  the exact bytes measured in the `key-provider` event
--   keys  { k256_key = 32, k256_signature = 65 or '', disk_crypt_key = 32, env_crypt_key = 32
--           or '', gateway_app_id = string, ca_cert_pem = PEM (KMS root CA, or the local CA),
--           app_ca = { key = PEM, cert = PEM } (the CA that signs GetTlsKey certificates),
--           key_provider = the appkeys.json enum as decoded ({ None = {key} } ...) }
--   tee   a backend of moonstack.core.tee (get_quote, extend_rtmr, rtmrs, event_log,
--         emit_event, info); `sim` or `tdx`
--   logs  the app's log store (moonstack.agent.runner.logs) or nil before the app runs:
--           logs:list() -> { { name, status, exit_code?, started_at? } }
--           logs:read(name, { since, ['until'], tail }) -> { { time, channel, message } }
--           logs:follow(name, fn) -> subscription (:close()); fn(record), fn(nil) at the end
--           logs:text(name, { since, ['until'], tail, timestamps }) -> string
--   env   the decrypted env the app runs with (allowed keys only; { KEY = value })
--   public { sysinfo, tcbinfo, logs } booleans from app-compose public_* flags
--   state 'booting' | 'starting' | 'running' | 'exited' | 'failed' | 'stopping' | 'stopped'
--   error the message that put the context in 'failed'
--   events  an emitter: events:on(name, fn) -> unsubscribe function; events:emit(name, ...)
--           names: 'state' (new, old, info), 'step' (step name, detail), 'service' (record)
--   config  the validated agent config (moonstack.agent.config)
--   simulated  true in simulator mode (moonstack.agent.simulator.context)
-- Methods: ctx:set_state(state, info), ctx:fail(message), ctx:close() (stops the app and
-- releases the backend; idempotent), ctx:status() (a JSON-ready snapshot for the REPL).
-- Steps and states also go to the process's event bus (moonstack.core.events) as 'agent.boot'
-- { step, ...detail } and 'agent.state' { state, from, ...info } (plain values of detail/info).
local events = require('moonstack.core.events')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- The states a context goes through, in order of a normal life.
M.STATES = { 'booting', 'starting', 'running', 'exited', 'failed', 'stopping', 'stopped' }

local STATE_SET = {}
for _, s in ipairs(M.STATES) do
  STATE_SET[s] = true
end

-- ---- emitter ----

local Emitter = {}
Emitter.__index = Emitter

--- A tiny event emitter: on(name, fn) returns an unsubscribe function; emit(name, ...) calls
--- every listener of `name` (then of '*', with the name first); a listener that raises is
--- logged and the others still run.
function M.emitter()
  return setmetatable({ listeners = {} }, Emitter)
end

function Emitter:on(name, fn)
  if type(name) ~= 'string' or type(fn) ~= 'function' then
    error('emitter:on: expected a name and a function', 2)
  end
  local list = self.listeners[name] or {}
  self.listeners[name] = list
  local entry = { fn = fn }
  list[#list + 1] = entry
  return function()
    for i, e in ipairs(list) do
      if e == entry then
        table.remove(list, i)
        return true
      end
    end
    return false
  end
end

local function call_all(list, name, ...)
  if not list then
    return
  end
  -- copy: a listener may unsubscribe itself
  local snapshot = { unpack(list) }
  for _, e in ipairs(snapshot) do
    local ok, err = pcall(e.fn, ...)
    if not ok then
      log.error('event listener failed', { event = name, error = tostring(err) })
    end
  end
end

function Emitter:emit(name, ...)
  call_all(self.listeners[name], name, ...)
  call_all(self.listeners['*'], name, name, ...)
end

-- The string, number and boolean fields of `t` (nil or a table) added to `into`.
local function plain(into, t)
  if type(t) == 'table' then
    for k, v in pairs(t) do
      local vt = type(v)
      if type(k) == 'string' and into[k] == nil and (vt == 'string' or vt == 'number'
          or vt == 'boolean') then
        into[k] = v
      end
    end
  end
  return into
end

-- ---- context ----

local Context = {}
Context.__index = Context

function Context:__tostring()
  return ('agent context<%s, %s>'):format(self.app_name or '?', self.state)
end

--- Move to `state` (one of M.STATES) and emit 'state' (new, old, info).
function Context:set_state(state, info)
  if not STATE_SET[state] then
    error(('context:set_state: unknown state %s'):format(tostring(state)), 2)
  end
  local old = self.state
  if old == state then
    return
  end
  self.state = state
  self.state_changed_at = os.time()
  log.info('agent state', { state = state, from = old, info = info })
  events.publish('agent.state', plain({ state = state, from = old }, info))
  self.events:emit('state', state, old, info)
end

--- Put the context in 'failed' with `message` (kept in ctx.error).
function Context:fail(message)
  self.error = tostring(message)
  log.error('agent failed', { error = self.error })
  self:set_state('failed', { error = self.error })
end

--- Report progress of a boot step (emits 'step').
function Context:step(name, detail)
  self.steps[#self.steps + 1] = { name = name, detail = detail, time = os.time() }
  events.publish('agent.boot', plain({ step = tostring(name) }, detail))
  self.events:emit('step', name, detail)
end

--- Stop the app (runner) and release the TEE backend. Idempotent; call inside a task to let
--- the runner wait for its processes (SIGTERM, then SIGKILL after the grace period).
function Context:close()
  if self.closed then
    return
  end
  self.closed = true
  if self.app then
    self:set_state('stopping')
    local ok, err = pcall(self.app.stop, self.app)
    if not ok then
      log.error('stopping the app failed', { error = tostring(err) })
    end
  end
  if self.tee and self.tee.close and self.own_tee then
    self.tee:close()
  end
  if self.state ~= 'failed' then
    self:set_state('stopped')
  end
end

local function hex(b)
  return (tostring(b or ''):gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end

--- A JSON-ready snapshot (no key material).
function Context:status()
  return {
    state = self.state, error = self.error, app_name = self.app_name, app_id = hex(self.app_id),
    instance_id = hex(self.instance_id), compose_hash = hex(self.compose_hash),
    os_image_hash = hex(self.os_image_hash), key_provider_info = self.key_provider_info,
    simulated = self.simulated or false, tee = self.tee and self.tee.name or nil,
    services = self.logs and self.logs:list() or {}, public = self.public,
  }
end

--- A new context in state 'booting' with the given fields.
function M.new(fields)
  local ctx = setmetatable({}, Context)
  for k, v in pairs(fields or {}) do
    ctx[k] = v
  end
  ctx.state = 'booting'
  ctx.events = ctx.events or M.emitter()
  ctx.steps = {}
  ctx.public = ctx.public or { sysinfo = false, tcbinfo = true, logs = false }
  return ctx
end

--- Whether `v` is a context.
function M.is(v)
  return getmetatable(v) == Context
end

return M
