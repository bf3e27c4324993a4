-- SPDX-License-Identifier: Apache-2.0
-- The boot's runtime events (RTMR3), in dstack-util setup's order (spec kms-vmm-gateway.md
-- §1.3–1.4, guest-and-attestation.md §5.4):
--   app stage   system-preparing, app-id, compose-hash, init-script-hash × n,
--               [gpu-policy-hash], instance-id, boot-mr-done
--   key stage   [os-image-hash (KMS only)], key-provider
--   final       storage-fs, system-ready
-- gpu-policy-hash = SHA-256(JCS(requirements.gpu_policy)) is emitted only when app-compose
-- carries requirements.gpu_policy (0.6.0 images, and the upstream simulator's fixture, have no
-- such event; current upstream images emit it on every boot). Events are emitted through the
-- backend (tee:emit_event: extend RTMR3, then log), each one only after the previous succeeded.
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local json = require('moonstack.core.json')

local M = {}

local function ev(name, payload)
  return { name = name, payload = payload or '' }
end

--- SHA-256 of the canonical JSON of app-compose's requirements.gpu_policy, or nil when the
--- compose has none. `raw` is the app-compose text.
function M.gpu_policy_hash(raw)
  local doc = json.decode(raw)
  local req = type(doc) == 'table' and doc.requirements or nil
  if type(req) ~= 'table' or req.gpu_policy == nil or req.gpu_policy == json.null then
    return nil
  end
  return crypto.sha256(json.encode(req.gpu_policy))
end

--- The app-stage events. a = { app_id, compose_hash, init_scripts = { text... },
--- gpu_policy_hash?, instance_id }.
function M.app_events(a)
  local list = { ev('system-preparing'), ev('app-id', a.app_id), ev('compose-hash', a.compose_hash) }
  for _, script in ipairs(a.init_scripts or {}) do
    list[#list + 1] = ev('init-script-hash', crypto.sha256(script))
  end
  if a.gpu_policy_hash then
    list[#list + 1] = ev('gpu-policy-hash', a.gpu_policy_hash)
  end
  list[#list + 1] = ev('instance-id', a.instance_id or '')
  list[#list + 1] = ev('boot-mr-done')
  return list
end

--- The key-stage events. k = { os_image_hash? (KMS), key_provider_json }.
function M.key_events(k)
  local list = {}
  if k.os_image_hash and k.os_image_hash ~= '' then
    list[1] = ev('os-image-hash', k.os_image_hash)
  end
  list[#list + 1] = ev('key-provider', k.key_provider_json)
  return list
end

--- The final events: storage-fs (its name) and system-ready.
function M.final_events(storage_fs)
  return { ev('storage-fs', storage_fs), ev('system-ready') }
end

--- Emit `events` in order through `tee:emit_event(name, payload, { version })`. Returns true
--- or nil, 'CODE: cannot emit <name>: ...', code at the first failure.
function M.emit(tee, events, version)
  for _, e in ipairs(events) do
    local ok, err, code = tee:emit_event(e.name, e.payload, { version = version })
    if not ok then
      return errors.fail(code or 'EIO', ('cannot emit the %s event: %s'):format(e.name,
        tostring(err)))
    end
  end
  return true
end

return M
