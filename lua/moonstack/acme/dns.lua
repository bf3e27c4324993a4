-- SPDX-License-Identifier: Apache-2.0
-- A small DNS client for the DNS-01 self-check (kms-vmm-gateway.md §6.9): TXT queries over UDP
-- (luv) to a given server ('ip' or 'ip:port', e.g. 127.0.0.1:8053 for pebble-challtestsrv),
-- answers parsed strictly (ids, lengths, compression pointers bounded), and the wait loop:
-- 250 ms doubling up to 32 s until every expected value is seen or max_wait passes.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local task = require('moonstack.core.task')

local M = {}

M.TYPE_TXT = 16
M.TYPE_CAA = 257

--- The wire form of a query for `name` and `qtype` with id `id`.
function M.query(name, qtype, id)
  local parts = { string.char(math.floor(id / 256), id % 256, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0) }
  for label in name:gsub('%.$', ''):gmatch('[^.]+') do
    assert(#label < 64, 'dns.query: a label longer than 63')
    parts[#parts + 1] = string.char(#label) .. label
  end
  parts[#parts + 1] = string.char(0, math.floor(qtype / 256), qtype % 256, 0, 1)
  return table.concat(parts)
end

local function u16(s, i)
  local a, b = s:byte(i, i + 1)
  if not b then
    return nil
  end
  return a * 256 + b
end

-- Skip a (possibly compressed) name at `i`; the position after it, or nil.
local function skip_name(s, i)
  for _ = 1, 128 do
    local len = s:byte(i)
    if not len then
      return nil
    end
    if len == 0 then
      return i + 1
    elseif len >= 192 then
      return s:byte(i + 1) and i + 2 or nil
    elseif len >= 64 then
      return nil
    end
    i = i + 1 + len
  end
  return nil
end

--- Parse an answer to query `id` of type `qtype`: a list of the answers' RDATA (TXT: the
--- character-strings joined; others raw), or nil, msg, code (EPROTO, ENXDOMAIN is an empty list).
function M.parse(s, id, qtype)
  if #s < 12 or u16(s, 1) ~= id then
    return nil, 'EPROTO: a DNS answer with another id or too short', 'EPROTO'
  end
  local flags = u16(s, 3)
  if flags < 32768 then
    return nil, 'EPROTO: not a DNS response', 'EPROTO'
  end
  local rcode = flags % 16
  if rcode == 3 then
    return {}
  elseif rcode ~= 0 then
    return nil, ('EDNS: the server answered rcode %d'):format(rcode), 'EDNS'
  end
  local qd, an = u16(s, 5), u16(s, 7)
  local i = 13
  for _ = 1, qd do
    i = skip_name(s, i)
    if not i then
      return nil, 'EPROTO: a bad question name', 'EPROTO'
    end
    i = i + 4
  end
  local out = {}
  for _ = 1, math.min(an, 64) do
    i = skip_name(s, i)
    if not i or i + 10 > #s + 1 then
      return nil, 'EPROTO: a truncated answer', 'EPROTO'
    end
    local rtype, rdlen = u16(s, i), u16(s, i + 8)
    i = i + 10
    if i + rdlen > #s + 1 then
      return nil, 'EPROTO: RDATA past the end', 'EPROTO'
    end
    local rdata = s:sub(i, i + rdlen - 1)
    i = i + rdlen
    if rtype == qtype then
      if qtype == M.TYPE_TXT then
        local strs, j = {}, 1
        while j <= #rdata do
          local n = rdata:byte(j)
          if j + n > #rdata then
            return nil, 'EPROTO: a TXT string past its RDATA', 'EPROTO'
          end
          strs[#strs + 1] = rdata:sub(j + 1, j + n)
          j = j + 1 + n
        end
        out[#out + 1] = table.concat(strs)
      else
        out[#out + 1] = rdata
      end
    end
  end
  return out
end

local function split_server(server)
  local host, port = server:match('^([%d%.]+):(%d+)$')
  if host then
    return host, tonumber(port)
  end
  if server:match('^[%d%.]+$') then
    return server, 53
  end
  return nil
end

--- Ask `server` ('ip[:port]') for the records of `qtype` (default TXT) at `name`, waiting at
--- most `timeout_ms` (2000). In a task. Returns the list or nil, msg, code.
function M.lookup(server, name, qtype, timeout_ms)
  qtype = qtype or M.TYPE_TXT
  local host, port = split_server(server)
  if not host then
    return nil, 'EINVAL: dns server must be ip[:port]: ' .. tostring(server), 'EINVAL'
  end
  local b = crypto.random(2)
  local id = b:byte(1) * 256 + b:byte(2)
  local udp = uv.new_udp()
  local answer, err, code = task.await(function(resume)
    udp:recv_start(function(rerr, data, addr)
      if rerr then
        resume(nil, 'EDNS: ' .. tostring(rerr), 'EDNS')
      elseif data and addr and addr.ip == host and addr.port == port then
        local list, perr, pcode = M.parse(data, id, qtype)
        if list or pcode ~= 'EPROTO' or not perr:find('another id') then
          resume(list, perr, pcode)
        end
      end
    end)
    udp:send(M.query(name, qtype, id), host, port, function(serr)
      if serr then
        resume(nil, 'EDNS: send: ' .. tostring(serr), 'EDNS')
      end
    end)
  end, { timeout = timeout_ms or 2000, what = ('DNS %s query for %s at %s'):format(
    qtype == M.TYPE_TXT and 'TXT' or tostring(qtype), name, server) })
  udp:recv_stop()
  udp:close()
  return answer, err, code
end

--- Wait until the TXT records of `fqdn` at `server` include every value of `values`: tries
--- after 250 ms, 500 ms, ... up to 32 s between tries, until `max_wait_s` has passed (then the
--- caller proceeds anyway, as upstream does). Returns true when seen, false, last_error when not.
function M.wait_txt(server, fqdn, values, max_wait_s)
  local deadline = uv.now() + max_wait_s * 1000
  local delay, last = 250
  while true do
    local got, err = M.lookup(server, fqdn, M.TYPE_TXT)
    if got then
      local have = {}
      for _, v in ipairs(got) do
        have[v] = true
      end
      local all = true
      for _, v in ipairs(values) do
        all = all and have[v] == true
      end
      if all then
        return true
      end
      last = ('%d TXT record(s), not all expected'):format(#got)
    else
      last = err
    end
    local left = deadline - uv.now()
    if left <= 0 then
      return false, last
    end
    task.sleep(math.min(delay, left))
    delay = math.min(delay * 2, 32000)
  end
end

return M
