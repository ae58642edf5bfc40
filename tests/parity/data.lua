-- Data parity (references from gen_data.py): Parquet files written by pyarrow read back as the
-- same rows in every codec, with a column of the wrong type refused by the schema; Alpaca
-- examples tokenised with response-only labels exactly as the Hugging Face tokenizers library
-- gives them; packing equal to transformers' DataCollatorWithFlattening, and the packed row's loss
-- equal to transformers' (documents attend only within themselves) to 1e-5.
local mt = require "moontune"

local function raises(f, needle)
  local ok, err = pcall(f)
  assert(not ok and tostring(err):find(needle, 1, true), tostring(err))
end

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local data_dir = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
local tokens = assert(mt.json.read(fixtures .. "/tokens.json"))

local tests = {}

local function same(a, b)
  return mt.json.encode(a) == mt.json.encode(b)
end

function tests.parquet_rows_equal_pyarrows()
  local want = assert(mt.json.read(fixtures .. "/parquet_rows.json"))
  for _, codec in ipairs({ "snappy", "gzip", "zstd", "lz4", "none" }) do
    local ds = assert(mt.data.read(fixtures .. "/rows_" .. codec .. ".parquet"))
    assert(#ds == #want, codec .. ": " .. #ds .. " rows")
    local i = 0
    for row in ds:iter() do
      i = i + 1
      local w = want[i]
      assert(row.text == w.text and row.label == w.label and math.type(row.label) == "integer", codec .. " row " .. i)
      assert(math.abs(row.score - w.score) < 1e-15 and row.ok == w.ok and row.note == w.note, codec .. " row " .. i)
      assert(#row.tags == #w.tags and (#w.tags == 0 or same(row.tags, w.tags)), codec .. " tags of row " .. i)
      assert(row.meta.a == w.meta.a and row.meta.b == w.meta.b, codec .. " row " .. i)
    end
    assert(i == #want)
    -- Random access (a full shuffle) reads the same rows.
    local seen = 0
    for row in ds:shuffle{ seed = 1 }:iter() do seen = seen + row.meta.a end
    assert(seen == (#want - 1) * #want // 2)
  end
  local wrong = mt.data.read(fixtures .. "/label_as_string.parquet", { schema = { label = "int" } })
  raises(function() wrong:iter():next() end, "label_as_string.parquet: example 1: the field 'label' is a string, the schema wants a int")
end

function tests.response_only_tokens_equal_hugging_face_tokenizers()
  local tok = assert(mt.tokenizer.load(data_dir .. "/models/stories260K"))
  local rows = mt.data.read(data_dir .. "/instruct/alpaca_en_demo.json"):take(40):template("alpaca"):tokenize(tok)
  local i = 0
  for row in rows:iter() do
    i = i + 1
    local want = tokens.examples[i]
    assert(same(row.input_ids, want.input_ids), "input_ids of example " .. i)
    assert(same(row.labels, want.labels), "labels of example " .. i)
  end
  assert(i == 40)
end

function tests.packing_equals_transformers_flattening_and_its_loss()
  local docs = {}
  for i = 1, 12 do
    local ids = {}
    for k = 1, math.min(100, #tokens.examples[i].input_ids) do ids[k] = tokens.examples[i].input_ids[k] end
    docs[i] = { input_ids = ids }
  end
  local flat = tokens.flattened
  local row = mt.data.from(docs):pack{ length = #flat.input_ids }:head(1)[1]
  assert(same(row.input_ids, flat.input_ids) and same(row.labels, flat.labels) and same(row.position_ids, flat.position_ids))
  local model = assert(mt.models.load(data_dir .. "/models/stories260K"))
  local T = mt.tensor
  local loss = mt.no_grad(function()
    return model{ input_ids = T.tensor{ row.input_ids }, position_ids = T.tensor{ row.position_ids }, labels = T.tensor{ row.labels } }.loss:item()
  end)
  assert(math.abs(loss - tokens.packed_loss) < 1e-5, loss .. " here, " .. tokens.packed_loss .. " in transformers")
end

-- Label log-likelihoods and strided perplexity equal transformers' (1e-4).
function tests.evaluation_equals_transformers()
  local ref = assert(mt.json.read(fixtures .. "/eval.json"))
  local tok = assert(mt.tokenizer.load(data_dir .. "/models/stories260K"))
  local model = assert(mt.models.load(data_dir .. "/models/stories260K"))
  local rows = {}
  for _, sentence in ipairs(ref.sentences) do
    local ctx = tok:encode("Review: " .. sentence .. "\nSentiment:")
    for _, label in ipairs({ " bad", " good" }) do rows[#rows + 1] = { ctx, tok:encode(label, { add_special_tokens = false }) } end
  end
  local got = mt.eval.continuation_logprobs(model, rows, { batch_size = 5 })
  for i, pair in ipairs(ref.scores) do
    for j = 1, 2 do
      local g = got[(i - 1) * 2 + j]
      assert(math.abs(g - pair[j]) < 1e-4, string.format("sentence %d label %d: %.6f here, %.6f in transformers", i, j, g, pair[j]))
    end
  end
  local result = mt.eval.classify(model, tok, (function()
    local t = {}
    for i, s in ipairs(ref.sentences) do t[i] = { sentence = s, label = 0 } end
    return t
  end)(), { labels = { "bad", "good" }, prompt = "Review: {sentence}\nSentiment:" })
  for i, pair in ipairs(ref.scores) do
    assert(result.predictions[i] == (pair[2] > pair[1] and "good" or "bad"), "prediction " .. i)
  end
  local p = mt.eval.perplexity(model, tok, ref.shakespeare, { max_length = 64, stride = 32 })
  assert(p.tokens == ref.tokens, p.tokens .. " tokens here, " .. ref.tokens .. " in transformers")
  assert(math.abs(p.perplexity - ref.perplexity) / ref.perplexity < 1e-4, p.perplexity .. " vs " .. ref.perplexity)
end

return tests
