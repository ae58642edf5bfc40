-- moontune.cl.multitask: the parts of multi-task learning (one model, several tasks at once).
-- `sampler` draws which task each row of a batch comes from: "proportional" to the tasks' sizes,
-- "temperature" (p_i ∝ n_i^(1/T): T = 1 is proportional, a large T tends to uniform, as in
-- multilingual and T5 mixtures) or "round_robin" (the tasks in turn, equal shares).
-- `weighting` combines the per-task losses: "fixed" weights, or "uncertainty" (Kendall et al.
-- 2018): a learned log-variance s_i per task, loss = Σ exp(−s_i)·L_i + s_i / 2, which lowers the
-- weight of tasks whose loss stays high and keeps the weights from collapsing to zero.
local mt = require "moontune.core"

local M = {}

local function fail(what, msg) error("cl." .. what .. ": " .. msg, 0) end

local SAMPLING = { proportional = true, temperature = true, round_robin = true }

-- sampler{ sizes = { n_1, ... }, how = "temperature", temperature = 2 }: :probabilities() and
-- :draw(rows), the 1-based task of each of `rows` rows (math.random, so seeded with the run).
function M.sampler(opts)
  if type(opts) ~= "table" then fail("sampler", "expected a table { sizes = {...}, how = ... }, got " .. type(opts)) end
  local sizes, how = opts.sizes, opts.how or "proportional"
  if type(sizes) ~= "table" or #sizes == 0 then fail("sampler", "sizes must be a list of the tasks' example counts") end
  for i, n in ipairs(sizes) do
    if type(n) ~= "number" or n <= 0 then fail("sampler", string.format("sizes[%d] must be a positive number, got %s", i, tostring(n))) end
  end
  if not SAMPLING[how] then fail("sampler", string.format("how must be proportional, temperature or round_robin, got %s", tostring(how))) end
  local T = opts.temperature or 1
  if type(T) ~= "number" or T <= 0 then fail("sampler", "temperature must be a positive number, got " .. tostring(T)) end
  local p, total = {}, 0
  for i, n in ipairs(sizes) do
    p[i] = how == "round_robin" and 1 or how == "temperature" and n ^ (1 / T) or n
    total = total + p[i]
  end
  for i = 1, #p do p[i] = p[i] / total end
  local s = { how = how, turn = 0 }
  function s.probabilities() return { table.unpack(p) } end
  function s.draw(rows)
    local out = {}
    for r = 1, rows do
      if how == "round_robin" then
        s.turn = s.turn % #p + 1
        out[r] = s.turn
      else
        local u, acc, pick = math.random(), 0, #p
        for i = 1, #p do
          acc = acc + p[i]
          if u < acc then pick = i; break end
        end
        out[r] = pick
      end
    end
    return out
  end
  return s
end

-- weighting{ how = "fixed", weights = { ... } } or { how = "uncertainty", tasks = n }:
-- :combine(losses) (a list of scalar tensors, nil for a task absent from the batch) and, for
-- "uncertainty", .log_variance (a trainable tensor, one per task: give it to the optimizer)
-- and :weights() (exp(−s_i), to log).
function M.weighting(opts)
  if type(opts) ~= "table" then fail("weighting", "expected a table { how = \"fixed\"|\"uncertainty\", ... }, got " .. type(opts)) end
  local how = opts.how or "fixed"
  local w = { how = how }
  if how == "fixed" then
    local weights = opts.weights
    if type(weights) ~= "table" or #weights == 0 then fail("weighting", "fixed weighting needs weights = { w_1, ... }") end
    function w.weights() return { table.unpack(weights) } end
    function w.combine(losses)
      local total
      for i = 1, #weights do
        if losses[i] then total = total and total + losses[i] * weights[i] or losses[i] * weights[i] end
      end
      return total
    end
  elseif how == "uncertainty" then
    if math.type(opts.tasks) ~= "integer" or opts.tasks < 1 then fail("weighting", "uncertainty weighting needs tasks = the number of tasks") end
    w.log_variance = mt.tensor.zeros(opts.tasks):requires_grad_(true)
    function w.weights() return mt.no_grad(function() return w.log_variance:neg():exp():tolist() end) end
    function w.combine(losses)
      local total
      for i = 1, opts.tasks do
        if losses[i] then
          local s = w.log_variance:narrow(0, i - 1, 1):sum()
          local term = s:neg():exp() * losses[i] + s * 0.5
          total = total and total + term or term
        end
      end
      return total
    end
  else
    fail("weighting", "how must be fixed or uncertainty, got " .. tostring(how))
  end
  return w
end

return M
