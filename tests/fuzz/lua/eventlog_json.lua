-- SPDX-License-Identifier: Apache-2.0
-- Fuzz driver: event logs as JSON (GetQuote's event_log, Info's tcb_info, the verifier's input)
-- and the runtime event log text: moonstack.tdx.eventlog.from_json, then replay and
-- validate_v2 on the events it accepts; the first byte 0 sends the rest to parse_runtime_log
-- instead. Clean errors only ('EEVENTLOG: ...' and the like).
local check = require('fuzz_check')
local eventlog = require('moonstack.tdx.eventlog')

return function(data)
  if data:byte(1) == 0 then
    check.result('parse_runtime_log', eventlog.parse_runtime_log(data:sub(2)))
    return
  end
  local events = check.result('from_json', eventlog.from_json(data))
  if events then
    check.result('replay', eventlog.replay(events))
    local ok, err, code = eventlog.validate_v2(events)
    if not ok then
      check.result('validate_v2', nil, err, code)
    end
    check.check(type(eventlog.to_json(events)) == 'string', 'to_json')
  end
end
