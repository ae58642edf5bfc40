-- Modular adapters' behaviour on tiny random models (parity with AdapterHub is
-- tests/parity/adapters.lua): Parallel and BatchSplit equal running the adapters one by one,
-- set_active only activates while train_fusion trains the fusion alone, fusion training moves
-- the fusion weights away from uniform, files round-trip, and bad input is refused with a
-- message naming the fault, the model left as it was.
local mt = require "moontune"
local expect = require "support.expect"
local T = mt.tensor

local tests = {}

local bert_config = { vocab_size = 64, hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4,
                      intermediate_size = 48, max_position_embeddings = 32, num_labels = 2,
                      hidden_dropout_prob = 0, attention_probs_dropout_prob = 0 }
local llama_config = { vocab_size = 64, hidden_size = 32, intermediate_size = 48, num_hidden_layers = 2, num_attention_heads = 4,
                       num_key_value_heads = 2, max_position_embeddings = 32 }

local ids = T.tensor{ { 3, 9, 14, 22, 5, 7 }, { 8, 1, 30, 2, 11, 4 } }

-- Moves every parameter of `name` off its initial value (an up-projection starts at zero under
-- some inits), so that each adapter changes the output.
local function perturb(model, name)
  mt.no_grad(function()
    for pname, p in pairs(model:named_parameters{ owner = name }) do p:add_(T.randn(p:size()) * 0.1) end
  end)
end

local function out(model)
  return mt.no_grad(function() return model{ input_ids = ids }.logits end)
end

local function differ(a, b) return (a - b):abs():max():item() end

-- A new model of `arch` with the base weights of `model` and no adapters, in eval mode.
local function same_base(model, arch, config)
  local again = mt.models.new(arch, config)
  mt.no_grad(function()
    local src = model:named_parameters{ owner = "base" }
    for n, p in pairs(again:named_parameters()) do p:copy_(src[n]) end
  end)
  again:eval()
  return again
end

local function two_adapters(arch, config)
  -- Seeded: with some random draws two small perturbations give near-equal classifier logits.
  mt.manual_seed(7)
  local model = mt.models.new(arch, config)
  model:eval()
  mt.peft.bottleneck(model, { name = "a" })
  mt.peft.bottleneck(model, { name = "b" })
  perturb(model, "a"); perturb(model, "b")
  return model
end

function tests.parallel_and_batch_split_equal_the_adapters_one_by_one()
  for _, case in ipairs{ { "LlamaForCausalLM", llama_config }, { "BertForSequenceClassification", bert_config } } do
    local model = two_adapters(case[1], case[2])
    model:set_active("a"); local a = out(model)
    model:set_active("b"); local b = out(model)
    assert(differ(a, b) > 1e-3, "the two adapters give different outputs")
    model:set_active(mt.peft.parallel("a", "b"))
    local both = out(model)
    assert(both:size(0) == 4, "Parallel returns the batch once per adapter")
    assert(differ(both:narrow(0, 0, 2), a) < 1e-5 and differ(both:narrow(0, 2, 2), b) < 1e-5, case[1] .. ": Parallel equals each adapter alone")
    model:set_active(mt.peft.batch_split("a", "b", { batch_sizes = { 1, 1 } }))
    local split = out(model)
    assert(differ(split:narrow(0, 0, 1), a:narrow(0, 0, 1)) < 1e-5 and differ(split:narrow(0, 1, 1), b:narrow(0, 1, 1)) < 1e-5, case[1] .. ": BatchSplit sends each row through its adapter")
  end
end

function tests.set_active_only_activates_and_train_fusion_trains_the_fusion_alone()
  local model = two_adapters("BertForSequenceClassification", bert_config)
  local trainable = function(owner)
    local n = 0
    for _, p in pairs(model:named_parameters{ owner = owner }) do if p:requires_grad() then n = n + 1 end end
    return n
  end
  assert(trainable("a") > 0 and trainable("b") == 0, "the first adapter trains, the second is added frozen")
  model:set_active(mt.peft.stack("b"))
  assert(trainable("a") > 0 and trainable("b") == 0, "set_active leaves what trains alone")
  local fusion = mt.peft.fusion(model, { "a", "b" }, { config = "dynamic" })
  assert(fusion == "a,b")
  model:train_fusion{ "a", "b" }
  assert(trainable("a") == 0 and trainable("b") == 0 and trainable("a,b") > 0, "train_fusion trains the fusion layers only")
  assert(trainable("base") == 0, "and not the base model")
  local reg = model:fusion_regularization()
  assert(reg and reg:item() < 1e-6, "the dynamic fusion's value starts at the identity")
