-- SPDX-License-Identifier: Apache-2.0
-- The VMM's dashboard, the hub (config key `dashboard`, moonstack.vmm.config): a listener of
-- its own serving moonstack.ui's routes with
--   - the VMM's part: snapshot { vms = { { id, name, status, boot_progress, boot_error, uptime,
--     image, ports = { { protocol, host_address, host_port, vm_port } }, app_id, instance_id,
--     app_url?, events } }, images = { names }, kms_url, gateway = { base_domain, port,
--     agent_port } }; events `vm.status` { id, name, status, boot_progress, boot_error, uptime }
--     when one of those changes (`removed` when the VM is gone; checked every 250 ms) and
--     `vm.event` { id, name, event, body } for what a guest reports (the bus's `vmm.<event>`);
--     log lines of a subscribed VM (moonstack.vmm.dashboard_logs);
--   - the KMS and gateway parts, read from their admin listeners (`dashboard.kms`,
--     `dashboard.gateway`: url + token_file) through their client modules;
--   - the VMM's pRPC methods at /prpc/<Method> and at POST /dashboard/api/vmm/<Method> (JSON);
--   - POST /dashboard/api/verify { quote_hex, event_log?, at? } -> the verifier's verdict
--     (moonstack.verifier with `dashboard.verify`: a collateral file, a PCCS, or Intel's PCS);
--   - POST /dashboard/api/lint { compose } -> moonstack.compose.lint's findings for an
--     app-compose.json or docker-compose text (the deploy form shows them before a deploy);
--   - with `cluster` (moonstack.vmm.cluster): the whole fleet from etcd in the snapshot's
--     `fleet` { etcd, host_id, hosts, vms = { { id, name, status, app_id, host_id } } } and at
--     POST /dashboard/api/fleet.
-- Credentials: `dashboard.auth`, else the VMM's `auth`, plus `dashboard.login_token_file`;
-- with none of them the dashboard does not start (fails closed).
local uv = require('luv')
local auth = require('moonstack.http.auth')
local events = require('moonstack.core.events')
local fs = require('moonstack.core.fs')
local http = require('moonstack.http.server')
local prpc = require('moonstack.core.prpc')
local feed_mod = require('moonstack.ui.feed')
local mount = require('moonstack.ui.mount')
local wire = require('moonstack.ui.wire')
local images = require('moonstack.vmm.images')
local methods = require('moonstack.vmm.api.methods')
local dlogs = require('moonstack.vmm.dashboard_logs')

local M = {}

--- How often the VMs' status is compared with the last one published (ms).
M.WATCH_MS = 250

-- The dashboard's view of `vm`.
local function vm_view(vmm, vm)
  local info = methods.vm_info(vmm, vm, true)
  local ports = wire.array()
  for _, p in ipairs(vm.manifest.port_map or {}) do
    ports[#ports + 1] = { protocol = p.protocol, host_address = p.address, host_port = p.from,
      vm_port = p.to }
  end
  local evs = wire.array()
  for i, e in ipairs(vm.events or {}) do
    evs[i] = { event = e.event, body = e.body, timestamp = e.timestamp }
  end
  return { id = vm.id, name = vm.manifest.name, status = info.status,
    boot_progress = info.boot_progress, boot_error = info.boot_error, uptime = info.uptime,
    image = vm.manifest.image, ports = ports, app_id = info.app_id,
    instance_id = info.instance_id or '', app_url = info.app_url, events = evs,
    created_at_ms = vm.manifest.created_at_ms }
end

--- The VMM part's snapshot.
function M.snapshot(vmm)
  local list = {}
  for _, vm in pairs(vmm.vms) do
    list[#list + 1] = vm
  end
  table.sort(list, methods.by_creation)
  local vms = wire.array()
  for i, vm in ipairs(list) do
    vms[i] = vm_view(vmm, vm)
  end
  local names = wire.array()
  for i, img in ipairs(images.list(vmm.cfg.image_dir)) do
    names[i] = img.name
  end
  local gw = vmm.cfg.gateway
  return { vms = vms, images = names, kms_url = vmm.cfg.kms_url or '',
    gateway = { base_domain = gw.base_domain, port = gw.port, agent_port = gw.agent_port },
    fleet = M.fleet(vmm) }
end

--- The fleet from etcd (vmm.cluster), JSON-ready, or null without a cluster.
function M.fleet(vmm)
  if not vmm.cluster then
    return wire.null
  end
  local f = vmm.cluster:fleet()
  return { etcd = f.etcd, host_id = f.host_id, hosts = wire.array(f.hosts),
    vms = wire.array(f.vms) }
end

-- The status facts of `vm` published as vm.status, and their key.
local function status_of(vm)
  local st = { id = vm.id, name = vm.manifest.name, status = vm:status(),
    boot_progress = vm.boot_progress or '', boot_error = vm.boot_error or '' }
  return st, table.concat({ st.status, st.boot_progress, st.boot_error,
    tostring(vm.handle and vm.handle.pid) }, '\0')
end

-- Publish vm.status for every VM whose status changed since the last check.
local function watch(vmm, seen)
  for id, vm in pairs(vmm.vms) do
    local st, key = status_of(vm)
    if seen[id] ~= key then
      seen[id] = key
      local info = methods.vm_info(vmm, vm, true)
      st.uptime = info.uptime
      st.app_id, st.instance_id, st.app_url = info.app_id, info.instance_id, info.app_url
      events.publish('vm.status', st)
    end
  end
  for id in pairs(seen) do
    if not vmm.vms[id] then
      seen[id] = nil
      events.publish('vm.status', { id = id, status = 'removed' })
    end
  end
end

local function feed_of(vmm)
  return feed_mod.new({ part = 'vmm', snapshot = function() return M.snapshot(vmm) end,
    filter = function(ev)
      return ev.topic:sub(1, 3) == 'vm.' or ev.topic:sub(1, 4) == 'vmm.'
    end,
    map = function(ev)
      if ev.topic:sub(1, 4) == 'vmm.' then
        local d = ev.data
        ev.topic, ev.data = 'vm.event', { id = d.id, name = d.name, event = ev.topic:sub(5),
          body = d.body }
      end
      return ev
    end })
end

-- A verifier as dashboard.verify says (made once, on the first request).
local function verifier_of(dash, vcfg, pccs_default)
  if dash.verifier then
    return dash.verifier
  end
  local verifier = require('moonstack.verifier')
  local opts = { cache_dir = vcfg.cache_dir }
  local err, code
  if vcfg.policy then
    opts.policy, err, code = require('moonstack.verifier.rules').load(vcfg.policy)
    if not opts.policy then
      return nil, err, code
    end
  end
  if vcfg.collateral then
    opts.collateral, err, code = fs.read_file(vcfg.collateral, 16 * 1024 * 1024)
    if not opts.collateral then
      return nil, 'dashboard.verify.collateral: ' .. tostring(err), code
    end
  else
    opts.pccs = vcfg.pccs_url or (pccs_default ~= '' and pccs_default)
      or require('moonstack.verifier.collateral').INTEL_PCS_URL
  end
  if vcfg.root_ca then
    opts.root_ca, err, code = fs.read_file(vcfg.root_ca, 1024 * 1024)
    if not opts.root_ca then
      return nil, 'dashboard.verify.root_ca: ' .. tostring(err), code
    end
  end
  dash.verifier, err, code = verifier.new(opts)
  return dash.verifier, err, code
end

-- POST /dashboard/api/verify.
local function verify(dash, vmm, body)
  local hex = type(body.quote_hex) == 'string' and body.quote_hex:gsub('%s+', ''):gsub('^0x', '')
  local q = hex and hex ~= '' and require('moonstack.crypto').unhex(hex)
  if not q then
    return 400, { error = 'quote_hex: give the quote as hex' }
  end
  local at = body.at
  if at ~= nil and (type(at) ~= 'number' or at < 0 or at % 1 ~= 0) then
    return 400, { error = 'at: unix seconds' }
  end
  local v, err = verifier_of(dash, vmm.cfg.dashboard.verify, vmm.cfg.pccs_url)
  if not v then
    return 500, { error = 'verifier: ' .. tostring(err) }
  end
  local ev = body.event_log
  if ev == wire.null then
    ev = nil
  end
  local ok, r = pcall(v.verify, v, q, { event_log = ev, now = at })
  if not ok then
    return 400, { error = 'verification failed: ' .. tostring(r) }
  end
  local verdict = r.exit_code == 0 and 'verified' or r.exit_code == 1 and 'policy violated'
    or 'not verified'
  return 200, { verdict = verdict, verified = r.verified, exit_code = r.exit_code,
    result = require('moonstack.verifier').summary(r) }
end

--- Largest compose text POST /dashboard/api/lint takes (bytes).
M.MAX_LINT_BYTES = 4 * 1024 * 1024

-- POST /dashboard/api/lint: { kind, findings, counts, ok } or 400 { error } naming the field.
function M.lint(body)
  local text = body.compose
  if type(text) ~= 'string' or text == '' then
    return 400, { error = 'compose: give the app-compose.json or docker-compose text' }
  end
  if #text > M.MAX_LINT_BYTES then
    return 400, { error = ('compose: larger than %d bytes'):format(M.MAX_LINT_BYTES) }
  end
  local r, err = require('moonstack.compose.lint').lint(text)
  if not r then
    return 400, { error = tostring(err):gsub('^E[A-Z]+: ', '') }
  end
  local list = wire.array()
  for i, f in ipairs(r.findings) do
    list[i] = f
  end
  return 200, { kind = r.kind, findings = list, counts = r.counts, ok = r.counts.error == 0 }
end

-- The credentials of the dashboard listener, or nil, msg, code.
local function credentials(vmm, d)
  if d.auth then
    return auth.credentials({ tokens = d.auth.tokens, token_file = d.auth.token_file,
      htpasswd_file = d.auth.htpasswd_file, what = 'dashboard.auth' })
  end
  if vmm.creds then
    return vmm.creds
  end
  if d.login_token_file then
    return { tokens = {} } -- browser sessions only
  end
  return nil, 'EINVAL: dashboard: no credential (dashboard.auth, the VMM auth, or '
    .. 'dashboard.login_token_file)', 'EINVAL'
end

-- A remote part over `client` (moonstack.kms.client / moonstack.gateway.client).
local function remote(name, pcfg, client)
  local conn = { url = pcfg.url }
  if pcfg.token_file then
    local token, err, code = auth.token({ token_file = pcfg.token_file,
      what = 'dashboard.' .. name })
    if not token then
      return nil, err, code
    end
    conn.token = token
  end
  return { part = name,
    feed = function(since) return client.dashboard_feed(conn, since) end,
    action = function(op, body) return client.dashboard_action(conn, op, body) end }
end

--- Start the dashboard of `vmm` (its cfg.dashboard set; inside a task). Returns { server,
--- port(), address(), close() } or nil, msg, code (nothing left open).
function M.start(vmm)
  local d = vmm.cfg.dashboard
  local creds, err, code = credentials(vmm, d)
  if not creds then
    return nil, err, code
  end
  local remotes = {}
  for _, p in ipairs({ { 'kms', 'moonstack.kms.client' }, { 'gateway', 'moonstack.gateway.client' } }) do
    if d[p[1]] then
      local r, rerr, rcode = remote(p[1], d[p[1]], require(p[2]))
      if not r then
        return nil, rerr, rcode
      end
      remotes[#remotes + 1] = r
    end
  end
  local dash = { open = true }
  local srv = http.new({ name = 'vmm-dashboard', max_body = vmm.cfg.max_body,
    max_ws_message = 64 * 1024, listen = { host = d.listen.host, port = d.listen.port },
    headers = { ['x-app-version'] = require('moonstack.vmm').VERSION } })
  local rpc, rpc_methods
  local function call(req)
    if rpc_methods ~= vmm.methods then -- rebuilt after a code swap
      rpc_methods = vmm.methods
      rpc = prpc.handler({ { prefix = '/prpc/', service = 'Teepod', methods = rpc_methods } })
    end
    return rpc(req)
  end
  local ui = mount.mount(srv, { part = 'vmm', feed = feed_of(vmm), creds = creds,
    limiter = require('moonstack.http.login_limit').new(vmm.cfg.auth.failed_logins),
    realm = 'dstack-vmm', login_token_file = d.login_token_file, remotes = remotes,
    poll_ms = d.poll_ms,
    messages = dlogs.handlers(vmm, function() return dash.open end),
    actions = { verify = function(body) return verify(dash, vmm, body) end,
      fleet = function() return 200, M.fleet(vmm) end, lint = M.lint },
    part_action = function(part, op, req)
      if part ~= 'vmm' or not op:match('^%u[%w_]*$') then
        return mount.answer(404, { error = 'no such part or action' })
      end
      req.path, req.args.json = '/prpc/' .. op, ''
      return call(req)
    end })
  srv:route('*', '/prpc/*', ui.guard(function(req) return call(req) end))
  local ok
  ok, err, code = srv:listen()
  if not ok then
    ui.close()
    return nil, 'dashboard listener: ' .. tostring(err), code
  end
  local seen = {}
  local timer = uv.new_timer()
  timer:start(0, M.WATCH_MS, function()
    local wok, werr = pcall(watch, vmm, seen)
    if not wok then
      vmm.log.error('dashboard status watch failed', { error = tostring(werr) })
    end
  end)
  dash.server, dash.ui = srv, ui
  function dash.port() return srv:port() end
  function dash.address() return srv:address() end
  function dash.close()
    if not dash.open then
      return
    end
    dash.open = false
    timer:close()
    ui.close()
    srv:close()
  end
  vmm.log.info('dashboard listening', { address = srv:address(), parts = #remotes + 1 })
  return dash
end

return M
