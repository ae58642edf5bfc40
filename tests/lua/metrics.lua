-- mt.metrics: the results' shape and the clear errors of misuse (the numbers are checked against
-- sacrebleu and scikit-learn in tests/parity/metrics.lua).
local mt = require "moontune"
local M = mt.metrics
local raises = require("support.expect").raises

local tests = {}

function tests.bleu_reports_its_statistics()
  local b = M.bleu({ "the cat sat on the mat" }, { { "the cat sat on the mat" } })
  assert(math.abs(b.score - 100) < 1e-9 and b.bp == 1 and b.sys_len == 6 and b.ref_len == 6)
  assert(#b.counts == 4 and #b.totals == 4 and #b.precisions == 4)
  local s = M.sentence_bleu("the cat", { "the cat sat on the mat" })
  assert(s.score > 0 and s.bp < 1, "effective order and the brevity penalty")
  assert(M.bleu({ "" }, { { "a b c" } }).score == 0)
  assert(M.chrf({ "abc" }, { { "abc" } }).name == "chrF2")
  assert(M.chrf({ "abc" }, { { "abc" } }, { word_order = 2 }).name == "chrF2++")
end

function tests.classification_results()
  assert(M.accuracy({ 1, 0, 1 }, { 1, 1, 1 }) == 2 / 3)
  local per = M.precision({ "a", "b", "a" }, { "a", "b", "b" }, { average = "none" })
  assert(per.a == 0.5 and per.b == 1)
  local cm = M.confusion_matrix({ 1, 0, 1, 1 }, { 1, 0, 0, 1 }, { labels = { "neg", "pos" } })
  assert(mt.json.encode(cm) == '{"labels":["neg","pos"],"matrix":[[1,1],[0,2]]}', mt.json.encode(cm))
  assert(M.exact_match({ "Paris", "rome" }, { "Paris", "Rome" }) == 0.5)
end

-- The data issue's contract example, verbatim, then its numbers.
function tests.contract_example()
  local mt = require "moontune"
  local b = mt.metrics.bleu({ "The dog bit the man.", "It wasn't surprising.", "The man had just bitten him." },
    { { "The dog bit the man.", "It was not unexpected.", "The man bit him first." },
      { "The dog had bit the man.", "No one was surprised.", "The man had bitten the dog." } })
  print(b.score)                                                            -- 48.530827…
  local r = mt.metrics.rouge({ "the cat sat on the mat" }, { "the cat lay on the mat" })
  print(r.rouge1.fmeasure, r.rougeL.fmeasure)
  local f = mt.metrics.f1({ 1, 0, 1, 1 }, { 1, 0, 0, 1 }, { average = "macro" })
  local cm = mt.metrics.confusion_matrix({ 1, 0, 1, 1 }, { 1, 0, 0, 1 }, { labels = { "neg", "pos" } })
  assert(math.abs(b.score - 48.530827) < 1e-6)
  assert(math.abs(r.rouge1.fmeasure - 5 / 6) < 1e-12 and math.abs(r.rougeL.fmeasure - 5 / 6) < 1e-12)
  assert(math.abs(f - 0.7333333333333334) < 1e-12)
  assert(cm.labels[1] == "neg" and cm.matrix[2][2] == 2)
end

function tests.perplexity_weights_batches_by_their_tokens()
  local want = math.exp((1.0 * 10 + 2.0 * 30) / 40)
  assert(math.abs(M.perplexity({ 1.0, mt.tensor.tensor(2.0) }, { 10, 30 }) - want) < 1e-9)
  local m = M.stream("perplexity")
  m:add(1.0, 10)
  m:add(mt.tensor.tensor({ 2.0 }), 30)
  assert(m:count() == 40 and math.abs(m:compute() - want) < 1e-9)
  raises(function() M.perplexity({ 1 }, { 0 }) end, "no tokens added")
  raises(function() M.perplexity({ 0 / 0 }, { 3 }) end, "a loss must be a finite non-negative number")
  raises(function() m:add("x", 3) end, "the loss must be a number or a one-element tensor")
end

function tests.streams_keep_what_was_added_when_the_caller_reuses_its_tables()
  local m, f = M.stream("bleu"), M.stream("accuracy")
  local hyps, refs, preds, labels = { "the cat sat down" }, { { "the cat sat down" } }, { 1 }, { 1 }
  m:add(hyps, refs)
  f:add(preds, labels)
  hyps[1], refs[1][1], preds[1] = "a dog ran away", "a dog ran away", 0
  m:add(hyps, refs)
  f:add(preds, labels)
  assert(math.abs(m:compute().score - 100) < 1e-9 and m:count() == 2)
  assert(f:compute() == 0.5)
  m:reset()
  assert(m:count() == 0)
  assert(m:compute().score == 0, "nothing added: BLEU 0, as sacrebleu")
  raises(function() M.stream("f1", { average = "samples" }) end, "average 'samples' is not one of")
end

function tests.misuse_is_a_clear_error()
  raises(function() M.bleu({ "a" }, { "a" }) end, "wrap a single stream as { refs }")
  raises(function() M.bleu({ "a", "b" }, { { "a" } }) end, "reference stream 1 has 1 lines for 2 hypotheses")
  raises(function() M.bleu({ "a" }, { { "a" } }, { tokenize = "moses" }) end, "tokenize 'moses' is not one of 13a, intl, char, none")
  raises(function() M.bleu({ "a" }, { { "a" } }, { smooth = "exp" }) end, "unknown option 'smooth'")
  raises(function() M.bleu({ 1 }, { { "a" } }) end, "hypotheses[1] must be a string")
  raises(function() M.chrf({ "a" }, { { "a" } }, { char_order = 0 }) end, "char_order and word_order cannot both be 0")
  raises(function() M.f1({ 0, 1, 2 }, { 0, 1, 1 }) end, "average 'binary' needs two classes")
  raises(function() M.f1({ 0, 2 }, { 0, 2 }) end, "pos_label 1 is not one of the labels (0, 2)")
  raises(function() M.f1({ 0, 1 }, { 0, 1 }, { average = "samples" }) end, "average 'samples' is not one of")
  raises(function() M.accuracy({ 0, 1 }, { 0 }) end, "2 predictions for 1 references")
  raises(function() M.accuracy({ 0, "a" }, { 0, 1 }) end, "labels mix numbers and strings")
  raises(function() M.accuracy({}, {}) end, "no predictions")
  raises(function() M.accuracy({ 0.5 }, { 1 }) end, "must be an integer or a string")
  raises(function() M.precision({ 0, 1 }, { 0, 1 }, { beta = 2 }) end, "beta is an option of f1")
  raises(function() M.stream("bertscore") end, "unknown metric 'bertscore'")
  raises(function() M.rouge({ "a" }, { "a" }, { rouge_types = { "rougeW" } }) end, "rouge type 'rougeW' is not one of")
  raises(function() M.rouge({ "a", "b" }, { "a" }) end, "2 predictions for 1 references")
  raises(function() M.rouge({ "a" }, { 3 }) end, "references[1] must be a string or a list of strings")
  local s = M.stream("accuracy")
  raises(function() s:add({ 1, 2 }, { 1 }) end, "2 predictions for 1 references")
end

return tests
