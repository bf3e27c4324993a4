-- SPDX-License-Identifier: Apache-2.0
-- The VMM's HTTP API (kms-vmm-gateway.md §4.1, §4.8) and the only place that maps its error
-- codes to HTTP statuses:
--   /prpc/<Method>, /prpc/Teepod.<Method>   the methods (moonstack.vmm.api.methods), JSON or
--                                            protobuf (moonstack.core.prpc): 400 {"error"}
--   GET /logs?id=&follow=&ansi=&lines=&ch=   a VM's serial (default), stdout or stderr log: the
--                                            last `lines` (10000), then, with follow, streamed
--                                            as it grows ([vmm heartbeat] when idle)
--   /guest/<Method>                          the VM's guest API (Info, SysInfo, NetworkInfo,
--                                            ListContainers, Shutdown), the request an Id
--   GET /health, GET /metrics                liveness; Prometheus text (when `metrics`)
-- With `auth.enabled`, every route but /health needs a credential (moonstack.http.auth:
-- Bearer, X-Admin-Token, ?token= on GET, bcrypt Basic): 401 otherwise, 429 past the
-- failed-login limit. The host API each CVM reports to (Notify, Info, GetSealingKey) is
-- host_handler's.
local errors = require('moonstack.core.errors')
local prpc = require('moonstack.core.prpc')
local proto = require('moonstack.core.proto')
local auth = require('moonstack.http.auth')
local logs = require('moonstack.vmm.logs')
local methods = require('moonstack.vmm.api.methods')
local msg = require('moonstack.vmm.api.messages')

local M = {}

local TEXT = 'text/plain; charset=utf-8'

--- The pRPC methods over `vmm`.
function M.methods(vmm)
  return methods.methods(vmm)
end

local function truthy(v)
  return v ~= nil and v ~= 'false' and v ~= '0'
end

-- GET /logs: the tail, then (follow) the stream.
local function serve_logs(vmm, req, res)
  local a = req.args
  local vm = vmm.vms[a.id or '']
  if not vm then
    return 404, 'VM not found', { ['content-type'] = TEXT }
  end
  local file = logs.CHANNELS[a.ch or 'serial']
  if not file then
    return 400, ('Unknown channel %s'):format(tostring(a.ch)), { ['content-type'] = TEXT }
  end
  local lines = tonumber(a.lines) or logs.DEFAULT_LINES
  local ansi = truthy(a.ansi)
  local function clean(text)
    return ansi and text or logs.strip_ansi(text)
  end
  local path = vm.wd:path(file)
  local text, offset = logs.tail(path, lines)
  if not truthy(a.follow) then
    return 200, clean(text), { ['content-type'] = TEXT }
  end
  local stream = res:stream(200, { ['content-type'] = TEXT, ['x-accel-buffering'] = 'no' })
  if not stream then
    return
  end
  local function send(data)
    return stream:connected() and stream:write(clean(data)) ~= nil
  end
  if text ~= '' then
    send(text)
  end
  logs.follow(path, offset, send, { alive = function()
    return vmm.server ~= nil and vmm.vms[vm.id] == vm and stream:connected()
  end })
  stream:close()
end

-- /guest/<Method>: the request's Id names the VM; the guest's answer is passed on as it is.
local function guest_proxy(vmm, req, method)
  local json = prpc.wants_json(req)
  local id
  if req.method == 'GET' then
    id = req.args.id
  elseif json then
    local obj = req.body:find('^%s*$') and {} or require('cjson.safe').decode(req.body)
    local a = type(obj) == 'table' and proto.from_json(msg.Id, obj)
    id = a and a.id
  else
    local a = proto.from_proto(msg.Id, req.body)
    id = a and a.id
  end
  local vm = id and vmm.vms[id]
  if not vm then
    return prpc.error_reply(json, ('id: unknown VM %q'):format(tostring(id)))
  end
  local r, err = vmm:guest(vm):request(method, json and '{}' or '',
    json and 'application/json' or 'application/octet-stream')
  if not r then
    return prpc.error_reply(json, prpc.message_of(err))
  end
  return r.status, r.body, { ['content-type'] = r.headers and r.headers['content-type']
    or (json and 'application/json' or 'application/octet-stream') }
