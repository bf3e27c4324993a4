-- SPDX-License-Identifier: Apache-2.0
-- The agent's ends of its VM's channels (moonstack.channel), for a VM whose host reaches it
-- over virtio-serial ports (the VMM's qemu backend) rather than unix sockets:
--   host_api = { serial = PORT }        the host API client goes through a local relay socket
--   listen.guest = { serial = PORT }    the guest API listens on a local socket that the relay
--                                       feeds with the host's requests
--   tee = { name = 'auto' | 'sim-remote', remote = { serial = PORT } }
--                                       'auto' is tdx when this guest has it (its device or
--                                       configfs-tsm), else the host's simulated quote service
--                                       (sim-remote) through a local relay socket
-- open(cfg) returns a copy of the config with those replaced by local unix paths under
-- state_dir, and the relays (close them with close_all); nil, msg, code on failure.
local uv = require('luv')
local channel = require('moonstack.channel')
local fs = require('moonstack.core.fs')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- Paths (tests) where a TDX guest shows its TEE.
M.TDX_PATHS = { '/dev/tdx_guest', '/sys/kernel/config/tsm/report' }

--- Whether this guest has TDX (one of M.TDX_PATHS exists).
function M.has_tdx()
  for _, p in ipairs(M.TDX_PATHS) do
    if uv.fs_stat(p) then
      return true, p
    end
  end
  return false
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = type(v) == 'table' and copy(v) or v
  end
  return out
end

--- Close the relays open() started.
function M.close_all(relays)
  for _, r in ipairs(relays or {}) do
    r:close()
  end
end

--- See the file comment. Returns cfg', relays or nil, msg, code.
function M.open(cfg)
  local out, relays = copy(cfg), {}
  local dir = cfg.state_dir .. '/channels'
  local function fail(err, code)
    M.close_all(relays)
    return nil, err, code
  end
  local function need_dir()
    return fs.mkdir_p(dir, 448)
  end
  if cfg.host_api and cfg.host_api.serial then
    local ok, err, code = need_dir()
    if not ok then return fail(err, code) end
    local path = dir .. '/host-api.sock'
    local r
    r, err, code = channel.serve({ serial = cfg.host_api.serial }, path)
    if not r then return fail('host_api: ' .. tostring(err), code) end
    relays[#relays + 1] = r
    out.host_api = { unix = path }
  end
  local guest = cfg.listen and cfg.listen.guest
  if type(guest) == 'table' and guest.serial then
    local ok, err, code = need_dir()
    if not ok then return fail(err, code) end
    local path = dir .. '/guest.sock'
    local r
    r, err, code = channel.connect({ serial = guest.serial }, path)
    if not r then return fail('listen.guest: ' .. tostring(err), code) end
    relays[#relays + 1] = r
    out.listen.guest = { unix = path }
  end
  local tee = cfg.tee
  if tee and (tee.name == 'auto' or tee.name == 'sim-remote') then
    local tdx, where = M.has_tdx()
    if tee.name == 'auto' and tdx then
      log.info('TEE: this guest has TDX', { found = where })
      out.tee = { name = 'tdx', runtime_log_dir = tee.runtime_log_dir, ccel_file = tee.ccel_file }
    elseif not tee.remote then
      return fail("tee: no TDX in this guest and no remote = { serial = PORT } for the host's "
        .. 'simulated quote service', 'ENOTSUP')
    else
      local ok, err, code = need_dir()
      if not ok then return fail(err, code) end
      local path = dir .. '/tee.sock'
      local r
      if tee.remote.unix then
        path = tee.remote.unix
      else
        r, err, code = channel.serve({ serial = tee.remote.serial }, path)
        if not r then return fail('tee.remote: ' .. tostring(err), code) end
        relays[#relays + 1] = r
      end
      log.info('TEE: no TDX in this guest: the host\'s simulated quote service',
        { remote = tee.remote.serial or tee.remote.unix })
      out.tee = { name = 'sim-remote', socket = path,
        runtime_log_dir = tee.runtime_log_dir or cfg.state_dir .. '/runtime-events' }
    end
  end
  return out, relays
end

--- The stages written to `path` by the VM's init before the agent ran (one per line).
function M.boot_stages(path)
  local out = {}
  local text = path and fs.read_file(path, 64 * 1024)
  for line in (text or ''):gmatch('[^\n]+') do
    out[#out + 1] = line:sub(1, 200)
  end
  return out
end

return M
