-- Models built in place (mt.models.new): Hugging Face parameter names, training through the
-- model, freezing, moving, saving and loading back, and mistakes that must raise clear errors.

local mt = require "moontune"
local T = mt.tensor

local config = { vocab_size = 50, hidden_size = 16, intermediate_size = 24, num_hidden_layers = 2,
                 num_attention_heads = 4, num_key_value_heads = 2, max_position_embeddings = 32 }

local tests = {}

function tests.parameters_have_hugging_face_names()
  local model = mt.models.new("LlamaForCausalLM", config)
  local names = {}
  for _, p in ipairs(model:parameters()) do names[#names + 1] = p:param_name(); assert(p:requires_grad()) end
  assert(names[1] == "model.embed_tokens.weight" and names[#names] == "lm_head.weight", names[1] .. " " .. names[#names])
  for name, p in pairs(model:named_parameters()) do assert(p:param_name() == name, name) end
  assert(model:state_dict()["model.layers.1.self_attn.k_proj.weight"]:shape()[1] == 8)
  assert(model:num_parameters() == 50 * 16 * 2 + 2 * (16 * 16 * 2 + 16 * 8 * 2 + 3 * 16 * 24 + 2 * 16) + 16)
  assert(model:architecture() == "LlamaForCausalLM" and model:config().hidden_size == 16)
end

function tests.training_through_the_model_lowers_the_loss()
  mt.manual_seed(0)
  local model = mt.models.new("Qwen3ForCausalLM", config)
  local opt = mt.optim.adamw(model:parameters(), { lr = 1e-2 })
  local ids = T.randint(50, { 4, 12 })
  local first, last
  for step = 1, 30 do
    local loss = model:forward{ input_ids = ids, labels = ids }.loss
    opt:zero_grad(); loss:backward(); opt:step()
    first = first or loss:item()
    last = loss:item()
  end
  assert(last < first * 0.5, string.format("loss %g -> %g", first, last))
end

function tests.freeze_move_save_load()
  local model = mt.models.new("GPT2LMHeadModel", { vocab_size = 50, n_embd = 16, n_layer = 1, n_head = 2, n_positions = 32 })
  model:freeze()
  assert(model:num_parameters{ trainable = true } == 0)
  model:unfreeze()
  model:eval()                                       -- a new model starts in training mode (dropout)
  local ids = T.tensor{ { 1, 2, 3 } }
  local before = mt.no_grad(function() return model:forward{ input_ids = ids }.logits end)
  local dir = os.tmpname() .. "-gpt2"
  assert(model:save(dir))
  local back = assert(mt.models.load(dir))
  local after = mt.no_grad(function() return back:forward{ input_ids = ids }.logits end)
  assert(before:equal(after), "a saved model loads back with the same logits")
  back:to{ dtype = "float64" }
  assert(back:dtype() == "float64")
  os.execute("rm -rf '" .. dir .. "'")
end

function tests.incremental_decoding_with_a_cache_matches_the_full_pass()
  mt.manual_seed(1)
  for _, arch in ipairs({ "LlamaForCausalLM", "GPT2LMHeadModel" }) do
    local cfg = arch == "LlamaForCausalLM" and config or { vocab_size = 50, n_embd = 16, n_layer = 2, n_head = 2, n_positions = 32 }
    local model = mt.models.new(arch, cfg):eval()
    local ids = T.randint(50, { 2, 9 })
    mt.no_grad(function()
      local full = model:forward{ input_ids = ids, output_hidden_states = true }
      assert(full.last_hidden_state:shape()[3] == 16)
      local cache = model:new_cache()
      local parts = { model:forward{ input_ids = ids:narrow(1, 0, 5), cache = cache }.logits }
      for t = 5, 8 do parts[#parts + 1] = model:forward{ input_ids = ids:narrow(1, t, 1), cache = cache }.logits end
      assert(cache:len() == 9)
      local stepwise = T.cat(parts, 1)
      assert(stepwise:allclose(full.logits, { atol = 1e-5 }), arch .. ": cached decoding differs")
    end)
  end
end

function tests.model_mistakes_raise_clear_errors()
  local model = mt.models.new("LlamaForCausalLM", config)
  local cases = {
    { function() return model:forward{ input_ids = T.tensor{ { 1.0, 2.0 } } } end, "input_ids must be an integer tensor" },
    { function() return model:forward{ inputs = T.tensor{ { 1 } } } end, "unknown key 'inputs'" },
    { function() return model:forward{ input_ids = T.tensor{ 1, 2 } } end, "(batch, seq)" },
    { function() return model:forward{ input_ids = T.tensor{ { 1, 2 } }, labels = T.tensor{ { 1 } } } end, "labels have shape" },
    { function() return model:forward{ input_ids = T.tensor{ { 1, 2 } }, attention_mask = T.ones{ 1, 5 } } end, "attention_mask has shape" },
    { function() return model:forward{ input_ids = T.tensor{ { 3, 99 } } } end, "token id 99 at row 0, position 1 is outside the vocabulary of 50 ids (model.embed_tokens: ids run from 0 to 49)" },
    { function() return model:forward(T.tensor{ { 1, 2 } }) end, "expected a table of inputs ({ input_ids = ... }), got a tensor" },
    { function() return T.zeros{ 1e12 } end, "out of memory" },
    { function() return model:generate(T.tensor{ { 1 } }, { stop_strings = { "x" } }) end, "needs a tokenizer" },
    { function() return model:generate(T.tensor{ { 1 } }, { beams = 4 }) end, "beams" },
    { function() return mt.models.new("FalconForCausalLM", config) end, "not supported" },
    { function() return mt.models.new("LlamaForCausalLM", { hidden_size = 16 }) end, "lacks 'num_attention_heads'" },
    { function() return mt.models.new("LlamaForCausalLM", { vocab_size = 5, hidden_size = 16, intermediate_size = 8, num_hidden_layers = 1, num_attention_heads = 3 }) end, "not divisible" },
    { function() return mt.models.new("LlamaForCausalLM", setmetatable({ hidden_act = "gelu" }, { __index = config })) end, "hidden_act" },
  }
  for i, case in ipairs(cases) do
    local ok, err = pcall(case[1])
    assert(not ok, "case " .. i .. " did not raise")
    assert(tostring(err):find(case[2], 1, true), string.format("case %d: %q lacks %q", i, tostring(err), case[2]))
  end
end

return tests
