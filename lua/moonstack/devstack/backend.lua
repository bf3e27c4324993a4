-- SPDX-License-Identifier: Apache-2.0
-- Which VMM backend `moonstack dev up` runs its CVMs on (--backend auto | qemu | process), and
-- the guest image it needs, built into vmm/images/ or reused while this binary is unchanged:
--   qemu     each CVM a QEMU guest (TDX on a TDX host, KVM where a probe guest proves it runs,
--            else TCG: moonstack.qemu.probe_accel) booted from a docker-flavour `--kind qemu`
--            image (vmm/images/moonstack-qemu; the Debian cache is moonstack.vmm.image.qemu's
--            default, $MOONSTACK_IMAGE_CACHE first), on user networking with host_access: it
--            reaches the KMS, the gateway and its WireGuard hub on this host's loopback as
--            10.0.2.2;
--   process  each CVM a process tree in namespaces of its own (vmm/images/moonstack).
-- auto takes qemu when QEMU is installed, its accelerator probe answers, and the image builds;
-- else process, saying why. The `backend:` progress line names the choice and its reason.
local uv = require('luv')
local cjson = require('cjson.safe')
local fs = require('moonstack.core.fs')
local process = require('moonstack.core.process')
local crypto = require('moonstack.crypto')

local M = {}

--- The names --backend takes.
M.CHOICES = { auto = true, qemu = true, process = true }

--- The QEMU the dev stack's VMM runs.
M.QEMU = 'qemu-system-x86_64'

--- The image names in vmm/images/ of each backend.
M.IMAGE = { process = 'moonstack', qemu = 'moonstack-qemu' }

local PROCESS_WHY = 'each CVM a process tree in namespaces of its own'

local function file_sha256(path)
  local st = uv.fs_stat(path)
  local data = st and fs.read_file(path, st.size + 1)
  return data and crypto.hex(crypto.sha256(data)) or nil
end

-- The process image of this binary in vmm/images/moonstack, rebuilt only when the binary
-- changed. Returns whether it was built now, or nil, msg.
local function process_image(images_dir)
  local dir = images_dir .. '/' .. M.IMAGE.process
  local exe = uv.exepath()
  if uv.fs_stat(dir .. '/metadata.json') and file_sha256(exe) == file_sha256(dir .. '/bin/moonstack') then
    return false
  end
  local img, err = require('moonstack.vmm.images').build_process(dir, { binary = exe,
    version = require('moonstack.native.runtime').version(), is_dev = true,
    description = 'moonstack dev stack process image' })
  if not img then
    return nil, err
  end
  return true
end

-- The docker-flavour qemu image of this binary in vmm/images/moonstack-qemu (inside a task),
-- rebuilt only when the binary changed (metadata.json's moonstack_sha256) or a file is
-- missing; the builder's progress goes to `log`. Returns whether it was built now, or nil, msg.
local function qemu_image(images_dir, log, say)
  local dir = images_dir .. '/' .. M.IMAGE.qemu
  local exe = uv.exepath()
  local meta = cjson.decode(fs.read_file(dir .. '/metadata.json') or '')
  if type(meta) == 'table' and meta.moonstack_sha256 == file_sha256(exe) then
    local complete = true
    for _, f in ipairs({ 'vmlinux', 'initramfs.cpio.gz', 'rootfs.img', 'digest.txt' }) do
      complete = complete and uv.fs_stat(dir .. '/' .. f) ~= nil
    end
    if complete then
      return false
    end
  end
  say('building the qemu guest image (vmm/images/%s, docker flavour; about a minute, longer '
    .. 'while the Debian cache is cold; progress in %s)', M.IMAGE.qemu, log)
  local out = io.open(log, 'a')
  local img, err = require('moonstack.vmm.image.qemu').build(dir, { flavour = 'docker',
    binary = exe, version = require('moonstack.native.runtime').version(), is_dev = true,
    description = 'moonstack dev stack qemu image (docker flavour)',
    progress = function(line)
      if out then
        out:write(line, '\n')
        out:flush()
      end
    end })
  if out then
    out:close()
  end
  if not img then
    return nil, ('%s (the build log: %s)'):format(tostring(err):gsub('^E[A-Z0-9_]+: ', ''), log)
  end
  return true
end

-- Whether QEMU can boot a guest here (inside a task): { accel, why } or nil, reason.
local function probe_qemu()
  if not process.which(M.QEMU) then
    return nil, M.QEMU .. ' is not installed (apt-get install qemu-system-x86)'
  end
  local ok, q = pcall(require, 'moonstack.qemu')
  if not ok then
    return nil, 'this build has no QEMU support'
  end
  local accel, why = q.probe_accel({ qemu = M.QEMU, timeout_ms = 4000 })
  if not accel then
    return nil, tostring(why)
  end
  return { accel = accel, why = why }
end

--- Choose the backend (inside a task) for `want` ('auto', 'qemu' or 'process') and make its
--- image. opts = { images_dir (vmm/images), log (the qemu image build log), say =
--- fn(fmt, ...) }. Returns { name, image, built, accel?, reason } or nil, msg (want 'qemu' and
--- QEMU cannot boot a guest here or its image cannot be built; any image failure of process).
function M.prepare(want, opts)
  local say = opts.say
  local why_not
  if want == 'qemu' or want == 'auto' then
    local probe, perr = probe_qemu()
    if probe then
      local t0 = uv.hrtime()
      local built, ierr = qemu_image(opts.images_dir, opts.log, say)
      if built ~= nil then
        return { name = 'qemu', image = M.IMAGE.qemu, built = built, accel = probe.accel,
          build_s = (uv.hrtime() - t0) / 1e9,
          reason = ('QEMU guests under %s (%s); the host\'s loopback as 10.0.2.2'):format(
            probe.accel, probe.why) }
      end
      why_not = 'the qemu guest image could not be built: ' .. tostring(ierr)
    else
      why_not = 'QEMU cannot boot a guest here: ' .. tostring(perr)
    end
    if want == 'qemu' then
      return nil, '--backend qemu: ' .. why_not
    end
  end
  local built, err = process_image(opts.images_dir)
  if built == nil then
    return nil, err
  end
  return { name = 'process', image = M.IMAGE.process, built = built,
    reason = want == 'process' and (PROCESS_WHY .. '; --backend process')
      or (PROCESS_WHY .. '; not qemu: ' .. why_not) }
end

return M
