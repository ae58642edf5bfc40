-- bench/lora.lua — moontune's side of the LoRA training benchmark (run by bench/lora.py, which
-- runs transformers + PEFT the same way and compares). Reads its settings from the environment
-- and prints one JSON line: tokens/s over the timed steps, the trainable parameters and the peak
-- RSS of the steps alone (the high-water mark reset after loading). With
-- BENCH_QLORA=1 the base is first stored in 4 bits (NF4, double quantisation): QLoRA; with
-- BENCH_METHOD=lua the LoRA is written in Lua (mt.peft.register) instead of the built-in; with
-- BENCH_AUTOCAST=bf16 the forward runs under mt.autocast; with BENCH_CHECKPOINT=1 every layer is
-- checkpointed (model:gradient_checkpointing).
local mt = require "moontune"
local T = mt.tensor

local path = assert(os.getenv("BENCH_MODEL"), "BENCH_MODEL is not set")
local batch, seq = tonumber(os.getenv("BENCH_BATCH")), tonumber(os.getenv("BENCH_SEQ"))
local steps, rank, alpha = tonumber(os.getenv("BENCH_STEPS")), tonumber(os.getenv("BENCH_RANK")), tonumber(os.getenv("BENCH_ALPHA"))

local model = assert(mt.models.load(path))
if os.getenv("BENCH_QLORA") == "1" then
  mt.peft.quantize(model, { type = "nf4", double_quant = true, compute_dtype = "float32" })
end
local targets = { "q_proj", "k_proj", "v_proj", "o_proj" }
if os.getenv("BENCH_METHOD") == "lua" then
  -- The same LoRA written in Lua (mt.peft.register): what a Lua-defined method costs.
  mt.peft.register{
    name = "LUA_LORA",
    init = function(self, layer, opts)
      self["lora_A.weight"] = T.randn{ opts.r, layer.in_features } / math.sqrt(layer.in_features)
      self["lora_B.weight"] = T.zeros{ layer.out_features, opts.r }
      self.scale = opts.alpha / opts.r
    end,
    forward = function(self, x, base_out)
      return base_out + x:matmul(self["lora_A.weight"]:t()):matmul(self["lora_B.weight"]:t()) * self.scale
    end,
  }
  mt.peft.add(model, "LUA_LORA", { r = rank, alpha = alpha, targets = targets })
else
  mt.peft.lora(model, { r = rank, alpha = alpha, targets = targets })
end
if os.getenv("BENCH_CHECKPOINT") == "1" then model:gradient_checkpointing(true) end
local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = 1e-4 })
mt.manual_seed(0)
local ids = T.randint(3, model:config().vocab_size, { batch, seq })
model:train()
local autocast = os.getenv("BENCH_AUTOCAST") or ""
local function loss_of()
  if autocast ~= "" then
    return mt.autocast(autocast, function() return model{ input_ids = ids, labels = ids }.loss end)
  end
  return model{ input_ids = ids, labels = ids }.loss
end
local function step()
  local loss = loss_of()
  opt:zero_grad()
  loss:backward()
  opt:step()
end
-- The steps' own peak RSS: the kernel's high-water mark reset once the model is ready
-- (/proc/self/clear_refs), read after the last step.
local function reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if f then f:write("5"); f:close() end
end
local function peak_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmHWM:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end
reset_peak()
step()                                                   -- warm-up
local t = mt.clock()
for _ = 1, steps do step() end
local seconds = mt.clock() - t
print(string.format('{"tokens_per_s": %.1f, "trainable": %d, "step_peak_mib": %.1f}', steps * batch * seq / seconds,
                    model:num_parameters{ trainable = true }, peak_kib() / 1024))
