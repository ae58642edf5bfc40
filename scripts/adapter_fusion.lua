-- adapter_fusion.lua — AdapterFusion (Pfeiffer et al. 2021) with all-MiniLM-L6-v2: a seq_bn
-- bottleneck adapter is trained per source task (SST-2, AG News, SMS spam), each with its own
-- classification head on the mean-pooled encoder output; then, on the target task (Rotten
-- Tomatoes polarity), three ways are compared on the same held-out examples:
--   * each source adapter frozen, a new head trained on it (the best of the three reported),
--   * a new adapter trained on the target alone,
--   * the three adapters fused (dynamic AdapterFusion), fusion and head trained.
-- The fusion weights (which source each layer listens to) are shown as a heat map while the
-- fusion trains and written at each evaluation (metrics.jsonl rows of kind "panel").
--
--   moontune run scripts/adapter_fusion.lua                       (~8 phases of phase_steps)
--   moontune run scripts/adapter_fusion.lua phase_steps=150 eval_limit=0

local mt = require "moontune"
local nn, F = mt.nn, mt.nn.functional

local tasks = require "lib.sentence_tasks"
local shared, TASKS, TARGET = tasks.shared, tasks.TASKS, tasks.TARGET
local split, batch_of, logits, accuracy = tasks.split, tasks.batch_of, tasks.logits, tasks.accuracy

-- The phases, each `phase_steps` steps: train a source adapter and its head; a target head on
-- each frozen source adapter; a new target adapter; the fusion.
local function phases()
  local list = {}
  for _, t in ipairs(TASKS) do list[#list + 1] = { kind = "source", task = t } end
  for _, t in ipairs(TASKS) do list[#list + 1] = { kind = "single", source = t.name } end
  list[#list + 1] = { kind = "alone" }
  list[#list + 1] = { kind = "fusion" }
  return list
end

return {
  config = {
    model = os.getenv("MOONTUNE_MINILM") or (shared .. "/models/all-MiniLM-L6-v2"),
    phase_steps = 60,
    steps = 480,            -- 8 phases × phase_steps; a smaller number runs the first phases only
    batch_size = 16,
    max_len = 64,
    lr = 1e-3,
    fusion_lr = 5e-4,
    reduction_factor = 16,
    test_n = 400,           -- held-out examples per task
    eval_limit = 400,       -- of them evaluated (0: all)
    eval_every = 0,
    seed = 0,
  },

  setup = function(cfg)
    mt.manual_seed(cfg.seed)
    local encoder = assert(mt.models.load(cfg.model))
    local tok = assert(mt.tokenizer.load(cfg.model))
    local data = {}
    for _, t in ipairs(TASKS) do
      local train, test = split(t.read(), cfg.seed, cfg.test_n)
      data[t.name] = { train = train, test = test }
    end
    local train, test = split(TARGET.read(), cfg.seed, cfg.test_n)
    data.rt = { train = train, test = test }
    local list = phases()
    -- Fewer steps than the phases need: shorter phases (at least one step each).
    local phase_steps = math.max(1, math.min(cfg.phase_steps, cfg.steps // #list))
    return { model = encoder, encoder = encoder, tok = tok, data = data, phases = list, phase = 0, phase_steps = phase_steps, steps = 0, results = {}, cursor = 0 }
  end,

  step = function(state, cfg)
    state.steps = state.steps + 1
    local index = (state.steps - 1) // state.phase_steps + 1
    local p = state.phases[index]
    if not p then return {} end
    local hidden = state.encoder:config().hidden_size
    if index ~= state.phase then
      -- A new phase: its adapter setup, its head and optimizer.
      if state.finish_phase then state.finish_phase() end
      state.phase, state.cursor = index, 0
      local task = p.kind == "source" and p.task or TARGET
      local head = nn.linear(hidden, task.classes)
      local params
      if p.kind == "source" then
        mt.peft.bottleneck(state.encoder, { name = task.name, config = "seq_bn", reduction_factor = cfg.reduction_factor })
        state.encoder:set_adapter(task.name)
        params = state.encoder:parameters{ trainable = true }
      elseif p.kind == "single" then
        state.encoder:set_adapter(p.source)
        state.encoder:train_adapter{}        -- the source adapter frozen: the head alone learns
        params = {}
      elseif p.kind == "alone" then
        mt.peft.bottleneck(state.encoder, { name = "rt", config = "seq_bn", reduction_factor = cfg.reduction_factor })
        state.encoder:set_adapter("rt")
        params = state.encoder:parameters{ trainable = true }
      else
        local names = {}
        for _, t in ipairs(TASKS) do names[#names + 1] = t.name end
        mt.peft.fusion(state.encoder, names, { config = "dynamic" })
        state.encoder:train_fusion(names)
        params = state.encoder:parameters{ trainable = true }
      end
      for _, w in ipairs(head:parameters()) do params[#params + 1] = w end
      state.head, state.task, state.kind = head, task, p.kind
      state.opt = mt.optim.adamw(params, { lr = p.kind == "fusion" and cfg.fusion_lr or cfg.lr })
      state.finish_phase = function()
        local name = p.kind == "source" and task.name or (p.kind == "single" and ("rt on " .. p.source)) or (p.kind == "alone" and "rt alone" or "rt fusion")
        state.results[#state.results + 1] = { name = name, kind = p.kind, accuracy = accuracy(state, head, state.data[task.name].test, cfg) }
        mt.log("%-16s accuracy %.3f", name, state.results[#state.results].accuracy)
      end
    end
    state.encoder:train()
    local rows = state.data[state.task.name].train
    local enc, labels = batch_of(state.tok, rows, state.cursor * cfg.batch_size + 1, cfg.batch_size, cfg.max_len)
    state.cursor = state.cursor + 1
    local loss = F.cross_entropy(logits(state, state.head, enc), labels)
    local reg = state.kind == "fusion" and state.encoder:fusion_regularization() or nil
    local total = reg and (loss + reg) or loss
    state.opt:zero_grad()
    total:backward()
    state.opt:step()
    return { loss = loss, phase = index }
  end,

  evaluate = function(state, cfg)
    if not state.head then return {} end
    return { accuracy = accuracy(state, state.head, state.data[state.task.name].test, cfg), phase = state.phase }
  end,

  finish = function(state, cfg)
    if state.finish_phase then state.finish_phase() end
    local best_single, alone, fusion = nil, nil, nil
    for _, r in ipairs(state.results) do
      if r.kind == "single" and (not best_single or r.accuracy > best_single.accuracy) then best_single = r end
      if r.kind == "alone" then alone = r end
      if r.kind == "fusion" then fusion = r end
    end
    mt.log("target task (Rotten Tomatoes polarity), accuracy on %d held-out examples:", cfg.eval_limit > 0 and math.min(cfg.eval_limit, cfg.test_n) or cfg.test_n)
    if best_single then mt.log("  best single source adapter (%s): %.3f", best_single.name, best_single.accuracy) end
    if alone then mt.log("  a new adapter on the target alone: %.3f", alone.accuracy) end
    if fusion then
      mt.log("  fusion of %d source adapters:     %.3f", #TASKS, fusion.accuracy)
      local w, points, names = state.encoder:fusion_weights()
      mt.log("fusion weights (rows: points, columns: %s):", table.concat(names, ", "))
      for i, p in ipairs(points) do mt.log("  %-48s %s", p, mt.json.encode(w[i - 1]:tolist())) end
    end
    if #state.results < #state.phases then
      mt.log("(%d of %d phases ran: steps = %d, %d per phase)", #state.results, #state.phases, cfg.steps, state.phase_steps)
    end
  end,
}
