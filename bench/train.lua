-- bench/train.lua — moontune's side of the training-step benchmark (run by bench/train.py, which
-- runs transformers + torch.optim the same way): a full fine-tuning step of the Llama in
-- BENCH_MODEL (forward with labels, backward, AdamW), timed per phase. Prints one JSON line of
-- milliseconds per step: forward, backward, optimizer, total.

local mt = require "moontune"
local T = mt.tensor

local model = assert(mt.models.load(assert(os.getenv("BENCH_MODEL"))))
local batch, seq, steps = tonumber(os.getenv("BENCH_BATCH")), tonumber(os.getenv("BENCH_SEQ")), tonumber(os.getenv("BENCH_STEPS"))
local vocab = model:config().vocab_size
model:train()
local opt = mt.optim.adamw(model:parameters(), { lr = 1e-4 })
mt.manual_seed(0)
local ids = T.randint(vocab, { batch, seq })
local clock = mt.clock

local times = { forward = 0, backward = 0, optimizer = 0 }
for step = 1, steps + 2 do
  local t0 = clock()
  local loss = model{ input_ids = ids, labels = ids }.loss
  local t1 = clock()
  loss:backward()
  local t2 = clock()
  opt:step(); opt:zero_grad()
  local t3 = clock()
  if step > 2 then                       -- two warm-up steps
    times.forward = times.forward + t1 - t0
    times.backward = times.backward + t2 - t1
    times.optimizer = times.optimizer + t3 - t2
  end
end
local ms = function(s) return s * 1000 / steps end
print(string.format('{"forward": %.2f, "backward": %.2f, "optimizer": %.2f, "total": %.2f}', ms(times.forward),
  ms(times.backward), ms(times.optimizer), ms(times.forward + times.backward + times.optimizer)))
