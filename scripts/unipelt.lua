-- unipelt.lua — UniPELT (Mao et al. 2022) with all-MiniLM-L6-v2 on Rotten Tomatoes polarity
-- (movie-review sentences, 10,662; SST-2's 872 are too few to train on): LoRA on the query and
-- value projections, prefix tuning and a seq_bn bottleneck adapter, each behind a gate
-- sigmoid(Linear(h → 1)) that learns how much of its part every layer uses, plus a head on the
-- mean-pooled encoder output. The gates (layers × {lora, prefix, adapter}) are shown as a heat
-- map while training runs ("gates unipelt") and written at each evaluation (metrics.jsonl rows
-- of kind "panel"); the end compares accuracy on held-out sentences with the head alone on the
-- frozen encoder, trained as long.
--
--   moontune run scripts/unipelt.lua                   (300 steps, ~2.5 minutes on 2 cores)
--   moontune run scripts/unipelt.lua steps=600 lr=5e-4

local mt = require "moontune"
local nn, F = mt.nn, mt.nn.functional
local tasks = require "lib.sentence_tasks"

local TASK = tasks.TARGET

return {
  config = {
    model = os.getenv("MOONTUNE_MINILM") or (tasks.shared .. "/models/all-MiniLM-L6-v2"),
    steps = 300,
    batch_size = 16,
    max_len = 64,
    lr = 1e-3,
    prefix_length = 10,     -- UniPELT's: 10 virtual tokens
    reduction_factor = 16,  -- the adapter's bottleneck: hidden / 16
    r = 8,                  -- LoRA's rank
    test_n = 400,
    eval_every = 100,
    seed = 0,
  },

  setup = function(cfg)
    mt.manual_seed(cfg.seed)
    local encoder = assert(mt.models.load(cfg.model))
    local tok = assert(mt.tokenizer.load(cfg.model))
    local train, test = tasks.split(TASK.read(), cfg.seed, cfg.test_n)
    local hidden = encoder:config().hidden_size
    local state = { encoder = encoder, tok = tok, train = train, test = test, cursor = 0 }
    -- The baseline: the head alone on the frozen encoder, trained for as many steps first.
    state.baseline = nn.linear(hidden, TASK.classes)
    local opt = mt.optim.adamw(state.baseline:parameters(), { lr = cfg.lr })
    encoder:eval()
    for i = 1, cfg.steps do
      local enc, labels = tasks.batch_of(tok, train, (i - 1) * cfg.batch_size + 1, cfg.batch_size, cfg.max_len)
      local pooled = mt.no_grad(function()
        local out = encoder{ input_ids = enc.input_ids, attention_mask = enc.attention_mask, token_type_ids = enc.token_type_ids }
        return mt.models.mean_pool(out.last_hidden_state, enc.attention_mask)
      end)
      local loss = F.cross_entropy(state.baseline(pooled), labels)
      opt:zero_grad(); loss:backward(); opt:step()
    end
    state.baseline_accuracy = tasks.accuracy(state, state.baseline, test, { eval_limit = 0, max_len = cfg.max_len })
    mt.log("head alone on the frozen encoder: accuracy %.3f", state.baseline_accuracy)
    mt.peft.union(encoder, {
      name = "unipelt",
      config = "unipelt",
      prefix_tuning = { prefix_length = cfg.prefix_length },
      bottleneck = { reduction_factor = cfg.reduction_factor },
      lora = { r = cfg.r },
    })
    state.head = nn.linear(hidden, TASK.classes)
    local params = encoder:parameters{ trainable = true }
    for _, w in ipairs(state.head:parameters()) do params[#params + 1] = w end
    state.opt = mt.optim.adamw(params, { lr = cfg.lr })
    state.model = encoder   -- the run loop shows its gates
    return state
  end,

  step = function(state, cfg)
    state.encoder:train()
    local enc, labels = tasks.batch_of(state.tok, state.train, state.cursor * cfg.batch_size + 1, cfg.batch_size, cfg.max_len)
    state.cursor = state.cursor + 1
    local loss = F.cross_entropy(tasks.logits(state, state.head, enc), labels)
    state.opt:zero_grad()
    loss:backward()
    state.opt:step()
    return { loss = loss }
  end,

  evaluate = function(state, cfg)
    return { accuracy = tasks.accuracy(state, state.head, state.test, { eval_limit = 0, max_len = cfg.max_len }) }
  end,

  finish = function(state, cfg)
    local acc = tasks.accuracy(state, state.head, state.test, { eval_limit = 0, max_len = cfg.max_len })
    mt.log("Rotten Tomatoes, %d held-out sentences: UniPELT %.3f, head alone %.3f", #state.test, acc, state.baseline_accuracy)
    local gates, layers, parts = state.encoder:gates("unipelt")
    mt.log("gates on the last batch (columns: %s):", table.concat(parts, ", "))
    for i, layer in ipairs(layers) do mt.log("  %-8s %s", layer, mt.json.encode(gates[i - 1]:tolist())) end
  end,
}
