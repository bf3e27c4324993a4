-- SPDX-License-Identifier: Apache-2.0
-- The gateway's WireGuard hub (kms-vmm-gateway.md §6.6): one device (moonstack.wg: wireguard-go
-- through its UAPI socket) whose peers are kept equal to the registered instances — each
-- { public_key, allowed_ips = { '<ip>/32' }, persistent_keepalive = 25 } — replaced live after
-- every registration or recycle (coalesced), the handshake times read in the background every
-- wg.refresh_interval seconds (never per request) and fed into the state (backend health for
-- the proxy snapshot), and the wg-quick style config written (0600) to wg.config_path for
-- operators: [Interface] PrivateKey, ListenPort + one [Peer] per instance.
local uv = require('luv')
local fs = require('moonstack.core.fs')
local task = require('moonstack.core.task')

local M = {}

--- PersistentKeepalive of every peer (seconds), as upstream.
M.KEEPALIVE = 25

--- The private key of a validated wg config: private_key, else the content of
--- private_key_file (refused when its group or others may read it; a fresh key is written
--- there, 0600, when the file does not exist). nil, msg, code on failure.
function M.private_key(cfg)
  if cfg.private_key then
    return cfg.private_key
  end
  local ok, err, code = fs.check_private(cfg.private_key_file, 'wg.private_key_file')
  if not ok and code == 'ENOENT' then -- the first start: make one
    local key = require('moonstack.native.wg').genkey()
    ok, err, code = fs.write_atomic(cfg.private_key_file, key .. '\n', 384)
    if not ok then
      return nil, 'wg.private_key_file: ' .. tostring(err), code
    end
    return key
  end
  if not ok then
    return nil, err, code
  end
  local text
  text, err, code = fs.read_file(cfg.private_key_file, 4096)
  if not text then
    return nil, 'wg.private_key_file: ' .. tostring(err), code
  end
  return (text:gsub('%s+', ''))
end

--- The peers of the device for `instances` (state:list()).
function M.peers(instances)
  local out = {}
  for _, inst in ipairs(instances) do
    out[#out + 1] = { public_key = inst.public_key, allowed_ips = { inst.ip .. '/32' },
      persistent_keepalive = M.KEEPALIVE }
  end
  return out
end

--- The config (moonstack.wg.render_config's table) for wg settings `cfg`, private key `key`,
--- and `instances`.
function M.config(cfg, key, instances)
  return { private_key = key, listen_port = cfg.listen_port, peers = M.peers(instances) }
end

local Hub = {}
Hub.__index = Hub

-- Call dev:<method>(..., cb) from a task and wait for cb.
local function await(dev, method, ...)
  local args = { ... }
  return task.await(function(done)
    args[#args + 1] = done
    dev[method](dev, unpack(args))
  end)
end

--- Open the hub (in a task): the device, its peers from `state`, the refresh timer, the config
--- file. opts = { cfg = validated wg config, state, log, data_dir, wg = module (default
--- require('moonstack.wg')) }. Returns the hub or nil, msg, code.
function M.open(opts)
  local cfg, log = opts.cfg, opts.log
  if cfg.device == false then -- addresses only: the operator runs the device
    local key, err, code = M.private_key(cfg)
    if not key then
      return nil, err, code
    end
    log.warn('wg.device = false: no WireGuard device is driven here (peers are not applied)')
    return setmetatable({ cfg = cfg, state = opts.state, log = log, key = key, syncs = 0,
      sync_failures = 0, refreshes = 0, pubkey = require('moonstack.native.wg').pubkey(key) }, Hub)
  end
  local wgmod = opts.wg
  if not wgmod then
    local ok, mod = pcall(require, 'moonstack.wg')
    if not ok then
      return nil, 'ENOTSUP: the WireGuard module (moonstack.wg) is not available', 'ENOTSUP'
    end
    wgmod = mod
  end
  local key, err, code = M.private_key(cfg)
  if not key then
    return nil, err, code
  end
  local dir = opts.data_dir or '/run/moonstack'
  local self = setmetatable({ cfg = cfg, state = opts.state, log = log, wg = wgmod, key = key,
    config_path = cfg.config_path or (dir .. '/wg.conf'), syncs = 0, sync_failures = 0,
    refreshes = 0 }, Hub)
  self.pubkey = require('moonstack.native.wg').pubkey(key)
  self.dev, err, code = wgmod.open({ ifname = cfg.interface, private_key = key,
    listen_port = cfg.listen_port, address = cfg.ip, netns = cfg.netns,
    run_dir = cfg.run_dir, userspace = cfg.userspace }, log)
  if not self.dev then
    return nil, 'wg: ' .. tostring(err), code
  end
  local ok
  ok, err, code = self:sync()
  if not ok then
    self:close()
    return nil, err, code
  end
  opts.state:on_change(function(_, what)
    if what ~= 'handshakes' then
      self:sync_soon()
    end
  end)
  self.timer = uv.new_timer()
  local ms = math.floor(cfg.refresh_interval * 1000)
  self.timer:start(ms, ms, function()
    if not self.refreshing then
      self.refreshing = true
      task.spawn_named('gateway:wg-handshakes', function()
        self:refresh()
        self.refreshing = false
      end)
    end
  end)
  return self
end

--- The device's public key (base64).
function Hub:public_key()
  return self.pubkey
end

--- Make the device's peers the registered instances now, and write the config file. Call
--- from a task. True or nil, msg, code.
function Hub:sync()
  local instances = self.state:list()
  local res, err, code = await(self.dev, 'set_peers', M.peers(instances))
  self.syncs = self.syncs + 1
  if res == nil and err ~= nil then
    self.sync_failures = self.sync_failures + 1
    self.log.error('cannot set the WireGuard peers', { error = err })
    return nil, err, code
  end
  if self.wg.render_config then
    local ok, werr = fs.write_atomic(self.config_path,
      self.wg.render_config(M.config(self.cfg, self.key, instances)), 384)
    if not ok then
      self.log.warn('cannot write the WireGuard config file', { path = self.config_path,
        error = werr })
    end
  end
  return true
end

--- sync() soon, coalescing the changes of one loop turn (and of a sync in flight).
function Hub:sync_soon()
  if self.pending then
    return
  end
  self.pending = true
  task.spawn_named('gateway:wg-sync', function()
    while self.syncing do
      task.sleep(10)
    end
    self.pending = false
    self.syncing = true
    pcall(self.sync, self)
    self.syncing = false
  end)
end

--- Read the handshake times once and feed them into the state. Call from a task.
function Hub:refresh()
  local hs, err = await(self.dev, 'handshakes')
  if type(hs) ~= 'table' then
    self.log.warn('cannot read the WireGuard handshakes', { error = err })
    return nil, err
  end
  self.refreshes = self.refreshes + 1
  self.state:set_handshakes(hs)
  return hs
end

--- { public_key, interface, config_path, syncs, sync_failures, refreshes, device }
function Hub:status()
  return { device = self.dev ~= nil, public_key = self.pubkey, interface = self.cfg.interface,
    config_path = self.config_path, syncs = self.syncs, sync_failures = self.sync_failures,
    refreshes = self.refreshes }
end

--- Stop the refresh timer and close the device. Idempotent.
function Hub:close()
  if self.timer and not self.timer:is_closing() then
    self.timer:close()
  end
  self.timer = nil
  if self.dev then
    self.dev:close()
    self.dev = nil
  end
end

return M
