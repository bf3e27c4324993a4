-- SPDX-License-Identifier: Apache-2.0
-- System facts for the public listener's /metrics (public_sysinfo), in Prometheus text format
-- with dstack's metric names: OS, kernel, CPU, memory, swap, uptime, load averages (x100
-- integers) and disk usage of the data disks.
local uv = require('luv')
local fs = require('moonstack.core.fs')

local M = {}

--- Mount points whose usage is reported.
M.DATA_DISKS = { '/' }

local function label(v)
  return (tostring(v):gsub('[\\"\n]', { ['\\'] = '\\\\', ['"'] = '\\"', ['\n'] = '\\n' }))
end

local function os_release()
  local text = fs.read_file('/etc/os-release', 65536) or ''
  local t = {}
  for k, v in text:gmatch('([%w_]+)=([^\n]*)') do
    t[k] = v:gsub('^"(.*)"$', '%1')
  end
  return t.NAME or 'unknown', t.VERSION_ID or t.VERSION or 'unknown'
end

local function meminfo()
  local text = fs.read_file('/proc/meminfo', 65536) or ''
  local t = {}
  for k, v in text:gmatch('([%w_()]+):%s+(%d+)') do
    t[k] = tonumber(v) * 1024
  end
  return t
end

--- The facts as a table (bytes and seconds; load averages x100).
function M.collect()
  local name, version = os_release()
  local cpus = uv.cpu_info() or {}
  local mem = meminfo()
  local total = mem.MemTotal or uv.get_total_memory()
  local free = mem.MemFree or uv.get_free_memory()
  local avail = mem.MemAvailable or free
  local l1, l5, l15 = uv.loadavg()
  local disks = {}
  for _, mp in ipairs(M.DATA_DISKS) do
    local st = uv.fs_statfs(mp)
    if st then
      disks[#disks + 1] = { mount_point = mp, total = st.blocks * st.bsize,
        free = st.bavail * st.bsize }
    end
  end
  return {
    os_name = name, os_version = version, kernel_version = uv.os_uname().release,
    cpu_model = cpus[1] and cpus[1].model or 'unknown', num_cpus = #cpus,
    memory_total = total, memory_available = avail, memory_used = total - avail, memory_free = free,
    swap_total = mem.SwapTotal or 0, swap_free = mem.SwapFree or 0,
    swap_used = (mem.SwapTotal or 0) - (mem.SwapFree or 0), uptime = math.floor(uv.uptime()),
    load_1m = math.floor(l1 * 100 + 0.5), load_5m = math.floor(l5 * 100 + 0.5),
    load_15m = math.floor(l15 * 100 + 0.5), disks = disks,
  }
end

--- The Prometheus text of collect().
function M.metrics()
  local s = M.collect()
  local lines = {
    ('system_os_name{os_name="%s"} 1'):format(label(s.os_name)),
    ('system_os_version{os_version="%s"} 1'):format(label(s.os_version)),
    ('system_kernel_version{kernel_version="%s"} 1'):format(label(s.kernel_version)),
    ('system_cpu_model{cpu_model="%s"} 1'):format(label(s.cpu_model)),
  }
  for _, k in ipairs({ 'num_cpus', 'memory_total', 'memory_available', 'memory_used', 'memory_free',
      'swap_total', 'swap_used', 'swap_free', 'uptime' }) do
    lines[#lines + 1] = ('system_%s %d'):format(k, s[k])
  end
  for _, k in ipairs({ '1m', '5m', '15m' }) do
    lines[#lines + 1] = ('system_load_average_%s %d'):format(k, s['load_' .. k])
  end
  for _, d in ipairs(s.disks) do
    local l = ('{mount_point="%s"}'):format(label(d.mount_point))
    lines[#lines + 1] = ('system_disk_total_size%s %d'):format(l, d.total)
    lines[#lines + 1] = ('system_disk_free_size%s %d'):format(l, d.free)
  end
  return table.concat(lines, '\n') .. '\n'
end

return M
