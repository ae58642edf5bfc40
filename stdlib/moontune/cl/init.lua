-- moontune.cl (mt.cl): continual learning. `stream` gives a benchmark's tasks in a standard order
-- with per-task budgets (cl/stream.lua); `metrics` the standard measures of an accuracy matrix
-- (cl/metrics.lua).
local stream = require "moontune.cl.stream"
local metrics = require "moontune.cl.metrics"

local function copy(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  return out
end

return {
  stream = stream.stream,
  metrics = metrics.metrics,
  -- The task names a stream accepts, sorted.
  task_names = function()
    local names = {}
    for name in pairs(stream.tasks) do names[#names + 1] = name end
    table.sort(names)
    return names
  end,
  -- The tasks of a standard order (1, 2 or 3), or nil.
  order = function(n)
    local o = stream.orders[n]
    return o and copy(o)
  end,
}
