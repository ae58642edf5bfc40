-- bench/dist.lua — one side of the data-parallel benchmark (bench/dist.py): the LoRA benchmark's
-- step (bench/lora.lua's model, LoRA r 8 on q/k/v/o_proj, AdamW, causal-LM loss) on BENCH_BATCH
-- rows of BENCH_SEQ tokens per rank, with the adapter data-parallel. Times BENCH_STEPS synced
-- steps, as many with gradient averaging off (`no_sync`: the same work without communication),
-- and an all-reduce of the adapter's gradients alone (one flat tensor). Rank 0 prints one JSON
-- line; tokens/s counts every rank's tokens. BENCH_DEVICE=cuda runs it on this rank's GPU.
local mt = require "moontune"
local T = mt.tensor
local device = os.getenv("BENCH_DEVICE") or "cpu"

local path = assert(os.getenv("BENCH_MODEL"), "BENCH_MODEL is not set")
local batch, seq = tonumber(os.getenv("BENCH_BATCH")), tonumber(os.getenv("BENCH_SEQ"))
local steps = tonumber(os.getenv("BENCH_STEPS"))

local model = assert(mt.models.load(path))
model:to(device)
mt.peft.lora(model, { r = 8, alpha = 16, targets = { "q_proj", "k_proj", "v_proj", "o_proj" } })
local dp = mt.dist.data_parallel(model)
local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = 1e-4 })
mt.manual_seed(mt.dist.rank())
local ids = T.randint(3, model:config().vocab_size, { batch, seq }):to(device)
model:train()

local function step()
  local loss = model{ input_ids = ids, labels = ids }.loss
  opt:zero_grad()
  loss:backward()
  opt:step()
end

-- Waits for the GPU's queued work (a copy to the host waits for the stream).
local function settle()
  if device ~= "cpu" then T.zeros{ 1 }:to(device):sum():item() end
end

local function timed(f)
  settle()
  mt.dist.barrier()
  local t = mt.clock()
  for _ = 1, steps do f() end
  settle()
  mt.dist.barrier()
  return (mt.clock() - t) / steps
end

step()                                                   -- warm-up
local synced = timed(step)
local local_only = timed(function() dp:no_sync(step) end)
local flat = T.zeros{ dp:elements() }:to(device)
local reduce = timed(function() mt.dist.all_reduce(flat, { op = "avg" }) end)
if mt.dist.is_main() then
  local world = mt.dist.world_size()
  print(string.format('{"tokens_per_s": %.1f, "step_ms": %.2f, "no_sync_step_ms": %.2f, "all_reduce_ms": %.3f, "trainable": %d, "world": %d}',
                      world * batch * seq / synced, synced * 1000, local_only * 1000, reduce * 1000, dp:elements(), world))
end
