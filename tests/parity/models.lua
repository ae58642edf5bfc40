-- Parity of mt.models with transformers (checkpoints and outputs from gen_models.py, run beside
-- this test): for every architecture, logits on a padded batch within 1e-4 (real tokens), the
-- same loss, the same 20 greedy tokens, and the gradient of every parameter after one backward
-- within 1e-5; BERT's hidden states, pooler and gradients; stories260K's known story and its
-- loss on tinyshakespeare; all-MiniLM-L6-v2 embeddings (cosine > 0.99999). Each model is also
-- saved by moontune (into MOONTUNE_OUTPUT) for check_saved.py to load in transformers.

local mt = require "moontune"
local T = mt.tensor

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local output = assert(os.getenv("MOONTUNE_OUTPUT"), "MOONTUNE_OUTPUT is not set (run through cargo test)")
local data = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"

local function max_diff(a, b) return (a:float() - b:float()):abs():max():item() end

-- Every parameter's gradient equals transformers' (grad.<name> in `ref`) within 1e-5, and the
-- two models have the same parameters.
local function check_gradients(name, model, ref)
  local ours = model:named_parameters()
  local checked, worst = 0, 0
  for pname, p in pairs(ours) do
    local want = ref["grad." .. pname]
    assert(want ~= nil, string.format("%s: transformers has no parameter %s", name, pname))
    assert(p.grad ~= nil, string.format("%s: %s got no gradient", name, pname))
    local diff = max_diff(p.grad, want)
    assert(diff < 1e-5, string.format("%s: the gradient of %s differs by %g", name, pname, diff))
    checked, worst = checked + 1, math.max(worst, diff)
  end
  local theirs = 0
  for key in pairs(ref) do if key:find("^grad%.") then theirs = theirs + 1 end end
  assert(checked == theirs, string.format("%s: %d parameters here, %d in transformers", name, checked, theirs))
  print(string.format("%s: %d parameter gradients, largest difference from transformers %.2e", name, checked, worst))
end

local tests = {}

local causal = { "llama", "llama3_rope", "llama_linear_rope", "mistral", "qwen2", "qwen3", "gpt2" }

for _, name in ipairs(causal) do
  tests[name] = function()
    local dir = fixtures .. "/" .. name
    local model = assert(mt.models.load(dir))
    local ref = assert(mt.load(dir .. "/expected.safetensors"))
    local out = mt.no_grad(function()
      return model:forward{ input_ids = ref.input_ids, attention_mask = ref.attention_mask }
    end)
    local real = ref.attention_mask:bool():unsqueeze(-1)
    local diff = max_diff(out.logits:masked_fill(real:logical_not(), 0), ref.logits:masked_fill(real:logical_not(), 0))
    assert(diff < 1e-4, string.format("%s: logits differ by %g", name, diff))
    local loss = mt.no_grad(function()
      return model:forward{ input_ids = ref.input_ids[0]:unsqueeze(0), labels = ref.input_ids[0]:unsqueeze(0) }.loss
    end)
    assert(math.abs(loss:item() - ref.loss:item()) < 1e-5, string.format("%s: loss %g vs %g", name, loss:item(), ref.loss:item()))
    local greedy = model:generate(ref.prompt, { max_new_tokens = 20, stop_ids = {} })
    assert(greedy:equal(ref.greedy), string.format("%s: greedy tokens differ\n%s\n%s", name, tostring(greedy), tostring(ref.greedy)))
    model:forward{ input_ids = ref.input_ids, attention_mask = ref.attention_mask, labels = ref.labels }.loss:backward()
    check_gradients(name, model, ref)
    assert(model:save(output .. "/saved_" .. name))
    mt.save(output .. "/saved_" .. name .. "/moontune_logits.safetensors", { logits = out.logits })
  end
end

function tests.bert_encoder()
  local dir = fixtures .. "/bert"
  local model = assert(mt.models.load(dir))
  local ref = assert(mt.load(dir .. "/expected.safetensors"))
  local out = mt.no_grad(function()
    return model:forward{ input_ids = ref.input_ids, attention_mask = ref.attention_mask, token_type_ids = ref.token_type_ids }
  end)
  local real = ref.attention_mask:bool():unsqueeze(-1)
  local diff = max_diff(out.last_hidden_state:masked_fill(real:logical_not(), 0), ref.last_hidden_state:masked_fill(real:logical_not(), 0))
  assert(diff < 1e-4, "hidden states differ by " .. diff)
  assert(max_diff(out.pooler_output, ref.pooler_output) < 1e-4, "pooler output differs")
  local g = model:forward{ input_ids = ref.input_ids, attention_mask = ref.attention_mask, token_type_ids = ref.token_type_ids }
  local objective = (g.last_hidden_state * ref.probe_hidden):sum() + (g.pooler_output * ref.probe_pooled):sum()
  objective:backward()
  check_gradients("bert", model, ref)
