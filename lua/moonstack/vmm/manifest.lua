-- SPDX-License-Identifier: Apache-2.0
-- From a CreateVm request (VmConfiguration, kms-vmm-gateway.md §4.2) to a VM manifest (§4.4),
-- every field checked first so that a bad request changes nothing: name characters
-- ([A-Za-z0-9-_. @~!$^()]), a known image of this VMM's backend, compose_file an app-compose
-- JSON, vcpu and memory above zero and within the node's limits, port mappings
-- (moonstack.vmm.ports), app_id 20 bytes of hex, URLs, no GPUs or bridge networking (not on
-- this VMM). A failure is nil, 'EINVAL: <field>: why', 'EINVAL'. Also app_id_of (the app id
-- upstream derives from the compose: SHA-256 hex, 40 first digits) and the update checks.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local compose = require('moonstack.cvm.app_compose')
local images = require('moonstack.vmm.images')
local ports = require('moonstack.vmm.ports')

local M = {}

--- Largest .encrypted-env and .user-config (bytes), the guest's caps (§1.3).
M.MAX_ENCRYPTED_ENV = 256 * 1024
M.MAX_USER_CONFIG = 50 * 1024 * 1024

local function fail(msg)
  return errors.fail('EINVAL', msg)
end

--- The app id upstream gives a compose without an explicit one: the first 40 hex digits of
--- SHA-256(compose_file).
function M.app_id_of(compose_file)
  return crypto.hex(crypto.sha256(compose_file)):sub(1, 40)
end

--- Check a VM name. True or nil, 'EINVAL: name: ...'.
function M.check_name(name)
  if name == '' then
    return fail('name: must not be empty')
  end
  if #name > 256 then
    return fail('name: longer than 256 characters')
  end
  local bad = name:match('[^%w%-_%. @~!%$%^%(%)]')
  if bad then
    return fail(('name: %q holds %q; allowed: A-Z a-z 0-9 - _ . space @ ~ ! $ ^ ( )'):format(name,
      bad))
  end
  return true
end

--- Check compose_file: an app-compose JSON (moonstack.cvm.app_compose). Returns the decoded
--- compose or nil, 'EINVAL: compose_file: ...'.
function M.check_compose(text, field)
  field = field or 'compose_file'
  if text == '' then
    return fail(field .. ': must not be empty (the app-compose.json)')
  end
  local app, err = compose.parse(text)
  if not app then
    return fail(('%s: not a valid app-compose JSON: %s'):format(field,
      tostring(err):gsub('^E%u+: ', '')))
  end
  return app
end

-- Check the resources of `req` (vcpu, memory, disk_size: nil = unchanged) against `cfg`.
function M.check_resources(req, cfg)
  if req.vcpu ~= nil and req.vcpu == 0 then
    return fail('vcpu: must be above zero')
  end
  if req.vcpu ~= nil and req.vcpu > cfg.max_allocable_vcpu then
    return fail(('vcpu: %d is above this node\'s max_allocable_vcpu (%d)'):format(req.vcpu,
      cfg.max_allocable_vcpu))
  end
  if req.memory ~= nil and req.memory == 0 then
    return fail('memory: must be above zero (MB)')
  end
  if req.memory ~= nil and req.memory > cfg.max_allocable_memory_in_mb then
    return fail(('memory: %d MB is above this node\'s max_allocable_memory_in_mb (%d)'):format(
      req.memory, cfg.max_allocable_memory_in_mb))
  end
  if req.image ~= nil and req.image == '' then
    return fail('image: must not be empty')
  end
  return true
end

--- The image `name` for this VMM (known, and made for its backend), or nil, 'EINVAL: image:'.
function M.check_image(cfg, name)
  local img, err, code = images.get(cfg.image_dir, name)
  if not img then
    return nil, err, code
  end
  if img.kind ~= cfg.backend then
    return fail(('image: %s is a %s image; this VMM runs the %s backend'):format(name, img.kind,
      cfg.backend))
  end
  return img
end

--- Check a list of URLs (`field` names it). True or nil, 'EINVAL: ...'.
function M.check_urls(list, field)
  for i, u in ipairs(list) do
    if not u:match('^https?://[^%s/]+') then
      return fail(('%s[%d]: %q is not an http(s) URL'):format(field, i, u))
    end
  end
  return true
end

-- The app_id of the request (explicit: hex, 0x allowed, lower-cased; else of the compose).
local function app_id(req)
  if req.app_id == nil or req.app_id == '' then
    return M.app_id_of(req.compose_file)
  end
  local hex = req.app_id:gsub('^0x', ''):lower()
  if not hex:match('^%x+$') or #hex ~= 40 then
    return fail('app_id: must be 20 bytes of hex (40 digits, 0x allowed)')
  end
  return hex
end

-- What this VMM cannot do: GPUs, bridge networking.
local function check_unsupported(req)
  local g = req.gpus
  if g and ((g.attach_mode or '') == 'all' or #(g.gpus or {}) > 0) then
    return fail('gpus: this VMM has no GPUs to attach')
  end
  local nets = #(req.networks or {}) > 0 and req.networks or { req.networking }
  for i, n in ipairs(nets) do
    if n and n.mode ~= '' and n.mode ~= 'user' then
      return fail(('networks[%d].mode: only "user" networking is supported here, not %q'):format(i,
        n.mode))
    end
  end
  return true
end

--- The manifest of a CreateVm request `req` (decoded VmConfiguration) for a VMM with config
--- `cfg`: { id, name, app_id, vcpu, memory, disk_size, image, port_map, created_at_ms, ... },
--- plus the decoded compose and the image, or nil, 'EINVAL: <field>: ...', 'EINVAL'.
function M.from_request(req, cfg, id)
  local ok, err, code = M.check_name(req.name)
  if not ok then
    return nil, err, code
  end
  local img
  img, err, code = M.check_image(cfg, req.image)
  if not img then
    return nil, err, code
  end
  local app
  app, err, code = M.check_compose(req.compose_file)
  if not app then
    return nil, err, code
  end
  ok, err, code = M.check_resources({ vcpu = req.vcpu, memory = req.memory }, cfg)
  if not ok then
    return nil, err, code
  end
  local port_map
  port_map, err, code = ports.parse(req.ports, cfg.port_mapping)
  if not port_map then
    return nil, err, code
  end
  local aid
  aid, err, code = app_id(req)
  if not aid then
    return nil, err, code
  end
  if #req.encrypted_env > M.MAX_ENCRYPTED_ENV then
    return fail(('encrypted_env: larger than %d bytes'):format(M.MAX_ENCRYPTED_ENV))
  end
  for _, f in ipairs({ 'kms_urls', 'gateway_urls' }) do
    ok, err, code = M.check_urls(req[f], f)
    if not ok then
      return nil, err, code
    end
  end
  ok, err, code = check_unsupported(req)
  if not ok then
    return nil, err, code
  end
  local sec, usec = uv.gettimeofday()
  return { id = id, name = req.name, app_id = aid, vcpu = req.vcpu, memory = req.memory,
    disk_size = req.disk_size, image = req.image, port_map = port_map,
    created_at_ms = sec * 1000 + math.floor(usec / 1000), hugepages = req.hugepages,
    pin_numa = req.pin_numa, kms_urls = req.kms_urls, gateway_urls = req.gateway_urls,
    no_tee = req.no_tee, networks = {}, volumes = {}, swtpm = false,
    simulated_tee = (req.simulated_tee or '') ~= '' and req.simulated_tee or nil }, app, img
end

return M
