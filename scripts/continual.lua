-- continual.lua — continual learning on the O-LoRA benchmark, task after task, with a strategy
-- against forgetting chosen by name: all-MiniLM-L6-v2 shared by the tasks, a head per task
-- (task-incremental: the task id is known at test time). After each task every task's test split
-- is scored, which fills the accuracy matrix R (row i: after training task i); the step that
-- ends a task returns the continual-learning metrics of R so far (mt.cl.metrics: average
-- accuracy, forgetting, BWT, FWT against the untrained learner, average incremental accuracy),
-- and R is shown as a heat map that fills in while the run goes.
--
--   moontune run scripts/continual.lua strategy=naive order=1
--   moontune run scripts/continual.lua strategy=replay steps_per_task=200 train_per_task=2000
--
-- Strategies (stdlib moontune/cl/<name>.lua, hooks called here): naive, joint, replay, ewc.
-- A strategy is a table of optional hooks: begin_task(s, task, cfg), loss(s, task, batch, cfg)
-- (the step's loss; default: the task's cross-entropy), end_task(s, task, cfg). `s` is the
-- state: s.learner, s.seen (the tasks trained before this one), s.next_batch(task). Changing
-- cfg.strategy mid-run (a `:` line, or editing this file) switches from the next step on.
local mt = require "moontune"

local shared = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"

local config = {
  model = os.getenv("MOONTUNE_MINILM") or (shared .. "/models/all-MiniLM-L6-v2"),
  strategy = "naive",
  order = 1,
  tasks = "",                 -- comma-separated task names instead of an order
  steps_per_task = 100,
  batch = 16,
  train_per_task = 1000,
  test_per_task = 200,
  max_len = 64,
  lr = 5e-5,
  seed = 0,
  replay_weight = 1.0,        -- replay: the weight of the replayed batch's loss
  buffer_per_task = 64,       -- replay: examples kept of each finished task
  ewc_lambda = 1e4,           -- ewc: the penalty's strength
  ewc_decay = 1.0,            -- ewc: how much of the earlier tasks' importance is kept
  fisher_batches = 8,         -- ewc: batches the Fisher information is estimated on
  log_every = 10,
}

local function tasks_of(cfg)
  if cfg.tasks == "" then return nil end
  local names = {}
  for name in cfg.tasks:gmatch("[^,%s]+") do names[#names + 1] = name end
  return names
end

local function setup(cfg)
  mt.manual_seed(cfg.seed)
  math.randomseed(cfg.seed)
  local stream = mt.cl.stream{ order = not tasks_of(cfg) and cfg.order or nil, tasks = tasks_of(cfg),
                               train_per_task = cfg.train_per_task, test_per_task = cfg.test_per_task, seed = cfg.seed }
  mt.cl.strategy(cfg.strategy)   -- an unknown name fails here, before any training
  local learner = mt.cl.learner{ model = cfg.model, tasks = stream.tasks, max_len = cfg.max_len }
  cfg.steps = #stream.tasks * cfg.steps_per_task
  local s = { learner = learner, model = learner.encoder, seen = {}, R = {}, iters = {},
              opt = mt.optim.adamw(learner:parameters(), { lr = cfg.lr, weight_decay = 0.0 }) }
  for _, task in ipairs(stream.tasks) do
    s.iters[task.name] = task.train:shuffle{ seed = cfg.seed + task.id }:batch{ size = cfg.batch }:iter{ epochs = math.huge }
  end
  s.stream = stream
  s.next_batch = function(task) return s.iters[task.name]:next() end
  -- The baseline of forward transfer: each task scored by the untrained learner.
  s.baseline = {}
  for j, task in ipairs(stream.tasks) do s.baseline[j] = learner:accuracy(task) end
  mt.log("untrained accuracy: %s", table.concat(s.baseline, ", "))
  return s
end

local function step(s, cfg)
  local strategy = mt.cl.strategy(cfg.strategy)
  s.steps = (s.steps or 0) + 1
  local index = (s.steps - 1) // cfg.steps_per_task + 1
  local task = s.stream.tasks[index]
  if s.steps % cfg.steps_per_task == 1 or cfg.steps_per_task == 1 then
    if strategy.begin_task then strategy.begin_task(s, task, cfg) end
  end
  local batch = s.next_batch(task)
  local loss = strategy.loss and strategy.loss(s, task, batch, cfg) or s.learner:loss(task.name, batch)
  s.opt:zero_grad()
  loss:backward()
  s.opt:step()
  local out = { loss = loss, task = index }
  if s.steps % cfg.steps_per_task == 0 then
    -- The end of a task: the strategy's hook, then a row of R, then the metrics so far.
    if strategy.end_task then strategy.end_task(s, task, cfg) end
    s.seen[#s.seen + 1] = task
    local row = {}
    for j, t in ipairs(s.stream.tasks) do row[j] = s.learner:accuracy(t) end
    s.R[#s.R + 1] = row
    local m = mt.cl.metrics(s.R, { baseline = s.baseline })
    mt.log("after %s: %s", task.name, table.concat(row, ", "))
    for k, v in pairs(m) do if type(v) == "number" then out[k] = v end end
    for j, t in ipairs(s.stream.tasks) do out["acc_" .. t.name] = row[j] end
  end
  local rows = {}
  for i, t in ipairs(s.seen) do rows[i] = t.name end
  if #s.R > 0 then
    out.panels = { accuracy = { rows = rows, cols = s.stream.names, values = s.R } }
  end
  return out
end

local function finish(s, cfg, dir)
  local m = mt.cl.metrics(s.R, { baseline = s.baseline })
  mt.log("%s on %s: average accuracy %.3f, forgetting %.3f, BWT %.3f, FWT %s, average incremental accuracy %.3f",
         cfg.strategy, table.concat(s.stream.names, " → "), m.average_accuracy, m.forgetting, m.bwt,
         m.fwt and string.format("%.3f", m.fwt) or "n/a", m.average_incremental_accuracy)
end

local function done(s, cfg)
  return #s.R == #s.stream.tasks
end

return { config = config, setup = setup, step = step, done = done, finish = finish }
