-- SPDX-License-Identifier: Apache-2.0
-- BootInfo for the KMS auth backends: checks the table the daemon builds (spec §3.7, camelCase
-- keys, lowercase hex) and encodes it exactly as upstream's serde_json does for the auth
-- webhook: compact, keys in upstream's struct order (PolicyBootInfo), bytes as lowercase hex.
-- Policies also get the quote's boot chain (mrtd, rtmr0-3), which the webhook body omits.
-- from_verifier() renders the verifier's raw BootInfo (snake_case, bytes) in this form.
local codec = require('moonstack.core.codec')
local json = require('moonstack.core.json')

local M = {}

--- The BootInfo keys in upstream's serialisation order, with their kind.
M.FIELDS = {
  { 'teeVariant', 'string' },
  { 'mrAggregated', 'hex' },
  { 'osImageHash', 'hex' },
  { 'mrSystem', 'hex' },
  { 'appId', 'hex' },
  { 'composeHash', 'hex' },
  { 'instanceId', 'hex' },
  { 'deviceId', 'hex' },
  { 'keyProviderInfo', 'hex' },
  { 'tcbStatus', 'string' },
  { 'advisoryIds', 'strings' },
  -- moonstack's: the quote's boot chain, for policies (the webhook body leaves them out)
  { 'mrtd', 'hex', extra = true },
  { 'rtmr0', 'hex', extra = true },
  { 'rtmr1', 'hex', extra = true },
  { 'rtmr2', 'hex', extra = true },
  { 'rtmr3', 'hex', extra = true },
}

local KIND = {}
for _, f in ipairs(M.FIELDS) do
  KIND[f[1]] = f[2]
end

local function norm_hex(key, v)
  if v == nil then
    return ''
  end
  if type(v) ~= 'string' then
    return nil, ('%s must be a hex string, not %s'):format(key, type(v))
  end
  v = v:gsub('^0[xX]', ''):lower()
  if #v % 2 ~= 0 or v:find('[^0-9a-f]') then
    return nil, ('%s is not hex'):format(key)
  end
  return v
end

--- Check and normalise a BootInfo table: byte fields become lowercase hex without 0x (a
--- missing one is ''), teeVariant and tcbStatus must be strings, advisoryIds a list of
--- strings (missing = empty). Unknown keys are refused (they are usually typos).
--- Returns a new table, or nil, 'EINVAL: message', 'EINVAL'.
function M.normalize(info)
  if type(info) ~= 'table' then
    return nil, 'EINVAL: boot info must be a table, not ' .. type(info), 'EINVAL'
  end
  for k in pairs(info) do
    if not KIND[k] then
      return nil, ("EINVAL: boot info has unknown field '%s'"):format(tostring(k)), 'EINVAL'
    end
  end
  local out = {}
  for _, f in ipairs(M.FIELDS) do
    local key, kind, v = f[1], f[2], info[f[1]]
    if kind == 'hex' then
      local h, err = norm_hex(key, v)
      if not h then
        return nil, 'EINVAL: boot info ' .. err, 'EINVAL'
      end
      out[key] = h
    elseif kind == 'string' then
      if type(v) ~= 'string' then
        return nil, ('EINVAL: boot info %s must be a string, not %s'):format(key, type(v)), 'EINVAL'
      end
      out[key] = v
    else
      local list = {}
      if v ~= nil then
        if type(v) ~= 'table' then
          return nil, ('EINVAL: boot info %s must be a list of strings'):format(key), 'EINVAL'
        end
        for i = 1, #v do
          if type(v[i]) ~= 'string' then
            return nil, ('EINVAL: boot info %s[%d] must be a string'):format(key, i), 'EINVAL'
          end
          list[i] = v[i]
        end
      end
      out[key] = list
    end
  end
  return out
end

--- The BootInfo table (camelCase keys, lowercase hex) of the raw one moonstack.verifier's
--- check_quote / check_attestation return (result.boot_info: snake_case keys, raw bytes).
function M.from_verifier(raw)
  local out = {}
  for _, f in ipairs(M.FIELDS) do
    local v = raw[f[1]:gsub('%u', function(c) return '_' .. c:lower() end)]
    if f[2] == 'hex' then
      out[f[1]] = v and codec.hex(v) or ''
    elseif f[2] == 'strings' then
      out[f[1]] = json.array() -- a JSON list even when empty
      for i, s in ipairs(v or {}) do
        out[f[1]][i] = s
      end
    else
      out[f[1]] = v
    end
  end
  return out
end

--- Encode a normalised BootInfo (see normalize()) as upstream's webhook body: compact JSON,
--- keys in M.FIELDS order, serde_json string escaping.
function M.encode(info)
  local parts = {}
  for _, f in ipairs(M.FIELDS) do
    if f.extra then
      break -- upstream's fields come first; the rest are moonstack's
    end
    local key, v = f[1], info[f[1]]
    local text
    if f[2] == 'strings' then
      local items = {}
      for j, s in ipairs(v) do
        items[j] = json.encode(s)
      end
      text = '[' .. table.concat(items, ',') .. ']'
    else
      text = json.encode(v)
    end
    parts[#parts + 1] = json.encode(key) .. ':' .. text
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

return M
