-- SPDX-License-Identifier: Apache-2.0
-- What an operator's tool does over the VMM API (moonstack.vmm.client), for `moonstack vm`:
-- tables of VMs and images, the env of an app encrypted to its KMS env key (kms-vmm-gateway.md
-- §2: the key from GetAppEnvEncryptPubKey — through the VMM or straight from a KMS — its
-- signature checked, the signer compared with a pinned KMS key when one is given; X25519 +
-- AES-256-GCM), a deploy request assembled from files, and a boot followed until the guest
-- says `done` (or fails), printing its progress. Inside a task.
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local json = require('moonstack.core.json')
local task = require('moonstack.core.task')
local uv = require('luv')
local kms = require('moonstack.kms.client')

local M = {}

--- A text table of `rows` (lists of strings) under `headers`.
function M.table(headers, rows)
  local w = {}
  for i, h in ipairs(headers) do
    w[i] = #h
  end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do
      w[i] = math.max(w[i] or 0, #tostring(c))
    end
  end
  local out = {}
  local function line(cells)
    local parts = {}
    for i, c in ipairs(cells) do
      parts[i] = tostring(c) .. (' '):rep(w[i] - #tostring(c))
    end
    out[#out + 1] = (table.concat(parts, '  '):gsub('%s+$', ''))
  end
  line(headers)
  for _, r in ipairs(rows) do
    line(r)
  end
  return table.concat(out, '\n') .. '\n'
end

--- Parse an env file (KEY=VALUE lines; blank lines and # comments skipped; a value in single or
--- double quotes loses them). Returns { { key, value } } in file order or nil, 'EINVAL: ...'.
function M.parse_env_file(text)
  local out, n = {}, 0
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do
    n = n + 1
    line = line:gsub('\r$', '')
    if not line:match('^%s*$') and not line:match('^%s*#') then
      local k, v = line:match('^%s*export%s+([%w_]+)%s*=(.*)$')
      if not k then
        k, v = line:match('^%s*([%w_]+)%s*=(.*)$')
      end
      if not k then
        return errors.fail('EINVAL', ('env file line %d: not KEY=VALUE'):format(n))
      end
      v = v:match('^%s*(.-)%s*$')
      local q = v:sub(1, 1)
      if (q == '"' or q == "'") and v:sub(-1) == q and #v >= 2 then
        v = v:sub(2, -2)
      end
      out[#out + 1] = { key = k, value = v }
    end
  end
  return out
end

--- The encrypted-env blob of `envs` ({ { key, value } }) for app `app_id_hex`. opts = { vmm =
--- client (GetAppEnvEncryptPubKey through the VMM) or kms_url (straight from a KMS),
--- kms_pubkey = hex of the KMS k256 key that must have signed, say = fn(line) }. Returns the
--- blob or nil, msg, code.
function M.encrypt_env(envs, app_id_hex, opts)
  local app_id = crypto.unhex(app_id_hex, 20)
  if not app_id then
    return errors.fail('EINVAL', 'app_id: must be 20 bytes of hex')
  end
  local r, err, code
  if opts.kms_url then
    r, err, code = kms.env_pubkey(opts.kms_url, app_id, { timeout_ms = 10000 })
  else
    r, err, code = opts.vmm:call('GetAppEnvEncryptPubKey', { app_id = app_id_hex })
  end
  if not r then
    return nil, err, code
  end
  local pub = type(r.public_key) == 'string' and crypto.unhex(r.public_key, 32)
  if not pub then
    return errors.fail('EPROTO', 'GetAppEnvEncryptPubKey: no 32-byte public_key')
  end
  local sig = crypto.unhex(r.signature_v1 or '') or ''
  local signer
  if #sig == 65 and tonumber(r.timestamp) then
    signer, err, code = dstack.env_pubkey_recover({ public_key = pub, app_id = app_id,
      signature = sig, timestamp = tonumber(r.timestamp) })
  else
    signer, err, code = dstack.env_pubkey_recover({ public_key = pub, app_id = app_id,
      signature = crypto.unhex(r.signature or '') or '' })
  end
  if not signer then
    return nil, 'the env key is not validly signed: ' .. tostring(err), code
  end
  if opts.kms_pubkey then
    if crypto.hex(signer) ~= opts.kms_pubkey:lower():gsub('^0x', '') then
      return errors.fail('EVERIFY', ('the env key is signed by %s, not by the pinned KMS key %s')
        :format(crypto.hex(signer), opts.kms_pubkey))
    end
  elseif opts.say then
    opts.say(('env key signed by KMS key %s (not pinned: give --kms-pubkey to check it)')
      :format(crypto.hex(signer)))
  end
  local list = {}
  for i, e in ipairs(envs) do
    list[i] = { key = e.key, value = e.value }
  end
  return dstack.env_encrypt(pub, json.encode({ env = json.array(list) }))
end

--- Read a file for a request field (`what` names the option). The content or nil, msg.
function M.read(path, what)
  local data, err = fs.read_file(path, 64 * 1024 * 1024)
  if not data then
    return nil, ('%s: %s'):format(what, tostring(err))
  end
  return data
end

--- A memory size in MB from '512', '512M', '1G', '1.5G'. Returns the number or nil.
function M.megabytes(s)
  local n, unit = tostring(s):match('^(%d+%.?%d*)%s*([KkMmGgTt]?)[Bb]?$')
  n = tonumber(n)
  if not n then
    return nil
  end
  local mul = ({ k = 1 / 1024, m = 1, g = 1024, t = 1024 * 1024 })[unit:lower()] or 1
  return math.floor(n * mul + 0.5)
end

--- A PortMapping from 'tcp:[ADDR:]HOST:VM' (protocol optional: 'HOST:VM'). Returns it or nil.
function M.port(s)
  local parts = {}
  for p in (s .. ':'):gmatch('([^:]*):') do
    parts[#parts + 1] = p
  end
  local proto = 'tcp'
  if parts[1] == 'tcp' or parts[1] == 'udp' then
    proto = table.remove(parts, 1)
  end
  local addr = #parts == 3 and table.remove(parts, 1) or ''
  local host, vm = tonumber(parts[1]), tonumber(parts[2])
  if #parts ~= 2 or not host or not vm then
    return nil
  end
  return { protocol = proto, host_address = addr, host_port = host, vm_port = vm }
end

--- Follow the boot of VM `id` (GetInfo every poll_ms), calling say(line) with each new boot
--- progress; returns true once the guest says `done`, or nil, msg when it reports a boot
--- error, its process ends, or timeout_ms passes.
function M.wait_boot(client, id, opts)
  local deadline = uv.now() + (opts.timeout_ms or 120000)
  local last
  while uv.now() < deadline do
    local r, err, code = client:call('GetInfo', { id = id })
    if not r then
      return nil, err, code
    end
    local info = r.found and r.info
    if not info then
      return errors.fail('EVMM', 'VM ' .. id .. ' is gone')
    end
    if info.boot_progress ~= '' and info.boot_progress ~= last then
      last = info.boot_progress
      opts.say('  ' .. last)
    end
    if info.boot_error ~= '' then
      return errors.fail('EBOOT', 'boot failed: ' .. info.boot_error)
    end
    if last == 'done' and info.status == 'running' then
      return true
    end
    if info.status == 'stopped' or (info.status == 'exited' and last ~= nil) then
      return errors.fail('EBOOT', 'the VM is ' .. info.status .. ' (see moonstack vm logs ' .. id .. ')')
    end
    task.sleep(opts.poll_ms or 200)
    uv.update_time()
  end
  return errors.fail('ETIMEDOUT', 'the VM did not finish booting in time (last: ' .. tostring(last) .. ')')
end

return M
