-- SPDX-License-Identifier: Apache-2.0
-- The app's encrypted environment (spec kms-vmm-gateway.md §2) and the launch-token checks.
-- decrypt(): X25519 + AES-256-GCM blob opened with the app's env_crypt_key
-- (moonstack.crypto.dstack.env_decrypt), then upstream's parse_env rules: at most 1024
-- entries; a key not in allowed_envs is dropped silently (logged); an allowed key must be
-- ≤ 255 bytes and match ^[a-zA-Z_][a-zA-Z0-9_]*$, a value ≤ 128 KiB, the total ≤ 1 MiB —
-- any violation fails the boot. Launch tokens (the "LAUNCH_TOKEN pattern"):
--   * requirements.launch_token_hash (checked before any key is requested): the token is
--     .user-config's JSON dstack.launch_token, ≥ 32 bytes, and
--     SHA-256("dstack-launch-token/v1:" || token) must equal the pinned hash;
--   * the legacy app-level pattern: top-level launch_token_hash = hex SHA-256(token) with the
--     token in the decrypted env as APP_LAUNCH_TOKEN (checked after decryption).
-- Comparisons are constant-time (crypto.equal).
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local errors = require('moonstack.core.errors')
local log = require('moonstack.core.log').new('agent')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

M.MAX_ITEMS = 1024
M.MAX_KEY = 255
M.MAX_VALUE = 128 * 1024
M.MAX_TOTAL = 1024 * 1024
--- Domain prefix of requirements.launch_token_hash.
M.LAUNCH_TOKEN_DOMAIN = 'dstack-launch-token/v1:'
--- Minimum launch token length (bytes).
M.LAUNCH_TOKEN_MIN_LEN = 32

