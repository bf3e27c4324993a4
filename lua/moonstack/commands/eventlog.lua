-- SPDX-License-Identifier: Apache-2.0
-- `moonstack eventlog replay FILE [--json]`: read a TDX event log (a binary CCEL, the JSON
-- event log an agent returns, or a runtime_events.log), replay RTMR0..3 and print them with
-- the events. When a quote is at hand (--quote, or a `quote` field in the JSON) the replayed
-- values are compared with the quote's. Exit 0 ok, 1 RTMRs differ from the quote, 2 usage
-- error, unreadable or malformed input.
local cjson = require('cjson.safe')
local args = require('moonstack.core.args')
local codec = require('moonstack.core.codec')
local eventlog = require('moonstack.tdx.eventlog')
local quote = require('moonstack.tdx.quote')

local replay_spec = {
  usage = 'moonstack eventlog replay FILE [--json] [--quote QUOTE] [--to-event NAME]',
  summary = 'replay RTMR0..3 from an event log and print them with the events',
  description = 'FILE is a binary CCEL (TCG crypto-agile log), a JSON event log (an array of\n'
    .. 'TdxEvents, or an object with event_log / tcb_info.event_log, as the agent returns\n'
    .. 'them), or a runtime_events.log. Runtime event digests are recomputed (V1/V2).\n'
    .. 'Exit status: 0 replayed (and equal to the quote, if any), 1 the replayed RTMRs differ\n'
    .. "from the quote's, 2 usage error, unreadable or malformed input.",
  positional = { { 'FILE', help = 'the event log', required = true } },
  options = {
    { '--json', help = 'print one JSON object: rtmr0..rtmr3, events (TdxEvent JSON), ...' },
    { '--quote', arg = 'QUOTE', help = 'compare with the RTMRs of this quote (binary or hex)' },
    { '--to-event', arg = 'NAME', help = 'stop after this runtime event (e.g. boot-mr-done)' },
    { '--no-acpi-labels', help = 'CCEL: keep the ACPI DATA events unnamed (raw conversion)' },
  },
}

local HELP = table.concat({
  'usage: moonstack eventlog COMMAND [ARGS...]',
  '',
  'TDX event logs: the boot-time CCEL and dstack runtime events (RTMR3).',
  '',
  'commands:',
  '  replay FILE [--json]   ' .. replay_spec.summary,
  '',
  "Run 'moonstack eventlog replay --help' for details.",
  '',
}, '\n')

local function fail(file, msg)
  io.stderr:write(('moonstack eventlog replay: %s: %s\n'):format(file, msg))
  return nil
end

-- Load the events from @data: JSON, runtime log lines, or a CCEL. Returns a result table.
local function load(file, data, opts)
  local first = data:match('^%s*(.)')
  if first == '[' or first == '{' then
    local value = cjson.decode(data)
    if value == nil then
      local events = eventlog.parse_runtime_log(data)
      if events then
        return { source = 'runtime-log', events = events }
      end
      return fail(file, 'EEVENTLOG: invalid JSON')
    end
    local events, err = eventlog.from_json(value)
    if not events then
      return fail(file, err)
    end
    local res = { source = 'json', events = events }
    if type(value) == 'table' and type(value.quote) == 'string' then
      res.quote_hex = value.quote
    end
    return res
  end
  local tcg, err = eventlog.parse_tcg(data)
  if not tcg then
    return fail(file, err)
  end
  local events
  events, err = eventlog.from_ccel(data, { acpi_labels = not opts.no_acpi_labels })
  if not events then
    return fail(file, err)
  end
  return { source = 'ccel', events = events, tcg = tcg }
end

-- The RTMRs of the quote to compare with, hex; or nil, message.
local function quote_rtmrs(res, opts)
  local bytes, fmt
  if opts.quote then
    bytes, fmt = quote.read_file(opts.quote)
  elseif res.quote_hex then
    bytes, fmt = quote.decode_input(res.quote_hex)
  else
    return nil
  end
  if not bytes then
    return nil, fmt
  end
  local q, err = quote.parse(bytes)
  if not q then
    return nil, err
  end
  if q.tee ~= 'TDX' then
    return nil, 'EQUOTE: not a TDX quote'
  end
  local r = {}
  for i = 0, 3 do
    r[i + 1] = codec.hex(q.report['rtmr' .. i])
  end
  return r
