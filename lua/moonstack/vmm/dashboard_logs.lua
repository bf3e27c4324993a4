-- SPDX-License-Identifier: Apache-2.0
-- Live log lines of a VM for a dashboard browser: on `{"type":"subscribe_logs","id":ID,
-- "ch":"serial"|"stdout"|"stderr"?}` (serial by default) the browser gets the last 200 lines,
-- then the lines appended to the file as they come (moonstack.vmm.logs tails it; a rotation
-- starts over at the top), each batch as `{"type":"log","id":ID,"ch":CH,"lines":[...]}`, ANSI
-- escapes stripped, until `{"type":"unsubscribe_logs","id":ID}`, the browser leaves, or the VM
-- is removed. An unknown VM or channel answers `{"type":"log","id":ID,"error":"..."}`.
local logs = require('moonstack.vmm.logs')
local task = require('moonstack.core.task')
local wire = require('moonstack.ui.wire')

local M = {}

--- Lines sent when a browser subscribes.
M.TAIL_LINES = 200
--- A partial line longer than this is sent without waiting for its end.
M.MAX_LINE = 16 * 1024
--- How often a followed file is checked (ms).
M.POLL_MS = 200

-- Split `text` into complete lines (without their newlines) and the rest.
local function split(text)
  local lines, start = {}, 1
  while true do
    local nl = text:find('\n', start, true)
    if not nl then
      break
    end
    lines[#lines + 1] = text:sub(start, nl - 1):gsub('\r$', '')
    start = nl + 1
  end
  return lines, text:sub(start)
end
M.split = split

--- The websocket message handlers over `vmm` (for moonstack.ui.hub's messages); `alive()`
--- tells whether the dashboard still runs.
function M.handlers(vmm, alive)
  local function subscribe(client, msg)
    local id, ch = msg.id, msg.ch or 'serial'
    local vm = type(id) == 'string' and vmm.vms[id]
    local file = type(ch) == 'string' and logs.CHANNELS[ch]
    if not vm or not file then
      client:send({ type = 'log', id = tostring(id), error = vm and 'unknown channel' or 'unknown VM',
        lines = wire.array() })
      return
    end
    client.logs = client.logs or {}
    local key = id .. '\0' .. ch
    if client.logs[key] then
      return -- already followed
    end
    local sub = { active = true }
    client.logs[key] = sub
    client:on_close(function() sub.active = false end)
    local path = vm.wd:path(file)
    local text, offset = logs.tail(path, M.TAIL_LINES)
    local lines, rest = split(logs.strip_ansi(text))
    if rest ~= '' then
      lines[#lines + 1] = rest
    end
    client:send({ type = 'log', id = id, ch = ch, lines = wire.array(lines) })
    task.spawn_named('dashboard:logs', function()
      local partial = ''
      logs.follow(path, offset, function(chunk)
        local got
        got, partial = split(partial .. logs.strip_ansi(chunk))
        if #partial > M.MAX_LINE then
          got[#got + 1], partial = partial, ''
        end
        if #got > 0 then
          client:send({ type = 'log', id = id, ch = ch, lines = wire.array(got) })
        end
        return sub.active and not client.closed
      end, { poll_ms = M.POLL_MS, heartbeat_ms = math.huge, alive = function()
        return sub.active and not client.closed and vmm.vms[id] == vm and alive()
      end })
      sub.active = false
      if client.logs[key] == sub then
        client.logs[key] = nil
      end
    end)
  end
  local function unsubscribe(client, msg)
    for key, sub in pairs(client.logs or {}) do
      if key:sub(1, #tostring(msg.id) + 1) == tostring(msg.id) .. '\0' then
        sub.active = false
        client.logs[key] = nil
      end
    end
  end
  return { subscribe_logs = subscribe, unsubscribe_logs = unsubscribe }
end

return M
