-- mt.peft's behaviour on stories260K (parity with PEFT is tests/parity/peft.lua): adapters by
-- name, active and trainable as separate states, disable_adapters, merge and unmerge, LoRA+
-- groups, a training step that moves only the adapter, and bad input refused with a message
-- that names the fault, the model left as it was.
local data_dir = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
if not io.open(data_dir .. "/models/stories260K/config.json") then
  print("SKIPPED peft.lua: no shared test data at " .. data_dir .. "/models/stories260K")
  return
end

local mt = require "moontune"
local expect = require "support.expect"
local T = mt.tensor

local function stories()
  return assert(mt.models.load(data_dir .. "/models/stories260K"))
end

local ids = T.tensor{ { 1, 403, 407, 261, 378, 300, 12 } }

local function logits(model)
  return mt.no_grad(function() return model{ input_ids = ids }.logits end)
end

local function differ(a, b) return (a - b):abs():max():item() end

-- A LoRA whose B is not zero, so that it changes the output.
local function lora(model, name, opts)
  opts = opts or {}
  opts.name = name
  opts.targets = opts.targets or { "q_proj", "v_proj" }
  if opts.init == nil then opts.init = false end
  return mt.peft.lora(model, opts)
end

local tests = {}

function tests.a_new_adapter_freezes_the_base_and_trains_alone()
  local model = stories()
  local before = model:num_parameters()
  lora(model, "a", { r = 2 })
  assert(model:num_parameters() > before)
  for name, p in pairs(model:named_parameters()) do
    assert(p:requires_grad() == (name:find("adapters") ~= nil), name)
  end
  local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = 1e-2 })
  local base_before = model:state_dict()["model.layers.0.self_attn.q_proj.weight"]:clone()
  local a_before = model:named_parameters()["model.layers.0.self_attn.q_proj.adapters.a.lora_B.weight"]:clone()
  model{ input_ids = ids, labels = ids }.loss:backward()
  opt:step()
  assert(differ(model:state_dict()["model.layers.0.self_attn.q_proj.weight"], base_before) == 0, "the base stays")
  assert(differ(model:named_parameters()["model.layers.0.self_attn.q_proj.adapters.a.lora_B.weight"], a_before) > 0, "the adapter moves")
end

function tests.adapters_switch_and_stack()
  local model = stories()
  local plain = logits(model)
  lora(model, "a")
  local with_a = logits(model)
  assert(differ(with_a, plain) > 1e-4)
  lora(model, "b")
  assert(differ(logits(model), with_a) == 0, "a second adapter is added inactive")
  model:set_adapter("b")
  local with_b = logits(model)
  assert(differ(with_b, with_a) > 1e-4)
  model:set_adapter{ "a", "b" }
  local both = logits(model)
  -- LoRA deltas add: both − plain = (a − plain) + (b − plain) up to the nonlinearity of the
  -- layers after; at least both differ from each alone.
  assert(differ(both, with_a) > 1e-4 and differ(both, with_b) > 1e-4)
  local off = model:disable_adapters(function() return logits(model) end)
  assert(differ(off, plain) == 0, "disable_adapters runs the base model")
  assert(differ(logits(model), both) == 0, "and switches them back on")
  model:train_adapter{ "a" }
  assert(table.concat(model:active_adapters(), ",") == "a,b", "train_adapter leaves the active set")
  for name, p in pairs(model:named_parameters()) do
    if name:find("adapters") then assert(p:requires_grad() == (name:find("%.adapters%.a%.") ~= nil), name) end
  end
  model:delete_adapter("b")
  model:set_adapter("a")
  assert(differ(logits(model), with_a) < 1e-6)
  expect.raises(function() model:set_adapter("b") end, "no adapter named 'b'")
end

