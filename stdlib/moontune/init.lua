-- moontune: the module recipes get from `require "moontune"`.
-- The native bindings (moontune.core: tensor, optim, sched, save/load, ...) extended with the
-- Lua standard library: the nn module system (moontune.nn) and logging.

local mt = require "moontune.core"

mt.nn = require "moontune.nn"

-- mt.log(fmt, ...): a formatted line to the run's log (the console, the TUI log pane).
function mt.log(fmt, ...)
  if select("#", ...) > 0 then
    print(string.format(fmt, ...))
  else
    print(tostring(fmt))
  end
end

return mt
