-- mt.data: reading every format (and refusing bad files with the file and line), the steps and
-- their determinism, iterator positions that resume at the same example across epochs, batching
-- with dynamic padding, response-only labels, and packing whose loss equals the unpacked loss.
local mt = require "moontune"
local raises = require("support.expect").raises
local data_dir = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
local have_data = io.open(data_dir .. "/classification/sst2/dev.tsv") ~= nil
if not have_data then
  print("SKIPPED parts of data.lua that read " .. data_dir .. ": no shared test data there")
end

local tests = {}

local function write(text, suffix)
  local path = os.tmpname() .. (suffix or "")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function all(ds, opts)
  local out = {}
  for ex in ds:iter(opts) do out[#out + 1] = ex end
  return out
end

function tests.reads_the_shared_datasets()
  if not have_data then return end
  local sst2 = assert(mt.data.read(data_dir .. "/classification/sst2/dev.tsv"))
  assert(#sst2 == 872, #sst2)
  local first = sst2:head(1)[1]
  assert(first.sentence:find("charming") and first.label == 1 and math.type(first.label) == "integer")
  local ag = mt.data.read(data_dir .. "/classification/agnews/test.tsv", { columns = { "text", "label" } })
  assert(#ag == 7600, #ag)
  assert(ag:head(1)[1].label == "Business" or type(ag:head(1)[1].label) == "string")
  local alpaca = mt.data.read(data_dir .. "/instruct/alpaca_en_demo.json")
  assert(#alpaca == 999 and alpaca:head(1)[1].instruction)
  local c4 = mt.data.read(data_dir .. "/instruct/c4_demo.jsonl")
  assert(#c4 == 300 and type(c4:head(1)[1].text) == "string")
  local shakespeare = mt.data.read(data_dir .. "/text/tinyshakespeare.txt")
  assert(shakespeare:head(1)[1].text == "First Citizen:")
  local paragraphs = mt.data.read(data_dir .. "/text/tinyshakespeare.txt", { by = "paragraph" })
  assert(paragraphs:head(1)[1].text == "First Citizen:\nBefore we proceed any further, hear me speak.")
  local whole = mt.data.read(data_dir .. "/summarization/xsum_sample.jsonl", { format = "text", by = "file" })
  assert(#whole == 1 and #whole:head(1)[1].text > 1000)
  local missing, message = mt.data.read(data_dir .. "/nope.jsonl")
  assert(missing == nil and message:find("no such file", 1, true))
end

function tests.csv_quoting_headers_and_types()
  local path = write('name,score,note\n"Smith, J",3,"said ""hi""\nthen left"\nLee,2.5,\n', ".csv")
  local rows = all(mt.data.read(path))
  assert(#rows == 2)
  assert(rows[1].name == "Smith, J" and rows[1].score == 3 and rows[1].note == 'said "hi"\nthen left', rows[1].note)
  assert(rows[2].score == 2.5 and rows[2].note == "")
  local raw = all(mt.data.read(path, { infer = false }))
  assert(raw[1].score == "3")
  local named = all(mt.data.read(path, { header = true, columns = { "a", "b", "c" } }))
  assert(named[2].a == "Lee")
  os.remove(path)
end

function tests.bad_files_name_the_file_and_line()
  local jsonl = write('{"a": 1}\n{"a": 2\n{"a": 3}\n', ".jsonl")
  local ds = mt.data.read(jsonl)
  raises(function() all(ds) end, jsonl .. ":2: not valid JSON")
  local skipping = mt.data.read(jsonl, { on_error = "skip" })
  local rows = all(skipping)
  assert(#rows == 2 and rows[2].a == 3 and skipping:skipped() == 1)
  assert(#skipping == 2)
  os.remove(jsonl)

  local ragged = write("a,b\n1,2\n3\n", ".csv")
  raises(function() all(mt.data.read(ragged)) end, ragged .. ":3: the row has 1 fields, expected 2 (a, b)")
  os.remove(ragged)

  local typed = write('{"text": "x", "label": 1}\n{"text": "y"}\n', ".jsonl")
  raises(function() all(mt.data.read(typed, { schema = { text = "string", label = "int" } })) end, "example 2: the field 'label' is missing")
  raises(function() all(mt.data.read(typed, { schema = { text = "int" } })) end, "example 1: the field 'text' is a string, the schema wants a int")
  os.remove(typed)

  local empty = write("", ".jsonl")
  raises(function() mt.data.read(empty):iter():next() end, "the dataset is empty")
  os.remove(empty)
  raises(function() mt.data.read(write("x", ".weird")) end, "cannot tell the format")
  raises(function() mt.data.read(write("x", ".json"), { by = "line", header = true }) end, "header is an option of csv and tsv files")
  raises(function() mt.data.read(write("x", ".txt"), { formt = "text" }) end, "formt")
end

function tests.steps_are_lazy_and_deterministic()
  local ds = mt.data.from({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 })
  local doubled = ds:map(function(x) return x * 2 end):filter(function(x) return x % 3 ~= 0 end)
  assert(table.concat(all(doubled), ",") == "2,4,8,10,14,16,20")
  assert(#doubled == 7)
  assert(table.concat(all(ds:skip(3):take(2)), ",") == "4,5")
  assert(table.concat(all(mt.data.concat({ ds:take(2), ds:skip(8) })), ",") == "1,2,9,10")
  local a = table.concat(all(ds:shuffle{ seed = 7 }), ",")
  assert(a == table.concat(all(ds:shuffle{ seed = 7 }), ",") and a ~= table.concat(all(ds), ","))
  assert(a ~= table.concat(all(ds:shuffle{ seed = 8 }), ","))
  -- A new order each epoch, the same on every run.
  local two = all(ds:shuffle{ seed = 7 }, { epochs = 2 })
  assert(#two == 20 and table.concat(two, ",", 1, 10) == a and table.concat(two, ",", 11, 20) ~= a)
  local windowed = all(ds:shuffle{ seed = 1, buffer = 3 })
  table.sort(windowed)
  assert(table.concat(windowed, ",") == "1,2,3,4,5,6,7,8,9,10")
  local mixed = all(mt.data.interleave({ mt.data.from({ 1, 2, 3, 4 }), mt.data.from({ 10, 20 }) }, { weights = { 3, 1 }, seed = 1, stop = "all" }))
  assert(#mixed == 6)
  raises(function() ds:map(function() return nil end):iter():next() end, "returned nil for example 1")
  raises(function() ds:map(function(x) error("boom") end):iter():next() end, "boom")
  raises(function() ds:take(-1) end, "n must not be negative")
  raises(function() mt.data.interleave({ ds }, { weights = { 1, 2 } }) end, "weights has 2 entries for 1 datasets")
end

-- Restoring a saved position continues with the same example, also across an epoch boundary and
-- through a windowed shuffle, a filter and batching.
function tests.iterator_state_resumes_at_the_same_example()
  local ds = mt.data.from((function() local t = {} for i = 1, 50 do t[i] = { x = i } end return t end)())
  local pipelines = {
    ds:shuffle{ seed = 3 }:batch(4),
    ds:filter(function(e) return e.x % 7 ~= 0 end):shuffle{ seed = 2, buffer = 8 }:batch{ size = 3, drop_last = true },
    mt.data.interleave({ ds, ds:map(function(e) return { x = -e.x } end) }, { seed = 5 }),
  }
  for _, p in ipairs(pipelines) do
    local straight = {}
    for b in p:iter{ epochs = 3 } do straight[#straight + 1] = mt.json.encode(b.x and (type(b.x) == "number" and b.x or b.x:tolist()) or b) end
    for _, cut in ipairs({ 1, 5, #straight // 2, #straight - 1 }) do
      local it = p:iter{ epochs = 3 }
      for _ = 1, cut do it:next() end
      local state = it:state()
      local resumed = p:iter{ epochs = 3 }
      resumed:load_state(state)
      local k = cut
      for b in resumed do
        k = k + 1
        assert(mt.json.encode(type(b.x) == "number" and b.x or b.x:tolist()) == straight[k], "example " .. k .. " after resuming at " .. cut)
      end
      assert(k == #straight)
    end
  end
  local it = ds:iter()
  raises(function() it:load_state({ epoch = 0, index = 51 }) end, "has only 50 examples")
  raises(function() it:load_state({ epoch = 2, index = 0 }) end, "runs 1 epoch")
end

function tests.batches_pad_to_their_longest_example()
  local ds = mt.data.from({ { input_ids = { 5, 6, 7 }, labels = { 5, 6, 7 }, y = 1 }, { input_ids = { 8 }, labels = { 8 }, y = 0 } })
  local b = ds:batch{ size = 2, pad_id = 0 }:iter():next()
  assert(mt.json.encode(b.input_ids:tolist()) == "[[5,6,7],[8,0,0]]")
  assert(mt.json.encode(b.labels:tolist()) == "[[5,6,7],[8,-100,-100]]")
  assert(mt.json.encode(b.attention_mask:tolist()) == "[[1,1,1],[1,0,0]]")
  assert(mt.json.encode(b.y:tolist()) == "[1,0]")
  local left = ds:batch{ size = 2, padding_side = "left", pad_to_multiple_of = 4 }:iter():next()
  assert(mt.json.encode(left.input_ids:tolist()) == "[[0,5,6,7],[0,0,0,8]]")
  -- Buckets: examples of similar length share a batch.
  local lengths = {}
  for i = 1, 40 do lengths[i] = { input_ids = (function() local t = {} for k = 1, (i * 37) % 23 + 1 do t[k] = k end return t end)() } end
  local bucketed = mt.data.from(lengths):batch{ size = 4, bucket = 10, seed = 1 }
  local waste, plain_waste = 0, 0
  for bb in bucketed:iter() do waste = waste + (1 - bb.attention_mask:float():mean():item()) end
  for bb in mt.data.from(lengths):batch(4):iter() do plain_waste = plain_waste + (1 - bb.attention_mask:float():mean():item()) end
  assert(waste < plain_waste / 3, waste .. " vs " .. plain_waste)
  raises(function() mt.data.from({ { a = 1 }, { b = 2 } }):batch(2):iter():next() end, "example 2 of the batch has no field 'a'")
  raises(function() ds:batch{ size = 0 } end, "size must be between 1 and")
end

function tests.templates_and_response_only_labels()
  if not have_data then return end
  local tok = assert(mt.tokenizer.load(data_dir .. "/models/stories260K"))
  local ds = mt.data.from({ { instruction = "Say hi.", input = "", output = "Hi there." }, { instruction = "Add.", input = "1 and 2", output = "3" } })
  local t = ds:template("alpaca"):head(2)
  assert(t[1].prompt:find("### Instruction:\nSay hi.\n\n### Response:\n", 1, true) and t[1].response == "Hi there.")
  assert(t[2].prompt:find("### Input:\n1 and 2", 1, true))
  local rows = ds:template("alpaca"):tokenize(tok):head(2)
  local whole = tok:encode(t[1].prompt .. t[1].response)
  assert(#rows[1].input_ids == #whole + 1 and rows[1].input_ids[#rows[1].input_ids] == tok:eos_id())
  local trained = {}
  for i, l in ipairs(rows[1].labels) do
    if l ~= -100 then trained[#trained + 1] = rows[1].input_ids[i]; assert(l == rows[1].input_ids[i]) end
  end
  assert(tok:decode(trained):find("Hi there.", 1, true), tok:decode(trained))
  assert(not tok:decode(trained):find("Instruction"))
  local custom = mt.data.from({ { q = "2+2?", a = "4" } }):template{ prompt = "Q: {q} {{x}}\nA: ", response = "{a}" }:head(1)[1]
  assert(custom.prompt == "Q: 2+2? {x}\nA: " and custom.response == "4")
  local short = ds:template("alpaca"):tokenize(tok, { max_length = 8 }):head(1)[1]
  assert(#short.input_ids == 8)
  raises(function() mt.data.from({ { q = 1 } }):template{ prompt = "{missing}" }:head(1) end, "example 1 has no field 'missing'")
  raises(function() mt.data.from({ { z = "x" } }):tokenize(tok):head(1) end, "has none of the fields tokenize reads")
end

-- Chats are rendered by the tokenizer's template; only the assistant's turns are trained.
function tests.chat_examples_train_on_assistant_turns()
  if not have_data then return end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local src = assert(io.open(data_dir .. "/models/stories260K/tokenizer.json", "rb"))
  local dst = assert(io.open(dir .. "/tokenizer.json", "wb"))
  dst:write(src:read("a")); src:close(); dst:close()
  local config = assert(io.open(dir .. "/tokenizer_config.json", "w"))
  config:write(mt.json.encode({
    bos_token = "<s>", eos_token = "</s>",
    chat_template = "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
  }))
  config:close()
  local tok = assert(mt.tokenizer.load(dir))
  local chat = mt.data.from({ { messages = {
    { role = "user", content = "Hi" }, { role = "assistant", content = "Hello there" },
    { role = "user", content = "Bye" }, { role = "assistant", content = "See you" },
  } } })
  local row = chat:tokenize(tok):head(1)[1]
  local text = tok:apply_chat_template(chat:head(1)[1].messages)
  assert(mt.json.encode(row.input_ids) == mt.json.encode(tok:encode(text, { add_special_tokens = false })))
  local trained = {}
  for i, l in ipairs(row.labels) do if l ~= -100 then trained[#trained + 1] = l end end
  assert(tok:decode(trained) == " Hello there</s>\n See you</s>\n" or tok:decode(trained):find("Hello there", 1, true), tok:decode(trained))
  assert(not tok:decode(trained):find("Bye"))
  local all_tokens = chat:tokenize(tok, { response_only = false }):head(1)[1]
  assert(mt.json.encode(all_tokens.labels) == mt.json.encode(all_tokens.input_ids))
  os.execute("rm -r " .. dir)
end

-- A packed batch's loss equals the loss of the same documents unpacked, padded (1e-5).
function tests.packed_loss_equals_unpacked_loss()
  if not have_data then return end
  local tok = assert(mt.tokenizer.load(data_dir .. "/models/stories260K"))
  local model = assert(mt.models.load(data_dir .. "/models/stories260K"))
  local docs = mt.data.read(data_dir .. "/instruct/alpaca_en_demo.json"):take(12):template("alpaca")
    :tokenize(tok, { max_length = 160, response_only = false })
  local unpacked = docs:batch{ size = 12, pad_id = tok:pad_id() or 0 }:iter():next()
  local packed_rows = docs:pack{ length = 512 }
  local n = 0
  for _ in packed_rows:iter() do n = n + 1 end
  assert(n < 12, "documents share rows")
  local packed = packed_rows:batch(n):iter():next()
  mt.no_grad(function()
    local a = model{ input_ids = unpacked.input_ids, attention_mask = unpacked.attention_mask, labels = unpacked.labels }.loss:item()
    local b = model{ input_ids = packed.input_ids, position_ids = packed.position_ids, labels = packed.labels }.loss:item()
    assert(math.abs(a - b) < 1e-5, a .. " vs " .. b)
    -- Without document boundaries (positions running on) the documents would see each other.
    local n_pos = packed.position_ids:shape()[2]
    local running = mt.tensor.arange(n_pos):unsqueeze(0):expand{ n, n_pos }
    local c = model{ input_ids = packed.input_ids, position_ids = running, labels = packed.labels }.loss:item()
    assert(math.abs(a - c) > 1e-3, "the mask matters")
  end)
end

function tests.cleaning_steps_report_what_they_did()
  local ds = mt.data.from({
    { text = "  Caf\u{e9}   au\tlait \n\n\n\nok " },
    { text = "ﬁne" },
    { text = "plain" },
  })
  local normalized = ds:normalize{ form = "NFKC" }
  local rows = all(normalized)
  assert(rows[1].text == "Café au lait\n\nok" and rows[2].text == "fine" and rows[3].text == "plain", rows[1].text)
  local r = normalized:report()
  assert(r.examples == 3 and r.changed == 2)
  local decomposed = all(mt.data.from({ { text = "e\u{301}" } }):normalize())
  assert(decomposed[1].text == "\u{e9}", "NFC composes")

  local lengths = mt.data.from({ { text = "a b" }, { text = "a b c d e" }, { text = string.rep("x ", 30) } })
    :length_filter{ min = 3, max = 10, unit = "words" }
  assert(#all(lengths) == 1)
  local lr = lengths:report()
  assert(lr.too_short == 1 and lr.too_long == 1)

  local pii = mt.data.from({
    { text = "write to ann@example.org or +44 20 7946 0958" },
    { text = "card 4111-1111-1111-1111, iban DE89 3704 0044 0532 0130 00, host 10.0.0.255" },
    { text = "order 4111-1111-1111-1112 shipped in 2019-2020" },
  }):redact()
  local red = all(pii)
  assert(red[1].text == "write to [EMAIL] or [PHONE]", red[1].text)
  assert(red[2].text == "card [CARD], iban [IBAN], host [IP]", red[2].text)
  assert(red[3].text == "order 4111-1111-1111-1112 shipped in 2019-2020", red[3].text)
  local pr = pii:report()
  assert(pr.email == 1 and pr.phone == 1 and pr.card == 1 and pr.iban == 1 and pr.ip == 1 and pr.changed == 2)

  local dup = mt.data.from({ { text = "a", id = 1 }, { text = "b", id = 2 }, { text = "a", id = 3 } })
  assert(#all(dup:dedup{ field = "text" }) == 2 and #all(dup:dedup()) == 3)
  local base = "the committee met on tuesday to discuss the new budget for schools and roads in the county"
  local near = mt.data.from({ { text = base }, { text = base:gsub("tuesday", "wednesday") }, { text = "a completely different sentence about football and the weather this weekend" } })
    :dedup{ field = "text", near = true, threshold = 0.5 }
  local kept = all(near)
  assert(#kept == 2 and kept[2].text:find("football"))
  assert(near:report().duplicates == 1)
  raises(function() dup:dedup{ threshold = 0.5 } end, "add near = true")
  raises(function() mt.data.from({ { x = 1 } }):redact():head(1) end, "example 1 has no field 'text'")
end

function tests.split_is_disjoint_complete_and_stratified()
  local items = {}
  for i = 1, 100 do items[i] = { id = i, label = (i <= 80) and "neg" or "pos" } end
  local parts = mt.data.from(items):split{ train = 0.8, val = 0.1, test = 0.1, seed = 3, stratify = "label" }
  assert(#parts.train == 80 and #parts.val == 10 and #parts.test == 10)
  local seen = {}
  for _, name in ipairs({ "train", "val", "test" }) do
    local pos = 0
    for ex in parts[name]:iter() do
      assert(not seen[ex.id]); seen[ex.id] = true
      if ex.label == "pos" then pos = pos + 1 end
    end
    assert(pos == #parts[name] // 5, name .. " keeps the 1:4 label ratio")
  end
  local again = mt.data.from(items):split{ train = 0.8, val = 0.1, test = 0.1, seed = 3, stratify = "label" }
  assert(again.test:head(1)[1].id == parts.test:head(1)[1].id)
  raises(function() mt.data.from(items):split{ train = 0.8, test = 0.3 } end, "add up to 1.1")
end

return tests