end

function tests.stories260K_tells_the_known_story()
  local model = assert(mt.models.load(data .. "/models/stories260K"))
  local tok = assert(mt.tokenizer.load(data .. "/models/stories260K"))
  local ids = tok:encode("Once upon a time")
  assert(table.concat(ids, ",") == "1,403,407,261,378", table.concat(ids, ","))
  local out = model:generate(T.tensor{ ids }, { max_new_tokens = 40 })
  local text = tok:decode(out:tolist()[1], { skip_special_tokens = true })
  local known = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
  assert(text == known, "got: " .. text)
end

function tests.stories260K_loss_on_shakespeare()
  local model = assert(mt.models.load(data .. "/models/stories260K"))
  local ref = assert(mt.load(fixtures .. "/stories260K_shakespeare.safetensors"))
  local loss = mt.no_grad(function() return model:forward{ input_ids = ref.input_ids, labels = ref.input_ids }.loss end)
  assert(math.abs(loss:item() - ref.loss:item()) < 1e-4, string.format("loss %.6f vs transformers %.6f", loss:item(), ref.loss:item()))
end

function tests.minilm_embeddings()
  local f = assert(io.open(fixtures .. "/minilm_dir.txt"))
  local dir = f:read("a")
  f:close()
  local sentences = {}
  for line in io.lines(fixtures .. "/minilm_sentences.txt") do sentences[#sentences + 1] = line end
  assert(#sentences == 20)
  local model = assert(mt.models.load(dir))
  local tok = assert(mt.tokenizer.load(dir))
  local batch = tok:encode_batch(sentences, { pad_id = 0 })
  local hidden = mt.no_grad(function() return model:forward(batch).last_hidden_state end)
  local pooled = mt.models.mean_pool(hidden, batch.attention_mask)
  local emb = pooled / pooled:norm(2, -1, true)
  local ref = assert(mt.load(fixtures .. "/minilm.safetensors")).embeddings
  local cosine = (emb * ref):sum(-1):min():item()
  assert(cosine > 0.99999, "lowest cosine " .. cosine)
end

function tests.generation_features_match_transformers()
  local model = assert(mt.models.load(fixtures .. "/llama"))
  local ref = assert(mt.load(fixtures .. "/llama_generation.safetensors"))
  local plain = { max_new_tokens = 12, stop_ids = {}, pad_id = 0, attention_mask = ref.batch_mask }
  local left = model:generate(ref.batch, plain)
  assert(left:equal(ref.left), "left-padded batch\n" .. tostring(left) .. "\n" .. tostring(ref.left))
  local penalised = model:generate(ref.batch[0]:unsqueeze(0), { max_new_tokens = 12, stop_ids = {}, repetition_penalty = 1.5 })
  assert(penalised:equal(ref.penalised), "repetition penalty\n" .. tostring(penalised) .. "\n" .. tostring(ref.penalised))
  local stopped = model:generate(ref.batch, { max_new_tokens = 12, stop_ids = { ref.stop_id:item() }, pad_id = 0, attention_mask = ref.batch_mask })
  assert(stopped:equal(ref.stopped), "stop id\n" .. tostring(stopped) .. "\n" .. tostring(ref.stopped))
  local sampled = model:generate(ref.batch, { max_new_tokens = 12, stop_ids = {}, pad_id = 0, attention_mask = ref.batch_mask,
                                              do_sample = true, temperature = 0.7, top_k = 20, top_p = 0.9, seed = 123 })
  assert(sampled:equal(ref.sampled), "sampling with a seed\n" .. tostring(sampled) .. "\n" .. tostring(ref.sampled))
  -- As transformers: temperature alone leaves decoding greedy; generation_config.json's
  -- do_sample, temperature and top_k are the defaults.
  local greedy = model:generate(ref.batch, { max_new_tokens = 12, stop_ids = {}, pad_id = 0, attention_mask = ref.batch_mask, temperature = 0.7 })
  assert(greedy:equal(ref.temperature_only) and greedy:equal(ref.left), "temperature alone\n" .. tostring(greedy))
  local configured = assert(mt.models.load(fixtures .. "/llama_sampling"))
  local from_config = configured:generate(ref.batch, { max_new_tokens = 12, stop_ids = {}, pad_id = 0, attention_mask = ref.batch_mask, seed = 5 })
  assert(from_config:equal(ref.from_config), "generation_config.json's defaults\n" .. tostring(from_config) .. "\n" .. tostring(ref.from_config))
end

function tests.streaming_callback_and_stop_strings()
  local model = assert(mt.models.load(data .. "/models/stories260K"))
  local tok = assert(mt.tokenizer.load(data .. "/models/stories260K"))
  local ids = T.tensor{ tok:encode("Once upon a time") }
  local streamed = {}
  local out = model:generate(ids, { max_new_tokens = 40, on_token = function(step, tokens) streamed[step] = tokens[1] end })
  assert(#streamed == 40 and out:tolist()[1][6] == streamed[1], "one callback per new token")
  local early = model:generate(ids, { max_new_tokens = 40, on_token = function(step) return step < 3 end })
  assert(early:shape()[2] == 5 + 3, "returning false stops generation")
  local cut = model:generate(ids, { max_new_tokens = 40, tokenizer = tok, stop_strings = { "Lily" } })
  local text = tok:decode(cut:tolist()[1], { skip_special_tokens = true })
  assert(text:sub(-4) == "Lily", "stops once the text contains the stop string: " .. text)
end

function tests.sharded_and_converted_checkpoints()
  local ref = assert(mt.load(fixtures .. "/qwen2/expected.safetensors"))
  local sharded = assert(mt.models.load(fixtures .. "/qwen2_sharded"))
  local logits = mt.no_grad(function() return sharded:forward{ input_ids = ref.input_ids[0]:unsqueeze(0) }.logits end)
  assert(max_diff(logits, ref.logits[0]:unsqueeze(0)) < 1e-4, "sharded checkpoint")
  local half = assert(mt.models.load(fixtures .. "/qwen2", { dtype = "bf16" }))
  assert(half:dtype() == "bfloat16")
  local low = mt.no_grad(function() return half:forward{ input_ids = ref.input_ids[0]:unsqueeze(0) }.logits end)
  assert(low:dtype() == "bfloat16" and max_diff(low, ref.logits[0]:unsqueeze(0)) < 0.1, "bf16 stays close")
end

local function copy_dir(from, to)
  os.execute(string.format("rm -rf '%s' && cp -r '%s' '%s'", to, from, to))
end

-- A copy of `from` at `to` whose config.json has `old` replaced by `new`.
local function with_config_edit(from, to, old, new)
  copy_dir(from, to)
  local f = assert(io.open(to .. "/config.json"))
  local text = f:read("a"):gsub(old, new)
  f:close()
  f = assert(io.open(to .. "/config.json", "w"))
  f:write(text)
  f:close()
end

function tests.bad_checkpoints_are_clear_errors()
  local base = fixtures .. "/llama"
  local function expect(dir, pattern)
    local model, err = mt.models.load(dir)
    assert(model == nil, dir .. " loaded")
    assert(err:find(pattern, 1, true), string.format("%s: message lacks %q: %s", dir, pattern, err))
  end
  local truncated = fixtures .. "/bad_truncated"
  copy_dir(base, truncated)
  local f = assert(io.open(truncated .. "/model.safetensors", "r+b"))
  local head = f:read(4096)
  f:close()
  f = assert(io.open(truncated .. "/model.safetensors", "wb"))
  f:write(head)
  f:close()
  expect(truncated, "not a valid safetensors file")

  local wrong = fixtures .. "/bad_hidden"
  with_config_edit(base, wrong, '"hidden_size": 32', '"hidden_size": 48')
  expect(wrong, "model.embed_tokens.weight' has shape [96, 32], expected [96, 48]")

  local missing = fixtures .. "/bad_missing"
  copy_dir(base, missing)
  local tensors = mt.load(missing .. "/model.safetensors")
  tensors["model.layers.1.mlp.up_proj.weight"] = nil
  mt.save(missing .. "/model.safetensors", tensors)
  expect(missing, "lacks tensor 'model.layers.1.mlp.up_proj.weight' (expected shape [48, 32])")

  local pickled = fixtures .. "/bad_pickle"
  copy_dir(base, pickled)
  os.remove(pickled .. "/model.safetensors")
  local p = assert(io.open(pickled .. "/pytorch_model.bin", "wb"))
  p:write("not read")
  p:close()
  expect(pickled, "never unpickles")

  expect(fixtures .. "/no_such_model", "config.json")
  local unsupported = fixtures .. "/bad_arch"
  with_config_edit(base, unsupported, '"LlamaForCausalLM"', '"FalconForCausalLM"')
  expect(unsupported, "architecture 'FalconForCausalLM' is not supported")
end

return tests
