-- SPDX-License-Identifier: Apache-2.0
-- Example config for `moonstack vmm -c vmm-qemu.lua`: a development VMM whose CVMs are QEMU
-- guests (the qemu backend): TDX on a TDX host, KVM where a probe guest proves it runs, TCG
-- otherwise. Guests without TDX attest through the VMM's simulated quote service on the platform
-- in <dev>/sim (the one kms-dev.lua trusts). API on the unix socket <dev>/vmm-qemu.sock (0600).
-- <dev> is $MOONSTACK_DEV_DIR, else .dev/ at the root of the tree holding this file. Build an
-- image first: `moonstack image build --kind qemu --output <dev>/vmm-qemu/images/guest`
-- (`--flavour docker` for docker-compose apps), then `moonstack vm --url unix:<dev>/vmm-qemu.sock
-- deploy --name hello --image guest --compose app-compose.json --port tcp:127.0.0.1:21080:8080`.
local dev = os.getenv('MOONSTACK_DEV_DIR') or (config_dir:gsub('/examples/configs$', '') .. '/.dev')
return {
  listen = { unix = dev .. '/vmm-qemu.sock' },
  run_dir = dev .. '/vmm-qemu/vm',
  image_dir = dev .. '/vmm-qemu/images',
  backend = 'qemu',
  -- given to the guests as https://10.0.2.2:8000 (host_access below): the KMS on this host's
  -- loopback, its RPC certificate naming 10.0.2.2 (kms.lua: alt_names = { '10.0.2.2' })
  kms_urls = { 'https://localhost:8000' },
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 21000, to = 21999 } } },
  process = { sim_dir = dev .. '/sim' }, -- the simulated platform of the quote service
  qemu = { accel = 'auto', docker_images = {}, host_access = true }, -- restrict=off: the host as 10.0.2.2
  shutdown_timeout = 30,
  control = dev .. '/vmm-qemu.ctl',
}
