-- SPDX-License-Identifier: Apache-2.0
-- Times in collateral and reports: RFC 3339 / ISO 8601 UTC strings and ASN.1 UTCTime /
-- GeneralizedTime to Unix seconds (no dependence on the local time zone), and back.
local M = {}

-- Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's algorithm).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil(y, mo, d, h, mi, s)
  y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or s > 60 then
    return nil
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
end

--- Unix seconds of an RFC 3339 time ('2024-03-13T00:00:00Z'; a fraction and a numeric offset
--- are allowed), or of a number (returned as is). nil if it cannot be parsed.
function M.parse(v)
  if type(v) == 'number' then
    return v
  end
  if type(v) ~= 'string' then
    return nil
  end
  local y, mo, d, h, mi, s, rest = v:match('^(%d%d%d%d)-(%d%d)-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$')
  if not y then
    return nil
  end
  rest = rest:gsub('^%.%d+', '')
  local offset = 0
  if rest ~= 'Z' and rest ~= 'z' then
    local sign, oh, om = rest:match('^([-+])(%d%d):?(%d%d)$')
    if not sign then
      return nil
    end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == '+' and 1 or -1)
  end
  local t = civil(y, mo, d, h, mi, s)
  return t and t - offset
end

--- Unix seconds of an ASN.1 UTCTime ('YYMMDDHHMMSSZ', years 1950..2049) or GeneralizedTime
--- ('YYYYMMDDHHMMSSZ'); nil otherwise.
function M.parse_asn1(s, generalized)
  local y, rest
  if generalized then
    y, rest = s:match('^(%d%d%d%d)(%d%d%d%d%d%d%d%d%d%dZ)$')
  else
    y, rest = s:match('^(%d%d)(%d%d%d%d%d%d%d%d%d%dZ)$')
    if y then
      y = tonumber(y)
      y = tostring(y < 50 and 2000 + y or 1900 + y)
    end
  end
  if not y then
    return nil
  end
  local mo, d, h, mi, sec = rest:match('^(%d%d)(%d%d)(%d%d)(%d%d)(%d%d)Z$')
  return civil(y, mo, d, h, mi, sec)
end

--- RFC 3339 UTC text of Unix seconds.
function M.iso(t)
  return os.date('!%Y-%m-%dT%H:%M:%SZ', t)
end

return M
