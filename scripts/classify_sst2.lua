-- classify_sst2.lua — a causal LM as a sentiment classifier on SST-2: evaluated zero-shot and
-- few-shot first (the baseline), then fine-tuned with LoRA on the label words (" bad", " good";
-- the loss on the label only), then evaluated again. Classification scores each label word by
-- its log-likelihood after the prompt (mt.eval.classify). The run directory gets accuracy and
-- macro-F1 before and after (metrics.jsonl, step 0 and the last step), the confusion matrix,
-- report.html with their pictures, and errors.jsonl with the worst test examples.
--
--   moontune run scripts/classify_sst2.lua                          (stories260K)
--   moontune run scripts/classify_sst2.lua model=path/to/hf-dir steps=300 eval_limit=0

local mt = require "moontune"

local shared = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"

local LABELS = { "bad", "good" }   -- SST-2's 0 and 1
local PROMPT = "Review: {sentence}\nSentiment:"

return {
  config = {
    model = shared .. "/models/stories260K",
    data = shared .. "/classification/sst2/dev.tsv",
    steps = 120,
    eval_on_start = true,   -- the zero- and few-shot baseline, logged at step 0
    log_every = 20,
    seed = 0,
    test_fraction = 0.2,    -- of the labelled file, held out (stratified by label)
    shots = 4,              -- examples in the few-shot prompt (from the train part)
    eval_limit = 200,       -- test examples evaluated (0: all)
    batch_size = 16,
    max_len = 128,          -- tokens per training example; longer reviews lose their start
    lr = 3e-3,
    r = 8,
    alpha = 16,
  },

  setup = function(cfg)
    local model = assert(mt.models.load(cfg.model))
    local tok = assert(mt.tokenizer.load(cfg.model))
    local parts = assert(mt.data.read(cfg.data, { schema = { sentence = "string", label = "int" } }))
      :split{ train = 1 - cfg.test_fraction, test = cfg.test_fraction, seed = cfg.seed, stratify = "label" }
    local train = parts.train
      :map(function(ex) return { prompt = PROMPT:gsub("{sentence}", function() return ex.sentence end), response = " " .. LABELS[ex.label + 1] } end)
      :tokenize(tok, { add_eos = false, max_length = cfg.max_len, truncation = "left" })
      :shuffle{ seed = cfg.seed }
      :batch{ size = cfg.batch_size, pad_id = tok:pad_id() or 0 }
    mt.peft.lora(model, { r = cfg.r, alpha = cfg.alpha, targets = "all-linear" })
    local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = cfg.lr })
    return {
      model = model, tok = tok, opt = opt, sched = mt.sched.cosine(opt, { warmup = 10, total = cfg.steps }),
      batches = train:iter{ epochs = math.huge }, test = parts.test, train = parts.train, evaluated = 0,
    }
  end,

  step = function(state, cfg)
    state.model:train()
    local b = state.batches:next()
    local out = state.model{ input_ids = b.input_ids, attention_mask = b.attention_mask, labels = b.labels }
    out.loss:backward()
    state.opt:step(); state.sched:step(); state.opt:zero_grad()
    return { loss = out.loss, lr = state.opt:param_groups()[1].lr }
  end,

  evaluate = function(state, cfg)
    state.model:eval()
    local limit = cfg.eval_limit > 0 and cfg.eval_limit or nil
    local r = mt.eval.classify(state.model, state.tok, state.test, { labels = LABELS, prompt = PROMPT, limit = limit })
    local out = { accuracy = r.accuracy, macro_f1 = r.macro_f1, panels = { confusion = r.confusion } }
    if state.evaluated == 0 then
      local few = mt.eval.classify(state.model, state.tok, state.test, {
        labels = LABELS, prompt = PROMPT, limit = limit, shots = cfg.shots, train = state.train, seed = cfg.seed,
      })
      out.few_shot_accuracy, out.few_shot_macro_f1 = few.accuracy, few.macro_f1
      state.before = { zero = r, few = few }
    end
    state.evaluated = state.evaluated + 1
    state.last = r
    return out
  end,

  finish = function(state, cfg, dir)
    assert(mt.eval.write_errors(dir .. "/errors.jsonl", state.last.records, { worst = 20 }))
    if state.before then
      mt.log("%-22s %9s %9s", "", "accuracy", "macro-F1")
      mt.log("%-22s %9.3f %9.3f", "zero-shot (before)", state.before.zero.accuracy, state.before.zero.macro_f1)
      mt.log("%-22s %9.3f %9.3f", cfg.shots .. "-shot (before)", state.before.few.accuracy, state.before.few.macro_f1)
      mt.log("%-22s %9.3f %9.3f", "LoRA (after)", state.last.accuracy, state.last.macro_f1)
      local m = state.last.confusion.matrix
      mt.log("confusion after (rows true, columns predicted; %s, %s): %s", LABELS[1], LABELS[2], mt.json.encode(m))
    end
  end,
}
