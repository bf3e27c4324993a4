-- SPDX-License-Identifier: Apache-2.0
-- Watching a key prefix by polling ranges with revisions (not the gateway's streaming
-- /v3/watch: moonstack.http.client hands over a whole body, and a stream that never ends
-- would need a streaming path through the native client; polling also survives compaction
-- and failover with no special case).
--
-- Each poll: a keys-only range of the prefix (one request; its header revision tells whether
-- anything changed since the last poll — if not, that is all). Otherwise the keys now present
-- are compared with the ones known: a known key missing is a delete; a key whose mod_revision
-- is newer than the last seen revision is fetched with one range `min_mod_revision = last + 1`
-- at the listing's revision (a consistent cut) and reported as a put. The last seen revision
-- is the client's, not a member's: after a failover the next poll resumes from it on another
-- member. A failed poll changes nothing; `on_error` is told, `on_ok` when polls work again.
local task = require('moonstack.core.task')

local M = {}

local Watch = {}
Watch.__index = Watch

--- Poll once: calls nothing, returns events = { {type = 'put'|'delete', key, value?,
--- mod_revision} } (puts sorted by mod_revision) and the revision, or nil, msg, code.
function Watch:poll()
  local c = self.client
  local listing, err, code = c:range(self.prefix, { prefix = true, keys_only = true })
  if not listing then
    return nil, err, code
  end
  if listing.revision == self.revision then
    return {}, self.revision
  end
  local events, present, newer = {}, {}, false
  for _, kv in ipairs(listing.kvs) do
    present[kv.key] = kv.mod_revision
    if kv.mod_revision > self.revision or self.known[kv.key] == nil then
      newer = true
    end
  end
  for key, mod in pairs(self.known) do
    if not present[key] then
      events[#events + 1] = { type = 'delete', key = key, mod_revision = mod }
    end
  end
  if newer then
    local min = self.revision + 1
    -- keys never seen (e.g. the first poll): fetch from the start
    for key in pairs(present) do
      if self.known[key] == nil then
        min = 1
        break
      end
    end
    local changed
    changed, err, code = c:range(self.prefix, { prefix = true, revision = listing.revision,
      min_mod_revision = min > 1 and min or nil })
    if not changed then
      return nil, err, code
    end
    table.sort(changed.kvs, function(a, b) return a.mod_revision < b.mod_revision end)
    for _, kv in ipairs(changed.kvs) do
      if self.known[kv.key] ~= kv.mod_revision then
        events[#events + 1] = { type = 'put', key = kv.key, value = kv.value,
          mod_revision = kv.mod_revision, lease = kv.lease }
      end
    end
  end
  self.known = present
  self.revision = listing.revision
  return events, self.revision
end

--- Start watching `prefix` with `client` (moonstack.etcd.client): `on_events(events,
--- revision)` after each poll that saw changes (the first poll reports every key as a put).
--- opts = { interval_ms = 500, on_error = fn(msg, code), on_ok = fn(revision),
--- name = task name }. Returns the watch (:stop(), :poll_now(), .revision).
function M.start(client, prefix, on_events, opts)
  opts = opts or {}
  local self = setmetatable({ client = client, prefix = prefix, known = {}, revision = 0,
    interval = opts.interval_ms or 500, polls = 0, failures = 0 }, Watch)
  local failing = false
  self.task = task.spawn_named(opts.name or ('etcd-watch ' .. prefix), function()
    while not self.stopped do
      local events, rev, code = self:poll()
      self.polls = self.polls + 1
      if events then
        if failing and opts.on_ok then
          opts.on_ok(rev)
        end
        failing = false
        if #events > 0 then
          local ok, err = pcall(on_events, events, rev)
          if not ok then
            require('moonstack.core.log').new('etcd').error('watch handler failed',
              { prefix = prefix, error = tostring(err) })
          end
        end
      else
        self.failures = self.failures + 1
        if not failing and opts.on_error then
          opts.on_error(rev, code)
        end
        failing = true
      end
      if self.stopped then
        break
      end
      self.waiting = true
      pcall(task.sleep, self.interval)
      self.waiting = false
    end
  end)
  return self
end

--- Stop polling. Idempotent.
function Watch:stop()
  self.stopped = true
  if self.task and self.waiting then
    self.task:cancel('watch stopped')
  end
end

return M
