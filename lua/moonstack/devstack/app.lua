-- SPDX-License-Identifier: Apache-2.0
-- The dev stack's app (default examples/apps/hello): its Docker image built offline from the
-- app's build-image.sh (a `docker save` tarball, no registry), its docker-compose file turned
-- into an app-compose (KMS keys, the gateway, public logs), its env file encrypted to the KMS's
-- env key for the app before the VMM sees it, deployed as a VM of its name — or, when that VM
-- exists from an earlier run, started again (and upgraded first when the compose or env
-- changed) — then followed until it answers through the gateway.
local uv = require('luv')
local cjson = require('cjson.safe')
local fs = require('moonstack.core.fs')
local process = require('moonstack.core.process')
local task = require('moonstack.core.task')
local crypto = require('moonstack.crypto')
local app_compose = require('moonstack.cvm.app_compose')
local op = require('moonstack.vmm.operator')
local http = require('moonstack.http.client')

local M = {}

local function sha256_hex(s)
  return crypto.hex(crypto.sha256(s))
end

--- Build the app's image tarball into `out_dir` unless one built from the same sources is
--- there. `app_dir` holds build-image.sh, run with MOONSTACK_SRC = `src` (the source tree, for
--- its scripts/). Returns the tarball's path, and whether it was built now; or nil, msg.
function M.image(app_dir, out_dir, src)
  local script = app_dir .. '/build-image.sh'
  if not uv.fs_stat(script) then
    return nil, 'ENOENT: ' .. script .. ' is missing (an app directory builds its image with it)'
  end
  -- the sources' fingerprint: every file under the app dir, by path, size and mtime
  local r = process.run({ file = 'sh', args = { '-c',
    'cd "$1" && find . -type f -printf "%p %s %T@\\n" | sort', 'sh', app_dir }, timeout_ms = 10000 })
  local stamp = r and r.exit_code == 0 and sha256_hex(r.stdout) or tostring(os.time())
  local tarball = out_dir .. '/image.tar'
  if fs.read_file(out_dir .. '/sources.sha256') == stamp and uv.fs_stat(tarball) then
    return tarball, false
  end
  fs.mkdir_p(out_dir, tonumber('700', 8))
  -- the user's environment (PATH, HOME, npm's proxy and cache settings): a build may fetch
  local rerr
  local env = uv.os_environ()
  env.MOONSTACK_SRC = src
  r, rerr = process.run({ file = script, args = { out_dir }, env = env, timeout_ms = 300000 })
  if not r or r.exit_code ~= 0 or not uv.fs_stat(tarball) then
    return nil, ('EBUILD: %s failed: %s'):format(script, r and (r.stderr ~= '' and r.stderr or r.stdout)
      or tostring(rerr))
  end
  fs.write_atomic(out_dir .. '/sources.sha256', stamp, tonumber('644', 8))
  return tarball, true
end

--- The runner of the app in `app_dir`: 'docker-compose' (docker-compose.yaml, an image from
--- build-image.sh) or 'bash' (app.sh, run by the agent as the app), or nil, msg.
function M.runner(app_dir)
  if uv.fs_stat(app_dir .. '/docker-compose.yaml') or uv.fs_stat(app_dir .. '/docker-compose.yml') then
    return 'docker-compose'
  elseif uv.fs_stat(app_dir .. '/app.sh') then
    return 'bash'
  end
  return nil, 'ENOENT: ' .. app_dir .. ' holds neither docker-compose.yaml nor app.sh'
end

