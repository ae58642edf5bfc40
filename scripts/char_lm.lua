-- char_lm.lua — a self-contained first recipe: a character-level transformer language model
-- built from mt.nn, trained with AdamW on little stories this recipe generates itself (no input
-- files), evaluated on held-out text, with samples printed as it learns.
--
--   moontune run scripts/char_lm.lua                 (or with steps=100 lr=1e-3)
--
-- It shows the recipe contract: `config` (every knob, overridable as key=value), `setup` (builds
-- what persists: data, model, optimizer, schedule), `step` (one optimizer step, returns numbers to
-- log), `evaluate` (every eval_every steps and at the end).

local mt = require "moontune"
local T, nn, F = mt.tensor, mt.nn, mt.nn.functional

local config = {
  steps = 300,        -- optimizer steps
  eval_every = 100,   -- evaluate (held-out loss and a sample) every this many steps
  log_every = 25,     -- plain-output step lines (when stdout is not a terminal)
  seed = 0,           -- seeds libtorch and math.random
  batch_size = 32,    -- sequences per step
  context = 64,       -- characters per sequence
  d_model = 64,       -- embedding width
  n_heads = 4,        -- attention heads
  n_layers = 2,       -- transformer blocks
  lr = 3e-3,          -- peak learning rate
  warmup = 30,        -- linear warm-up steps
  weight_decay = 0.01,
  stories = 1500,     -- generated stories in the corpus
  sample_chars = 120, -- characters generated for each sample
}

-- The corpus: short arithmetic stories whose numbers must be carried along.
local names = { "ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal" }
local things = { "apples", "pears", "stones", "books", "cards" }

local function story()
  local a, b = names[math.random(#names)], names[math.random(#names)]
  local thing = things[math.random(#things)]
  local n = math.random(2, 9)
  local m = math.random(1, n - 1)
  return string.format("%s has %d %s. %s gives %d to %s. now %s has %d %s.\n", a, n, thing, a, m, b, a, n - m, thing)
end

local function build_vocab(text)
  local seen, chars = {}, {}
  for c in text:gmatch(".") do
    if not seen[c] then seen[c] = true; chars[#chars + 1] = c end
  end
  table.sort(chars)
  local ids = {}
  for i, c in ipairs(chars) do ids[c] = i - 1 end
  return chars, ids
end

local function encode(text, ids)
  local out = {}
  for c in text:gmatch(".") do out[#out + 1] = ids[c] end
  return T.tensor(out)
end

-- A pre-norm transformer block: causal self-attention and an MLP, each with a residual.
local Block = nn.module("Block")

function Block:init(d, heads)
  self.heads = heads
  self.ln1 = nn.layer_norm(d)
  self.qkv = nn.linear(d, 3 * d)
  self.proj = nn.linear(d, d)
  self.ln2 = nn.layer_norm(d)
  self.fc = nn.linear(d, 4 * d)
  self.out = nn.linear(4 * d, d)
end

function Block:forward(x)
  local b, t, d = table.unpack(x:shape())
  local q, k, v = table.unpack(self.qkv(self.ln1(x)):split(d, -1))
  local function heads(z) return z:view(b, t, self.heads, d // self.heads):transpose(1, 2) end
  local att = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), nil, { is_causal = true })
  x = x + self.proj(att:transpose(1, 2):reshape(b, t, d))
  return x + self.out(self.fc(self.ln2(x)):gelu())
end

local CharLM = nn.module("CharLM")

function CharLM:init(vocab, cfg)
  self.tok = nn.embedding(vocab, cfg.d_model)
  self.pos = nn.embedding(cfg.context, cfg.d_model)
  local blocks = {}
  for i = 1, cfg.n_layers do blocks[i] = Block(cfg.d_model, cfg.n_heads) end
  self.blocks = nn.sequential(blocks)
  self.ln = nn.layer_norm(cfg.d_model)
  self.head = nn.linear(cfg.d_model, vocab, { bias = false })
end

function CharLM:forward(ids)
  local t = ids:shape()[2]
  local x = self.tok(ids) + self.pos(T.arange(t))
  return self.head(self.ln(self.blocks(x)))
end

-- A random batch of (input, next-character target) windows from `data`.
local function batch(data, cfg)
  local starts = T.randint(data:numel() - cfg.context - 1, { cfg.batch_size, 1 })
  local idx = starts + T.arange(cfg.context):view(1, -1)
  return data:index_select(0, idx:flatten()):view(cfg.batch_size, cfg.context),
         data:index_select(0, (idx + 1):flatten()):view(cfg.batch_size, cfg.context)
end

local function lm_loss(model, x, y)
  local logits = model(x)
  local vocab = logits:shape()[3]
  return F.cross_entropy(logits:view(-1, vocab), y:view(-1))
end

-- Sampling: feed the last `context` characters, draw the next from the softmax.
local function sample(state, cfg, prompt)
  local ids = {}
  for c in prompt:gmatch(".") do ids[#ids + 1] = state.ids[c] end
  mt.no_grad(function()
    state.model:eval()
    for _ = 1, cfg.sample_chars do
      local window = { table.unpack(ids, math.max(1, #ids - cfg.context + 1)) }
      local logits = state.model(T.tensor({ window }))[0][#window - 1]
      ids[#ids + 1] = (logits / 0.8):softmax(-1):multinomial(1):item()
    end
    state.model:train()
  end)
  local chars = {}
  for i, id in ipairs(ids) do chars[i] = state.chars[id + 1] end
  return table.concat(chars)
end

-- The annotation gives editors completion of the recipe contract (`moontune types .` installs them).
---@type moontune.Recipe
return {
  config = config,

  setup = function(cfg)
    local parts = {}
    for i = 1, cfg.stories do parts[i] = story() end
    local text = table.concat(parts)
    local chars, ids = build_vocab(text)
    local data = encode(text, ids)
    local split = math.floor(data:numel() * 0.9)
    local model = CharLM(#chars, cfg)
    local opt = mt.optim.adamw(model:parameters(), { lr = cfg.lr, weight_decay = cfg.weight_decay })
    mt.log("corpus: %d characters, vocabulary %d; model: %d parameters",
      data:numel(), #chars, model:num_parameters())
    return {
      chars = chars, ids = ids, model = model, opt = opt,
      train = data:narrow(0, 0, split), valid = data:narrow(0, split, data:numel() - split),
      sched = mt.sched.cosine(opt, { warmup = cfg.warmup, total = cfg.steps, min_lr_rate = 0.1 }),
    }
  end,

  step = function(state, cfg)
    local x, y = batch(state.train, cfg)
    local loss = lm_loss(state.model, x, y)
    state.opt:zero_grad()
    loss:backward()
    local grad_norm = mt.optim.clip_grad_norm(state.model:parameters(), 1.0)
    state.opt:step()
    local lr = state.opt:get_lr()
    state.sched:step()
    return { loss = loss, lr = lr, grad_norm = grad_norm }
  end,

  evaluate = function(state, cfg)
    local total = 0
    mt.no_grad(function()
      for _ = 1, 4 do total = total + lm_loss(state.model, batch(state.valid, cfg)):item() end
    end)
    mt.log("sample: %s", (sample(state, cfg, "ann has 7 "):gsub("\n", " / ")))
    return { loss = total / 4 }
  end,
}