end

function tests.fusion_training_moves_the_weights_away_from_uniform()
  mt.manual_seed(3)
  local model = mt.models.new("BertForSequenceClassification", bert_config)
  for _, n in ipairs{ "a", "b", "c" } do
    mt.peft.bottleneck(model, { name = n })
    perturb(model, n)
  end
  mt.peft.fusion(model, { "a", "b", "c" })
  model:train_fusion(mt.peft.fuse("a", "b", "c"))
  model:train()
  local frozen = model:named_parameters{ owner = "a" }["bert.encoder.layer.0.output.adapters.a.adapter_up.weight"]:clone()
  local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = 5e-2 })
  -- Label: whether token 3 is in the row.
  local x = T.randint(1, 64, { 16, 6 })
  local y = (x:eq(3):sum(1):gt(0)):long()
  local start
  for step = 1, 40 do
    local result = model{ input_ids = x, labels = y }
    local w = model:fusion_weights()
    if step == 1 then start = w:clone() end
    opt:zero_grad()
    result.loss:backward()
    opt:step()
  end
  local w = model:fusion_weights()
  assert((w:sum(-1) - 1):abs():max():item() < 1e-5, "each point's weights sum to 1")
  assert((start - 1 / 3):abs():max():item() < 0.1, "fusion starts near uniform")
  assert((w - 1 / 3):abs():max():item() > 0.05, "training moved the fusion weights away from uniform: " .. tostring(w))
  local after = model:named_parameters{ owner = "a" }["bert.encoder.layer.0.output.adapters.a.adapter_up.weight"]
  assert(differ(after, frozen) == 0, "the fused adapters stay frozen")
end

