-- SPDX-License-Identifier: Apache-2.0
-- `moonstack quote show FILE [--json]`: parse a DCAP quote (TDX v4/v5, SGX v3; binary or hex
-- text) and print its fields. Exit 0 on success, 2 for usage errors, unreadable files and
-- malformed or truncated quotes (the message names the field, its offset and why).
local args = require('moonstack.core.args')
local quote = require('moonstack.tdx.quote')

local show_spec = {
  usage = 'moonstack quote show FILE [--json]',
  summary = 'parse a TDX/SGX quote and print its fields',
  description = 'FILE holds the quote as binary or as hex text (0x optional, surrounding\n'
    .. 'whitespace allowed). Exit status: 0 parsed, 2 usage error, unreadable file, or a\n'
    .. 'malformed or truncated quote.',
  positional = { { 'FILE', help = 'the quote file ("-" for standard input)', required = true } },
  options = { { '--json', help = 'print the fields as one JSON object (bytes as lowercase hex)' } },
}

local HELP = table.concat({
  'usage: moonstack quote COMMAND [ARGS...]',
  '',
  'DCAP quotes: TDX v4 and v5, SGX v3, as real TDX guests and the simulator produce them.',
  '',
  'commands:',
  '  show FILE [--json]   ' .. show_spec.summary,
  '',
  "Run 'moonstack quote show --help' for details.",
  '',
}, '\n')

local function read_input(file)
  if file == '-' then
    return quote.decode_input(io.stdin:read('*a') or '')
  end
  return quote.read_file(file)
end

local function print_text(out, file, fmt, d)
  local function w(k, v)
    out:write(('%-22s %s\n'):format(k, tostring(v)))
  end
  w('file', ('%s (%s, %d bytes)'):format(file, fmt, d.size))
  for _, k in ipairs(quote.FIELD_ORDER) do
    if d[k] ~= nil then
      w(k, d[k])
    end
  end
  if d.qe_report then
    for _, k in ipairs({ 'mr_enclave', 'mr_signer', 'isv_prod_id', 'isv_svn', 'report_data' }) do
      w('qe_report.' .. k, d.qe_report[k])
    end
  end
  for i, c in ipairs(d.pck_chain or {}) do
    w(('pck_chain[%d]'):format(i - 1), c.subject)
    w('  issuer', c.issuer)
    w('  valid', c.not_before .. ' .. ' .. c.not_after)
    w('  sha256', c.sha256)
  end
end

local function show(argv)
  local opts, code = args.parse_command('moonstack quote show', show_spec, argv)
  if not opts then
    return code
  end
  local file = opts.args[1]
  local data, fmt = read_input(file)
  if not data then
    io.stderr:write(('moonstack quote show: %s: %s\n'):format(file, fmt))
    return 2
  end
  local q, err = quote.parse(data)
  if not q then
    io.stderr:write(('moonstack quote show: %s: %s\n'):format(file, err))
    return 2
  end
  local d
  d, err = quote.describe(q)
  if not d then
    io.stderr:write(('moonstack quote show: %s: %s\n'):format(file, err))
    return 2
  end
  if opts.json then
    d.file, d.format = file, fmt
    io.stdout:write(require('cjson').encode(d), '\n')
  else
    print_text(io.stdout, file, fmt, d)
  end
  return 0
end

return {
  name = 'quote',
  summary = 'DCAP quotes: show the fields of a TDX/SGX quote',
  run = function(argv)
    return args.dispatch('moonstack quote', HELP, { show = show }, argv)
  end,
}
