-- continual.lua — continual learning on the O-LoRA benchmark, task after task, with a strategy
-- against forgetting chosen by name: all-MiniLM-L6-v2 shared by the tasks, a head per task
-- (task-incremental: the task id is known at test time); with setting=class_incremental, one head
-- over every task's labels and no task id at test time; or, with setting=generative, the O-LoRA
-- paper's own setting: SmolLM2-135M-Instruct reads each example as an instruction and writes the
-- label as text (LoRA-trained; accuracy is exact match of the greedy answer). After each task every task's test split
-- is scored, which fills the accuracy matrix R (row i: after training task i); the step that
-- ends a task returns the continual-learning metrics of R so far (mt.cl.metrics: average
-- accuracy, forgetting, BWT, FWT against the untrained learner, average incremental accuracy),
-- and R is shown as a heat map that fills in while the run goes.
--
--   moontune run scripts/continual.lua strategy=naive order=1
--   moontune run scripts/continual.lua strategy=replay steps_per_task=200 train_per_task=2000
--   moontune run scripts/continual.lua setting=class_incremental strategy=replay
--   moontune run scripts/continual.lua setting=generative strategy=olora batch=8 test_per_task=50
--
-- Strategies (stdlib moontune/cl/<name>.lua, hooks called here): naive, joint, replay, ewc, lwf,
-- olora, adapters, fusion; or a file of your own: strategy=scripts/strategies/cl_mas.lua. A strategy is a
-- table of optional hooks: prepare(s, cfg) (once, before the optimizer is made: adapters the
-- strategy adds to the model), begin_task(s, task, cfg), loss(s, task, batch, cfg) (the step's
-- loss; default: the task's cross-entropy), end_task(s, task, cfg) (may return numbers to log).
-- A strategy with `adapters_only = true` trains adapters only, at cfg.adapter_lr. `s` is the state:
-- s.learner, s.stream, s.seen (the tasks trained before this one), s.steps, s.next_batch(task).
-- Changing cfg.strategy mid-run (a `:` line, or editing this file) switches from the next step
-- on, between strategies without `prepare` (those that add adapters are chosen at the start).
-- At the end, results.json in the run directory holds R, the metrics, the wall time and the
-- peak memory (scripts/cl_benchmark.lua reads it).
local mt = require "moontune"

local shared = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"

-- The model of each setting when `model` is "".
local MODELS = {
  encoder = os.getenv("MOONTUNE_MINILM") or (shared .. "/models/all-MiniLM-L6-v2"),
  generative = os.getenv("MOONTUNE_SMOLLM2"),
}

local config = {
  setting = "encoder",        -- "encoder": a head per task on all-MiniLM-L6-v2 (task-incremental);
                              -- "class_incremental": the same encoder, one head over every task's labels,
                              -- no task id at test time; "generative": the O-LoRA paper's setting,
                              -- SmolLM2-135M-Instruct writes each label as text, LoRA-trained
  model = "",                 -- "" = the setting's model (MOONTUNE_MINILM, MOONTUNE_SMOLLM2)
  strategy = "naive",
  order = 1,
  tasks = "",                 -- comma-separated task names instead of an order
  steps_per_task = 50,
  batch = 16,
  train_per_task = 800,
  test_per_task = 200,
  max_len = 32,               -- tokens kept of each sentence
  lr = 3e-4,                  -- the budget where naive fine-tuning forgets (BENCHMARKS.md)
  adapter_lr = 1e-3,          -- the learning rate when adapters alone train (olora, adapters, fusion; every
                              -- strategy in the generative setting, where the others train one shared LoRA)
  seed = 0,
  replay_weight = 1.0,        -- replay: the weight of the replayed examples' loss
  replay_batch = 4,           -- replay: examples replayed with each batch
  buffer_per_task = 64,       -- replay: examples kept of each finished task
  ewc_lambda = 1e4,           -- ewc: the penalty's strength
  ewc_decay = 1.0,            -- ewc: how much of the earlier tasks' importance is kept
  fisher_batches = 8,         -- ewc: batches the Fisher information is estimated on
  replay_buffer = "reservoir",-- replay: "reservoir" or "balanced" (a reservoir per label)
  lwf_lambda = 1.0,           -- lwf: the distillation loss's weight
  lwf_temperature = 2.0,      -- lwf: the softmax temperature of the distillation
  lora_r = 8,                 -- olora: each task's LoRA rank; generative: the shared LoRA's
  olora_lambda = 0.5,         -- olora: λ₁, the orthogonality loss's weight
  olora_l2 = 0.0,             -- olora: λ₂, the new LoRA's L2 term
  adapter_reduction = 16,     -- adapters, fusion: hidden size / bottleneck width
  fusion_share = 0.5,         -- fusion: the share of a task's steps that train its fusion
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
  local strategy = mt.cl.strategy(cfg.strategy)   -- an unknown name fails here, before any training
  if cfg.setting ~= "encoder" and cfg.setting ~= "class_incremental" and cfg.setting ~= "generative" then
    error(string.format("continual: unknown setting '%s' (settings: encoder, class_incremental, generative)", tostring(cfg.setting)), 0)
  end
  if cfg.model == "" then
    cfg.model = MODELS[cfg.setting == "class_incremental" and "encoder" or cfg.setting] or error("continual: the generative setting's model is SmolLM2-135M-Instruct, which ./dev finds (MOONTUNE_SMOLLM2); set model= to a causal LM", 0)
  end
  local generative = cfg.setting == "generative"
  local learner
  if generative then
    learner = mt.cl.generative_learner{ model = cfg.model, tasks = stream.tasks, max_len = cfg.max_len,
                                        lora_r = not strategy.adapters_only and cfg.lora_r or nil }
  else
    learner = mt.cl.learner{ model = cfg.model, tasks = stream.tasks, max_len = cfg.max_len,
                             class_incremental = cfg.setting == "class_incremental" }
  end
  -- Every task's steps, or fewer when `steps=` says so (a short trial run).
  cfg.steps = math.min(cfg.steps or math.huge, #stream.tasks * cfg.steps_per_task)
  local s = { learner = learner, model = learner.model, seen = {}, R = {}, iters = {}, stream = stream,
              prepared = cfg.strategy, started = mt.clock() }
  if strategy.prepare then strategy.prepare(s, cfg) end
  s.opt = mt.optim.adamw(learner:parameters(), { lr = (strategy.adapters_only or generative) and cfg.adapter_lr or cfg.lr, weight_decay = 0.0 })
  for _, task in ipairs(stream.tasks) do
    s.iters[task.name] = task.train:shuffle{ seed = cfg.seed + task.id }:batch{ size = cfg.batch }:iter{ epochs = math.huge }
  end
  s.next_batch = function(task) return s.iters[task.name]:next() end
  -- The baseline of forward transfer: each task scored by the untrained learner.
  s.baseline = {}
  for j, task in ipairs(stream.tasks) do s.baseline[j] = learner:accuracy(task) end
  mt.log("untrained accuracy: %s", table.concat(s.baseline, ", "))
  return s
end

local function step(s, cfg)
  local strategy = mt.cl.strategy(cfg.strategy)
  if strategy.prepare and cfg.strategy ~= s.prepared then
    error(string.format("continual: strategy %s adds to the model before training (prepare), so it is chosen at the start of a run, not switched to from %s", cfg.strategy, s.prepared), 0)
  end
  s.steps = (s.steps or 0) + 1
  local index = (s.steps - 1) // cfg.steps_per_task + 1
  local task = s.stream.tasks[index]
  -- The tasks trained before this one (from the position, so a resumed run has them too).
  s.seen = { table.unpack(s.stream.tasks, 1, index - 1) }
  if s.steps % cfg.steps_per_task == 1 or cfg.steps_per_task == 1 then
    if strategy.begin_task then strategy.begin_task(s, task, cfg) end
  end
  local started = mt.clock()
  local batch = s.next_batch(task)
  local loss = strategy.loss and strategy.loss(s, task, batch, cfg) or s.learner:loss(task.name, batch)
  s.opt:zero_grad()
  loss:backward()
  s.opt:step()
  -- Training time alone (the evaluations after each task are not in it): the cost per step.
  s.train_seconds = (s.train_seconds or 0) + (mt.clock() - started)
  local out = { loss = loss, task = index }
  if s.steps % cfg.steps_per_task == 0 then
    -- The end of a task: the strategy's hook, then a row of R, then the metrics so far.
    local extra = strategy.end_task and strategy.end_task(s, task, cfg)
    for k, v in pairs(type(extra) == "table" and extra or {}) do out[k] = v end
    local row = {}
    for j, t in ipairs(s.stream.tasks) do row[j] = s.learner:accuracy(t) end
    s.R[#s.R + 1] = row
    local m = mt.cl.metrics(s.R, { baseline = s.baseline })
    mt.log("after %s: %s", task.name, table.concat(row, ", "))
    for k, v in pairs(m) do if type(v) == "number" then out[k] = v end end
    for j, t in ipairs(s.stream.tasks) do out["acc_" .. t.name] = row[j] end
  end
  local rows = {}
  for i = 1, #s.R do rows[i] = s.stream.names[i] end
  if #s.R > 0 then
    out.panels = { accuracy = { rows = rows, cols = s.stream.names, values = s.R } }
  end
  return out
end

-- The peak resident memory of this process in bytes (Linux; nil elsewhere).
local function peak_memory()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local kb = f:read("a"):match("VmHWM:%s*(%d+)")
  f:close()
  return kb and tonumber(kb) * 1024
end

local function finish(s, cfg, dir)
  if #s.R == 0 then return end
  local m = mt.cl.metrics(s.R, { baseline = s.baseline })
  local f = assert(io.open(dir .. "/results.json", "w"))
  f:write(mt.json.encode{
    strategy = cfg.strategy, tasks = s.stream.names, R = s.R, baseline = s.baseline, metrics = m,
    steps = s.steps, wall_seconds = mt.clock() - s.started, seconds_per_step = s.train_seconds / s.steps,
    peak_memory_bytes = peak_memory(),
  })
  f:close()
  mt.log("%s on %s: average accuracy %.3f, forgetting %.3f, BWT %.3f, FWT %s, average incremental accuracy %.3f",
         cfg.strategy, table.concat(s.stream.names, " → "), m.average_accuracy, m.forgetting, m.bwt,
         m.fwt and string.format("%.3f", m.fwt) or "n/a", m.average_incremental_accuracy)
end

local function done(s, cfg)
  return #s.R == #s.stream.tasks
end

-- After --resume: the wall time in results.json counts from here.
local function load(s)
  s.started = mt.clock()
end

return { config = config, setup = setup, step = step, done = done, load = load, finish = finish }
