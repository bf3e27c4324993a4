-- SPDX-License-Identifier: Apache-2.0
-- The configuration files a `--kind qemu` guest image carries (moonstack.vmm.image.qemu puts
-- them in its initramfs): /etc/moonstack/agent.lua (the guest agent), /etc/moonstack/image.conf
-- (what /init reads), the CA bundle, and the small /etc files a Debian userland expects.
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')

local M = {}

--- The image's /etc/moonstack/agent.lua for `flavour` (the shape the guest agent reads: the
--- virtio-serial transports and the remote TEE are named by port, found in the guest by
--- /sys/class/virtio-ports/*/name).
function M.agent_config(flavour)
  local runner = "  runner = { echo = true, stop_grace_ms = 3000 },"
  if flavour == 'docker' then
    runner = "  runner = { echo = true, stop_grace_ms = 3000,\n" ..
      "    docker_host = 'unix:///var/run/docker.sock', compose = 'standalone',\n" ..
      "    docker_probe_timeout_ms = 60000 }, -- compose v1 (Python) starts slowly under TCG"
  end
  return table.concat({
    '-- moonstack guest agent config (written by `moonstack image build --kind qemu`)',
    'return {',
    "  shared_dir = '/dstack/.host-shared', state_dir = '/var/lib/moonstack',",
    "  tee = { name = 'auto', remote = { serial = 'org.moonstack.tee' } },",
    "  listen = { dstack = { unix = '/var/run/dstack/dstack.sock' }, " ..
      "tappd = { unix = '/var/run/dstack/tappd.sock' },",
    "    public = { host = '0.0.0.0', port = 8090 }, guest = { serial = 'org.moonstack.guest-api' } },",
    "  host_api = { serial = 'org.moonstack.host-api' },",
    "  boot_progress_file = '/run/moonstack/boot-progress',",
    runner,
    '  code_reload = false,',
    '}',
    '',
  }, '\n')
end

--- /etc/moonstack/image.conf for `flavour` and kernel version `kver`: what /init reads.
function M.image_conf(flavour, kver)
  local lines = {
    '# moonstack guest image settings, read by /init',
    'FLAVOUR=' .. flavour,
    'KERNEL_VERSION=' .. kver,
    'POWEROFF_TIMEOUT=10',
  }
  if flavour == 'docker' then
    lines[#lines + 1] = 'ROOTFS=squashfs' -- the first virtio disk holding one
  end
  return table.concat(lines, '\n') .. '\n'
end

--- The CA bundle of the ca-certificates package (unpacked in `pkgdir`): its Mozilla roots,
--- as update-ca-certificates makes it (the certificates in name order, each ending with a
--- newline); or nil, msg, code.
function M.ca_bundle(pkgdir)
  local dir = pkgdir .. '/usr/share/ca-certificates/mozilla'
  local names = fs.names(dir, '%.crt$')
  if #names == 0 then
    return errors.fail('ENOENT', dir .. ': no certificates')
  end
  local out = {}
  for _, n in ipairs(names) do
    local pem, err, code = fs.read_file(dir .. '/' .. n)
    if not pem then
      return nil, err, code
    end
    out[#out + 1] = pem:sub(-1) == '\n' and pem or (pem .. '\n')
  end
  return table.concat(out)
end

--- The guest's small /etc files: { path, content }.
M.FILES = {
  { '/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n' },
  { '/etc/group', 'root:x:0:\ntty:x:5:\n' },
  { '/etc/hosts', '127.0.0.1\tlocalhost\n127.0.1.1\tmoonstack\n::1\tlocalhost ip6-localhost\n' },
  { '/etc/hostname', 'moonstack\n' },
  { '/etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n' },
  { '/etc/resolv.conf', 'nameserver 10.0.2.3\n' },
  { '/etc/os-release', 'PRETTY_NAME="moonstack guest"\nNAME="moonstack"\nID=moonstack\n' ..
    'ID_LIKE=debian\n' },
}

return M
