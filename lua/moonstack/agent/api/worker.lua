-- SPDX-License-Identifier: Apache-2.0
-- The public listener's non-pRPC routes (guest-and-attestation.md §1.5): the dashboard at `/`,
-- `/metrics` (public_sysinfo) and `/logs/<name>` (public_logs), each shown only as far as the
-- app-compose public_* flags (ctx.public) allow. Logs come from the context's log provider
-- (`ctx.logs`: list() -> { {name, status} }, read(name, opts) -> text | list | iterator of
-- records { channel, message, time? } or lines). Responses are complete (Content-Length);
-- `follow` returns what exists now.
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local proto = require('moonstack.core.proto')
local sysinfo = require('moonstack.agent.api.sysinfo')

local M = {}

local HTML = { ['&'] = '&amp;', ['<'] = '&lt;', ['>'] = '&gt;', ['"'] = '&quot;', ["'"] = '&#39;' }

local function esc(s)
  return (tostring(s == nil and '' or s):gsub('[&<>"\']', HTML))
end

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
  local rows = {
    { 'App name', info.app_name }, { 'App ID', crypto.hex(info.app_id or '') },
    { 'Instance ID', crypto.hex(info.instance_id or '') },
    { 'Device ID', crypto.hex(info.device_id or '') },
    { 'Compose hash', crypto.hex(info.compose_hash or '') },
    { 'Key provider', info.key_provider_info }, { 'Cloud vendor', info.cloud_vendor },
    { 'Cloud product', info.cloud_product }, { 'State', ctx.state },
  }
  local out = { '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>',
    esc(info.app_name), ' - moonstack guest agent</title></head><body>\n<h1>', esc(info.app_name),
    '</h1>\n<table>\n' }
  for _, r in ipairs(rows) do
    out[#out + 1] = ('<tr><th>%s</th><td>%s</td></tr>\n'):format(esc(r[1]), esc(r[2]))
  end
  out[#out + 1] = '</table>\n<h2>Containers</h2>\n<ul>\n'
  for _, c in ipairs(containers(ctx)) do
    local name = tostring(c.name or ''):gsub('^/', '')
    local link = f.logs and (' <a href="/logs/%s?text&amp;bare&amp;timestamps&amp;tail=100">logs</a>')
      :format(esc(name)) or ''
    out[#out + 1] = ('<li>%s (%s)%s</li>\n'):format(esc(name), esc(c.status), link)
  end
  out[#out + 1] = '</ul>\n'
  if f.sysinfo then
    out[#out + 1] = '<h2>System</h2>\n<pre>' .. esc(sysinfo.metrics()) .. '</pre>\n'
  end
  if f.tcbinfo and info.tcb_info ~= '' then
    out[#out + 1] = '<h2>TCB info</h2>\n<textarea readonly rows="20" cols="100">'
      .. esc(info.tcb_info) .. '</textarea>\n'
  end
  out[#out + 1] = '</body></html>\n'
  return 200, table.concat(out), { ['content-type'] = 'text/html; charset=utf-8' }
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
