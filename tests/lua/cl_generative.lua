-- cl_generative.lua — the generative continual-learning setting (cl/generative.lua) on
-- SmolLM2-135M-Instruct: the answer's tokens alone carry the loss, the one-forward losses of a
-- mixed batch equal each part's own loss, a few LoRA steps on SST-2 teach the model to write
-- the label (exact match from ~0 to above chance), and the O-LoRA recipe in this setting keeps
-- the first task's LoRA bitwise unchanged while the second trains.
local mt = require "moontune"

local data = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
local smollm = os.getenv("MOONTUNE_SMOLLM2")
local ready = io.open(data .. "/continual/olora/SC/SST-2/labels.json") ~= nil and smollm ~= nil

local function stream()
  return mt.cl.stream{ tasks = { "sst2", "agnews" }, train_per_task = 64, test_per_task = 16, seed = 0 }
end

return {
  answers_alone_carry_the_loss = function()
    if not ready then print("SKIPPED: no O-LoRA data or SmolLM2") return end
    local st = stream()
    local l = mt.cl.generative_learner{ model = smollm, tasks = st.tasks, max_len = 16 }
    local enc = l:encode_answers{ { task = "sst2", sentence = "a fine, funny film", label = 0 },
                                  { task = "agnews", sentence = "Stocks fell sharply on Monday after the report", label = 2 } }
    local ids, labels, mask = enc.input_ids:tolist(), enc.labels:tolist(), enc.attention_mask:tolist()
    local eos = l.tok:eos_id()
    local function answer(row)
      local out = {}
      for j, y in ipairs(labels[row]) do if y ~= -100 then out[#out + 1] = y; assert(ids[row][j] == y and mask[row][j] == 1) end end
      return out
    end
    local good = l.tok:encode("Good", nil, { add_special_tokens = false })
    local business = l.tok:encode("Business", nil, { add_special_tokens = false })
    good[#good + 1], business[#business + 1] = eos, eos
    assert(table.concat(answer(1), ",") == table.concat(good, ","), "sst2's answer: 'Good' and the end of the turn")
    assert(table.concat(answer(2), ",") == table.concat(business, ","), "agnews's answer: 'Business' and the end of the turn")
    -- The prompt holds the instruction and the options; the sentence is cut to max_len tokens.
    local prompt = l.tok:decode(l:prompt_ids("agnews", string.rep("word ", 100)))
    assert(prompt:find(st.tasks[2].instruction, 1, true) and prompt:find("World, Sports, Business, Science or Technology", 1, true), prompt)
    local _, words = prompt:gsub("word", "")
    assert(words <= 16, "sentence cut to max_len tokens: " .. words)
  end,

  mixed_losses_match_each_part = function()
    if not ready then print("SKIPPED: no O-LoRA data or SmolLM2") return end
    local st = stream()
    local l = mt.cl.generative_learner{ model = smollm, tasks = st.tasks, max_len = 24 }
    local a = st.tasks[1].train:batch{ size = 3 }:iter():next()
    local b = st.tasks[2].train:batch{ size = 2 }:iter():next()
    mt.no_grad(function()
      local both = l:losses("sst2", { { task = "sst2", sentences = a.sentence, labels = a.label },
                                      { task = "agnews", sentences = b.sentence, labels = b.label:tolist() } })
      local own_a, own_b = l:loss("sst2", a):item(), l:loss("agnews", b):item()
      print(string.format("one forward: %.6f %.6f; apart: %.6f %.6f", both[1]:item(), both[2]:item(), own_a, own_b))
      assert(math.abs(both[1]:item() - own_a) < 1e-4 and math.abs(both[2]:item() - own_b) < 1e-4)
    end)
  end,

  lora_steps_teach_the_label = function()
    if not ready then print("SKIPPED: no O-LoRA data or SmolLM2") return end
    mt.manual_seed(0)
    local st = stream()
    local l = mt.cl.generative_learner{ model = smollm, tasks = { st.tasks[1] }, max_len = 32, lora_r = 8 }
    local task = st.tasks[1]
    local before = l:accuracy(task)
    local opt = mt.optim.adamw(l:parameters(), { lr = 1e-3, weight_decay = 0 })
    local it = task.train:shuffle{ seed = 0 }:batch{ size = 4 }:iter{ epochs = math.huge }
    for _ = 1, 12 do
      local loss = l:loss("sst2", it:next())
      opt:zero_grad()
      loss:backward()
      opt:step()
    end
    local after = l:accuracy(task)
    print(string.format("sst2 exact match: untrained %.3f, after 12 LoRA steps %.3f", before, after))
    assert(after > 0.5 and after > before, string.format("%.3f → %.3f", before, after))
    for name, p in pairs(l:parameters()) do
      assert(name:find("lora_", 1, true), "only the LoRA trains: " .. name)
      assert(p:requires_grad())
    end
  end,

  olora_in_the_generative_setting = function()
    if not ready then print("SKIPPED: no O-LoRA data or SmolLM2") return end
    local recipe = dofile("scripts/continual.lua")
    local cfg = {}
    for k, v in pairs(recipe.config) do cfg[k] = v end
    for k, v in pairs{ setting = "generative", strategy = "olora", tasks = "sst2,agnews", steps_per_task = 2, batch = 2,
                       train_per_task = 16, test_per_task = 4, max_len = 16 } do cfg[k] = v end
    local s = recipe.setup(cfg)
    for _ = 1, 2 do recipe.step(s, cfg) end
    local first = {}
    for name, p in pairs(s.learner.model:named_parameters()) do
      if name:find(".adapters.olora_sst2.", 1, true) then first[name] = p:detach():clone() end
    end
    assert(next(first), "O-LoRA put a LoRA for sst2 on q_proj and v_proj")
    for _ = 1, 2 do recipe.step(s, cfg) end
    for name, p in pairs(s.learner.model:named_parameters()) do
      if first[name] then assert(p:equal(first[name]), name .. " changed while agnews trained") end
    end
    assert(#s.R == 2 and #s.R[2] == 2)
  end,
}
