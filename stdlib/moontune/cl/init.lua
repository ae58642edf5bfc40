-- moontune.cl (mt.cl): continual learning. `stream` gives a benchmark's tasks in a standard order
-- with per-task budgets (cl/stream.lua); `metrics` the standard measures of an accuracy matrix
-- (cl/metrics.lua); `learner` the task-incremental learner, an encoder with a head per task
-- (cl/learner.lua); `generative_learner` the O-LoRA paper's setting, a causal LM that writes
-- each label as text (cl/generative.lua); `strategy(name)` one of the strategies, each a small file of hooks
-- (cl/naive.lua, joint, replay, ewc, lwf, olora, adapters, fusion) that scripts/continual.lua
-- calls, or a strategy of your own in any Lua file (see docs/continual.md); `sampler` and
-- `weighting` the parts of multi-task learning (cl/multitask.lua, scripts/multitask.lua).
local stream = require "moontune.cl.stream"
local metrics = require "moontune.cl.metrics"
local learner = require "moontune.cl.learner"
local generative = require "moontune.cl.generative"
local multitask = require "moontune.cl.multitask"

local STRATEGIES = { "adapters", "ewc", "fusion", "joint", "lwf", "naive", "olora", "replay" }

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
  generative_learner = generative.new,
  -- Multi-task learning's parts (cl/multitask.lua): which task each row comes from, and how the
  -- per-task losses combine.
  sampler = multitask.sampler,
  weighting = multitask.weighting,
  -- A strategy by name: a table of hooks (prepare, begin_task, loss, end_task; see
  -- scripts/continual.lua), or the one a Lua file (a name ending in ".lua") returns, read again
  -- at each call so that editing it changes the run from its next step.
  strategy = function(name)
    if type(name) ~= "string" then
      error(string.format("cl.strategy: expected a strategy's name or a .lua file (strategies: %s), got a %s", table.concat(STRATEGIES, ", "), type(name)), 0)
    end
    for _, known in ipairs(STRATEGIES) do
      if name == known then return require("moontune.cl." .. name) end
    end
    if name:match("%.lua$") then
      local chunk, err = loadfile(name)
      if not chunk then error("cl.strategy: " .. tostring(err), 0) end
      local ok, strategy = pcall(chunk)
      if not ok then error("cl.strategy: " .. name .. ": " .. tostring(strategy), 0) end
      if type(strategy) ~= "table" then error("cl.strategy: " .. name .. " must return a table of hooks (loss, begin_task, end_task, prepare), got " .. type(strategy), 0) end
      return strategy
    end
    error(string.format("cl.strategy: unknown strategy '%s' (strategies: %s, or a Lua file returning one)", name, table.concat(STRATEGIES, ", ")), 0)
  end,
  -- The tasks of a standard order (1, 2 or 3), or nil.
  order = function(n)
    local o = stream.orders[n]
    return o and copy(o)
  end,
}
