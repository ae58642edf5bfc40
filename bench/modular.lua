-- bench/modular.lua — moontune's side of the modular-adapter benchmark (run by
-- bench/modular.py, which runs AdapterHub's `adapters` the same way and compares). Reads its
-- settings from the environment and prints one JSON line: tokens/s over the timed steps and the
-- trainable parameters. BENCH_SETUP=seq_bn trains one seq_bn adapter; BENCH_SETUP=fusion trains
-- a dynamic fusion over three seq_bn adapters (the adapters frozen).
local mt = require "moontune"
local T = mt.tensor

local path = assert(os.getenv("BENCH_MODEL"), "BENCH_MODEL is not set")
local batch, seq, steps = tonumber(os.getenv("BENCH_BATCH")), tonumber(os.getenv("BENCH_SEQ")), tonumber(os.getenv("BENCH_STEPS"))
local setup = os.getenv("BENCH_SETUP") or "seq_bn"

local model = assert(mt.models.load(path))
if setup == "fusion" then
  for _, n in ipairs{ "a", "b", "c" } do mt.peft.bottleneck(model, { name = n, config = "seq_bn" }) end
  mt.peft.fusion(model, { "a", "b", "c" }, { config = "dynamic" })
  model:train_fusion{ "a", "b", "c" }
else
  mt.peft.bottleneck(model, { name = "a", config = "seq_bn" })
end
local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = 1e-4 })
mt.manual_seed(0)
local ids = T.randint(3, model:config().vocab_size, { batch, seq })
model:train()
local function step()
  local loss = model{ input_ids = ids, labels = ids }.loss
  opt:zero_grad()
  loss:backward()
  opt:step()
end
step()                                                   -- warm-up
local t = mt.clock()
for _ = 1, steps do step() end
local seconds = mt.clock() - t
print(string.format('{"tokens_per_s": %.1f, "trainable": %d}', steps * batch * seq / seconds, model:num_parameters{ trainable = true }))
