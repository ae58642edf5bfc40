-- moontune.cl (mt.cl): continual learning. `stream` gives a benchmark's tasks in a standard order
-- with per-task budgets (cl/stream.lua); `metrics` the standard measures of an accuracy matrix
-- (cl/metrics.lua); `learner` the task-incremental learner, an encoder with a head per task
-- (cl/learner.lua); `strategy(name)` one of the strategies, each a small file of hooks
-- (cl/naive.lua, cl/joint.lua, cl/replay.lua, cl/ewc.lua) that scripts/continual.lua calls.
local stream = require "moontune.cl.stream"
local metrics = require "moontune.cl.metrics"
local learner = require "moontune.cl.learner"

local STRATEGIES = { "ewc", "joint", "naive", "replay" }

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
  learner = learner.new,
  -- A strategy by name: a table of hooks (begin_task, loss, end_task; see scripts/continual.lua).
  strategy = function(name)
    for _, known in ipairs(STRATEGIES) do
      if name == known then return require("moontune.cl." .. name) end
    end
    error(string.format("cl.strategy: unknown strategy %s (strategies: %s)", type(name) == "string" and ("'" .. name .. "'") or tostring(name), table.concat(STRATEGIES, ", ")), 0)
  end,
  -- The tasks of a standard order (1, 2 or 3), or nil.
  order = function(n)
    local o = stream.orders[n]
    return o and copy(o)
  end,
}
