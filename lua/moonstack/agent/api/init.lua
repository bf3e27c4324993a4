-- SPDX-License-Identifier: Apache-2.0
-- The guest agent's API listeners over one agent context (moonstack.agent.context):
--   dstack  unix socket, DstackGuest at /<Method> (also /prpc/<Method>, /prpc/DstackGuest.<M>)
--   tappd   unix socket, Tappd at /prpc/Tappd.<Method> and /prpc/<Method>; the DstackGuest
--           methods also answer at /<Method> there (moonstack extension: the JS TappdClient
--           inherits getKey, info, ... and posts them to its socket)
--   external TCP (default 0.0.0.0:8090), Worker at /prpc/Worker.<Method>, the dashboard at /,
--           /metrics and /logs/<name> as the app-compose public_* flags allow (worker.lua)
--   guest   the guest API the VMM calls (GuestApi at /api/<Method> and /prpc/<Method>:
--           moonstack.agent.api.guest), off unless configured
-- Every response carries `Server: <ident>`; the external one also `X-App-Version`. Unix sockets
-- default to mode 0666: app containers running as any uid must connect (dstack's are 0777), and
-- nothing else runs in a CVM. Request bodies are limited to 10 MiB (413).
local server = require('moonstack.http.server')
local task = require('moonstack.core.task')
local log = require('moonstack.core.log').new('agent.api')
local prpc = require('moonstack.core.prpc')
local info_lib = require('moonstack.agent.api.info')
local worker = require('moonstack.agent.api.worker')

local M = {}

--- Default mode of the API's unix sockets (0666).
M.SOCKET_MODE = 438
--- Request body limit (bytes), as upstream's per-method limit.
M.MAX_BODY = 10 * 1024 * 1024
--- Default public listener.
M.EXTERNAL = { host = '0.0.0.0', port = 8090 }

local Api = {}
Api.__index = Api

local function listen_opts(l, mode)
  if l.unix then
    return { unix = l.unix, mode = l.mode or mode }
  end
  return { host = l.host or '0.0.0.0', port = l.port or 8090 }
end

-- The listeners' pRPC mounts over the method tables `svc` (and the Worker's fallback).
local function mounts_of(self, svc)
  return {
    dstack = { mounts = {
      { prefix = '/prpc/', service = 'DstackGuest', methods = svc.dstack },
      { prefix = '/', service = 'DstackGuest', methods = svc.dstack } } },
    tappd = { mounts = {
      { prefix = '/prpc/', service = 'Tappd', methods = svc.tappd },
      { prefix = '/', service = 'DstackGuest', methods = svc.dstack } } },
    external = { mounts = { { prefix = '/prpc/', service = 'Worker', methods = svc.worker } },
      fallback = function(req) return worker.route(self, req) end },
    guest = { mounts = {
      { prefix = '/api/', service = 'GuestApi', methods = svc.guest },
      { prefix = '/prpc/', service = 'GuestApi', methods = svc.guest } } },
  }
end

-- Build the method tables and the listeners' handlers from the agent's code as it is now (at
-- start, and again after a code swap); the state behind the methods (self.state) is kept.
function Api:_bind()
  local methods = require('moonstack.agent.api.methods')
  self.state = self.state or methods.state(self.ctx, self.opts)
  self.svc = methods.build(self.ctx, self.opts, self.state)
  self.svc.guest = require('moonstack.agent.api.guest').methods(self.ctx, self.svc.dstack.Info,
    self.opts.on_shutdown, self.state.evidence)
  self.handlers = {}
  for name, l in pairs(mounts_of(self, self.svc)) do
    self.handlers[name] = prpc.handler(l.mounts, l.fallback)
  end
end

--- Adopt a swapped copy of the API's code (moonstack.daemon.code): this module's methods
--- for `api`, method tables and handlers rebuilt; requests in flight finish on the old code.
function M.rebind(api)
  setmetatable(api, Api)
  api:_bind()
end

--- Start the listeners. opts:
---   dstack   = { unix = PATH, mode = 438 } or false     (DstackGuest)
---   tappd    = { unix = PATH, mode = 438 } or false     (Tappd)
---   external = { host =, port = } or { unix = } or false (Worker + dashboard; default :8090)
---   guest    = { unix = PATH } or { host =, port = } or false/nil (GuestApi; off by default)
---   on_shutdown = fn() the guest API's Shutdown calls (default: SIGTERM to this process)
---   ident (Server header), emit_event (default true), dmi_dir, gpu_file, socket_mode
--- Returns the Api object (close(), addresses(), svc) or nil, err, code (nothing left open).
function M.start(ctx, opts)
  assert(type(ctx) == 'table' and ctx.tee, 'agent.api.start: ctx with a tee backend required')
  opts = opts or {}
  local self = setmetatable({ ctx = ctx, servers = {}, opts = opts }, Api)
  self:_bind()
  local ident = opts.ident or info_lib.IDENT
  local mode = opts.socket_mode or M.SOCKET_MODE
  local listeners = {
    { name = 'dstack', cfg = opts.dstack },
    { name = 'tappd', cfg = opts.tappd },
    { name = 'external', cfg = opts.external == nil and M.EXTERNAL or opts.external,
      headers = { ['x-app-version'] = ('v%s (%s)'):format(info_lib.VERSION, info_lib.REV) } },
    { name = 'guest', cfg = opts.guest, mode = 384 },
  }
  for _, l in ipairs(listeners) do
    if l.cfg then
      local headers = { server = ident }
      for k, v in pairs(l.headers or {}) do
        headers[k] = v
      end
      local s = server.new({ name = 'agent-' .. l.name, listen = listen_opts(l.cfg, l.mode or mode),
        max_body = opts.max_body or M.MAX_BODY, headers = headers })
      local name = l.name
      s:route('*', '/*', function(req) return self.handlers[name](req) end)
      local ok, err, code = s:listen()
      if not ok then
        self:close()
        return nil, ('%s listener: %s'):format(l.name, err), code
      end
      self.servers[l.name] = s
    end
  end
  local st = self.state
  self.demo_task = task.spawn_named('agent:demo-cert', function()
    local pem, err = st.certs:demo_cert()
    if pem then
      st.info.app_cert = pem
    else
      log.warn('cannot issue the demo certificate (Info.app_cert stays empty)', { error = err })
    end
  end)
  return self
end

--- Listener addresses by name ("unix:/path" or "host:port").
function Api:addresses()
  local out = {}
  for name, s in pairs(self.servers) do
    out[name] = s:address()
  end
  return out
end

--- The TCP port of the external listener (useful with port 0), or nil.
function Api:external_port()
  local s = self.servers.external
  return s and s:port()
end

--- Forget cached answers (GetKey results, the event log, AppInfo) after the keys or the
--- measurements changed outside the API.
function Api:invalidate()
  prpc.clear_cache(self.svc.dstack)
  prpc.clear_cache(self.svc.tappd)
  self.svc.evidence:invalidate()
end

--- Close every listener (idempotent).
function Api:close()
  for name, s in pairs(self.servers) do
    s:close()
    self.servers[name] = nil
  end
end

return M
