-- bench/optim.lua — moontune's side of the optimizer benchmark (run by bench/optim.py, which
-- times torch.optim the same way): milliseconds per AdamW step on each kernel, for the tensor
-- set named by BENCH_SET, gradients set once. Prints one JSON line.

local mt = require "moontune"
local T = mt.tensor

local set, steps = assert(os.getenv("BENCH_SET")), tonumber(os.getenv("BENCH_STEPS"))
mt.manual_seed(0)
local function params()
  local out = {}
  if set == "lora" then           -- 224 LoRA-shaped tensors: A (8×256) and B (256×8) of 112 layers
    for i = 1, 112 do
      out[#out + 1] = T.randn({ 8, 256 }, { requires_grad = true })
      out[#out + 1] = T.randn({ 256, 8 }, { requires_grad = true })
    end
  else                            -- four 1024×1024 tensors
    for i = 1, 4 do out[#out + 1] = T.randn({ 1024, 1024 }, { requires_grad = true }) end
  end
  for _, p in ipairs(out) do p:sum():backward() end
  return out
end

local result = {}
for _, kernel in ipairs({ "single", "foreach", "fused" }) do
  local choice = ({ single = { foreach = false, fused = false }, foreach = { foreach = true }, fused = { fused = true } })[kernel]
  local opts = { lr = 1e-3, weight_decay = 0.01 }
  for k, v in pairs(choice) do opts[k] = v end
  local opt = mt.optim.adamw(params(), opts)
  for _ = 1, 3 do opt:step() end
  local t = mt.clock()
  for _ = 1, steps do opt:step() end
  result[#result + 1] = string.format('"%s": %.4f', kernel, (mt.clock() - t) * 1000 / steps)
end
print("{" .. table.concat(result, ", ") .. "}")