function tests.merge_unmerge_and_unload_keep_the_outputs()
  local model = stories()
  lora(model, "a", { use_dora = true })
  mt.no_grad(function()
    for name, p in pairs(model:named_parameters()) do
      if name:find("magnitude") then p:mul_(1.1) end
    end
  end)
  local adapted = logits(model)
  local weight = model:state_dict()["model.layers.0.self_attn.q_proj.weight"]:clone()
  model:merge_adapter()
  assert(differ(logits(model), adapted) < 1e-4, "merged gives the same output")
  assert(differ(model:state_dict()["model.layers.0.self_attn.q_proj.weight"], weight) > 0)
  model:unmerge_adapter()
  assert(differ(model:state_dict()["model.layers.0.self_attn.q_proj.weight"], weight) < 1e-5, "unmerge restores the weight")
  model:merge_and_unload()
  assert(#model:adapters() == 0)
  assert(differ(logits(model), adapted) < 1e-4)
  for name in pairs(model:named_parameters()) do assert(not name:find("adapters"), name) end
end

function tests.loraplus_puts_b_at_ratio_times_lr()
  local model = stories()
  lora(model, "a", { r = 2 })
  local groups = mt.peft.loraplus_param_groups(model, { lr = 1e-3, ratio = 16 })
  assert(#groups == 2 and groups[1].lr == 1e-3 and groups[2].lr == 16e-3)
  for _, p in ipairs(groups[2].params) do assert(p:param_name():find("lora_B"), p:param_name()) end
  for _, p in ipairs(groups[1].params) do assert(p:param_name():find("lora_A"), p:param_name()) end
  local opt = mt.optim.adamw(groups, { lr = 1e-3 })
  model{ input_ids = ids, labels = ids }.loss:backward()
  opt:step()
end

function tests.summary_lists_each_adapter()
  local model = stories()
  lora(model, "a", { r = 2 })
  mt.peft.ia3(model, { name = "s" })
  model{ input_ids = ids, labels = ids }.loss:backward()
  local rows = mt.peft.summary(model)
  assert(#rows == 2 and rows[1].name == "a" and rows[1].method == "LoRA" and rows[1].active and rows[1].grad_norm > 0)
  assert(rows[2].method == "IA3" and not rows[2].active and rows[2].trainable == 0)
end

function tests.a_projected_prefix_saves_folded_and_loads_with_the_same_outputs()
  local model = stories()
  mt.peft.prefix_tuning(model, { name = "p", num_virtual_tokens = 4, projection = true, encoder_hidden_size = 16 })
  local names = {}
  for name in pairs(model:named_parameters{ trainable = true }) do names[#names + 1] = name end
  table.sort(names)
  assert(table.concat(names, ",") == "prompt_encoder.p.embedding.weight,prompt_encoder.p.transform.0.bias,prompt_encoder.p.transform.0.weight,prompt_encoder.p.transform.2.bias,prompt_encoder.p.transform.2.weight", table.concat(names, ","))
  local ours = logits(model)
  local dir = os.tmpname(); os.remove(dir)
  assert(model:save_adapter(dir))
  local again = stories()
  mt.peft.load(again, dir)
  assert(differ(logits(again), ours) < 1e-5, "the folded table gives the MLP's outputs")
  -- Generation runs with the prefix in the cache.
  local out = again:generate(ids, { max_new_tokens = 4, stop_ids = {} })
  assert(out:size(1) == ids:size(1) + 4)
  os.remove(dir .. "/adapter_config.json"); os.remove(dir .. "/adapter_model.safetensors"); os.remove(dir)
end

function tests.prompt_tuning_starts_from_the_text_s_embeddings()
  local model = stories()
  local tok = assert(mt.tokenizer.load(data_dir .. "/models/stories260K"))
  mt.peft.prompt_tuning(model, { num_virtual_tokens = 7, init = "text", init_text = "Once upon", tokenizer = tok })
  local text_ids = tok:encode("Once upon")
  local want = {}
  for i = 1, 7 do want[i] = text_ids[(i - 1) % #text_ids + 1] end
  local table_ = model:named_parameters()["prompt_encoder.default.embedding.weight"]
  local embeds = model.model.embed_tokens.weight:index_select(0, T.tensor(want))
  assert(differ(table_, embeds) == 0, "the text's token embeddings, repeated to 7")
  local out = model{ input_ids = ids, labels = ids }
  assert(out.logits:size(1) == 7 + ids:size(1), "logits cover the virtual tokens, as PEFT's")
  expect.raises(function() mt.peft.prompt_tuning(stories(), { num_virtual_tokens = 2, init = "text", init_text = "x" }) end, "needs the model's tokenizer")
  mt.peft.prefix_tuning(model, { name = "q", num_virtual_tokens = 2 })
  expect.raises(function() model:set_adapter{ "default", "q" } end, "only one prompt or prefix adapter can be active")
end

function tests.qlora_trains_lora_over_4_bit_weights()
  local model = stories()
  local float_logits = logits(model)
  local before = model:memory_report()
  mt.peft.quantize(model, { type = "nf4", double_quant = true, compute_dtype = "float32" })
  local after = model:memory_report()
  assert(after.quantized_weights > 0 and after.constants > 0)
  assert(after.weights < before.weights, "the linear weights left full precision")
  local q = model.model.layers[0].self_attn.q_proj
  assert(tostring(q):find("Linear4bit(in_features=64, out_features=64, bias=false, quantized=nf4, block_size=64)", 1, true), tostring(q))
  -- 4 bits per weight, plus under 2% for the constants.
  local n = 0
  for name, p in pairs(model:named_parameters()) do
    if p:dtype() == "uint8" then n = n + 2 * p:numel() end
  end
  assert((after.quantized_weights + after.constants) / n <= 0.52, "bytes per quantised parameter")
  -- NF4 keeps the model close to what it was.
  local rel = differ(logits(model), float_logits) / float_logits:abs():max():item()
  assert(rel < 0.2, "relative change " .. rel)
  mt.peft.lora(model, { r = 4, targets = "all-linear" })
  local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = 1e-2 })
  local first, last
  model:train()
  for i = 1, 8 do
    local loss = model{ input_ids = ids, labels = ids }.loss
    opt:zero_grad()
    loss:backward()
    opt:step()
    first = first or loss:item()
    last = loss:item()
  end
  assert(last < first, string.format("the loss falls (%g → %g)", first, last))
  local report = model:memory_report{ optimizer = opt }
  assert(report.adapters > 0 and report.optimizer_state == 2 * report.adapters, "AdamW keeps two moments per adapter value")
  expect.raises(function() model:merge_adapter() end, "keeps its weight quantised")
  expect.raises(function() mt.peft.quantize(model) end, "no linear layer to quantise")
  expect.raises(function() mt.peft.quantize(stories(), { bits = 8 }) end, "bits = 8 is not supported")
  expect.raises(function() mt.peft.quantize(stories(), { type = "int4" }) end, "type 'int4' is not one of")
end

function tests.a_4_bit_layer_s_gradients_are_those_of_its_de_quantised_weight()
  -- The 4-bit layer recomputes its weight in the backward; its gradients must equal those of a
  -- float model holding the de-quantised weights (what model:save writes for a 4-bit model).
  local quantized = stories()
  mt.peft.quantize(quantized, { type = "fp4", block_size = 32, compute_dtype = "float32", skip = {} })
  lora(quantized, "a", { targets = "all-linear", bias = "all" })
  local dir = os.tmpname(); os.remove(dir)
  assert(quantized:save(dir .. "/base"))
  assert(quantized:save_adapter(dir .. "/adapter"))
  local float = assert(mt.models.load(dir .. "/base"))
  mt.peft.load(float, dir .. "/adapter", { name = "a" })
  assert(differ(logits(float), logits(quantized)) < 1e-5)
  for _, m in ipairs{ quantized, float } do
    m{ input_ids = ids, labels = ids }.loss:backward()
  end
  local float_params = float:named_parameters{ trainable = true }
  local n = 0
  for name, p in pairs(quantized:named_parameters{ trainable = true }) do
    assert(differ(p.grad, float_params[name].grad) < 1e-5, name)
    n = n + 1
  end
  assert(n > 0)
  for _, f in ipairs{ "/base/model.safetensors", "/base/config.json", "/adapter/adapter_model.safetensors", "/adapter/adapter_config.json" } do os.remove(dir .. f) end
  os.remove(dir .. "/base"); os.remove(dir .. "/adapter"); os.remove(dir)
end

-- LoRA written in Lua: the same parameters under the same names as the built-in's.
local function lua_lora(scale_by)
  return {
    name = "LUA_LORA",
    init = function(self, layer, opts)
      self["lora_A.weight"] = T.randn{ opts.r, layer.in_features }
      self["lora_B.weight"] = T.zeros{ layer.out_features, opts.r }
      self.scale = opts.alpha / opts.r * scale_by      -- a number: kept in self, not a parameter
    end,
    forward = function(self, x, base_out)
      return base_out + x:matmul(self["lora_A.weight"]:t()):matmul(self["lora_B.weight"]:t()) * self.scale
    end,
    merge = function(self, weight)
      return weight + self["lora_B.weight"]:mm(self["lora_A.weight"]) * self.scale
    end,
  }
end

function tests.a_lua_defined_lora_gives_the_built_in_s_numbers()
  mt.peft.register(lua_lora(1))
  local builtin = stories()
  lora(builtin, "a", { r = 4, alpha = 8 })
  local custom = stories()
  mt.peft.add(custom, "LUA_LORA", { name = "a", r = 4, alpha = 8, targets = { "q_proj", "v_proj" } })
  assert(custom:num_parameters{ trainable = true } == 4480)
  custom:load_state_dict(builtin:state_dict())
  assert(differ(logits(custom), logits(builtin)) < 1e-6, "logits")
  for _, m in ipairs{ builtin, custom } do m{ input_ids = ids, labels = ids }.loss:backward() end
  local theirs = builtin:named_parameters{ trainable = true }
  for name, p in pairs(custom:named_parameters{ trainable = true }) do
    assert(differ(p.grad, theirs[name].grad) < 1e-6, "gradient of " .. name)
  end
  -- Saved with its name as peft_type, loaded back through the registered method.
  local dir = os.tmpname(); os.remove(dir)
  assert(custom:save_adapter(dir))
  local f = assert(io.open(dir .. "/adapter_config.json")); local config = f:read("a"); f:close()
  assert(config:find('"peft_type": "LUA_LORA"', 1, true) and config:find('"alpha": 8', 1, true), config)
  local again = stories()
  mt.peft.load(again, dir)
  assert(differ(logits(again), logits(custom)) < 1e-6)
  -- A hot reload of its definition swaps forward and keeps the trained parameters.
  local before = custom:state_dict()["model.layers.0.self_attn.q_proj.adapters.a.lora_B.weight"]:clone()
  local adapted = logits(custom)
  local doubled = lua_lora(1)
  doubled.forward = function(self, x, base_out)
    return base_out + x:matmul(self["lora_A.weight"]:t()):matmul(self["lora_B.weight"]:t()) * (2 * self.scale)
  end
  mt.peft.register(doubled)
  assert(differ(logits(custom), adapted) > 1e-4, "the new forward runs")
  assert(differ(custom:state_dict()["model.layers.0.self_attn.q_proj.adapters.a.lora_B.weight"], before) == 0, "the parameters stay")
  mt.peft.register(lua_lora(1))
  custom:merge_and_unload()
  assert(differ(logits(custom), adapted) < 1e-4, "merge() folds it into the weights")
  expect.raises(function() mt.peft.add(stories(), "NOPE", {}) end, "no method 'NOPE' is registered")
  expect.raises(function() mt.peft.register{ name = "LORA", init = print, forward = print } end, "cannot name a new method")
  expect.raises(function() mt.peft.register{ name = "X", init = print } end, "needs forward = function")
  for _, file in ipairs{ "/adapter_config.json", "/adapter_model.safetensors" } do os.remove(dir .. file) end
  os.remove(dir)
end

function tests.gradient_accumulation_over_micro_batches_equals_the_whole_batch()
  -- Backward on each micro-batch's loss over their number adds up the gradients of the whole
  -- batch's mean loss (every row has the same number of predicted tokens here).
  local batch = T.tensor{ { 1, 403, 407, 261, 378 }, { 1, 300, 12, 44, 9 }, { 1, 5, 6, 7, 8 }, { 1, 99, 98, 97, 96 } }
  local whole, parts = stories(), stories()
  lora(whole, "a", { r = 2 })
  lora(parts, "a", { r = 2 })
  parts:load_state_dict(whole:state_dict())
  whole{ input_ids = batch, labels = batch }.loss:backward()
  for i = 0, 3, 2 do
    local micro = batch:narrow(0, i, 2)
    local loss = parts{ input_ids = micro, labels = micro }.loss / 2
    loss:backward()
  end
  local ours = parts:named_parameters{ trainable = true }
  for name, p in pairs(whole:named_parameters{ trainable = true }) do
    assert(differ(p.grad, ours[name].grad) < 1e-5 * (1 + p.grad:abs():max():item()), name)
  end
end

function tests.bad_input_is_refused_and_the_model_is_unchanged()
  local model = stories()
  local names = {}
  for name in pairs(model:named_parameters()) do names[#names + 1] = name end
  local function unchanged()
    local n = 0
    for _ in pairs(model:named_parameters()) do n = n + 1 end
    assert(n == #names, "the model gained parameters")
    assert(#model:adapters() == 0 or model:adapters()[1].name == "a")
  end
  expect.raises(function() mt.peft.lora(model, { targets = { "qproj" } }) end, "matched no linear layer; the model's linear layers are: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head")
  unchanged()
  expect.raises(function() mt.peft.lora(model, { r = 0, targets = { "q_proj" } }) end, "r must be a positive rank, got 0")
  expect.raises(function() mt.peft.lora(model, { rank = 4 }) end, "not supported: 'rank' = 4")
  expect.raises(function() mt.peft.lora(model, { targets = { "mlp" } }) end, "picks 'model.layers.0.mlp' (LlamaMLP), which is not a linear layer")
  expect.raises(function() mt.peft.lora(model, { init = "loftq" }) end, "init 'loftq' is not supported")
  expect.raises(function() mt.peft.lora(model, { modules_to_save = { "embed_tokens" } }) end, "'model.embed_tokens' is a Embedding")
  unchanged()
  mt.peft.lora(model, { name = "a", r = 2 })
  expect.raises(function() mt.peft.lora(model, { name = "a" }) end, "already has an adapter named 'a'")
  expect.raises(function() mt.peft.lora(model, { name = "x.y" }) end, "cannot name an adapter")
  -- An adapter for another model size names the tensor; one with a field not supported names it.
  local dir = os.tmpname(); os.remove(dir)
  assert(model:save_adapter(dir))
  local small = assert(mt.models.new("LlamaForCausalLM", { vocab_size = 512, hidden_size = 32, intermediate_size = 48, num_hidden_layers = 5,
                                                            num_attention_heads = 4, num_key_value_heads = 2 }))
  expect.raises(function() mt.peft.load(small, dir) end, "adapter tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' has shape [2, 64]; this model needs [2, 32]")
  local gpt2 = assert(mt.models.new("GPT2LMHeadModel", { vocab_size = 64, n_embd = 64, n_layer = 2, n_head = 4, n_positions = 32 }))
  expect.raises(function() mt.peft.load(gpt2, dir) end, "matched no linear layer")
  local f = assert(io.open(dir .. "/adapter_config.json"))
  local config = f:read("a"); f:close()
  f = assert(io.open(dir .. "/adapter_config.json", "w"))
  f:write((config:gsub('"use_dora": false', '"use_dora": false, "use_qalora": true'))); f:close()
  expect.raises(function() mt.peft.load(model, dir, { name = "c" }) end, "not supported: 'use_qalora' = true")
  assert(#model:adapters() == 1, "a refused adapter is not added")
  os.remove(dir .. "/adapter_config.json"); os.remove(dir .. "/adapter_model.safetensors"); os.remove(dir)
end

return tests