end

local function event_table(e)
  local t = { imr = e.imr, event_type = e.event_type, digest = codec.hex(e.digest or ''),
    event = e.event, event_payload = codec.hex(e.event_payload or '') }
  if e.version == 2 then
    t.version = 2
  end
  if e.preimage then
    t.preimage = codec.hex(e.preimage)
  end
  return t
end

local function print_text(out, file, res, rtmrs, qr)
  out:write(('source  %s (%s, %d events)\n'):format(file, res.source, #res.events))
  for i = 1, 4 do
    local mark = ''
    if qr then
      mark = qr[i] == rtmrs[i] and '  (matches the quote)' or ('  DIFFERS: quote has ' .. qr[i])
    end
    out:write(('rtmr%d   %s%s\n'):format(i - 1, rtmrs[i], mark))
  end
  out:write('\n  #  imr  event_type  digest            event\n')
  for i, e in ipairs(res.events) do
    local d = eventlog.RUNTIME_EVENT_TYPE == e.event_type and eventlog.runtime_digest(e.event,
      e.event_payload, e.version) or e.digest
    local what = e.event ~= '' and e.event or ''
    if #e.event_payload > 0 then
      local p = e.event_payload
      what = what .. (what ~= '' and ' ' or '') .. (p:find('[^\32-\126]') and
        ('(%d bytes) %s'):format(#p, codec.hex(p:sub(1, 16)) .. (#p > 16 and '...' or ''))
        or ('"%s"'):format(#p > 48 and p:sub(1, 48) .. '...' or p))
    end
    out:write(('%3d  %3d  0x%08x  %s  %s\n'):format(i - 1, e.imr, e.event_type,
      codec.hex(d):sub(1, 16), what))
  end
end

local function replay(argv)
  local opts, code = args.parse_command('moonstack eventlog replay', replay_spec, argv)
  if not opts then
    return code
  end
  local file = opts.args[1]
  local f, ferr = io.open(file, 'rb')
  if not f then
    fail(file, ferr)
    return 2
  end
  local data = f:read('*a')
  f:close()
  local res = load(file, data, opts)
  if not res then
    return 2
  end
  local rtmrs, err = eventlog.replay(res.events, { to_event = opts.to_event })
  if not rtmrs then
    fail(file, err)
    return 2
  end
  local qr, qerr = quote_rtmrs(res, opts)
  if qerr then
    fail(opts.quote or file, qerr)
    return 2
  end
  local matches = true
  if qr then
    for i = 1, 4 do
      matches = matches and qr[i] == rtmrs[i]
    end
  end
  if opts.json then
    local out = { source = res.source, events = {} }
    for i = 1, 4 do
      out['rtmr' .. (i - 1)] = rtmrs[i]
    end
    for i, e in ipairs(res.events) do
      out.events[i] = event_table(e)
    end
    if qr then
      out.quote = { rtmr0 = qr[1], rtmr1 = qr[2], rtmr2 = qr[3], rtmr3 = qr[4], matches = matches }
    end
    if res.tcg then
      out.spec_id = res.tcg.spec_id
      out.spec_id.vendor_info = codec.hex(out.spec_id.vendor_info)
      out.tcg_events = {}
      for i, t in ipairs(res.tcg.events) do
        local digests = {}
        for k, dg in ipairs(t.digests) do
          digests[k] = codec.hex(dg.digest)
        end
        out.tcg_events[i] = { imr_index = t.mr_index, event_type = t.event_type,
          digests = digests, event = codec.hex(t.data) }
      end
    end
    io.stdout:write(cjson.encode(out), '\n')
  else
    print_text(io.stdout, file, res, rtmrs, qr)
  end
  return matches and 0 or 1
end

return {
  name = 'eventlog',
  summary = 'TDX event logs: replay RTMRs from a CCEL or a JSON event log',
  run = function(argv)
    return args.dispatch('moonstack eventlog', HELP, { replay = replay }, argv)
  end,
}