--- The app-compose.json text for `app_dir` (docker-compose.yaml or app.sh, and the env keys of
--- app.env as allowed_envs), named `name`. Deterministic: the same files give the same bytes,
--- hence the same compose hash and app id.
function M.compose(app_dir, name, env)
  local runner, err = M.runner(app_dir)
  if not runner then
    return nil, err
  end
  local keys = {}
  for _, kv in ipairs(env) do
    keys[#keys + 1] = kv.key
  end
  local opts = { name = name, runner = runner, allowed_envs = keys }
  if runner == 'bash' then
    opts.bash_script = fs.read_file(app_dir .. '/app.sh')
  else
    opts.docker_compose_file = fs.read_file(app_dir .. '/docker-compose.yaml')
      or fs.read_file(app_dir .. '/docker-compose.yml')
  end
  return app_compose.new(opts)
end

--- The env of `app_dir` (app.env; none when absent): { { key, value } } or nil, msg.
function M.env(app_dir)
  local text = fs.read_file(app_dir .. '/app.env')
  if not text then
    return {}
  end
  return op.parse_env_file(text)
end

-- The VM named `name`, or nil.
local function find(client, name)
  local r, err = client:call('Status', { brief = true })
  if not r then
    return nil, err
  end
  for _, vm in ipairs(r.vms or {}) do
    if vm.name == name then
      return vm
    end
  end
  return false
end

--- Deploy (or reuse) VM `name` on `client` (a moonstack.vmm.client): compose text, env list,
--- opts = { image = VMM image name, memory = MiB (1024), state_dir, say = fn(line) }. A VM of
--- that name on another image (the other backend's) is removed and made again. Returns
--- { id, app_id, reused } or nil, msg.
function M.deploy(client, name, compose, env, opts)
  local app_id = opts.app_id or require('moonstack.vmm.manifest').app_id_of(compose):gsub('^0x', '')
  local lines = {}
  for i, kv in ipairs(env) do
    lines[i] = kv.key .. '=' .. kv.value
  end
  local env_sha = sha256_hex(table.concat(lines, '\n'))
  local vm, err = find(client, name)
  if vm == nil then
    return nil, err
  end
  if vm then
    local info = client:call('GetInfo', { id = vm.id })
    local image = info and info.info and type(info.info.configuration) == 'table'
      and info.info.configuration.image
    if image and image ~= opts.image then
      opts.say(('VM %s runs image %s, not %s (another backend): removing it'):format(vm.id,
        tostring(image), opts.image))
      local ok, rerr = client:call('RemoveVm', { id = vm.id }) -- a hard stop first
      if not ok then
        return nil, 'RemoveVm: ' .. tostring(rerr)
      end
      vm = false
    end
  end
  if vm then
    -- the VM keeps the app id it was created with (an upgraded compose does not change it):
    -- the env is encrypted to that app's key, and the URL names it
    local info = client:call('GetInfo', { id = vm.id })
    local vm_app = info and info.info and info.info.app_id
    if vm_app and vm_app ~= '' then
      app_id = vm_app:gsub('^0x', '')
    end
  end
  local blob
  if #env > 0 then
    blob, err = op.encrypt_env(env, app_id, { vmm = client, say = function() end })
    if not blob then
      return nil, 'encrypting the env: ' .. tostring(err)
    end
    blob = crypto.hex(blob)
  end
  local stamp_path = opts.state_dir .. '/deployed.json'
  local stamp = { vm_id = vm and vm.id, app_id = app_id, env_sha = env_sha,
    compose_sha = sha256_hex(compose) }
  if vm then
    local start = vm.status ~= 'running' and vm.status ~= 'starting'
    local old = cjson.decode(fs.read_file(stamp_path) or '') or {}
    if old.vm_id ~= vm.id or old.app_id ~= app_id or old.env_sha ~= env_sha
        or old.compose_sha ~= stamp.compose_sha then
      opts.say('the app changed: updating VM ' .. vm.id)
      if vm.status == 'running' then
        client:call('StopVm', { id = vm.id })
      end
      local ok
      ok, err = client:call('UpgradeApp', { id = vm.id, compose_file = compose,
        encrypted_env = blob or '', update_ports = false })
      if not ok then
        return nil, 'UpgradeApp: ' .. tostring(err)
      end
      fs.write_atomic(stamp_path, cjson.encode(stamp), tonumber('600', 8))
      start = true
    end
    if start then
      local ok
      ok, err = client:call('StartVm', { id = vm.id })
      if not ok then
        return nil, 'StartVm: ' .. tostring(err)
      end
      -- the start runs in the VMM's background: wait until it is under way, so the boot
      -- that is followed next is this one
      local deadline = uv.now() + 15000
      repeat
        task.sleep(100)
        uv.update_time()
        local info = client:call('GetInfo', { id = vm.id })
        local st = info and info.info and info.info.status
      until (st and st ~= 'stopped' and st ~= 'exited') or uv.now() > deadline
    end
    return { id = vm.id, app_id = app_id, reused = true }
  end
  local r
  r, err = client:call('CreateVm', { name = name, image = opts.image, compose_file = compose,
    vcpu = 1, memory = opts.memory or 1024, disk_size = 0, encrypted_env = blob or '', user_config = '',
    app_id = opts.app_id or nil })
  if not r then
    return nil, 'CreateVm: ' .. tostring(err)
  end
  stamp.vm_id = r.id
  fs.write_atomic(stamp_path, cjson.encode(stamp), tonumber('600', 8))
  return { id = r.id, app_id = app_id, reused = false }
end

--- Follow the boot of VM `id` (moonstack.vmm.operator.wait_boot: opts = { timeout_ms, say }).
--- With opts.retry_denied = { app_id, compose } (the eth auth backend), a boot the KMS denies
--- is not the end: the reason and what would allow it are said once per reason, and the VMM's
--- next retry (its auto_restart) is followed, until the boot is done or timeout_ms passes.
function M.wait_boot(client, id, opts)
  local deadline = uv.now() + (opts.timeout_ms or 300000)
  local said
  while true do
    local ok, err, code = op.wait_boot(client, id, { timeout_ms = math.max(1, deadline - uv.now()),
      say = opts.say })
    local reason = not ok and opts.retry_denied and tostring(err):match('boot denied: (.*)$')
    if ok or not reason or uv.now() >= deadline then
      return ok, err, code
    end
    if reason ~= said then
      said = reason
      opts.say(('  the chain denies the boot: %s; the VMM retries it. To allow it: moonstack kms eth '
        .. 'add-compose-hash --app 0x%s %s (and add-os-image for its OS image, see the KMS log)')
        :format(reason, opts.retry_denied.app_id, sha256_hex(opts.retry_denied.compose)))
    end
    repeat -- until the VMM restarts it (boot_error is cleared at each start)
      task.sleep(500)
      uv.update_time()
      local info = client:call('GetInfo', { id = id })
      local e = info and info.info and info.info.boot_error
    until e == '' or e == nil or uv.now() >= deadline
  end
end

--- GET https://<host>:<port>/ through the gateway on 127.0.0.1 (TLS checked against `ca`),
--- every 500 ms until it answers 200 or `timeout_ms` passes. Returns the response or nil, msg.
function M.wait_reachable(host, port, ca, timeout_ms)
  ca = fs.read_file(ca)
  local deadline = uv.now() + timeout_ms
  local last = 'no answer yet'
  while uv.now() < deadline do
    -- bounded twice: the request's own timeout, and a task timeout around it
    local res, err = task.timeout(7000, http.request, { url = ('https://127.0.0.1:%d/'):format(port),
      host = host, tls = { ca = ca }, timeout_ms = 5000 })
    if res and res.status == 200 then
      return res
    end
    last = res and ('HTTP ' .. res.status) or tostring(err)
    task.sleep(500)
    uv.update_time()
  end
  return nil, 'ETIMEDOUT: the app did not answer through the gateway (' .. last .. ')'
end

return M
