-- The module tree: loaded models as trees of named modules with the nn.Module methods, Lua
-- modules holding them, the name matcher, forward hooks, the ways in for prompt and prefix
-- tuning, and optimizers that key their state by parameter name.

local mt = require "moontune"
local T, nn, F = mt.tensor, mt.nn, mt.nn.functional

local llama_config = { vocab_size = 50, hidden_size = 16, intermediate_size = 24, num_hidden_layers = 2,
                       num_attention_heads = 4, num_key_value_heads = 2, max_position_embeddings = 32 }
local bert_config = { vocab_size = 50, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 2,
                      intermediate_size = 32, max_position_embeddings = 32 }

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local raises = require("support.expect").raises

local tests = {}

function tests.every_layer_is_a_named_module()
  local model = mt.models.new("LlamaForCausalLM", llama_config):eval()
  local modules = model:named_modules()
  for _, name in ipairs({ "", "model", "model.embed_tokens", "model.layers", "model.layers.1", "model.layers.0.self_attn",
                          "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.norm", "lm_head" }) do
    assert(modules[name] ~= nil, "no module " .. name)
  end
  assert(modules["model.layers.0.self_attn.q_proj"]:name() == "model.layers.0.self_attn.q_proj")
  -- Parameters are fields, as in PyTorch; children are too (model.model.layers[0]).
  local q = model:get_submodule("model.layers.0.self_attn.q_proj")
  assert(q.weight:equal(model:state_dict()["model.layers.0.self_attn.q_proj.weight"]))
  assert(q.weight:param_name() == "model.layers.0.self_attn.q_proj.weight")
  assert(model.model.layers[0].self_attn.q_proj.weight:equal(q.weight))
  assert(q.bias == nil and model.training == false)
  -- A submodule lists its parameters relative to itself.
  local layer = model:get_submodule("model.layers.1")
  local names = sorted_keys(layer:named_parameters())
  assert(names[1] == "input_layernorm.weight" and #names == 9, table.concat(names, ","))
  assert(layer:num_parameters() == 16 * 16 * 2 + 16 * 8 * 2 + 3 * 16 * 24 + 2 * 16)
  -- A single-tensor submodule can be called; its result is the model's own computation.
  local x = T.randn{ 2, 3, 16 }
  local mlp = model:get_submodule("model.layers.0.mlp")
  local manual = mlp.down_proj(F.linear(x, mlp.gate_proj.weight):silu() * F.linear(x, mlp.up_proj.weight))
  assert(mlp(x):allclose(manual, { atol = 1e-6 }))
  assert(tostring(model):find("(q_proj): Linear(in_features=16, out_features=16, bias=false)", 1, true), tostring(model))
  raises(function() return model:get_submodule("model.layers.7") end, "'model.layers' has no submodule '7' (it has: 0, 1)")
  raises(function() return model:get_submodule("model.layers.0")(x) end, "does not take a single tensor")
  local count = 0
  model:apply(function(m) count = count + 1 end)
  local all = 0
  for _ in pairs(modules) do all = all + 1 end
  assert(count == all)
end

function tests.gpt2_and_bert_keep_their_checkpoint_names()
  local gpt2 = mt.models.new("GPT2LMHeadModel", { vocab_size = 50, n_embd = 16, n_layer = 1, n_head = 2, n_positions = 32 })
  local sd = gpt2:state_dict()
  for _, name in ipairs({ "transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
                          "transformer.h.0.mlp.c_fc.bias", "transformer.h.0.mlp.c_proj.weight", "transformer.ln_f.bias" }) do
    assert(sd[name] ~= nil, "no parameter " .. name)
  end
  assert(sd["lm_head.weight"] == nil, "the tied head is listed once, under the embedding")
  assert(tostring(gpt2:get_submodule("transformer.h.0.attn.c_attn")) == "Conv1D(in_features=16, out_features=48, bias=true)")
  local bert = mt.models.new("BertModel", bert_config)
  assert(bert:state_dict()["encoder.layer.1.attention.self.query.weight"] ~= nil)
  assert(bert:state_dict()["encoder.layer.0.attention.output.LayerNorm.weight"] ~= nil)
  assert(bert:get_submodule("encoder.layer.0.attention.self"):name() == "encoder.layer.0.attention.self")
end

function tests.bert_classifier_nests_the_trunk_under_bert()
  local model = mt.models.new("BertForSequenceClassification", bert_config)
  local sd = model:state_dict()
  for _, name in ipairs({ "bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.attention.self.query.weight",
                          "bert.pooler.dense.weight", "classifier.weight", "classifier.bias" }) do
    assert(sd[name] ~= nil, "no parameter " .. name)
  end
  assert(sd["classifier.weight"]:size()[1] == 2, "two labels unless config.json says otherwise")
  -- Hooks and adapters find the trunk's modules under their tree names.
  local seen = {}
  model:register_forward_hook({ "attention.self" }, function(_, _, _, name) seen[#seen + 1] = name end)
  model:eval()
  local ids = T.tensor({ { 5, 7, 9, 0 }, { 3, 4, 0, 0 } }):long()
  local out = model{ input_ids = ids, attention_mask = T.tensor({ { 1, 1, 1, 0 }, { 1, 1, 0, 0 } }):long(), labels = T.tensor({ 1, 0 }):long() }
  assert(table.concat(out.logits:size(), "x") == "2x2")
  assert(table.concat(seen, ",") == "bert.encoder.layer.0.attention.self,bert.encoder.layer.1.attention.self", table.concat(seen, ","))
  -- Integer labels: cross-entropy over the classes.
  local expected = F.cross_entropy(out.logits, T.tensor({ 1, 0 }):long())
  assert((out.loss - expected):abs():item() < 1e-6)
  mt.peft.lora(model, { r = 2 })
  assert(model:num_parameters{ trainable = true } == 2 * 2 * (2 * 16 + 16 * 2), "default targets query and value")
  local dir = os.tmpname(); os.remove(dir)
  model:merge_and_unload()
  assert(model:save(dir))
  local again = assert(mt.models.load(dir))
  again:eval()
  local out2 = mt.no_grad(function() return again{ input_ids = ids } end)
  local out1 = mt.no_grad(function() return model{ input_ids = ids } end)
  assert((out2.logits - out1.logits):abs():max():item() < 1e-6, "a saved classifier loads with the same logits")
end

function tests.freeze_by_pattern_picks_exactly_the_named_parameters()
  local model = mt.models.new("LlamaForCausalLM", llama_config)
  model:freeze()
  assert(model:num_parameters{ trainable = true } == 0)
  model:unfreeze{ "q_proj", "v_proj" }
  local trainable = sorted_keys(model:named_parameters{ trainable = true })
  assert(table.concat(trainable, ",") == "model.layers.0.self_attn.q_proj.weight,model.layers.0.self_attn.v_proj.weight,"
    .. "model.layers.1.self_attn.q_proj.weight,model.layers.1.self_attn.v_proj.weight", table.concat(trainable, ","))
  model:unfreeze("model%.layers%.1%.mlp%..*")
  assert(#model:parameters{ trainable = true } == 7)
  model:freeze("^.*_proj%.weight$")
  assert(table.concat(sorted_keys(model:named_parameters{ trainable = true }), ",") == "", "anchors are allowed")
  -- Relative to a submodule, and through the same matcher for Lua modules.
  model:get_submodule("model.layers.0"):unfreeze{ "mlp" }
  assert(#model:parameters{ trainable = true } == 3)
  raises(function() model:freeze{ "no_such_proj" } end, "matched no parameter")
  raises(function() model:freeze("model%.layers%.[") end, "missing ']'")
  raises(function() model:freeze(42) end, "expected a name pattern")
  local lua_model = nn.sequential(nn.linear(2, 2), nn.linear(2, 2))
  lua_model:freeze("0%..*")
  assert(table.concat(sorted_keys(lua_model:named_parameters{ trainable = true }), ",") == "1.bias,1.weight")
end

function tests.the_matcher_is_lua_pattern_matching_over_whole_names()
  local names = { "model.layers.0.self_attn.q_proj", "model.layers.10.mlp.up_proj", "lm_head", "a.b(c)d", "x%y", "model.norm" }
  local patterns = { ".*", "model%..*", "model%.layers%.%d+%..*", "[^.]+", "%a+_%a+", ".-proj", "model%.layers%.1.*",
                     ".*%bbd", "x%%y", "(%a+)%..*", "%f[%w]%w+", ".*q_proj", "lm_head", "l?m_h.-d", "[%w_.]+" }
  for _, p in ipairs(patterns) do
    local ok, picked = pcall(nn.matching, p, names)
    local expected = {}
    for _, n in ipairs(names) do
      if n:find("^" .. p .. "$") then expected[#expected + 1] = n end
    end
    local got = ok and table.concat(picked, "|") or ""
    assert(got == table.concat(expected, "|"), string.format("pattern %q: moontune %q, Lua %q", p, got, table.concat(expected, "|")))
  end
end

-- A classifier written in Lua over a loaded encoder: one tree.
local Classifier = nn.module("Classifier")
function Classifier:init(encoder, classes)
  self.encoder = encoder
  self.head = nn.linear(16, classes)
end
function Classifier:forward(ids, mask)
  local h = self.encoder{ input_ids = ids, attention_mask = mask }.last_hidden_state
  return self.head(mt.models.mean_pool(h, mask))
end

function tests.a_lua_module_holding_a_loaded_encoder_trains_it_end_to_end()
  mt.manual_seed(0)
  local clf = Classifier(mt.models.new("BertModel", bert_config), 2)
  local params = clf:named_parameters()
  assert(params["encoder.embeddings.word_embeddings.weight"] and params["encoder.pooler.dense.bias"] and params["head.weight"])
  assert(params["head.weight"]:param_name() == "head.weight")
  assert(params["encoder.encoder.layer.0.attention.self.query.weight"]:param_name() == "encoder.encoder.layer.0.attention.self.query.weight")
  local total = 0
  for _, p in ipairs(clf:parameters()) do total = total + p:numel() end
  assert(total == clf.encoder:num_parameters() + 16 * 2 + 2 and clf:num_parameters() == total)
  assert(clf:named_modules()["encoder.encoder.layer.1.output.dense"] ~= nil)
  assert(clf:get_submodule("encoder.encoder.layer.1"):name() == "encoder.layer.1")
  clf:eval()
  assert(clf.encoder.training == false)
  clf:train()
  assert(clf.encoder.training == true and clf.head.training == true)
  -- Train on a separable toy task: class = whether token 7 is present.
  local ids = T.randint(8, 40, { 16, 6 })
  local labels = T.zeros({ 16 }, { dtype = "int64" })
  for i = 0, 7 do ids[i][2] = 7; labels[i] = 1 end
  local mask = T.ones({ 16, 6 }, { dtype = "int64" })
  local before = clf.encoder:get_submodule("encoder.layer.0.attention.self.query").weight:clone()
  local opt = mt.optim.adamw(clf:parameters(), { lr = 3e-3, weight_decay = 0 })
  local first, last
  for _ = 1, 60 do
    local loss = F.cross_entropy(clf(ids, mask), labels)
    opt:zero_grad(); loss:backward(); opt:step()
    first = first or loss:item()
    last = loss:item()
  end
  assert(last < 0.2 * first, string.format("loss %g -> %g", first, last))
  local after = clf.encoder:get_submodule("encoder.layer.0.attention.self.query").weight
  assert(not after:equal(before), "the encoder's weights were trained")
  -- State dicts cross the boundary both ways.
  local copy = Classifier(mt.models.new("BertModel", bert_config), 2)
  copy:load_state_dict(clf:state_dict())
  clf:eval(); copy:eval()
  assert(mt.no_grad(function() return copy(ids, mask):equal(clf(ids, mask)) end))
  -- Freezing by pattern reaches into the encoder.
  clf:freeze("encoder%..*")
  assert(table.concat(sorted_keys(clf:named_parameters{ trainable = true }), ",") == "head.bias,head.weight")
  clf:to{ dtype = "float64" }
  assert(clf.encoder:dtype() == "float64" and clf.head.weight:dtype() == "float64")
end

function tests.forward_hooks_see_the_named_layers_input_and_output()
  local model = mt.models.new("LlamaForCausalLM", llama_config):eval()
  local ids = T.randint(50, { 2, 5 })
  local seen = {}
  local handle = model:register_forward_hook({ "mlp" }, function(m, input, output, name)
    seen[name] = { m = m, input = input, output = output }
  end)
  local logits = mt.no_grad(function() return model{ input_ids = ids }.logits end)
  assert(table.concat(sorted_keys(seen), ",") == "model.layers.0.mlp,model.layers.1.mlp")
  for name, s in pairs(seen) do
    assert(s.m:name() == name)
    assert(table.concat(s.input:shape(), "x") == "2x5x16" and table.concat(s.output:shape(), "x") == "2x5x16")
    assert(mt.no_grad(function() return model:get_submodule(name)(s.input) end):allclose(s.output, { atol = 1e-6 }))
  end
  handle:remove()
  seen = {}
  mt.no_grad(function() return model{ input_ids = ids } end)
  assert(next(seen) == nil, "a removed hook does not run")
  -- A hook that returns a tensor replaces the output.
  local zero = model:register_forward_hook("lm_head", function(_, _, output) return output * 0 end)
  local zeroed = mt.no_grad(function() return model{ input_ids = ids }.logits end)
  assert(zeroed:abs():sum():item() == 0)
  zero:remove()
  assert(mt.no_grad(function() return model{ input_ids = ids }.logits end):equal(logits))
  raises(function() model:register_forward_hook({ "attention" }, function() end) end, "matched no module")
  local broken = model:register_forward_hook({ "o_proj" }, function() return 42 end)
  raises(function() return model{ input_ids = ids } end, "expected a tensor or nothing")
  broken:remove()
  -- Through a Lua module, hooks reach the encoder's layers, and the Lua module's own.
  local clf = Classifier(mt.models.new("BertModel", bert_config), 2):eval()
  local names = {}
  clf:register_forward_hook("encoder%.encoder%.layer%.%d+", function(_, _, _, name) names[#names + 1] = name end)
  clf:register_forward_hook({ "head" }, function(_, input, output, name) names[#names + 1] = name .. ":" .. input:shape()[2] end)
  mt.no_grad(function() return clf(T.randint(50, { 1, 4 }), T.ones({ 1, 4 }, { dtype = "int64" })) end)
  assert(table.concat(names, ",") == "encoder.encoder.layer.0,encoder.encoder.layer.1,head:16", table.concat(names, ","))
end

function tests.prompt_and_prefix_tuning_enter_through_embeddings_and_the_cache()
  local model = mt.models.new("LlamaForCausalLM", llama_config):eval()
  local ids = T.randint(50, { 2, 6 })
  local embeds = model:get_submodule("model.embed_tokens")(ids)
  local a = mt.no_grad(function() return model{ input_ids = ids }.logits end)
  local b = mt.no_grad(function() return model{ inputs_embeds = embeds }.logits end)
  assert(a:allclose(b, { atol = 1e-6 }))
  raises(function() return model{ input_ids = ids, inputs_embeds = embeds } end, "not both")
  -- A cache that starts from trainable keys and values: the gradient reaches them.
  local prefix = {}
  for i = 1, 2 do prefix[i] = { T.randn({ 2, 2, 3, 4 }, { requires_grad = true }), T.randn({ 2, 2, 3, 4 }, { requires_grad = true }) } end
  local cache = model:new_cache(prefix)
  assert(cache:len() == 3)
  local out = model{ input_ids = ids, cache = cache, attention_mask = T.ones({ 2, 9 }, { dtype = "int64" }) }
  out.logits:sum():backward()
  assert(prefix[1][1].grad ~= nil and prefix[2][2].grad:abs():sum():item() > 0)
  raises(function() return model:new_cache{ prefix[1] } end, "the prefix has 1 layers")
  -- A cache from another model is an error, not a crash.
  local deeper = { num_hidden_layers = 3 }
  for k, v in pairs(llama_config) do deeper[k] = deeper[k] or v end
  local other = mt.models.new("LlamaForCausalLM", deeper)
  raises(function() return model{ input_ids = ids, cache = other:new_cache() } end, "the cache has 3 layers and this model 2")
end

function tests.optimizers_key_state_by_parameter_name()
  local function model()
    mt.manual_seed(3)
    return mt.models.new("LlamaForCausalLM", llama_config)
  end
  local ids = T.randint(50, { 2, 6 })
  local function train(m, opt, steps)
    for _ = 1, steps do
      local loss = m{ input_ids = ids, labels = ids }.loss
      opt:zero_grad(); loss:backward(); opt:step()
    end
  end
  -- Reference: 4 steps straight.
  local a = model()
  local opt_a = mt.optim.adamw(a:parameters(), { lr = 1e-2 })
  train(a, opt_a, 4)
  -- 2 steps, a state dict, then a new optimizer over the parameters in reverse order (given as
  -- a named_parameters table for half of them), 2 more steps: the same weights.
  local b = model()
  local opt_b = mt.optim.adamw(b:parameters(), { lr = 1e-2 })
  train(b, opt_b, 2)
  local saved = opt_b:state_dict()
  assert(saved.state["model.layers.0.self_attn.q_proj.weight"].step == 2)
  assert(saved.param_groups[1].params[1] == "model.embed_tokens.weight")
  local reversed = {}
  local list = b:parameters()
  for i = #list, 1, -1 do reversed[#reversed + 1] = list[i] end
  local opt_b2 = mt.optim.adamw(reversed, { lr = 1e-2 })
  opt_b2:load_state_dict(saved)
  train(b, opt_b2, 2)
  assert(b.lm_head.weight:equal(a.lm_head.weight) and b.model.norm.weight:equal(a.model.norm.weight), "resumed with another order")
  -- Groups may gain parameters between steps.
  local head = nn.linear(16, 3)
  local opt = mt.optim.adamw(b:named_parameters(), { lr = 1e-2 })
  opt:add_param_group{ params = head:named_parameters(), lr = 0.5 }
  assert(#opt:param_groups() == 2 and opt:get_lr(2) == 0.5)
  local w = head.weight:clone()
  head(T.randn{ 2, 16 }):sum():backward()
  opt:step()
  assert(not head.weight:equal(w))
  raises(function() opt:add_param_group{ params = { head.weight } } end, "given twice")
  raises(function() mt.optim.adam({ head.weight, head.weight }) end, "given twice")
  raises(function() mt.optim.adam({ head:parameters()[1], nn.linear(3, 3):parameters()[1] }) end, "two different parameters are named 'weight'")
  raises(function() mt.optim.adam({ head.weight }, { foreach = true, fused = true }) end, "cannot both be true")
  raises(function() opt_a:load_state_dict(opt:state_dict()) end, "parameter groups")
  local extra = mt.optim.adamw({ T.zeros({ 2 }, { requires_grad = true }) })
  local trained = mt.optim.adamw(head:named_parameters())
  head(T.randn{ 2, 16 }):sum():backward()
  trained:step()
  raises(function() extra:load_state_dict(trained:state_dict()) end, "does not")
  assert(mt.optim.adamw(head:parameters()):kernel() == "fused")
  assert(mt.optim.sgd(head:parameters(), { foreach = true }):kernel() == "foreach")
  assert(mt.optim.sgd(head:parameters(), { fused = false, foreach = false }):kernel() == "single-tensor")
end

function tests.memory_counts_each_storage_once()
  collectgarbage(); collectgarbage()
  local before = mt.memory().tensor_bytes
  local x = T.zeros{ 256, 1024 }                      -- 1 MiB
  local views = {}
  for i = 1, 10 do views[i] = x:narrow(0, i, 4) end
  local wide = x:unsqueeze(0):expand{ 8, 256, 1024 }
  local grown = mt.memory().tensor_bytes - before
  assert(grown == 256 * 1024 * 4, "views and expansions are not new bytes: " .. grown)
  local model = mt.models.new("LlamaForCausalLM", llama_config)
  local handles = {}
  for i = 1, 5 do handles[i] = model:parameters() end
  local with_model = mt.memory().tensor_bytes - before - grown
  assert(with_model == model:num_parameters() * 4, "repeated handles of a parameter count once: " .. with_model)
  assert(#views == 10 and wide:dim() == 3 and #handles == 5)
end

function tests.generate_leaves_the_callers_options_and_random_stream_alone()
  local model = mt.models.new("LlamaForCausalLM", llama_config):eval()
  local ids = T.tensor{ { 1, 2, 3 } }
  local opts = { max_new_tokens = 5, do_sample = true, temperature = 0.8, seed = 11, on_token = function() end, attention_mask = T.ones({ 1, 3 }, { dtype = "int64" }) }
  mt.manual_seed(5)
  local expected = T.rand{ 4 }
  mt.manual_seed(5)
  local first = model:generate(ids, opts)
  assert(T.rand{ 4 }:equal(expected), "a seeded generate does not move the global random stream")
  assert(opts.on_token ~= nil and opts.attention_mask ~= nil and opts.seed == 11, "the options table is unchanged")
  assert(model:generate(ids, opts):equal(first), "the same seed gives the same tokens")
end

function tests.tensor_to_names_dtype_and_device()
  raises(function() return T.ones{ 2 }:to("gpu7") end, "unknown dtype or device 'gpu7' (dtypes: float32")
  raises(function() return nn.linear(2, 2):to("gpu7") end, "devices: cpu, cuda, cuda:N")
  raises(function() return mt.models.new("LlamaForCausalLM", llama_config):to("gpu7") end, "unknown dtype or device")
end

function tests.recipes_get_only_debug_traceback()
  assert(type(debug.traceback) == "function" and debug.getinfo == nil and debug.setupvalue == nil and debug.sethook == nil)
  assert(debug.traceback("x"):find("stack traceback", 1, true))
end

return tests
