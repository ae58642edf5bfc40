-- The models issue's contract example, verbatim (needs the shared test data; skipped loudly
-- without it).
local data_dir = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
if not io.open(data_dir .. "/models/stories260K/config.json") then
  print("SKIPPED models_contract.lua: no shared test data at " .. data_dir .. "/models/stories260K")
  return
end

local mt = require "moontune"
local dir = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
local model = mt.models.load(dir .. "/models/stories260K")
local tok = mt.tokenizer.load(dir .. "/models/stories260K")
local ids = tok:encode("Once upon a time")                  -- {1, 403, 407, 261, 378}
local out = model:generate(mt.tensor.tensor{ ids }, { max_new_tokens = 40 })
print(tok:decode(out:tolist()[1]))                     -- tolist gives Lua tables
local f = model:forward{ input_ids = mt.tensor.tensor{ ids }, labels = mt.tensor.tensor{ ids } }
print(f.logits:shape()[3], f.loss:item())                   -- 512, a finite loss
