-- SPDX-License-Identifier: Apache-2.0
-- The KMS's part of the dashboard (moonstack.ui), on its admin listener: snapshot { decisions
-- (the newest 50 of Kms:decisions, newest first), policies = { { name, version, sha256, path,
-- error? } } (the policy auth backend's file; error: why the last reload was refused, while the
-- previous policy keeps deciding) }; events `kms.decision` (the decision's record) and
-- `policy.reload` (of the KMS's auth policy); action `policy_reload` (POST
-- /dashboard/api/policy_reload). Same credentials as the admin API, plus the one-time
-- `admin.login_token_file`.
local events = require('moonstack.core.events')
local feed_mod = require('moonstack.ui.feed')
local mount = require('moonstack.ui.mount')
local wire = require('moonstack.ui.wire')

local M = {}

--- The policy host's name of the KMS auth policy (its policy.reload events).
M.POLICY_HOST = 'kms-auth'
--- Decisions in a snapshot.
M.SNAPSHOT_DECISIONS = 50

--- The decision record (as Kms:decisions gives them) of a `kms.decision` event.
M.record = require('moonstack.kms.decisions').record

-- The policies of `kms` for the snapshot.
local function policies(kms, last_error)
  local st = kms.auth and kms.auth:status() or {}
  if st.kind ~= 'policy' then
    return wire.array()
  end
  return wire.array({ { name = st.name, version = st.version, sha256 = st.sha256, path = st.path,
    host = M.POLICY_HOST, error = last_error.text, loaded_at = st.loaded_at } })
end

--- Mount the KMS part on the admin listener `server` of `kms` (before its catch-all route and
--- before listen). Returns the dashboard (moonstack.ui.mount's; close() when stopping).
function M.mount(kms, server)
  local last_error = {}
  local sub = events.subscribe('policy.reload', function(ev)
    if ev.data.host == M.POLICY_HOST then
      last_error.text = not ev.data.ok and tostring(ev.data.error) or nil
    end
  end)
  local feed = feed_mod.new({ part = 'kms',
    snapshot = function()
      return { decisions = wire.array(kms:decisions(M.SNAPSHOT_DECISIONS)),
        policies = policies(kms, last_error) }
    end,
    filter = function(ev)
      return ev.topic == 'kms.decision' or (ev.topic == 'policy.reload'
        and ev.data.host == M.POLICY_HOST)
    end,
    map = function(ev)
      if ev.topic == 'kms.decision' then
        ev.data = M.record(ev)
      end
      return ev
    end })
  local cfg = kms.cfg.admin
  local dash = mount.mount(server, { part = 'kms', feed = feed, creds = kms.admin_creds,
    limiter = kms.login_limit, realm = 'dstack-kms admin', login_token_file = cfg.login_token_file,
    actions = {
      policy_reload = function()
        local st, err = kms.auth:reload()
        if not st then
          return 400, { ok = false, error = tostring(err) }
        end
        return 200, { ok = true, policies = policies(kms, last_error) }
      end,
    } })
  local close = dash.close
  dash.close = function()
    sub:close()
    close()
  end
  return dash
end

return M
