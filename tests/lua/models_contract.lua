-- The models issue's contract example, as written, with what each line promises asserted (needs
-- the shared test data; skipped loudly without it).
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
assert(table.concat(ids, ",") == "1,403,407,261,378", table.concat(ids, ","))
local out = model:generate(mt.tensor.tensor{ ids }, { max_new_tokens = 40 })
local text = tok:decode(out:tolist()[1])                     -- tolist gives Lua tables
assert(text:find("Once upon a time, there was a little girl named Lily.", 1, true), text)
local f = model:forward{ input_ids = mt.tensor.tensor{ ids }, labels = mt.tensor.tensor{ ids } }
local loss = f.loss:item()
assert(f.logits:shape()[3] == 512)                          -- 512, a finite loss
assert(loss == loss and loss > 0 and loss < 20, tostring(loss))
