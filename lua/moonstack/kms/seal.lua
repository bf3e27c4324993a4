-- SPDX-License-Identifier: Apache-2.0
-- Sealing of the KMS root material at rest with a key bound to the KMS's own measurements.
-- A sealer has seal(name, plaintext) -> blob and unseal(name, blob) -> plaintext | nil, msg,
-- code; `name` (the file name) is authenticated, so sealed files cannot be swapped. Blob =
-- 'MSEAL1' || iv (12) || AES-256-GCM(plaintext) || tag (16). The key is HKDF-SHA256(ikm =
-- MRTD || RTMR0 || RTMR1 || RTMR2, salt 'moonstack-kms-seal', info 'root-material-v1'): the
-- boot chain of the CVM the KMS runs in (RTMR3 changes at runtime and is left out).
--
-- Backends:
-- * `agent` — the KMS running as an app in a CVM (TDX): TDX has no sealing key of its own, so
--   the secret comes from the CVM's guest agent, GetKey(path 'moonstack/kms/seal', purpose
--   'root-material-v1') over its socket. That key derives from the app keys the key provider
--   (a KMS or the local provider) releases only to this measured app (its compose hash, OS
--   image and boot chain), so another app, image or boot cannot unseal. Seal key =
--   HKDF-SHA256(ikm = that key, salt 'moonstack-kms-seal', info 'root-material-v1').
-- * `sim` — moonstack.sim's CVM measurements, hashed as above. The simulator's measurements
--   are not secret, so a sim sealer exercises the format and the binding, not confidentiality.
local crypto = require('moonstack.crypto')

local M = {}

--- The prefix of every sealed blob.
M.MAGIC = 'MSEAL1'

local Sealer = {}
Sealer.__index = Sealer

--- Whether `data` is a sealed blob.
function M.is_sealed(data)
  return type(data) == 'string' and data:sub(1, #M.MAGIC) == M.MAGIC
end

--- Seal `plaintext` for the file `name`. Returns the blob.
function Sealer:seal(name, plaintext)
  assert(type(name) == 'string' and type(plaintext) == 'string',
    'sealer:seal: name and plaintext must be strings')
  local iv = crypto.random(12)
  return M.MAGIC .. iv .. crypto.aes256gcm.encrypt(self.key, iv, plaintext, name)
end

--- Unseal `blob` of the file `name`: the plaintext, or nil, 'EUNSEAL: ...', 'EUNSEAL' (not
--- sealed, truncated, sealed by other measurements, for another file, or tampered with).
function Sealer:unseal(name, blob)
  assert(type(name) == 'string' and type(blob) == 'string',
    'sealer:unseal: name and blob must be strings')
  if not M.is_sealed(blob) then
    return nil, 'EUNSEAL: not a sealed blob', 'EUNSEAL'
  end
  local n = #M.MAGIC
  if #blob < n + 12 + 16 then
    return nil, 'EUNSEAL: sealed blob truncated', 'EUNSEAL'
  end
  local pt = crypto.aes256gcm.decrypt(self.key, blob:sub(n + 1, n + 12), blob:sub(n + 13), name)
  if not pt then
    return nil, 'EUNSEAL: cannot unseal (sealed under other measurements, for another file, '
      .. 'or damaged)', 'EUNSEAL'
  end
  return pt
end

-- The sealer of backend `kind` whose key derives from the secret or measurements `ikm`.
local function sealer_of(kind, ikm)
  return setmetatable({ kind = kind, key = crypto.hkdf({ ikm = ikm, salt = 'moonstack-kms-seal',
    info = 'root-material-v1', length = 32 }) }, Sealer)
end

--- A sealer over measurements { mrtd, rtmr0, rtmr1, rtmr2 } (48 raw bytes each), `kind` names
--- the backend (status only).
function M.from_measurements(kind, m)
  assert(type(m) == 'table', 'seal.from_measurements: measurements table required')
  for _, f in ipairs({ 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2' }) do
    assert(type(m[f]) == 'string' and #m[f] == 48,
      ('seal.from_measurements: %s must be 48 bytes'):format(f))
  end
  return sealer_of(kind, m.mrtd .. m.rtmr0 .. m.rtmr1 .. m.rtmr2)
end

--- The sealer of the CVM's guest agent (moonstack.agent.client at unix socket `socket`, e.g.
--- /var/run/dstack.sock). Call from a task. Returns it or nil, 'EUNSEAL: ...', 'EUNSEAL' when
--- the agent cannot be asked or answers no key.
function M.agent(socket, timeout_ms)
  assert(type(socket) == 'string', 'seal.agent: socket path required')
  local guest = require('moonstack.agent.client').new(socket, { timeout_ms = timeout_ms })
  local key, err = guest:key('moonstack/kms/seal', 'root-material-v1')
  if not key then
    return nil, 'EUNSEAL: no sealing key: ' .. tostring(err), 'EUNSEAL'
  end
  return sealer_of('agent', key)
end

--- The sealer of a moonstack.sim backend (its CVM's current measurements). Returns it or nil,
--- msg, code.
function M.sim(tee)
  local m, err, code = tee:measurements()
  if not m then
    return nil, err, code
  end
  return M.from_measurements('sim', m)
end

return M