--- Parse decrypted env JSON ({"env":[{"key","value"}...]}) keeping only allowed keys.
--- `allowed` is a set { KEY = true }. Returns { KEY = value } and the list of dropped keys,
--- or nil, 'EINVAL: ...', 'EINVAL'.
function M.parse(json_text, allowed)
  local data = cjson.decode(json_text)
  if type(data) ~= 'table' or type(data.env) ~= 'table' then
    return errors.fail('EINVAL', 'decrypted env: expected {"env": [{"key": ..., "value": ...}]}')
  end
  if #data.env > M.MAX_ITEMS then
    return errors.fail('EINVAL', ('too many environment variables: %d'):format(#data.env))
  end
  local env, dropped, total = {}, {}, 0
  for i, pair in ipairs(data.env) do
    if type(pair) ~= 'table' or type(pair.key) ~= 'string' or type(pair.value) ~= 'string' then
      return errors.fail('EINVAL', ('decrypted env entry %d: key and value must be strings'):format(i))
    end
    local key, value = pair.key, pair.value
    if not allowed[key] then
      dropped[#dropped + 1] = key
    else
      if #key > M.MAX_KEY then
        return errors.fail('EINVAL', ('environment variable name too long: %s...'):format(key:sub(1, 32)))
      end
      if #value > M.MAX_VALUE then
        return errors.fail('EINVAL', ('environment variable value too long for key: %s'):format(key))
      end
      if not key:match('^[a-zA-Z_][a-zA-Z0-9_]*$') then
        return errors.fail('EINVAL', ('invalid env key: %s'):format(key))
      end
      total = total + #key + #value
      if total > M.MAX_TOTAL then
        return errors.fail('EINVAL', 'environment variables total size too large')
      end
      env[key] = value
    end
  end
  return env, dropped
end

--- Decrypt the .encrypted-env blob with `env_crypt_key` and keep the allowed keys. An empty
--- key or blob gives an empty env (non-KMS providers ignore the file). Returns env, dropped
--- or nil, msg, code.
function M.decrypt(env_crypt_key, blob, allowed)
  if env_crypt_key == nil or env_crypt_key == '' or blob == nil or blob == '' then
    return {}, {}
  end
  if #env_crypt_key ~= 32 then
    return errors.fail('EINVAL', ('invalid env crypt key length %d'):format(#env_crypt_key))
  end
  local plain, err = dstack.env_decrypt(env_crypt_key, blob)
  if not plain then
    return errors.fail('EDECRYPT', 'failed to decrypt the encrypted env: ' .. tostring(err))
  end
  local env, dropped, code = M.parse(plain, allowed)
  if not env then
    return nil, dropped, code -- dropped holds the message here
  end
  for _, k in ipairs(dropped) do
    log.warn('skipping an environment variable not in allowed_envs', { key = k })
  end
  return env, dropped
end

local QUOTE_CHARS = ' \t|&;<>()$`\\"\'\n'

local function escape_value(v)
  local needs = false
  for i = 1, #QUOTE_CHARS do
    if v:find(QUOTE_CHARS:sub(i, i), 1, true) then
      needs = true
      break
    end
  end
  local escaped = v:gsub('[\n"$`]', { ['\n'] = '\\n', ['"'] = '\\"', ['$'] = '\\$', ['`'] = '\\`' })
  return needs and ('"' .. escaped .. '"') or escaped
end

--- The .decrypted-env text: KEY=VALUE lines sorted by key, values quoted/escaped as upstream.
function M.dotenv(env)
  local out = {}
  for _, k in ipairs(sorted_keys(env)) do
    out[#out + 1] = k .. '=' .. escape_value(env[k]) .. '\n'
  end
  return table.concat(out)
end

--- The .decrypted-env.json text: {KEY: VALUE} with sorted keys.
function M.json(env)
  local out = {}
  for _, k in ipairs(sorted_keys(env)) do
    out[#out + 1] = cjson.encode(k) .. ':' .. cjson.encode(env[k])
  end
  return (('{' .. table.concat(out, ',') .. '}'):gsub('\\/', '/'))
end

local function hash_pin(hex, what)
  local expected = type(hex) == 'string' and crypto.unhex(hex)
  if not expected then
    return errors.fail('EINVAL', what .. ' is not a hex string')
  end
  if #expected ~= 32 then
    return errors.fail('EINVAL', ('%s: expected a 32-byte sha256 hex, got %d bytes'):format(what,
      #expected))
  end
  return expected
end

--- requirements.launch_token_hash against .user-config (dstack.launch_token). `pin` = the
--- hex hash; `user_config` = the file's text. Returns true or nil, 'EDENIED: ...' (mismatch,
--- short or missing token) / 'EINVAL: ...' (bad pin or user config).
function M.check_launch_token(pin, user_config)
  local expected, err, code = hash_pin(pin, 'requirements.launch_token_hash')
  if not expected then
    return nil, err, code
  end
  local uc = cjson.decode(user_config or '')
  if type(uc) ~= 'table' then
    return errors.fail('EINVAL', 'user_config is not JSON (needed for requirements.launch_token_hash)')
  end
  local token = type(uc.dstack) == 'table' and uc.dstack.launch_token or nil
  if token == nil then
    return errors.fail('EDENIED', 'user_config is missing dstack.launch_token')
  end
  if type(token) ~= 'string' then
    return errors.fail('EINVAL', 'user_config dstack.launch_token is not a string')
  end
  if #token < M.LAUNCH_TOKEN_MIN_LEN then
    return errors.fail('EDENIED', ('launch token too short: got %d bytes, minimum is %d'):format(
      #token, M.LAUNCH_TOKEN_MIN_LEN))
  end
  if not crypto.equal(crypto.sha256(M.LAUNCH_TOKEN_DOMAIN .. token), expected) then
    return errors.fail('EDENIED', 'launch token mismatch: sha256("' .. M.LAUNCH_TOKEN_DOMAIN
      .. '" || launch token) does not match requirements.launch_token_hash')
  end
  return true
end

--- The legacy APP_LAUNCH_TOKEN pattern: app-compose top-level `launch_token_hash` (hex
--- SHA-256 of the token) against env.APP_LAUNCH_TOKEN. Returns true ('skipped' when no hash
--- is configured) or nil, 'EDENIED: ...' / 'EINVAL: ...'.
function M.check_app_launch_token(pin, env)
  if pin == nil or pin == cjson.null then
    return true, 'skipped'
  end
  local expected, err, code = hash_pin(pin, 'launch_token_hash')
  if not expected then
    return nil, err, code
  end
  local token = env.APP_LAUNCH_TOKEN
  if type(token) ~= 'string' then
    return errors.fail('EDENIED', 'launch_token_hash is set but APP_LAUNCH_TOKEN is not in the '
      .. 'decrypted env (it must be listed in allowed_envs)')
  end
  if not crypto.equal(crypto.sha256(token), expected) then
    return errors.fail('EDENIED', 'incorrect APP_LAUNCH_TOKEN: its sha256 does not match launch_token_hash')
  end
  return true
end

return M
