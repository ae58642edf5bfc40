-- Metrics parity (references from gen_metrics.py): BLEU and chrF equal sacrebleu 2.6's on its own
-- test vectors and on Multi30k (English and German) with perturbed hypotheses, every tokeniser,
-- smoothing method, case setting and one or two reference streams, corpus and sentence level
-- (1e-6); ROUGE-1/2/3/L/Lsum equal rouge-score's, stemmed and not, on its test data, CNN and
-- XSum summaries and 200 generated pairs (1e-9); precision, recall, F-β, accuracy and confusion matrices equal scikit-learn 1.9's on
-- random labels (1e-12). The streaming form gives the corpus figures from batches.
local mt = require "moontune"
local M = mt.metrics

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local ref = assert(mt.json.read(fixtures .. "/metrics.json"))

local tests = {}

local function near(what, got, want, tol)
  assert(type(got) == "number", what .. ": got " .. tostring(got))
  assert(math.abs(got - want) <= tol, string.format("%s: %.12g here, %.12g in the reference", what, got, want))
  return math.abs(got - want)
end

-- sacrebleu's options as moontune takes them (the same names).
local function options(o)
  local out = {}
  for k, v in pairs(o) do out[k] = v end
  return next(out) and out or nil
end

function tests.corpus_bleu_equals_sacrebleu()
  local worst = 0
  for i, c in ipairs(ref.bleu) do
    local text = ref.texts[c.text + 1]
    local b = M.bleu(text.hyps, text.refs, options(c.options))
    local what = string.format("BLEU case %d (%s)", i, mt.json.encode(c.options))
    worst = math.max(worst, near(what, b.score, c.score, 1e-6))
    near(what .. " bp", b.bp, c.bp, 1e-12)
    assert(b.sys_len == c.sys_len and b.ref_len == c.ref_len, what .. ": lengths")
    for n = 1, 4 do
      near(what .. " counts", b.counts[n], c.counts[n], 1e-9)
      near(what .. " totals", b.totals[n], c.totals[n], 1e-9)
    end
  end
  -- The published answers of sacrebleu's tests.
  local v = ref.vectors.corpus_bleu
  near("sacrebleu test vector", M.bleu(v.hyps, v.refs).score, v.expected["default(13a)"], 1e-6)
  near("sacrebleu test vector, intl", M.bleu(v.hyps, v.refs, { tokenize = "intl" }).score, v.expected["tokenize=intl"], 1e-6)
  print(string.format("%d corpus BLEU cases equal sacrebleu's (largest difference %.2e)", #ref.bleu, worst))
end

function tests.corpus_chrf_equals_sacrebleu()
  local worst = 0
  for i, c in ipairs(ref.chrf) do
    local text = ref.texts[c.text + 1]
    worst = math.max(worst, near(string.format("chrF case %d (%s)", i, mt.json.encode(c.options)), M.chrf(text.hyps, text.refs, options(c.options)).score, c.score, 1e-6))
  end
  print(string.format("%d corpus chrF cases equal sacrebleu's (largest difference %.2e)", #ref.chrf, worst))
end

function tests.sentence_scores_equal_sacrebleu()
  local worst = 0
  for i, c in ipairs(ref.sentences) do
    local what = string.format("sentence %d (%q)", i, c.hyp)
    worst = math.max(worst, near(what .. " BLEU", M.sentence_bleu(c.hyp, c.refs).score, c.bleu, 1e-6))
    worst = math.max(worst, near(what .. " BLEU floor", M.sentence_bleu(c.hyp, { c.refs[1] }, { smooth_method = "floor" }).score, c.bleu_floor, 1e-6))
    worst = math.max(worst, near(what .. " chrF", M.sentence_chrf(c.hyp, c.refs).score, c.chrf, 1e-6))
    worst = math.max(worst, near(what .. " chrF++", M.sentence_chrf(c.hyp, { c.refs[1] }, { word_order = 2 }).score, c.chrf_pp, 1e-6))
  end
  print(string.format("%d sentences: BLEU and chrF equal sacrebleu's (largest difference %.2e)", #ref.sentences, worst))
end

function tests.rouge_equals_rouge_score()
  local worst, n = 0, 0
  local types = { "rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum" }
  for i, c in ipairs(ref.rouge) do
    local got = M.rouge({ c.pred }, { c.refs }, { rouge_types = types, use_stemmer = c.stem })
    for _, t in ipairs(types) do
      local want = c.scores[t]
      local what = string.format("ROUGE case %d (%s, stemmed %s)", i, t, tostring(c.stem))
      worst = math.max(worst, near(what .. " precision", got[t].precision, want[1], 1e-9))
      worst = math.max(worst, near(what .. " recall", got[t].recall, want[2], 1e-9))
      worst = math.max(worst, near(what .. " F", got[t].fmeasure, want[3], 1e-9))
      n = n + 1
    end
  end
  -- The values rouge-score's tests hold (checked there against ROUGE-1.5.5), to their 5 digits.
  local files = ref.rouge_files
  for _, e in ipairs(ref.rouge_expected.rouge1_no_stemming) do
    local got = M.rouge({ files[1][e.line + 1] }, { files[2][e.line + 1] }, { rouge_types = { "rouge1" } }).rouge1
    near("ROUGE-1.5.5 recall", got.recall, e.recall, 5e-6)
    near("ROUGE-1.5.5 precision", got.precision, e.precision, 5e-6)
    near("ROUGE-1.5.5 F", got.fmeasure, e.fmeasure, 5e-6)
  end
  print(string.format("%d ROUGE scores equal rouge-score's (largest difference %.2e)", n, worst))
end

function tests.classification_equals_scikit_learn()
  local checked = 0
  for i, c in ipairs(ref.classification) do
    near("accuracy " .. i, M.accuracy(c.preds, c.refs), c.accuracy, 1e-12)
    for _, r in ipairs(c.results) do
      local o = { average = r.average }
      local p, rec = M.precision(c.preds, c.refs, o), M.recall(c.preds, c.refs, o)
      o.beta = r.beta
      local f = M.f1(c.preds, c.refs, o)
      local what = string.format("case %d, average %s, beta %g", i, r.average, r.beta)
      if r.average == "none" then
        -- Per class, keyed by label, in sorted label order in the reference.
        local labels = {}
        for label in pairs(p) do labels[#labels + 1] = label end
        table.sort(labels)
        assert(#labels == #r.precision, what .. ": classes")
        for k, label in ipairs(labels) do
          near(what .. " precision of " .. label, p[label], r.precision[k], 1e-12)
          near(what .. " recall of " .. label, rec[label], r.recall[k], 1e-12)
          near(what .. " F of " .. label, f[label], r.f[k], 1e-12)
        end
      else
        near(what .. " precision", p, r.precision[1], 1e-12)
        near(what .. " recall", rec, r.recall[1], 1e-12)
        near(what .. " F", f, r.f[1], 1e-12)
      end
      checked = checked + 1
    end
    near("macro F1 over a label subset " .. i, M.f1(c.preds, c.refs, { average = "macro", labels = c.subset.labels }), c.subset.f, 1e-12)
    local cm = M.confusion_matrix(c.preds, c.refs)
    assert(mt.json.encode(cm.matrix) == mt.json.encode(c.confusion), "confusion matrix " .. i)
    local sub = M.confusion_matrix(c.preds, c.refs, { labels = c.subset.labels })
    assert(mt.json.encode(sub.matrix) == mt.json.encode(c.confusion_subset), "confusion matrix over a subset " .. i)
  end
  print(string.format("%d precision/recall/F settings equal scikit-learn's", checked))
end

function tests.streams_add_batches()
  local text = ref.texts[2]
  local m = M.stream("bleu", { tokenize = "intl" })
  local chrf = M.stream("chrf", { word_order = 2 })
  local n = #text.hyps
  for start = 1, n, 37 do
    local hyps, streams = {}, {}
    for k = 1, #text.refs do streams[k] = {} end
    for i = start, math.min(n, start + 36) do
      hyps[#hyps + 1] = text.hyps[i]
      for k = 1, #text.refs do streams[k][#streams[k] + 1] = text.refs[k][i] end
    end
    m:add(hyps, streams)
    chrf:add(hyps, streams)
  end
  assert(m:count() == n)
  near("streamed BLEU", m:compute().score, M.bleu(text.hyps, text.refs, { tokenize = "intl" }).score, 1e-9)
  near("streamed chrF++", chrf:compute().score, M.chrf(text.hyps, text.refs, { word_order = 2 }).score, 1e-9)
  local c = ref.classification[5]
  local f1 = M.stream("f1", { average = "macro" })
  f1:add({ table.unpack(c.preds, 1, 20) }, { table.unpack(c.refs, 1, 20) })
  f1:add({ table.unpack(c.preds, 21) }, { table.unpack(c.refs, 21) })
  near("streamed macro F1", f1:compute(), M.f1(c.preds, c.refs, { average = "macro" }), 1e-15)
  f1:reset()
  assert(f1:count() == 0)
end

return tests
