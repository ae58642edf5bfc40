-- Tokenizers against Python `tokenizers` and transformers (references from gen_tokenizers.py):
-- GPT-2 on 1,000 lines of tinyshakespeare, chat templates rendered as apply_chat_template does
-- (from tokenizer_config.json and from chat_template.jinja), truncation, pairs, overflowing
-- windows and padding as transformers' tokenizer call on BERT, GPT-2 and Llama tokenizers, and a
-- BPE tokenizer trained here that round-trips text.

local mt = require "moontune"
local check_ids = require "support.ids"

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local data = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

local function lines(path)
  local out = {}
  for line in io.lines(path) do out[#out + 1] = line end
  return out
end

local tests = {}

function tests.gpt2_known_ids()
  local tok = assert(mt.tokenizer.load(data .. "/tokenizers/gpt2"))
  assert(table.concat(tok:encode("This is some text"), ",") == "1212,318,617,2420")
  assert(tok:decode({ 1212, 318, 617, 2420 }) == "This is some text")
  assert(tok:id_to_token(1212) == "This" and tok:token_to_id("This") == 1212)
  local ids, offsets = tok:encode("Hello world", { offsets = true })
  assert(#ids == 2 and offsets[2][1] == 5 and offsets[2][2] == 11, "offsets are character spans")
end

function tests.gpt2_matches_python_on_shakespeare()
  local tok = assert(mt.tokenizer.load(data .. "/tokenizers/gpt2/tokenizer.json"))
  local ref = assert(mt.load(fixtures .. "/gpt2_shakespeare.safetensors"))
  local text = lines(fixtures .. "/shakespeare_lines.txt")
  assert(#text == 1000)
  check_ids(tok, text, ref)
end

function tests.chat_templates_render_as_transformers()
  local messages = {
    { role = "system", content = "You are terse." },
    { role = "user", content = "  What is 2 + 2?  " },
    { role = "assistant", content = "4." },
    { role = "user", content = "And 3 + 3?" },
  }
  for _, name in ipairs({ "chatml", "llama2" }) do
    local dir = fixtures .. "/chat_" .. name
    local tok = assert(mt.tokenizer.load(dir))
    for _, flag in ipairs({ false, true }) do
      local got = tok:apply_chat_template(messages, { add_generation_prompt = flag })
      local want = read(dir .. "/expected_" .. tostring(flag) .. ".txt")
      assert(got == want, string.format("%s (add_generation_prompt=%s):\n%q\nexpected\n%q", name, tostring(flag), got, want))
    end
  end
  local tok = assert(mt.tokenizer.load(fixtures .. "/chat_llama2"))
  local ok, err = pcall(function() return tok:apply_chat_template({ { role = "assistant", content = "hi" } }) end)
  assert(not ok and tostring(err):find("must alternate", 1, true), tostring(err))
end

function tests.chat_template_from_chat_template_jinja()
  local tok = assert(mt.tokenizer.load(fixtures .. "/chat_jinja"))
  local messages = {
    { role = "system", content = "You are terse." },
    { role = "user", content = "  What is 2 + 2?  " },
    { role = "assistant", content = "4." },
    { role = "user", content = "And 3 + 3?" },
  }
  local got = tok:apply_chat_template(messages, { add_generation_prompt = true })
  assert(got == read(fixtures .. "/chat_jinja/expected_true.txt"), got)
end

function tests.truncation_pairs_and_padding_match_transformers_call()
  local ref = assert(mt.load(fixtures .. "/tokenizer_calls.safetensors"))
  local texts, pair_texts, short_pairs = lines(fixtures .. "/call_texts.txt"), lines(fixtures .. "/call_pairs.txt"), lines(fixtures .. "/call_short_pairs.txt")
  local dirs = lines(fixtures .. "/call_dirs.txt")
  local cases = {
    max_length_alone = { nil, { max_length = 6 } },
    truncation_true = { nil, { truncation = true, max_length = 7, padding = true } },
    pairs_longest_first = { pair_texts, { truncation = true, max_length = 12 } },
    pairs_only_second = { pair_texts, { truncation = "only_second", max_length = 40, padding = "max_length" } },
    pairs_only_first = { short_pairs, { truncation = "only_first", max_length = 8 } },
    overflow = { nil, { truncation = true, max_length = 8, stride = 2, return_overflowing_tokens = true, padding = true } },
    left_multiple = { nil, { padding = true, padding_side = "left", pad_to_multiple_of = 8 } },
    no_special = { pair_texts, { add_special_tokens = false, max_length = 9 } },
  }
  for i, name in ipairs({ "bert", "gpt2", "llama" }) do
    local tok = assert(mt.tokenizer.load(dirs[i]))
    for case, spec in pairs(cases) do
      local got = spec[1] and tok:encode_batch(texts, spec[1], spec[2]) or tok:encode_batch(texts, spec[2])
      for _, key in ipairs({ "input_ids", "attention_mask", "token_type_ids", "overflow_to_sample_mapping" }) do
        local want = ref[string.format("%s.%s.%s", name, case, key)]
        if want ~= nil then
          assert(got[key]:equal(want), string.format("%s %s %s:\n%s\ntransformers:\n%s", name, case, key, tostring(got[key]), tostring(want)))
        end
      end
    end
  end
  -- The issue's example: [CLS] a b [SEP], as transformers.
  local bert = assert(mt.tokenizer.load(dirs[1]))
  assert(table.concat(bert:encode_batch({ "a b c d e" }, { max_length = 4 }).input_ids:tolist()[1], ",") == "101,1037,1038,102")
  assert(table.concat(bert:encode("a b c d e", { max_length = 4 }), ",") == "101,1037,1038,102")
  assert(table.concat(bert:encode("a b", "c d"), ",") == "101,1037,1038,102,1039,1040,102")
  local ok, err = pcall(function() return bert:encode_batch(texts, { max_length = 4, padding = true }) end)
  assert(not ok and tostring(err):find("does nothing: pass truncation = true", 1, true), tostring(err))
  ok, err = pcall(function() return bert:encode_batch(texts, { truncation = "sideways", max_length = 4 }) end)
  assert(not ok and tostring(err):find("truncation must be", 1, true), tostring(err))
end

function tests.special_ids_and_batches()
  local tok = assert(mt.tokenizer.load(data .. "/models/stories260K"))
  assert(tok:bos_id() == 1 and tok:eos_id() == 2 and tok:unk_id() == 0 and tok:pad_id() == nil)
  assert(tok:vocab_size() == 512)
  local b = tok:encode_batch({ "Once upon a time", "Hi" }, { padding_side = "left" })
  local shape = b.input_ids:shape()
  assert(shape[1] == 2 and shape[2] == 5)
  assert(table.concat(b.attention_mask:tolist()[2], ",") == "0,0,1,1,1", "left padding")
  assert(b.input_ids:tolist()[2][1] == tok:eos_id(), "pads with EOS when there is no pad token")
  local cut = tok:encode_batch({ "Once upon a time" }, { max_length = 3 })
  assert(cut.input_ids:shape()[2] == 3)
end

function tests.trained_bpe_round_trips()
  local tok = mt.tokenizer.train_bpe{ files = { data .. "/text/tinyshakespeare.txt" }, vocab_size = 600, special_tokens = { "<|end|>" } }
  assert(tok:vocab_size() == 600, "vocab " .. tok:vocab_size())
  assert(tok:token_to_id("<|end|>") == 0)
  local text = lines(fixtures .. "/shakespeare_lines.txt")
  for i = 1, 200 do
    local ids = tok:encode(text[i])
    assert(#ids < #text[i] or #text[i] < 3, "merges shorten text")
    assert(tok:decode(ids) == text[i], string.format("line %d does not round-trip: %q", i, tok:decode(ids)))
  end
  local path = os.tmpname() .. ".json"
  assert(tok:save(path))
  local again = assert(mt.tokenizer.load(path))
  assert(table.concat(again:encode(text[1]), ",") == table.concat(tok:encode(text[1]), ","))
  os.remove(path)
end

return tests
