-- SPDX-License-Identifier: Apache-2.0
-- The verbs of `moonstack vm` (moonstack.commands.vm parses their argv): each is
-- fn(client, opts, prog) -> exit code, or nil, msg; run inside a task. Output as vmm-cli.py
-- prints it, JSON with --json.
local cjson = require('cjson.safe')
local op = require('moonstack.vmm.operator')

local M = {}

local function say(line)
  io.stdout:write(line, '\n')
  io.stdout:flush()
end

local function pretty(v)
  return (cjson.encode(v):gsub('\\/', '/'))
end

function M.ls(client, opts)
  local r, err, code = client:call('Status', { brief = not opts.verbose })
  if not r then
    return nil, err, code
  end
  if opts.json then
    say(pretty(r.vms))
    return 0
  end
  if #r.vms == 0 then
    say('No VMs found')
    return 0
  end
  local headers = { 'VM ID', 'App ID', 'Name', 'Status', 'Uptime', 'Boot progress' }
  local rows = {}
  for _, vm in ipairs(r.vms) do
    local row = { vm.id, vm.app_id, vm.name, vm.status, vm.uptime ~= '' and vm.uptime or '-',
      vm.boot_error ~= '' and ('error: ' .. vm.boot_error) or vm.boot_progress }
    if opts.verbose then
      local c = vm.configuration or {}
      local cols = { vm.instance_id or '-', c.vcpu or '-', (c.memory or '-') .. 'MB', c.image or '-' }
      for _, x in ipairs(cols) do
        row[#row + 1] = tostring(x)
      end
    end
    rows[#rows + 1] = row
  end
  if opts.verbose then
    for _, h in ipairs({ 'Instance ID', 'vCPU', 'Memory', 'Image' }) do
      headers[#headers + 1] = h
    end
  end
  io.stdout:write(op.table(headers, rows))
  return 0
end

function M.info(client, opts)
  local r, err, code = client:call('GetInfo', { id = opts.args[1] })
  if not r then
    return nil, err, code
  end
  if not r.found then
    return nil, 'VM ' .. opts.args[1] .. ' not found'
  end
  local i = r.info
  if opts.json then
    say(pretty(i))
    return 0
  end
  local c = i.configuration or {}
  for _, kv in ipairs({ { 'VM ID', i.id }, { 'Name', i.name }, { 'Status', i.status },
    { 'Uptime', i.uptime }, { 'App ID', i.app_id }, { 'Instance ID', i.instance_id or '-' },
    { 'App URL', i.app_url or '-' }, { 'Image', c.image }, { 'Image Version', i.image_version },
    { 'vCPU', c.vcpu }, { 'Memory', tostring(c.memory) .. 'MB' }, { 'Boot Progress', i.boot_progress },
    { 'Boot Error', i.boot_error ~= '' and i.boot_error or nil }, { 'Exited At', i.exited_at } }) do
    if kv[2] ~= nil then
      say(('%-15s%s'):format(kv[1] .. ':', tostring(kv[2])))
    end
  end
  if #(i.events or {}) > 0 then
    say('\nRecent Events:')
    for k = math.max(1, #i.events - 9), #i.events do
      local e = i.events[k]
      say(('  [%s] %s (ts: %s)'):format(e.event, e.body, tostring(e.timestamp)))
    end
  end
  return 0
end

function M.images(client, opts)
  local r, err, code = client:call('ListImages', {})
  if not r then
    return nil, err, code
  end
  if opts.json then
    say(pretty(r.images))
    return 0
  end
  local rows = {}
  for _, img in ipairs(r.images) do
    rows[#rows + 1] = { img.name, img.version ~= '' and img.version or '-', img.is_dev and 'dev' or '' }
  end
  io.stdout:write(#rows > 0 and op.table({ 'Name', 'Version', '' }, rows) or 'No images found\n')
  return 0
end

-- The encrypted env of opts.env_file for app `app_id` (nil when no env file), or nil, msg.
local function env_blob(client, opts, app_id)
  if not opts.env_file then
    return ''
  end
  local text, err = op.read(opts.env_file, '--env-file')
  if not text then
    return nil, err
  end
  local envs
  envs, err = op.parse_env_file(text)
  if not envs then
    return nil, err
  end
  local blob
  blob, err = op.encrypt_env(envs, app_id, { vmm = client, kms_url = opts.kms_url,
    kms_pubkey = opts.kms_pubkey, say = say })
  if not blob then
    return nil, err
  end
  say(('env: %d variable(s) encrypted to the env key of app %s'):format(#envs, app_id))
  return require('moonstack.crypto').hex(blob)
end

local function ports_of(list)
  local out = {}
  for i, s in ipairs(list or {}) do
    out[i] = op.port(s)
    if not out[i] then
      return nil, ('--port %q: want tcp:[ADDR:]HOST:VM'):format(s)
    end
  end
  return out
end

local function follow_boot(client, id, opts)
  if opts.no_wait then
    return 0
  end
  say('booting ' .. id .. ':')
  local ok, err = op.wait_boot(client, id, { say = say, timeout_ms = (tonumber(opts.timeout) or 120) * 1000 })
  if not ok then
    return nil, err
  end
  say('VM ' .. id .. ' is running')
  return 0
end

function M.deploy(client, opts)
  local compose, err = op.read(opts.compose, '--compose')
  if not compose then
    return nil, err
  end
  local memory = op.megabytes(opts.memory)
  if not memory then
    return nil, ('--memory %q: want a size such as 512M or 1G'):format(opts.memory)
  end
  local app_id = (opts.app_id or require('moonstack.vmm.manifest').app_id_of(compose)):gsub('^0x', '')
  local env
  env, err = env_blob(client, opts, app_id)
  if not env then
    return nil, err
  end
  local ports
  ports, err = ports_of(opts.port)
  if not ports then
    return nil, err
  end
  local user_config = ''
  if opts.user_config then
    user_config, err = op.read(opts.user_config, '--user-config')
    if not user_config then
      return nil, err
    end
  end
  local r, code
  r, err, code = client:call('CreateVm', { name = opts.name, image = opts.image, compose_file = compose,
    vcpu = tonumber(opts.vcpu), memory = memory, disk_size = tonumber(opts.disk) or 0, ports = ports,
    encrypted_env = env, app_id = opts.app_id and app_id or nil, user_config = user_config,
    kms_urls = opts.kms_urls, gateway_urls = opts.gateway_urls, stopped = opts.stopped })
  if not r then
    return nil, err, code
  end
  say('Created VM with ID: ' .. r.id)
  if opts.stopped then
    return 0
  end
  return follow_boot(client, r.id, opts)
end

function M.start(client, opts)
  local r, err, code = client:call('StartVm', { id = opts.args[1] })
  if not r then
    return nil, err, code
  end
  say('Started VM ' .. opts.args[1])
  return follow_boot(client, opts.args[1], opts)
end

function M.stop(client, opts)
  local method = opts.force and 'StopVm' or 'ShutdownVm'
  local r, err, code = client:call(method, { id = opts.args[1] })
  if not r then
    return nil, err, code
  end
  say((opts.force and 'Forcefully stopped VM ' or 'Gracefully shutting down VM ') .. opts.args[1])
  return 0
end

function M.rm(client, opts)
  local r, err, code = client:call('RemoveVm', { id = opts.args[1] })
  if not r then
    return nil, err, code
  end
  say('Removed VM ' .. opts.args[1])
  return 0
end

function M.logs(client, opts)
  local path = ('/logs?id=%s&follow=%s&ansi=false&lines=%d&ch=%s'):format(opts.args[1],
    opts.follow and 'true' or 'false', tonumber(opts.lines) or 20, opts.ch)
  if not opts.follow then
    local body, err, code = client:get(path)
    if not body then
      return nil, err, code
    end
    io.stdout:write(body)
    return 0
  end
  local ok, err, code = client:stream(path, function(data)
    io.stdout:write(data)
    io.stdout:flush()
  end)
  if not ok then
    return nil, err, code
  end
  return 0
end

function M.update(client, opts)
  local id = opts.args[1]
  local req, changes = { id = id }, {}
  local err
  if opts.compose then
    req.compose_file, err = op.read(opts.compose, '--compose')
    if not req.compose_file then
      return nil, err
    end
    changes[#changes + 1] = 'compose'
  end
  if opts.env_file then
    local info, ierr, icode = client:call('GetInfo', { id = id })
    if not info then
      return nil, ierr, icode
    end
    if not info.found then
      return nil, 'VM ' .. id .. ' not found'
    end
    req.encrypted_env, err = env_blob(client, opts, info.info.app_id)
    if not req.encrypted_env then
      return nil, err
    end
    changes[#changes + 1] = 'env'
  end
  if opts.user_config then
    req.user_config, err = op.read(opts.user_config, '--user-config')
    if not req.user_config then
      return nil, err
    end
    changes[#changes + 1] = 'user config'
  end
  if opts.no_ports or #opts.port > 0 then
    req.update_ports = true
    req.ports, err = ports_of(opts.no_ports and {} or opts.port)
    if not req.ports then
      return nil, err
    end
    changes[#changes + 1] = 'ports'
  end
  if opts.memory then
    req.memory = op.megabytes(opts.memory)
    if not req.memory then
      return nil, ('--memory %q: want a size such as 512M or 1G'):format(opts.memory)
    end
  end
  req.vcpu, req.image = tonumber(opts.vcpu), opts.image
  for _, k in ipairs({ 'vcpu', 'memory', 'image' }) do
    if req[k] then
      changes[#changes + 1] = k
    end
  end
  if #changes == 0 then
    return nil, 'nothing to update (see --help)'
  end
  local r, code
  r, err, code = client:call('UpdateVm', req)
  if not r then
    return nil, err, code
  end
  say(('Updated VM %s: %s'):format(id, table.concat(changes, ', ')))
  return 0
end

return M
