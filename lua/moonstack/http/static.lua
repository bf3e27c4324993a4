-- SPDX-License-Identifier: Apache-2.0
-- Static files from a subtree of ui/ (moonstack.http.assets) for the HTTP servers: MIME types,
-- a strong ETag (a hash of the bytes, computed once per file) with If-None-Match -> 304,
-- Cache-Control, X-Content-Type-Options: nosniff, HEAD, '<dir>/' -> '<dir>/index.html'.
-- Request paths are checked before anything is read: only plain segments (assets.valid), so
-- '..', '%2e%2e' (the transport has decoded once; '%' is refused, never decoded again),
-- backslashes, NUL and absolute paths are a 404, and no answer names a path.
-- Mounted with moonstack.http.server's Server:static(prefix, dir, opts).
local assets = require('moonstack.http.assets')
local crypto = require('moonstack.crypto')
local log = require('moonstack.core.log').new('http')

local M = {}

--- Content types by file extension (lowercase); others are application/octet-stream.
M.MIME = {
  html = 'text/html; charset=utf-8',
  htm = 'text/html; charset=utf-8',
  js = 'text/javascript; charset=utf-8',
  mjs = 'text/javascript; charset=utf-8',
  css = 'text/css; charset=utf-8',
  svg = 'image/svg+xml',
  png = 'image/png',
  json = 'application/json',
  ico = 'image/x-icon',
  woff2 = 'font/woff2',
  txt = 'text/plain; charset=utf-8',
}

M.DEFAULT_MIME = 'application/octet-stream'

--- The content type for the file name `name`.
function M.mime(name)
  local ext = tostring(name):match('%.([%w]+)$')
  return ext and M.MIME[ext:lower()] or M.DEFAULT_MIME
end

--- The strong ETag of `body`: a quoted prefix of its SHA-256.
function M.etag(body)
  return '"' .. crypto.hex(crypto.hash('sha256', body)):sub(1, 32) .. '"'
end

--- Does the If-None-Match header value `inm` match `etag` (weak comparison, RFC 9110
--- §13.1.2)?
function M.none_match(inm, etag)
  if type(inm) ~= 'string' then
    return false
  end
  local bare = etag:gsub('^W/', '')
  for tag in inm:gmatch('[^,]+') do
    tag = tag:match('^%s*(.-)%s*$')
    if tag == '*' or tag:gsub('^W/', '') == bare then
      return true
    end
  end
  return false
end

local Static = {}
Static.__index = Static

local function copy_headers(self, extra)
  local h = {}
  for k, v in pairs(self.headers) do
    h[k] = v
  end
  for k, v in pairs(extra) do
    h[k] = v
  end
  return h
end

-- { body, etag, ctype } for the asset `name`, or nil, message, code. Cached unless the
-- assets come from the development folder (edits then show at once).
function Static:_file(name)
  local f = self.cache[name]
  if f then
    return f
  end
  local body, err, code = assets.read(name)
  if not body then
    return nil, err, code
  end
  f = { body = body, etag = M.etag(body), ctype = M.mime(name) }
  if not assets.dev() then
    self.cache[name] = f -- bounded: only names of files that exist in the binary get here
  end
  return f
end

--- Answer `req` (GET or HEAD) for `rest`, the request path below the mount point ('' and
--- names ending in '/' mean their index.html). Returns status, body, headers for
--- moonstack.http.server (the transport leaves the body out of a HEAD answer).
function Static:serve(req, rest)
  if req.method ~= 'GET' and req.method ~= 'HEAD' then
    return 405, { error = 'method not allowed' }, copy_headers(self, { allow = 'GET, HEAD' })
  end
  rest = rest or ''
  if rest == '' or rest:sub(-1) == '/' then
    rest = rest .. self.index
  end
  local not_found = { ['x-content-type-options'] = 'nosniff' }
  if not assets.valid(rest) then
    return 404, { error = 'not found' }, copy_headers(self, not_found)
  end
  local name = self.dir == '' and rest or (self.dir .. '/' .. rest)
  local f, err, code = self:_file(name)
  if not f then
    if code ~= 'ENOENT' then
      log.warn('static file unreadable', { error = err })
      return 500, { error = 'internal error' }, copy_headers(self, not_found)
    end
    return 404, { error = 'not found' }, copy_headers(self, not_found)
  end
  local h = copy_headers(self, {
    etag = f.etag,
    ['cache-control'] = self.cache_control,
    ['x-content-type-options'] = 'nosniff',
  })
  local inm = req.headers and req.headers['if-none-match']
  if inm == nil and req.header then
    inm = req:header('if-none-match')
  end
  if M.none_match(inm, f.etag) then
    return 304, '', h
  end
  h['content-type'] = f.ctype
  return 200, f.body, h
end

--- A static file handler for the ui/ subtree `dir` ('' for all of ui/, else a valid asset
--- folder name such as 'kms/onboarding'). Options: cache_control (default 'no-cache': use
--- only after revalidating the ETag), headers (sent with every answer, e.g. a
--- Content-Security-Policy), index (default 'index.html'). Raises on bad arguments.
function M.new(dir, opts)
  opts = opts or {}
  if type(dir) ~= 'string' or (dir ~= '' and not assets.valid(dir)) then
    error('static.new: dir must be a ui/ folder name such as "kms/onboarding"', 2)
  end
  if type(opts) ~= 'table' then
    error('static.new: opts must be a table', 2)
  end
  local index = opts.index or 'index.html'
  if not assets.valid(index) then
    error('static.new: index must be a file name', 2)
  end
  local headers = {}
  for k, v in pairs(opts.headers or {}) do
    if type(k) ~= 'string' or type(v) ~= 'string' then
      error('static.new: headers must map names to strings', 2)
    end
    headers[k:lower()] = v
  end
  return setmetatable({
    dir = dir,
    index = index,
    cache_control = opts.cache_control or 'no-cache',
    headers = headers,
    cache = {},
  }, Static)
end

return M
