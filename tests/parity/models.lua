-- Parity of mt.models with transformers (checkpoints and outputs from gen_models.py, run beside
-- this test): for every architecture, logits on a padded batch within 1e-4 (real tokens), the
-- same loss, the same 20 greedy tokens; BERT's hidden states and pooler; stories260K's known
-- story and its loss on tinyshakespeare; all-MiniLM-L6-v2 embeddings (cosine > 0.99999). Each
-- model is also saved by moontune for check_saved.py to load in transformers.

local mt = require "moontune"
local T = mt.tensor

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local data = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"

local function max_diff(a, b) return (a:float() - b:float()):abs():max():item() end

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
    assert(model:save(fixtures .. "/saved_" .. name))
    mt.save(fixtures .. "/saved_" .. name .. "/moontune_logits.safetensors", { logits = out.logits })
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

return tests
