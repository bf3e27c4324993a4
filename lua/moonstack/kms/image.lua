-- SPDX-License-Identifier: Apache-2.0
-- The OS-image gate (kms-vmm-gateway.md §8, upstream's [core.image] verify): a BootInfo's
-- osImageHash is the caller's claim (its vm_config, or its own event log), and an auth policy
-- that allow-lists images trusts it only if the quote's boot chain is that image's. Upstream
-- downloads the image and computes MRTD and RTMR0-2 (dstack-mr); here the operator registers
-- the boot measurements each image is known to produce, one file per image:
--
--   <measurements_dir>/<os_image_hash hex>.json   {"mrtd": hex, "rtmr0": hex, "rtmr1": hex,
--                                                  "rtmr2": hex}, or a list of such objects
--                                                  (one per VM shape: RTMR0/1 depend on the
--                                                  CPU count and memory)
--
-- (the format `dstack-mr measure --json` prints). A BootInfo naming an image passes only if its
-- MRTD and RTMR0-2 equal one registered entry; one naming none passes (there is no claim to
-- check: a policy wanting an image denies it). Files are re-read when they change.
-- Without a matching registration, the lite path (spec §7.7, as upstream's verifier): when
-- the caller's vm_config carries tdx_measurement (the image's measurement.tdx.cbor and
-- sha256sum.txt, authenticated by os_image_hash), moonstack.mr computes MRTD and RTMR0-2 from
-- it and the event log's ACPI digests, and the boot passes if they equal the quote's (the ACPI
-- table contents are not verified, as upstream's lite mode).
-- register() adds one entry to an image's file (what `moonstack mr --register DIR` calls after
-- measuring an image with moonstack.mr).
local cjson = require('cjson.safe')
local uv = require('luv')
local fs = require('moonstack.core.fs')
local vevents = require('moonstack.verifier.events')

local errors = require('moonstack.core.errors')

local M = {}

local FIELDS = { 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2' }

local function fail(msg)
  return errors.fail('EIMAGE', msg)
end

local Gate = {}
Gate.__index = Gate

--- A gate over `dir` (the measurements directory). opts.verify = false makes check() pass
--- everything (upstream's verify = false).
function M.new(dir, opts)
  assert(type(dir) == 'string', 'kms.image.new: measurements directory required')
  return setmetatable({ dir = dir, verify = not (opts and opts.verify == false), cache = {} }, Gate)
end

-- The registered entries of image `hash` (lowercase hex), or nil, msg.
function Gate:entries(hash)
  local path = ('%s/%s.json'):format(self.dir, hash)
  local st = uv.fs_stat(path)
  if not st then
    return fail(('OS image %s has no registered boot measurements (%s): register them or set '
      .. 'image.verify = false'):format(hash, path))
  end
  local c = self.cache[hash]
  if c and c.mtime == st.mtime.sec and c.mtime_ns == st.mtime.nsec and c.size == st.size then
    return c.entries
  end
  local text, err = fs.read_file(path, 1024 * 1024)
  if not text then
    return fail(('cannot read %s: %s'):format(path, tostring(err)))
  end
  local doc = cjson.decode(text)
  if type(doc) == 'table' and doc[1] == nil and next(doc) ~= nil then
    doc = { doc }
  end
  if type(doc) ~= 'table' or doc[1] == nil then
    return fail(path .. ': not a measurements object or a list of them')
  end
  local entries = {}
  for i, e in ipairs(doc) do
    if type(e) ~= 'table' then
      return fail(('%s: entry %d is not an object'):format(path, i))
    end
    local norm = {}
    for _, f in ipairs(FIELDS) do
      local v = type(e[f]) == 'string' and e[f]:gsub('^0[xX]', ''):lower()
      if not v or #v ~= 96 or v:find('[^0-9a-f]') then
        return fail(('%s: entry %d: %s must be 48 bytes of hex'):format(path, i, f))
      end
      norm[f] = v
    end
    entries[i] = norm
  end
  self.cache[hash] = { mtime = st.mtime.sec, mtime_ns = st.mtime.nsec, size = st.size,
    entries = entries }
  return entries
end

-- The lite path: true when ctx's vm_config measures to boot's registers; nil, why otherwise
-- (nil, nil when it carries no measurement document).
local function lite(boot, hash, ctx)
  local vc = ctx and vevents.vm_config_object(ctx.vm_config)
  if not vc or type(vc.tdx_measurement) ~= 'table' then
    return nil
  end
  if tostring(vc.os_image_hash):lower():gsub('^0x', '') ~= hash then
    return nil, 'vm_config.os_image_hash is not the image named'
  end
  local events = ctx.events
  if type(events) == 'function' then
    events = events()
  end
  if type(events) ~= 'table' then
    return nil, 'no event log for the ACPI digests'
  end
  local mr = require('moonstack.mr')
  local acpi, err = mr.acpi_from_events(events)
  if not acpi then
    return nil, err
  end
  local r
  r, err = mr.lite(vc, acpi)
  if not r then
    return nil, err
  end
  local j = mr.to_json(r)
  for _, f in ipairs(FIELDS) do
    if (boot[f] or ''):lower() ~= j[f] then
      return nil, ('its measurement document gives another %s'):format(f:upper())
    end
  end
  return true
end

--- Whether `boot` (BootInfo with osImageHash and the quote's mrtd, rtmr0-2 in hex) runs the
--- image it names: true, or nil, 'EIMAGE: why', 'EIMAGE'. ctx = { vm_config = the request's
--- vm_config text, events = the quote's TdxEvent list or a function returning it } enables the
--- lite path when no registration matches.
function Gate:check(boot, ctx)
  local hash = (boot.osImageHash or ''):lower()
  if not self.verify or hash == '' then
    return true
  end
  if #hash ~= 64 or hash:find('[^0-9a-f]') then
    return fail('osImageHash is not 32 bytes of hex')
  end
  local entries, err, code = self:entries(hash)
  for _, e in ipairs(entries or {}) do
    local same = true
    for _, f in ipairs(FIELDS) do
      if (boot[f] or ''):lower() ~= e[f] then
        same = false
        break
      end
    end
    if same then
      return true
    end
  end
  local pok, lite_ok, lite_err = pcall(lite, boot, hash, ctx)
  if not pok then -- never let a malformed document fail open or crash the caller
    lite_ok, lite_err = nil, 'internal error: ' .. tostring(lite_ok)
  end
  if lite_ok then
    return true
  end
  local why = lite_err and ('; lite measurement: ' .. lite_err:gsub('^E%u+: ', '')) or ''
  if not entries then
    return nil, err .. why, code
  end
  return fail(('the boot measurements (MRTD %s…) are not those registered for OS image %s%s')
    :format((boot.mrtd or ''):sub(1, 16), hash, why))
end

--- Register the measurements `entry` ({mrtd, rtmr0, rtmr1, rtmr2} hex; other keys such as
--- the VM shape are kept) for OS image `hash` (hex) in measurements directory `dir`: appended
--- to <dir>/<hash>.json (made a list) unless an entry with the same four values is there.
--- Returns true, 'added' | 'present', or nil, 'EIMAGE: why', 'EIMAGE'.
function M.register(dir, hash, entry)
  hash = tostring(hash or ''):lower()
  if #hash ~= 64 or hash:find('[^0-9a-f]') then
    return fail('os_image_hash is not 32 bytes of hex')
  end
  local norm = {}
  for k, v in pairs(entry) do
    norm[k] = v
  end
  for _, f in ipairs(FIELDS) do
    local v = type(entry[f]) == 'string' and entry[f]:gsub('^0[xX]', ''):lower()
    if not v or #v ~= 96 or v:find('[^0-9a-f]') then
      return fail(('%s must be 48 bytes of hex'):format(f))
    end
    norm[f] = v
  end
  local ok, err = fs.mkdir_p(dir, 493)
  if not ok then
    return fail(('cannot create %s: %s'):format(dir, tostring(err)))
  end
  local list = {}
  if uv.fs_stat(('%s/%s.json'):format(dir, hash)) then
    local gate = M.new(dir)
    local entries, e2 = gate:entries(hash)
    if not entries then
      return nil, e2, 'EIMAGE'
    end
    for _, e in ipairs(entries) do
      local same = true
      for _, f in ipairs(FIELDS) do
        same = same and e[f] == norm[f]
      end
      if same then
        return true, 'present'
      end
    end
    local text = fs.read_file(('%s/%s.json'):format(dir, hash), 1024 * 1024)
    local doc = cjson.decode(text or '')
    list = (type(doc) == 'table' and doc[1] == nil) and { doc } or doc
  end
  list[#list + 1] = norm
  ok, err = fs.write_atomic(('%s/%s.json'):format(dir, hash), cjson.encode(list) .. '\n', 420)
  if not ok then
    return fail(('cannot write %s/%s.json: %s'):format(dir, hash, tostring(err)))
  end
  return true, 'added'
end

return M