function tests.adapterhub_files_round_trip()
  local model = two_adapters("LlamaForCausalLM", llama_config)
  mt.peft.fusion(model, { "a", "b" }, { config = "static" })
  model:set_active(mt.peft.fuse("a", "b"))
  local before = out(model)
  local dir = os.tmpname(); os.remove(dir)
  for _, n in ipairs{ "a", "b" } do assert(model:save_adapter(dir .. "/" .. n, { name = n, format = "adapterhub" })) end
  assert(model:save_adapter(dir .. "/fusion", { name = "a,b", format = "adapterhub" }))
  local again = same_base(model, "LlamaForCausalLM", llama_config)
  expect.raises(function() mt.peft.load(again, dir .. "/fusion") end, "load the fused adapters first")
  for _, n in ipairs{ "a", "b" } do assert(mt.peft.load(again, dir .. "/" .. n)) end
  assert(mt.peft.load(again, dir .. "/fusion"))
  again:set_active(mt.peft.fuse("a", "b"))
  assert(differ(out(again), before) < 1e-6, "the reloaded adapters and fusion give the same output")
  -- Loaded under another name, even when the saved name is also part of the layers' paths.
  mt.peft.bottleneck(model, { name = "layers" })
  perturb(model, "layers")
  assert(model:save_adapter(dir .. "/layers", { name = "layers", format = "adapterhub" }))
  model:set_active("layers")
  local _, loaded = assert(mt.peft.load(again, dir .. "/layers", { name = "renamed" }))
  assert(loaded == "renamed")
  again:set_active("renamed")
  assert(differ(out(again), out(model)) < 1e-6, "an adapter loaded under another name gives the same output")
  -- AdapterHub files for another architecture are refused, the model unchanged.
  local bert = mt.models.new("BertForSequenceClassification", bert_config)
  expect.raises(function() mt.peft.load(bert, dir .. "/a") end, "saved for a 'llama' model")
  assert(#bert:adapters() == 0, "nothing was added")
  -- A pickle is refused with the way to convert it.
  local pickle = dir .. "/pickle"
  os.execute("mkdir -p " .. pickle .. " && cp " .. dir .. "/a/adapter_config.json " .. pickle .. " && touch " .. pickle .. "/pytorch_adapter.bin")
  expect.raises(function() mt.peft.load(again, pickle, { name = "p" }) end, "use_safetensors=True")
  os.execute("rm -rf " .. dir)
end

function tests.a_checkpoint_keeps_adapters_fusions_and_the_active_setup()
  local model = two_adapters("BertForSequenceClassification", bert_config)
  mt.peft.fusion(model, { "a", "b" }, { temperature = true })
  perturb(model, "a,b")
  model:train_fusion{ "a", "b" }
  for _ = 1, 3 do out(model) end              -- the temperature anneals: 50 → 49.85
  local t = model:fusions()[1].temperature
  assert(math.abs(t - 49.85) < 1e-9, "annealed to " .. t)
  expect.raises(function() model:set_fusion_temperature("a,b", 0.5) end, "must be a number ≥ 1")
  expect.raises(function() model:set_fusion_temperature("x", 2) end, "no fusion named 'x'")
  local dir = os.tmpname(); os.remove(dir)
  mt.checkpoint.save(dir, { model = model }, { step = 1 })
  local before = out(model)                   -- at the temperature saved
  -- A fresh model with the same base (the base is not in the checkpoint: it did not train).
  local again = same_base(model, "BertForSequenceClassification", bert_config)
  mt.checkpoint.load(dir, { model = again })
  local loaded_t = again:fusions()[1].temperature
  assert(differ(out(again), before) < 1e-6, "the same fused output after loading")
  assert(again:active_setup().block == "Fuse", "the fusion is the active setup again")
  local fusions = again:fusions()
  assert(#fusions == 1 and fusions[1].name == "a,b" and fusions[1].trainable, "the fusion trains again")
  assert(math.abs(loaded_t - t) < 1e-12, "the annealed temperature is back: " .. loaded_t)
  for _, a in ipairs(again:adapters()) do assert(a.trainable == 0, a.name .. " stays frozen") end
  os.execute("rm -rf " .. dir)
end

function tests.gates_of_gated_adapters_after_a_forward()
  local model = mt.models.new("LlamaForCausalLM", llama_config)
  model:eval()
  expect.raises(function() model:gates() end, "no adapter has gates")
  mt.peft.bottleneck(model, { name = "g", config = "double_seq_bn", use_gating = true })
  expect.raises(function() model:gates() end, "'g' has not run yet")
  out(model)
  local gates, layers, parts = model:gates()
  assert(#layers == 2 and layers[1] == "layer 0" and #parts == 1 and parts[1] == "adapter", mt.json.encode{ layers, parts })
  assert(gates:size(0) == 2 and gates:gt(0):all():item() and gates:lt(1):all():item(), tostring(gates))
end

-- UniPELT: every part gated; gates() is layers × {lora, prefix, adapter}; the union saves and
-- loads (AdapterHub's files) with the same output; generation runs with the prefix.
function tests.unipelt_gates_files_and_generation()
  for _, case in ipairs{ { "LlamaForCausalLM", llama_config }, { "BertForSequenceClassification", bert_config } } do
    local arch, config = case[1], case[2]
    local model = mt.models.new(arch, config)
    model:eval()
    mt.peft.union(model, { name = "u", config = "unipelt", prefix_tuning = { prefix_length = 4, bottleneck_size = 8 } })
    perturb(model, "u")
    local before = out(model)
    local gates, layers, parts = model:gates("u")
    assert(#layers == 2 and table.concat(parts, ",") == "lora,prefix,adapter", mt.json.encode{ layers, parts })
    assert(gates:gt(0):all():item() and gates:lt(1):all():item(), tostring(gates))
    local dir = os.tmpname(); os.remove(dir)
    assert(model:save_adapter(dir, { name = "u" }))
    local config_file = mt.json.decode(io.open(dir .. "/adapter_config.json"):read("a"))
    assert(config_file.config.architecture == "union" and #config_file.config.configs == 3, "saved as AdapterHub's union")
    local again = same_base(model, arch, config)
    local _, name = assert(mt.peft.load(again, dir, { name = "v" }))
    assert(name == "v")
    assert(differ(out(again), before) < 1e-6, "the same output after loading")
    os.execute("rm -rf " .. dir)
    if arch == "LlamaForCausalLM" then
      local text = again:generate(T.tensor{ { 3, 9, 14 } }, { max_new_tokens = 4 })
      assert(text:size(1) == 7, "generation with the prefix: " .. tostring(text))
      mt.checkpoint.save(dir, { model = again }, { step = 1 })
      local third = same_base(model, arch, config)
      mt.checkpoint.load(dir, { model = third })
      assert(differ(out(third), before) < 1e-6, "the same output after a checkpoint")
      os.execute("rm -rf " .. dir)
    end
  end
end

-- MAM and hand-made unions: the parts asked for, each trainable; options checked.
function tests.unions_of_any_parts_and_their_errors()
  local model = mt.models.new("LlamaForCausalLM", llama_config)
  model:eval()
  local base = out(model)
  mt.peft.union(model, { name = "m", config = "mam", prefix_tuning = { bottleneck_size = 16 } })
  local names = {}
  for n in pairs(model:named_parameters{ owner = "m", trainable = true }) do names[#names + 1] = n end
  local text = table.concat(names, " ")
  assert(text:find("model.prefix_tuning.m.control_trans.0.weight", 1, true) and text:find("output_adapters.m.adapter_up.weight", 1, true), text)
  assert(not text:find("lora", 1, true), "MAM has no LoRA")
  assert(differ(out(model), base) > 0, "the prefix changes the output from the start")
  mt.peft.union(model, { name = "l", lora = { r = 2, attn_matrices = { "q", "k", "v" } } })
  local lora = model:named_parameters{ owner = "l" }
  assert(lora["model.layers.0.self_attn.k_proj.adapters.l.lora_A"] ~= nil, "LoRA on k")
  expect.raises(function() mt.peft.union(model, { name = "x" }) end, "the union has no part")
  expect.raises(function() mt.peft.union(model, { name = "x", config = "nope" }) end, "unknown union config 'nope'")
  expect.raises(function() mt.peft.union(model, { name = "x", lora = { rank = 2 } }) end, "unknown option 'rank' for LoRA")
  expect.raises(function() mt.peft.union(model, { name = "x", lora = { intermediate_lora = true } }) end, "intermediate_lora is not built")
  expect.raises(function() mt.peft.union(model, { name = "x", prefix_tuning = { leave_out = { 7 } } }) end, "leave_out names layer 7")
  expect.raises(function() mt.peft.union(model, { name = "x", bottleneck = { reduction = 2 } }) end, "unknown option 'reduction'")
  expect.raises(function() mt.peft.union(model, { name = "x", prefix_tuning = 3 }) end, "prefix_tuning must be a table")
  expect.raises(function() model:set_active(mt.peft.parallel("m", "l")) end, "can only be in a Stack")
  expect.raises(function() mt.peft.fusion(model, { "m", "l" }) end, "fusion combines bottleneck adapters")
  expect.raises(function() model:gates("m") end, "'m' has no gates")
  local ok, err = model:save_adapter(os.tmpname(), { name = "m", format = "peft" })
  assert(ok == nil and err:find("PEFT's format cannot hold", 1, true), tostring(err))
  model:delete_adapter("m")
  assert(next(model:named_parameters{ owner = "m" }) == nil, "deleting a union removes every part")
end

function tests.bad_setups_and_configs_are_refused_with_the_model_unchanged()
  local model = two_adapters("LlamaForCausalLM", llama_config)
  model:set_active("a")
  local before = out(model)
  expect.raises(function() model:set_active(mt.peft.stack("a", "nope")) end, "no adapter named 'nope'")
  expect.raises(function() model:set_active(mt.peft.fuse("a", "b")) end, "no such fusion")
  expect.raises(function() mt.peft.fuse("a", mt.peft.parallel("b")) end, "cannot nest Parallel inside Fuse")
  expect.raises(function() mt.peft.batch_split("a", "b") end, "batch sizes")
  local cycle = { block = "Stack" }; cycle[1] = cycle
  expect.raises(function() model:set_active(cycle) end, "nests blocks more than 32 deep")
  assert(differ(out(model), before) == 0, "a refused setup leaves the active one")
  model:set_active(mt.peft.batch_split("a", "b", { batch_sizes = { 1, 2 } }))
  expect.raises(function() out(model) end, "sizes [1, 2] add up to 3")
  model:set_active("a")
  mt.peft.bottleneck(model, { name = "h", config = "double_seq_bn" })
  expect.raises(function() mt.peft.fusion(model, { "a", "h" }) end, "differ in mh_adapter")
  mt.peft.lora(model, { name = "l" })
  expect.raises(function() mt.peft.fusion(model, { "a", "l" }) end, "fusion combines bottleneck adapters")
  expect.raises(function() model:set_active(mt.peft.parallel("a", "l")) end, "can only be in a Stack")
  expect.raises(function() mt.peft.bottleneck(model, { name = "x", config = "nope" }) end, "unknown bottleneck config 'nope'")
  expect.raises(function() mt.peft.bottleneck(model, { name = "x", reduction_factor = { ["1"] = 4 } }) end, "no \"default\"")
  expect.raises(function() mt.peft.bottleneck(model, { name = "x", leave_out = { 7 } }) end, "leave_out names layer 7")
  expect.raises(function() mt.peft.bottleneck(model, { name = "x", colour = 1 }) end, "unknown option 'colour'")
  assert(not model:named_parameters{ owner = "adapters" }["model.layers.0.output_adapters.x.adapter_up.weight"], "no refused adapter was added")
  expect.raises(function() model:delete_adapter("a") end, "in the active setup")
  assert(differ(out(model), before) == 0, "the model is as it was")
end

return tests
