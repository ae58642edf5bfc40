-- moontune.cl.metrics: the standard continual-learning metrics of an accuracy matrix, as
-- Avalanche defines them. R[i][j] is the accuracy on task j after training task i; a run that
-- has trained k of its T tasks passes k rows (each with an entry for every task it tested,
-- at least the first i in row i). With k rows:
--
--   average_accuracy              mean of R[k][j] over the tasks trained so far (j <= k): the
--                                 mean of the last row once every task is trained
--   forgetting                    mean over j < k of max_{l < k} R[l][j] - R[k][j] (0 when k = 1);
--                                 forgetting_per_task lists them, task by task
--   bwt (backward transfer)       mean over j < k of R[k][j] - R[j][j] (negative: forgetting)
--   fwt (forward transfer)        mean over 2 <= j <= k of R[j-1][j] - baseline[j], the accuracy
--                                 on a task before it is trained against a baseline's (an
--                                 untrained model's); nil without opts.baseline or without row
--                                 entries for tasks not yet trained
--   average_incremental_accuracy  mean over i <= k of (mean of R[i][j] over j <= i)
local M = {}

local function fail(message)
  error("cl.metrics: " .. message, 0)
end

local function number_at(R, i, j)
  local v = R[i][j]
  if type(v) ~= "number" or v ~= v then
    fail(string.format("R[%d][%d] must be a number, got %s", i, j, v ~= v and "nan" or type(v)))
  end
  return v
end

-- The rows of R, checked: a sequence of k rows, row i with at least i numbers.
local function check(R)
  if type(R) ~= "table" then fail("R must be a matrix (a table of rows), got " .. type(R)) end
  local k = #R
  if k == 0 then fail("R has no rows (train a task first)") end
  for i = 1, k do
    if type(R[i]) ~= "table" then fail(string.format("row %d of R must be a table of accuracies, got %s", i, type(R[i]))) end
    if #R[i] < i then fail(string.format("row %d of R has %d entries; it needs one for each of the %d tasks trained by then", i, #R[i], i)) end
    for j = 1, #R[i] do number_at(R, i, j) end
  end
  return k
end

function M.metrics(R, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("the options must be a table, got " .. type(opts)) end
  for key in pairs(opts) do
    if key ~= "baseline" then fail("unknown option '" .. tostring(key) .. "' (accepted: baseline)") end
  end
  local k = check(R)
  local out = {}

  local last = 0
  for j = 1, k do last = last + R[k][j] end
  out.average_accuracy = last / k

  local per_task, forgetting, bwt = {}, 0, 0
  for j = 1, k - 1 do
    local best = -math.huge
    for l = j, k - 1 do best = math.max(best, R[l][j]) end
    per_task[j] = best - R[k][j]
    forgetting = forgetting + per_task[j]
    bwt = bwt + R[k][j] - R[j][j]
  end
  out.forgetting_per_task = per_task
  out.forgetting = k > 1 and forgetting / (k - 1) or 0
  out.bwt = k > 1 and bwt / (k - 1) or 0

  local baseline = opts.baseline
  if baseline ~= nil then
    if type(baseline) ~= "table" then fail("baseline must be a list of accuracies (one per task), got " .. type(baseline)) end
    if k > 1 then
      local fwt, known = 0, true
      for j = 2, k do
        if R[j - 1][j] == nil then known = false break end
        if type(baseline[j]) ~= "number" then fail(string.format("baseline[%d] must be a number, got %s", j, type(baseline[j]))) end
        fwt = fwt + R[j - 1][j] - baseline[j]
      end
      if known then out.fwt = fwt / (k - 1) end
    end
  end

  local incremental = 0
  for i = 1, k do
    local s = 0
    for j = 1, i do s = s + R[i][j] end
    incremental = incremental + s / i
  end
  out.average_incremental_accuracy = incremental / k
  return out
end

return M
