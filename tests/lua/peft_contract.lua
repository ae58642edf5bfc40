-- The PEFT issue's contract example, as written, with what each line promises asserted (needs
-- the shared test data; skipped loudly without it).
local data_dir = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
if not io.open(data_dir .. "/models/stories260K/config.json") then
  print("SKIPPED peft_contract.lua: no shared test data at " .. data_dir .. "/models/stories260K")
  return
end

local mt = require "moontune"
local data = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
local model = mt.models.load(data .. "/models/stories260K")
mt.peft.lora(model, { name = "a", r = 4, alpha = 8, targets = { "q_proj", "v_proj" } })
print(model:num_parameters{ trainable = true })   -- 4480, as PEFT counts: 5 × (q 4·64+64·4, v 4·64+32·4)
assert(model:num_parameters{ trainable = true } == 4480)
local dir = os.tmpname(); os.remove(dir)
model:save_adapter(dir)
mt.peft.load(model, dir, { name = "b" })
model:set_adapter("b")
assert(table.concat(model:active_adapters(), ",") == "b")
assert(model:num_parameters{ trainable = true } == 4480, "only b trains")
for name, p in pairs(model:named_parameters()) do
  assert(p:requires_grad() == (name:find("%.adapters%.b%.") ~= nil), name)
end
os.remove(dir .. "/adapter_config.json"); os.remove(dir .. "/adapter_model.safetensors"); os.remove(dir)
