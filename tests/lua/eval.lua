-- mt.eval on stories260K: classification by label log-likelihood (zero- and k-shot), generation
-- scored with BLEU/ROUGE, perplexity, the error-analysis file, and misuse named clearly. (The
-- numbers are compared with transformers in tests/parity/data.lua.)
local mt = require "moontune"
local raises = require("support.expect").raises
local data_dir = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
if not io.open(data_dir .. "/models/stories260K/config.json") then
  print("SKIPPED eval.lua: no shared test data at " .. data_dir)
  return
end

local model = assert(mt.models.load(data_dir .. "/models/stories260K"))
local tok = assert(mt.tokenizer.load(data_dir .. "/models/stories260K"))
local reviews = {
  { text = "a wonderful, happy film", label = 1 }, { text = "a sad and boring mess", label = 0 },
  { text = "great fun for everyone", label = 1 }, { text = "dull and tiresome", label = 0 },
  { text = "lovely", label = "good" },
}

local tests = {}

function tests.classification_scores_every_label()
  local r = mt.eval.classify(model, tok, reviews, { labels = { "bad", "good" }, prompt = "Review: {text}\nSentiment:" })
  assert(#r.predictions == 5 and r.references[5] == "good" and r.references[2] == "bad")
  assert(r.accuracy >= 0 and r.accuracy <= 1 and r.confusion.labels[2] == "good")
  for i, rec in ipairs(r.records) do
    assert(rec.correct == (rec.prediction == rec.reference) and (rec.score < 0) == not rec.correct, "record " .. i)
  end
  local few = mt.eval.classify(model, tok, reviews, { labels = { "bad", "good" }, prompt = "Review: {text}\nSentiment:", shots = 2, train = reviews, seed = 1 })
  assert(few.shots == 2 and #few.predictions == 5)
  assert(few.records[1].score ~= r.records[1].score, "the shots are in the prompt")
  local path = os.tmpname()
  assert(mt.eval.write_errors(path, r.records, { worst = 2 }))
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = mt.json.decode(line) end
  assert(#lines == 2 and lines[1].score <= lines[2].score and lines[1].input:find("Review:"))
  os.remove(path)
end

function tests.generation_and_perplexity()
  local g = mt.eval.generate(model, tok, { { text = "Once upon a time", reference = "there was a little girl named Lily" } }, { max_new_tokens = 12 })
  assert(g.predictions[1]:find("little girl", 1, true), g.predictions[1])
  assert(g.bleu > 20 and g.rouge1 > 0.5 and g.records[1].score > 0)
  local p = mt.eval.perplexity(model, tok, "Once upon a time, there was a little girl named Lily.", { max_length = 8, stride = 4 })
  assert(p.perplexity > 1 and p.perplexity < 50 and p.tokens > 5)
end

function tests.misuse_is_named()
  raises(function() mt.eval.classify(model, tok, reviews, { labels = { "only" } }) end, "labels must list at least two")
  raises(function() mt.eval.classify(model, tok, reviews, { labels = { "bad", "good" }, prompt = "{nope}" }) end, "names 'nope', which the example lacks")
  raises(function() mt.eval.classify(model, tok, reviews, { labels = { "bad", "good" }, shots = 2 }) end, "shots > 0 needs train")
  raises(function() mt.eval.classify(model, tok, { { text = "x", label = 7 } }, { labels = { "bad", "good" } }) end, "neither a 0-based index")
  raises(function() mt.eval.write_errors(os.tmpname(), { 1, "a", {} }) end, "record 1 must be a table")
  raises(function() mt.eval.classify(model, tok, {}, { labels = { "a", "b" } }) end, "no examples")
  raises(function() mt.eval.generate(model, tok, reviews, { metrics = { "meteor" } }) end, "unknown metric 'meteor'")
  raises(function() mt.eval.generate(model, tok, reviews, { max_new_tokens = 2 }) end, "has no string field 'reference'")
  raises(function() mt.eval.perplexity(model, tok, "text", { strid = 1 }) end, "unknown option 'strid'")
end

return tests
