-- SPDX-License-Identifier: Apache-2.0
-- The dashboard's websocket (`/dashboard/ws`): the daemon's own part (moonstack.ui.feed) and,
-- on the hub (the VMM), the parts of other daemons read by polling their `/dashboard/feed`
-- (functions the service passes in, over its client modules; ~every 500 ms from start() to
-- close(), so a browser's first snapshot holds every part that answers). Messages to the browser:
--   {"type":"snapshot","parts":{P:{...},...},"seq":{P:N,...}}   first, and again for a part
--        whose events were lost or that came back after being unreachable
--   {"type":"event","part":P,"seq":N,"topic":T,"time":t,"data":{...}}
--   {"type":"part_down","part":P,"error":"..."}                 the hub cannot reach P
--   {"type":"error","error":"..."}                               a message it did not understand
-- Messages from the browser are JSON objects with a `type` the service handles (the VMM:
-- subscribe_logs); each client has cleanups run when it goes. A client that does not read
-- (16 MiB queued) is closed.
local log = require('moonstack.core.log').new('dashboard')
local task = require('moonstack.core.task')
local wire = require('moonstack.ui.wire')

local M = {}

--- Poll interval of remote parts, in milliseconds.
M.POLL_MS = 500
--- Events of a remote part kept since its last snapshot (replayed to a new browser).
M.MAX_PENDING = 500

local Hub = {}
Hub.__index = Hub

local Client = {}
Client.__index = Client

--- Send a message (a table) to this browser. Returns true or nil.
function Client:send(msg)
  if self.closed then
    return nil
  end
  local ok, err, code = self.ws:send(wire.encode(msg))
  if not ok and code == 'ENOBUFS' then
    log.warn('dashboard client does not read: closing it', { id = self.id })
    self.ws:close(1008, 'too slow')
    self.closed = true
  end
  return ok, err
end

--- Run fn() when this browser goes (or at once if it is gone).
function Client:on_close(fn)
  if self.closed then
    return fn()
  end
  self.cleanups[#self.cleanups + 1] = fn
end

--- A hub. opts = { part (this daemon's part name), feed (moonstack.ui.feed), remotes = { {
--- part, feed = fn(since) -> answer | nil, err, action = fn(op, body_text) -> status, obj }
--- }?, messages = { [type] = fn(client, msg) }?, poll_ms? }.
function M.new(opts)
  local self = setmetatable({ part = opts.part, feed = opts.feed, remotes = {}, order = {},
    messages = opts.messages or {}, poll_ms = opts.poll_ms or M.POLL_MS, clients = {}, n = 0,
    epoch = 0 }, Hub)
  for _, r in ipairs(opts.remotes or {}) do
    self.remotes[r.part] = { part = r.part, feed = r.feed, action = r.action, seq = 0,
      pending = {} }
    self.order[#self.order + 1] = r.part
  end
  return self
end

--- Send `msg` to every browser.
function Hub:broadcast(msg)
  for _, c in pairs(self.clients) do
    c:send(msg)
  end
end

-- One poll of remote part `r`.
function Hub:_poll(r)
  local ans, err = r.feed(r.seq)
  if not ans then
    if r.up ~= false then
      log.warn('dashboard part unreachable', { part = r.part, error = tostring(err) })
      self:broadcast({ type = 'part_down', part = r.part, error = tostring(err) })
    end
    r.up, r.error, r.seq, r.snapshot, r.pending = false, tostring(err), 0, nil, {}
    return
  end
  if ans.snapshot ~= nil then
    r.up, r.error, r.snapshot, r.snap_seq, r.pending = true, nil, ans.snapshot, ans.seq, {}
    r.seq = ans.seq
    self:broadcast({ type = 'snapshot', parts = { [r.part] = ans.snapshot },
      seq = { [r.part] = ans.seq } })
    return
  end
  r.up = true
  for _, ev in ipairs(ans.events or {}) do
    if type(ev) == 'table' then
      local msg = { type = 'event', part = r.part, seq = ev.seq, topic = ev.topic, time = ev.time,
        data = ev.data }
      r.pending[#r.pending + 1] = msg
      self:broadcast(msg)
    end
  end
  r.seq = ans.seq
  if #r.pending > M.MAX_PENDING then
    r.seq = 0 -- too many to replay: take a fresh snapshot next time
  end
end

--- Start polling the remote parts (until close()).
function Hub:start()
  self.epoch = self.epoch + 1
  local epoch = self.epoch
  for _, name in ipairs(self.order) do
    local r = self.remotes[name]
    task.spawn_named('dashboard:poll-' .. name, function()
      while self.epoch == epoch do
        local ok, err = pcall(self._poll, self, r)
        if not ok then
          log.error('dashboard poll failed', { part = name, error = tostring(err) })
        end
        task.sleep(self.poll_ms)
      end
    end)
  end
end

-- The local part's live events to every browser (while there are some).
function Hub:_start_local()
  self.sub = self.feed:subscribe(function(ev)
    self:broadcast({ type = 'event', part = self.part, seq = ev.seq, topic = ev.topic,
      time = ev.time, data = ev.data })
  end)
end

-- The opening messages for client `c`.
function Hub:_welcome(c)
  local parts, seqs, downs = {}, {}, {}
  local seq = self.feed:seq()
  local ok, snap = pcall(self.feed.snapshot, self.feed)
  if ok then
    parts[self.part], seqs[self.part] = snap, seq
  else
    log.error('dashboard snapshot failed', { part = self.part, error = tostring(snap) })
    downs[#downs + 1] = { type = 'part_down', part = self.part, error = 'snapshot failed' }
  end
  for _, name in ipairs(self.order) do
    local r = self.remotes[name]
    if r.snapshot ~= nil then
      parts[name], seqs[name] = r.snapshot, r.snap_seq
    elseif r.up == false then
      downs[#downs + 1] = { type = 'part_down', part = name, error = r.error }
    end
  end
  c:send({ type = 'snapshot', parts = parts, seq = seqs })
  for _, name in ipairs(self.order) do
    local r = self.remotes[name]
    if r.snapshot ~= nil then
      for _, msg in ipairs(r.pending) do
        c:send(msg)
      end
    end
  end
  for _, msg in ipairs(downs) do
    c:send(msg)
  end
end

--- The websocket handlers (moonstack.http.server's websocket()), with `authorize`.
function Hub:handlers(authorize)
  return {
    authorize = authorize,
    on_open = function(ws)
      local c = setmetatable({ ws = ws, id = ws:id(), cleanups = {} }, Client)
      self.clients[ws] = c
      self.n = self.n + 1
      if self.n == 1 then
        self:_start_local()
      end
      self:_welcome(c)
    end,
    on_message = function(ws, data)
      local c = self.clients[ws]
      if not c then
        return
      end
      local msg = wire.decode(data)
      local fn = type(msg) == 'table' and type(msg.type) == 'string' and self.messages[msg.type]
      if not fn then
        c:send({ type = 'error', error = 'unknown message (expected a JSON object with a known type)' })
        return
      end
      local ok, err = pcall(fn, c, msg)
      if not ok then
        log.error('dashboard message failed', { type = msg.type, error = tostring(err) })
        c:send({ type = 'error', error = 'internal error' })
      end
    end,
    on_close = function(ws)
      local c = self.clients[ws]
      if not c then
        return
      end
      self.clients[ws] = nil
      self.n = self.n - 1
      c.closed = true
      for _, fn in ipairs(c.cleanups) do
        pcall(fn)
      end
      if self.n == 0 and self.sub then
        self.sub:close()
        self.sub = nil
      end
    end,
  }
end

--- The remote part `name` ({ part, feed, action }), or nil.
function Hub:remote(name)
  return self.remotes[name]
end

--- Close every browser's websocket and stop polling.
function Hub:close()
  self.epoch = self.epoch + 1
  for ws in pairs(self.clients) do
    ws:close(1001, 'going away')
  end
  if self.sub then
    self.sub:close()
    self.sub = nil
  end
end

--- Browsers connected now.
function Hub:count()
  return self.n
end

return M
