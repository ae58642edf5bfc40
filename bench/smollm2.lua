-- bench/smollm2.lua — moontune's side of the GGUF benchmark (run by bench/smollm2.py, which runs
-- transformers' side the same way and compares). Reads its settings from the environment and
-- prints one JSON line: load seconds (expanded to float32, and kept quantised), forward tokens/s,
-- greedy generation tokens/s, and milliseconds per LoRA step.
--
-- LoRA here is written as forward hooks in Lua (out + (x Aᵀ Bᵀ)·α/r on q_proj and v_proj, A
-- Kaiming-uniform and B zero, as PEFT initialises them): what a recipe can write by hand;
-- bench/lora.py measures the native mt.peft.lora.

local mt = require "moontune"
local T, nn = mt.tensor, mt.nn

local path = assert(os.getenv("BENCH_MODEL"), "BENCH_MODEL is not set")
local batch, seq = tonumber(os.getenv("BENCH_BATCH")), tonumber(os.getenv("BENCH_SEQ"))
local new_tokens, reps = tonumber(os.getenv("BENCH_NEW_TOKENS")), tonumber(os.getenv("BENCH_REPS"))
local steps, rank, alpha = tonumber(os.getenv("BENCH_STEPS")), tonumber(os.getenv("BENCH_RANK")), tonumber(os.getenv("BENCH_ALPHA"))
local clock = mt.clock

local t0 = clock()
local quantized = assert(mt.models.load(path, { quantized = true }))
local load_quantized_s = clock() - t0
quantized = nil
collectgarbage()
t0 = clock()
local model = assert(mt.models.load(path))
local load_s = clock() - t0
local vocab = model:config().vocab_size

mt.manual_seed(0)
local ids = T.randint(3, vocab, { batch, seq })
local forward_tps, generate_tps
mt.no_grad(function()
  model:forward{ input_ids = ids }                       -- warm-up
  local t = clock()
  for _ = 1, reps do model:forward{ input_ids = ids } end
  forward_tps = reps * batch * seq / (clock() - t)
  local prompt = T.randint(3, vocab, { 1, 16 })
  model:generate(prompt, { max_new_tokens = 4, stop_ids = {} })  -- warm-up
  t = clock()
  model:generate(prompt, { max_new_tokens = new_tokens, stop_ids = {} })
  generate_tps = new_tokens / (clock() - t)
end)

model:freeze()
local lora = {}
for name, m in pairs(model:named_modules()) do
  if name:match("%.q_proj$") or name:match("%.v_proj$") then
    local w = m.weight
    local out_f, in_f = w:size(0), w:size(1)
    local a = T.empty{ rank, in_f }
    nn.init.kaiming_uniform_(a, { a = math.sqrt(5) })
    lora[name] = { a = a:requires_grad_(), b = T.zeros{ out_f, rank }:requires_grad_() }
  end
end
local params = {}
for _, p in pairs(lora) do params[#params + 1] = p.a; params[#params + 1] = p.b end
local scale = alpha / rank
model:register_forward_hook("model%.layers%.%d+%.self_attn%.[qv]_proj", function(_, x, out, name)
  local p = lora[name]
  return out + x:matmul(p.a:t()):matmul(p.b:t()) * scale
end)
local opt = mt.optim.adamw(params, { lr = 1e-4 })
local labels = ids
local function step()
  local loss = model{ input_ids = ids, labels = labels }.loss
  opt:zero_grad()
  loss:backward()
  opt:step()
end
model:train()
step()                                                   -- warm-up
local t = clock()
for _ = 1, steps do step() end
local lora_ms = (clock() - t) / steps * 1000
print(string.format('{"load_s": %.4f, "load_quantized_s": %.4f, "forward_tokens_per_s": %.1f, "generate_tokens_per_s": %.2f, "lora_step_ms": %.1f}',
  load_s, load_quantized_s, forward_tps, generate_tps, lora_ms))
