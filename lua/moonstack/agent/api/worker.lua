-- SPDX-License-Identifier: Apache-2.0
-- The public listener's non-pRPC routes (guest-and-attestation.md §1.5): the dashboard at `/`
-- (ui/agent/index.html rendered by moonstack.http.template, so it works without JavaScript;
-- its stylesheet at `/assets/agent.css`), `/metrics` (public_sysinfo) and `/logs/<name>`
-- (public_logs), each shown only as far as the app-compose public_* flags (ctx.public) allow.
-- Logs come from the context's log provider (`ctx.logs`: list() -> { {name, status} },
-- read(name, opts) -> text | list | iterator of records { channel, message, time? } or
-- lines). Responses are complete (Content-Length); `follow` returns what exists now.
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local proto = require('moonstack.core.proto')
local sysinfo = require('moonstack.agent.api.sysinfo')
local assets = require('moonstack.http.assets')
local static = require('moonstack.http.static')
local template = require('moonstack.http.template')

local M = {}

-- The page (ui/agent/index.html, a moonstack.http.template) and its stylesheet.
local files = static.new('agent')

local function flags(ctx)
  local p = ctx.public or {}
  return { sysinfo = p.sysinfo == true, logs = p.logs == true, tcbinfo = p.tcbinfo ~= false }
end

local function containers(ctx)
  if not ctx.logs or not ctx.logs.list then
    return {}
  end
  local ok, list = pcall(ctx.logs.list, ctx.logs)
  return ok and type(list) == 'table' and list or {}
end

local function dashboard(api)
  local ctx = api.ctx
  local f = flags(ctx)
  local info = api.svc.info:app_info(f) or {}
  local page, err = assets.read('agent/index.html')
  if not page then
    error('the agent page is missing: ' .. tostring(err))
  end
  local v = {
    app_name = info.app_name,
    rows = {
      { label = 'App name', value = info.app_name },
      { label = 'App ID', value = crypto.hex(info.app_id or '') },
      { label = 'Instance ID', value = crypto.hex(info.instance_id or '') },
      { label = 'Device ID', value = crypto.hex(info.device_id or '') },
      { label = 'Compose hash', value = crypto.hex(info.compose_hash or '') },
      { label = 'Key provider', value = info.key_provider_info },
      { label = 'Cloud vendor', value = info.cloud_vendor },
      { label = 'Cloud product', value = info.cloud_product },
      { label = 'State', value = ctx.state },
    },
    containers = {},
    logs_link = f.logs,
    metrics = f.sysinfo and sysinfo.metrics() or nil,
    tcb_info = f.tcbinfo and info.tcb_info ~= '' and info.tcb_info or nil,
  }
  for _, c in ipairs(containers(ctx)) do
    local name = tostring(c.name or ''):gsub('^/', '')
    v.containers[#v.containers + 1] = { name = name, status = tostring(c.status or ''),
      name_url = (name:gsub('[^%w%-%._~]', function(ch) return ('%%%02X'):format(ch:byte()) end)) }
  end
  return 200, template.render(page, v), { ['content-type'] = 'text/html; charset=utf-8' }
end

local UNITS = { s = 1, m = 60, h = 3600, d = 86400 }

--- since/until: '' -> 0, digits -> Unix seconds, '<N>s|m|h|d' -> now - N units; nil if bad.
function M.parse_time(v, now)
  if v == nil or v == '' then
    return 0
  end
  if v:match('^%d+$') then
    return tonumber(v)
  end
  local n, unit = v:match('^(%d+)([smhd])$')
  if n then
    return (now or os.time()) - tonumber(n) * UNITS[unit]
  end
  return nil
end

-- The records of a provider's answer as a list of { channel, message, time? }.
local function records_of(result)
  local list = {}
  local function add(r)
    if type(r) == 'string' then
      list[#list + 1] = { channel = 'stdout', message = r }
    elseif type(r) == 'table' then
      list[#list + 1] = r
    end
  end
  if type(result) == 'string' then
    for line in result:gmatch('[^\n]*\n?') do
      if line ~= '' then
        add(line)
      end
    end
  elseif type(result) == 'table' then
    for _, r in ipairs(result) do
      add(r)
    end
  elseif type(result) == 'function' then
    for r in result do
      add(r)
    end
  end
  return list
end

local function logs(api, req, name)
  local ctx = api.ctx
  local a = req.args
  local function stream_error(msg)
    return 200, '{"error":' .. proto.json_string(msg) .. '}\n', { ['content-type'] = 'text/plain' }
  end
  if not ctx.logs or not ctx.logs.read then
    return stream_error('no logs available')
  end
  local since, till = M.parse_time(a.since), M.parse_time(a['until'])
  if not since or not till then
    return stream_error('invalid since/until (want Unix seconds or <N>s|m|h|d)')
  end
  local tail = a.tail == nil and 1000 or (a.tail == 'all' and nil) or tonumber(a.tail)
  local ok, result, err = pcall(ctx.logs.read, ctx.logs, name, { since = since, ['until'] = till,
    tail = tail, timestamps = a.timestamps ~= nil, follow = a.follow ~= nil })
  if not ok or result == nil then
    return stream_error(tostring(ok and err or result))
  end
  local out = {}
  for _, r in ipairs(records_of(result)) do
    local msg = tostring(r.message or '')
    if a.timestamps ~= nil and r.time then
      local sec = math.floor(r.time)
      msg = os.date('!%Y-%m-%dT%H:%M:%S', sec) .. ('.%06dZ '):format(math.floor((r.time - sec) * 1e6))
        .. msg
    end
    if a.text ~= nil then
      if a.ansi == nil then
        msg = msg:gsub('\27%[[%d;?]*[%a]', '')
      end
    else
      msg = codec.base64(msg)
    end
    if a.bare ~= nil then
      out[#out + 1] = msg
    else
      out[#out + 1] = '{"channel":' .. proto.json_string(r.channel or 'stdout') .. ',"message":'
        .. proto.json_string(msg) .. '}\n'
    end
  end
  return 200, table.concat(out), { ['content-type'] = 'text/plain; charset=utf-8' }
end

--- Answer a public-listener request that is not pRPC: status, body, headers (nil = 404).
function M.route(api, req)
  local f = flags(api.ctx)
  if req.method ~= 'GET' and req.method ~= 'HEAD' then
    return nil
  end
  if req.path == '/' then
    return dashboard(api)
  elseif req.path == '/assets/agent.css' then
    return files:serve(req, 'agent.css')
  elseif req.path == '/metrics' and f.sysinfo then
    return 200, sysinfo.metrics(), { ['content-type'] = 'text/plain; version=0.0.4' }
  end
  local name = req.path:match('^/logs/([^/]+)$')
  if name and f.logs then
    return logs(api, req, name)
  end
  return nil
end

return M
