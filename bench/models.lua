-- bench/models.lua — moontune's side of the model benchmark (run by bench/models.py, which runs
-- transformers' side in the same way and compares). Reads its settings from the environment,
-- prints one JSON line: load seconds, forward tokens/s, greedy generation tokens/s.

local mt = require "moontune"
local T = mt.tensor

local dir = assert(os.getenv("BENCH_MODEL"), "BENCH_MODEL is not set")
local batch, seq = tonumber(os.getenv("BENCH_BATCH")), tonumber(os.getenv("BENCH_SEQ"))
local new_tokens, reps = tonumber(os.getenv("BENCH_NEW_TOKENS")), tonumber(os.getenv("BENCH_REPS"))
local vocab = tonumber(os.getenv("BENCH_VOCAB"))

local clock = mt.clock

local t0 = clock()
local model = assert(mt.models.load(dir))
local load_s = clock() - t0

mt.manual_seed(0)
local ids = T.randint(3, vocab, { batch, seq })
mt.no_grad(function()
  model:forward{ input_ids = ids }                       -- warm-up
  local t = clock()
  for _ = 1, reps do model:forward{ input_ids = ids } end
  local forward_tps = reps * batch * seq / (clock() - t)

  local prompt = T.randint(3, vocab, { 1, 16 })
  model:generate(prompt, { max_new_tokens = 4, stop_ids = {} })  -- warm-up
  t = clock()
  model:generate(prompt, { max_new_tokens = new_tokens, stop_ids = {} })
  local generate_tps = new_tokens / (clock() - t)
  print(string.format('{"load_s": %.4f, "forward_tokens_per_s": %.1f, "generate_tokens_per_s": %.2f}', load_s, forward_tps, generate_tps))
end)
