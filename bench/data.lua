-- moontune's side of bench/data.py: (a) Alpaca's template, tokenisation with response-only
-- labels and packing into 2,048-token rows over alpaca_en_demo.json, `passes` times; (b)
-- near-duplicate removal (MinHash, 128 permutations, word 3-grams, Jaccard 0.8) over AG News
-- (test and dev). Prints one JSON line with examples/s of each and what they produced.
local mt = require "moontune"
local shared = assert(os.getenv("MOONTUNE_TEST_DATA"), "MOONTUNE_TEST_DATA")
local passes = tonumber(os.getenv("BENCH_PASSES") or "10")

local tok = assert(mt.tokenizer.load(shared .. "/models/stories260K"))
local alpaca = assert(mt.data.read(shared .. "/instruct/alpaca_en_demo.json"))
assert(#alpaca == 999)  -- read (and held) before timing, as the Python side does
local rows, examples = 0, 0
local t0 = mt.clock()
for _ = 1, passes do
  local packed = alpaca:template("alpaca"):tokenize(tok, { max_length = 1024 }):pack{ length = 2048, pad_id = 0 }
  for _ in packed:iter() do rows = rows + 1 end
  examples = examples + 999
end
local format_s = mt.clock() - t0

local function agnews(name) return assert(mt.data.read(shared .. "/classification/agnews/" .. name, { columns = { "text", "label" } })) end
local news = mt.data.concat({ agnews("test.tsv"), agnews("dev.tsv") })
local n = #news
local t1 = mt.clock()
local kept = 0
for _ in news:dedup{ field = "text", near = true, threshold = 0.8, num_perm = 128, shingle = 3 }:iter() do kept = kept + 1 end
local dedup_s = mt.clock() - t1

print(mt.json.encode({
  format_examples_per_s = examples / format_s, rows = rows // passes,
  dedup_examples_per_s = n / dedup_s, duplicates = n - kept, examples = n,
}))
