-- SPDX-License-Identifier: Apache-2.0
-- What the dev stack needs from the machine, checked before anything starts so a missing piece
-- is named with the package that brings it (`make run` installs them all on Debian): root
-- (network and PID namespaces for each CVM, the WireGuard device), /dev/net/tun,
-- wireguard-go and wg, a Docker engine binary and docker-compose (each docker-compose CVM
-- runs an engine of its own), busybox-static (the example app's image). QEMU is optional:
-- without it the VMM runs on the process backend (moonstack.devstack.backend).
local uv = require('luv')
local process = require('moonstack.core.process')

local M = {}

--- { command, Debian package } the stack runs.
M.COMMANDS = {
  { 'wireguard-go', 'wireguard-go' },
  { 'wg', 'wireguard-tools' },
  { 'ip', 'iproute2' },
  { 'dockerd', 'docker.io' },
  { 'docker', 'docker.io' },
}

--- Check the machine. Returns true, or nil and a message naming everything missing.
function M.check()
  local missing = {}
  if uv.getuid() ~= 0 then
    missing[#missing + 1] = 'root (network namespaces per CVM and the WireGuard device): run it with sudo'
  end
  if not uv.fs_stat('/dev/net/tun') then
    missing[#missing + 1] = '/dev/net/tun (the WireGuard device of wireguard-go)'
  end
  local pkgs = {}
  for _, c in ipairs(M.COMMANDS) do
    if not process.which(c[1]) then
      missing[#missing + 1] = ('the command %s (Debian package %s)'):format(c[1], c[2])
      pkgs[#pkgs + 1] = c[2]
    end
  end
  local plugin = '/usr/libexec/docker/cli-plugins/docker-compose'
  if not process.which('docker-compose') and not uv.fs_stat(plugin) then
    missing[#missing + 1] = 'docker-compose (Debian package docker-compose)'
    pkgs[#pkgs + 1] = 'docker-compose'
  end
  local bb = uv.fs_stat('/bin/busybox')
  if not bb then
    missing[#missing + 1] = '/bin/busybox (Debian package busybox-static)'
    pkgs[#pkgs + 1] = 'busybox-static'
  end
  if #missing == 0 then
    return true
  end
  local msg = 'this machine lacks what the dev stack needs:\n  - ' .. table.concat(missing, '\n  - ')
  if #pkgs > 0 then
    msg = msg .. '\n`make run` installs them, or: apt-get install ' .. table.concat(pkgs, ' ')
  end
  return nil, msg
end

return M
