-- lora_sft.lua — supervised fine-tuning of a causal LM with LoRA on an instruction file
-- (Alpaca-style JSON: instruction, input, output), the loss on the response tokens only. Prints
-- the held-out loss before and after, a generation for a held-out instruction, and saves the
-- adapter (PEFT's files: PeftModel.from_pretrained loads it).
--
--   moontune run scripts/lora_sft.lua                       (stories260K, the tiny Alpaca file)
--   moontune run scripts/lora_sft.lua model=path/to/hf-dir data=path/to/alpaca.json steps=200
--
-- `quantize=true` stores the base in 4 bits first (NF4, double quantisation): QLoRA
-- (scripts/qlora_sft.lua is this recipe with that default).
--
-- Data-parallel as it is: `moontune launch --nproc 2 scripts/lora_sft.lua` runs it on two ranks.
-- `mt.dist.data_parallel(model)` averages the adapter's gradients across ranks (in a plain run,
-- a world of one, it does nothing), the batch iterator deals each rank its share by itself, and
-- only rank 0 saves the adapter.

local mt = require "moontune"
local T = mt.tensor

local shared = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"

local config = {
  model = shared .. "/models/stories260K",   -- a Hugging Face directory or a GGUF file
  data = shared .. "/instruct/torchtune_alpaca_tiny.json",
  out = "",            -- where the adapter is saved (default: adapter/ in the run's directory)
  steps = 60,
  eval_every = 20,
  log_every = 10,
  seed = 0,
  batch_size = 4,
  max_len = 192,       -- tokens per example (prompt and response), longer ones are cut
  held_out = 10,       -- examples kept for evaluation
  lr = 3e-3,
  r = 8,
  alpha = 16,
  dropout = 0.05,
  targets = "all-linear",
  method = "lora",     -- or the name of a method registered with mt.peft.register
  quantize = false,    -- QLoRA: the base in NF4
  new_tokens = 40,     -- tokens generated for the sample
}

-- torchtune's Alpaca template.
local function prompt_of(ex)
  if ex.input and ex.input ~= "" then
    return "Below is an instruction that describes a task, paired with an input that provides further context. "
      .. "Write a response that appropriately completes the request.\n\n### Instruction:\n" .. ex.instruction
      .. "\n\n### Input:\n" .. ex.input .. "\n\n### Response:\n"
  end
  return "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    .. "### Instruction:\n" .. ex.instruction .. "\n\n### Response:\n"
end

-- Token ids and labels of one example: the prompt's labels are -100 (no loss there).
local function encode(tok, ex, max_len)
  local prompt = tok:encode(prompt_of(ex))
  local response = tok:encode(ex.output, nil, { add_special_tokens = false })
  local ids, labels = {}, {}
  for _, id in ipairs(prompt) do ids[#ids + 1] = id; labels[#labels + 1] = -100 end
  for _, id in ipairs(response) do ids[#ids + 1] = id; labels[#labels + 1] = id end
  local eos = tok:eos_id()
  if eos then ids[#ids + 1] = eos; labels[#labels + 1] = eos end
  while #ids > max_len do table.remove(ids); table.remove(labels) end
  return { ids = ids, labels = labels, prompt = prompt }
end

-- A right-padded batch of examples.
local function batch_of(examples, pad)
  local width = 0
  for _, e in ipairs(examples) do width = math.max(width, #e.ids) end
  local ids, labels, mask = {}, {}, {}
  for i, e in ipairs(examples) do
    ids[i], labels[i], mask[i] = {}, {}, {}
    for j = 1, width do
      ids[i][j] = e.ids[j] or pad
      labels[i][j] = e.labels[j] or -100
      mask[i][j] = e.ids[j] and 1 or 0
    end
  end
  return { input_ids = T.tensor(ids), labels = T.tensor(labels), attention_mask = T.tensor(mask) }
end

local function eval_loss(state)
  local total, n = 0, 0
  mt.no_grad(function()
    for i = 1, #state.eval, state.batch_size do
      local chunk = {}
      for j = i, math.min(i + state.batch_size - 1, #state.eval) do chunk[#chunk + 1] = state.eval[j] end
      total = total + state.model(batch_of(chunk, state.pad)).loss:item() * #chunk
      n = n + #chunk
    end
  end)
  return total / n
end

local function sample(state, cfg)
  local ex = state.eval[1]
  state.model:eval()
  local out = state.model:generate(T.tensor{ ex.prompt }, { max_new_tokens = cfg.new_tokens, stop_ids = { state.tok:eos_id() } })
  state.model:train()
  local ids = out:tolist()[1]
  return state.tok:decode({ table.unpack(ids, #ex.prompt + 1) })
end

local function setup(cfg)
  local model = assert(mt.models.load(cfg.model))
  local tok = assert(mt.tokenizer.load(cfg.model))
  local data = assert(mt.json.read(cfg.data))
  local examples = {}
  for _, ex in ipairs(data) do examples[#examples + 1] = encode(tok, ex, cfg.max_len) end
  local train, eval = {}, {}
  for i, e in ipairs(examples) do
    if i > #examples - cfg.held_out then eval[#eval + 1] = e else train[#train + 1] = e end
  end
  if cfg.quantize then
    mt.peft.quantize(model, { type = "nf4", double_quant = true, compute_dtype = "float32" })
  end
  if cfg.method == "lora" then
    mt.peft.lora(model, { r = cfg.r, alpha = cfg.alpha, dropout = cfg.dropout, targets = cfg.targets })
  else
    mt.peft.add(model, cfg.method, { r = cfg.r, alpha = cfg.alpha, targets = cfg.targets })
  end
  mt.peft.summary(model)
  local pad = tok:pad_id() or 0
  local rows = {}
  for i, e in ipairs(train) do rows[i] = { input_ids = e.ids, labels = e.labels } end
  local batches = mt.data.from(rows):batch{ size = cfg.batch_size, pad_id = pad }
  local state = { model = model, tok = tok, eval = eval, batch_size = cfg.batch_size, pad = pad,
                  batches = batches:iter{ epochs = math.huge },
                  -- the adapter's gradients averaged across ranks under `moontune launch`
                  dp = mt.dist.data_parallel(model) }
  state.opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = cfg.lr, weight_decay = 0.0 })
  state.loss_before = eval_loss(state)
  state.sample_before = sample(state, cfg)
  print(string.format("held-out loss before: %.4f", state.loss_before))
  model:train()
  return state
end

local function step(state, cfg)
  local b = state.batches:next()
  local loss = state.model{ input_ids = b.input_ids, attention_mask = b.attention_mask, labels = b.labels }.loss
  state.opt:zero_grad()
  loss:backward()
  state.opt:step()
  return { loss = loss:item() }
end

local function evaluate(state, cfg)
  state.model:eval()
  local loss = eval_loss(state)
  state.model:train()
  return { eval_loss = loss }
end

local function finish(state, cfg, dir)
  state.model:eval()
  local after = eval_loss(state)
  print(string.format("held-out loss: %.4f before, %.4f after", state.loss_before, after))
  print("sample before: " .. state.sample_before)
  print("sample after:  " .. sample(state, cfg))
  if mt.dist.is_main() then
    local out = cfg.out ~= "" and cfg.out or dir .. "/adapter"
    assert(state.model:save_adapter(out))
    print("adapter saved to " .. out)
  end
end

return { config = config, setup = setup, step = step, evaluate = evaluate, finish = finish }
