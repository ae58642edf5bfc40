-- multitask.lua — multi-task learning on the O-LoRA benchmark's tasks: one all-MiniLM-L6-v2
-- encoder and a head per task, trained on all the tasks at once. Each batch mixes tasks row by
-- row as the sampler draws them (sampling=proportional|temperature|round_robin); with
-- adapters=true each task has its own bottleneck adapter on the frozen encoder and the mixed
-- batch is routed row by row through them in one forward (BatchSplit), else the whole encoder
-- is shared and fine-tuned. The per-task losses combine with fixed weights (weighting=fixed,
-- equal) or learned uncertainty weights (weighting=uncertainty). Every task is scored on its
-- test split at each evaluation (acc_<task>, and their mean); one task alone
-- (tasks=sst2) is the single-task baseline for the same budget.
--
--   moontune run scripts/multitask.lua
--   moontune run scripts/multitask.lua adapters=true sampling=round_robin weighting=uncertainty
local mt = require "moontune"
local F = mt.nn.functional

local shared = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"

local config = {
  model = os.getenv("MOONTUNE_MINILM") or (shared .. "/models/all-MiniLM-L6-v2"),
  tasks = "sst2,agnews,amazon,qqp",
  sampling = "temperature",  -- proportional, temperature or round_robin
  temperature = 2.0,
  weighting = "fixed",       -- fixed (equal) or uncertainty
  adapters = false,          -- a bottleneck adapter per task, rows routed by BatchSplit
  adapter_reduction = 16,
  steps = 200,
  batch = 16,
  train_per_task = 1000,
  test_per_task = 200,
  max_len = 64,
  lr = 5e-5,
  eval_every = 100,
  seed = 0,
  log_every = 10,
}

local function setup(cfg)
  mt.manual_seed(cfg.seed)
  math.randomseed(cfg.seed)
  local names = {}
  for name in cfg.tasks:gmatch("[^,%s]+") do names[#names + 1] = name end
  local stream = mt.cl.stream{ tasks = names, train_per_task = cfg.train_per_task, test_per_task = cfg.test_per_task, seed = cfg.seed }
  local learner = mt.cl.learner{ model = cfg.model, tasks = stream.tasks, max_len = cfg.max_len }
  if cfg.adapters then
    for _, task in ipairs(stream.tasks) do
      mt.peft.bottleneck(learner.model, { name = task.name, reduction_factor = cfg.adapter_reduction })
      learner:route(task.name, task.name)
    end
    local all = {}
    for i, task in ipairs(stream.tasks) do all[i] = task.name end
    learner.model:train_adapter(all)
  end
  local sizes, equal = {}, {}
  for i, task in ipairs(stream.tasks) do sizes[i] = task.train:len(); equal[i] = 1.0 end
  local s = { learner = learner, model = learner.model, stream = stream, examples = {},
              sampler = mt.cl.sampler{ sizes = sizes, how = cfg.sampling, temperature = cfg.temperature },
              weighting = mt.cl.weighting{ how = cfg.weighting, weights = equal, tasks = #stream.tasks } }
  local params = learner:parameters()
  if s.weighting.log_variance then params.log_variance = s.weighting.log_variance end
  s.opt = mt.optim.adamw(params, { lr = cfg.lr, weight_decay = 0.0 })
  for _, task in ipairs(stream.tasks) do
    s.examples[task.name] = task.train:shuffle{ seed = cfg.seed + task.id }:iter{ epochs = math.huge }
  end
  mt.log("sampling probabilities: %s", table.concat(s.sampler.probabilities(), ", "))
  return s
end

local function step(s, cfg)
  -- The rows' tasks, then each task's rows together (in the stream's order).
  local counts = {}
  for _, t in ipairs(s.sampler.draw(cfg.batch)) do counts[t] = (counts[t] or 0) + 1 end
  local parts = {}
  for i, task in ipairs(s.stream.tasks) do
    if counts[i] then
      local part = { task = task.name, index = i, sentences = {}, labels = {} }
      for r = 1, counts[i] do
        local ex = s.examples[task.name]:next()
        part.sentences[r], part.labels[r] = ex.sentence, ex.label
      end
      parts[#parts + 1] = part
    end
  end
  local features = s.learner:features_mixed(parts)
  local losses, out, row = {}, { }, 0
  for _, part in ipairs(parts) do
    local n = #part.sentences
    local logits = s.learner.heads[part.task](features:narrow(0, row, n))
    losses[part.index] = F.cross_entropy(logits, mt.tensor.tensor(part.labels))
    out["loss_" .. part.task] = losses[part.index]
    row = row + n
  end
  local loss = s.weighting.combine(losses)
  s.opt:zero_grad()
  loss:backward()
  s.opt:step()
  out.loss = loss
  if s.weighting.how == "uncertainty" then
    for i, w in ipairs(s.weighting.weights()) do out["weight_" .. s.stream.names[i]] = w end
  end
  return out
end

local function evaluate(s, cfg)
  local out, sum = {}, 0
  for _, task in ipairs(s.stream.tasks) do
    local acc = s.learner:accuracy(task)
    out["acc_" .. task.name] = acc
    sum = sum + acc
  end
  out.average_accuracy = sum / #s.stream.tasks
  return out
end

return { config = config, setup = setup, step = step, evaluate = evaluate }