end

-- The /metrics text.
local function metrics(vmm)
  local by = {}
  for _, vm in pairs(vmm.vms) do
    local s = vm:status()
    by[s] = (by[s] or 0) + 1
  end
  local out = { '# HELP moonstack_vmm_vms VMs by status', '# TYPE moonstack_vmm_vms gauge' }
  for _, s in ipairs({ 'running', 'exited', 'stopping', 'stopped', 'removing' }) do
    out[#out + 1] = ('moonstack_vmm_vms{status="%s"} %d'):format(s, by[s] or 0)
  end
  out[#out + 1] = '# TYPE moonstack_vmm_requests_total counter'
  out[#out + 1] = ('moonstack_vmm_requests_total %d'):format(vmm.requests or 0)
  out[#out + 1] = '# TYPE moonstack_vmm_uptime_seconds gauge'
  out[#out + 1] = ('moonstack_vmm_uptime_seconds %d'):format(os.time() - vmm.started_at)
  return table.concat(out, '\n') .. '\n'
end

--- The API's HTTP handler over a running VMM: function(req, res) -> status, body, headers.
function M.handler(vmm)
  local rpc = prpc.handler({ { prefix = '/prpc/', service = 'Teepod', methods = vmm.methods } })
  return function(req, res)
    vmm.requests = (vmm.requests or 0) + 1
    if req.path == '/health' and req.method == 'GET' then
      return 200, 'OK', { ['content-type'] = TEXT }
    end
    if vmm.creds then
      local ok, status, headers, why = auth.judge(req, vmm.creds, vmm.login_limit,
        { realm = 'dstack-vmm', query_token = true })
      if not ok then
        vmm.log.warn('request refused', { path = req.path, peer = req.peer, status = status,
          reason = why })
        headers['content-type'] = 'application/json'
        return status, { error = status == 429 and why or 'unauthorized' }, headers
      end
    end
    if req.path:sub(1, 6) == '/prpc/' then
      return rpc(req)
    elseif req.path == '/logs' and (req.method == 'GET' or req.method == 'HEAD') then
      return serve_logs(vmm, req, res)
    end
    local gm = req.path:match('^/guest/([%w_]+)$')
    if gm then
      return guest_proxy(vmm, req, gm)
    elseif req.path == '/metrics' and req.method == 'GET' and vmm.cfg.metrics then
      return 200, metrics(vmm), { ['content-type'] = 'text/plain; version=0.0.4' }
    elseif req.path == '/' and req.method == 'GET' then
      return 200, 'moonstack VMM ' .. require('moonstack.vmm').VERSION
        .. ': pRPC at /prpc/<Method> (moonstack vm --help)\n', { ['content-type'] = TEXT }
    end
    return errors.status_for('ENOENT'), { error = 'not found' }
  end
end

--- The host API handler (kms-vmm-gateway.md §4.7) of the listener of one VM:
--- function(vm, req) -> status, body, headers. Info, Notify, GetSealingKey at /api/<Method>.
function M.host_handler(vmm)
  local host = {
    Info = { input = msg.Empty, output = msg.HostInfo, call = function()
      return { name = 'dstack VMM', version = require('moonstack.vmm').VERSION }
    end },
    Notify = { input = msg.Notification, output = msg.Empty, call = function(a, req)
      local ok, err, code = vmm.sup:report(req.vm, a.event, a.payload)
      if not ok then
        return nil, err, code
      end
      return {}
    end },
    GetSealingKey = { input = msg.GetSealingKeyRequest, output = msg.GetSealingKeyResponse,
      call = function()
        return nil, 'EUNAVAILABLE: no local key provider is configured on this VMM'
      end },
  }
  local h = prpc.handler({ { prefix = '/api/', service = 'HostApi', methods = host },
    { prefix = '/prpc/', service = 'HostApi', methods = host } })
  return function(vm, req)
    req.vm = vm
    return h(req)
  end
end

return M
