"""References for tests/parity/metrics.lua: BLEU and chrF by sacrebleu 2.6, ROUGE by rouge-score
0.1.2, classification metrics by scikit-learn 1.9, written to <out>/metrics.json.

Text: sacrebleu's own test vectors (../shared/data/reference/bleu), and Multi30k's 2016 test set
(English and German, ../shared/data/translation/multi30k) as references with hypotheses made by
perturbing them systematically (words dropped, swapped, replaced, case changed, punctuation
removed or added, sentences truncated or repeated), scored with every tokeniser, smoothing
method, case setting and reference count; the first 60 segments also sentence by sentence.
Labels: random integer and string labels, binary and multi-class, including classes that are
never predicted (zero division), every average, β 0.5 and 2, and label subsets.
"""
import json
import os
import random
import sys
import warnings

import numpy as np
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sklearn import metrics as sk

out = sys.argv[1]
warnings.filterwarnings("ignore", message="A single label was found")
data = os.environ.get("MOONTUNE_TEST_DATA", os.path.join(os.path.dirname(__file__), "../../../shared/data"))
rng = random.Random(0)


def lines(name):
    with open(os.path.join(data, "translation/multi30k", name), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def perturb(sentence, how):
    words = sentence.split()
    if how == "drop" and len(words) > 2:
        del words[rng.randrange(len(words))]
    elif how == "swap" and len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif how == "replace":
        words[rng.randrange(len(words))] = rng.choice(["thing", "Haus", "über", "n'est", "3.5", "co-op", "«quote»"])
    elif how == "case":
        return sentence.upper() if rng.random() < 0.5 else sentence.lower()
    elif how == "punct":
        return sentence.replace(".", "").replace(",", "") if rng.random() < 0.5 else sentence + " !?"
    elif how == "truncate":
        words = words[: max(1, len(words) // 2)]
    elif how == "repeat":
        words = words + words[:3]
    return " ".join(words)


PERTURBATIONS = ["drop", "swap", "replace", "case", "punct", "truncate", "repeat"]

bleu_cases, chrf_cases, sentence_cases, texts = [], [], [], []
vectors = json.load(open(os.path.join(data, "reference/bleu/sacrebleu_test_vectors.json")))
corpus = vectors["corpus_bleu"]
texts.append(dict(hyps=corpus["hyps"], refs=corpus["refs"]))
for options in [{}, {"tokenize": "none"}, {"tokenize": "intl"}, {"smooth_method": "none"}]:
    score = BLEU(**options).corpus_score(corpus["hyps"], corpus["refs"])
    bleu_cases.append(dict(text=0, options=options, score=score.score,
                           counts=score.counts, totals=score.totals, bp=score.bp, sys_len=score.sys_len, ref_len=score.ref_len))

for language in ["en", "de"]:
    refs = lines(f"test_2016_flickr.{language}")[:400]
    second = [perturb(r, "drop") for r in refs]
    for how in PERTURBATIONS:
        hyps = [perturb(r, how) if rng.random() < 0.7 else perturb(perturb(r, how), rng.choice(PERTURBATIONS)) for r in refs]
        for streams in ([refs], [refs, second]):
            texts.append(dict(hyps=hyps, refs=streams))
            text = len(texts) - 1
            for options in [{}, {"tokenize": "intl"}, {"tokenize": "char"}, {"tokenize": "none"}, {"lowercase": True},
                            {"smooth_method": "floor"}, {"smooth_method": "add-k", "smooth_value": 2}, {"smooth_method": "none"},
                            {"effective_order": True}]:
                score = BLEU(**options).corpus_score(hyps, streams)
                options = {("use_effective_order" if k == "effective_order" else k): v for k, v in options.items()}
                bleu_cases.append(dict(text=text, options=options, score=score.score, counts=score.counts,
                                       totals=score.totals, bp=score.bp, sys_len=score.sys_len, ref_len=score.ref_len))
            for options in [{}, {"word_order": 2}, {"word_order": 2, "lowercase": True}, {"eps_smoothing": True},
                            {"whitespace": True}, {"char_order": 4, "beta": 1}]:
                chrf_cases.append(dict(text=text, options=options, score=CHRF(**options).corpus_score(hyps, streams).score))
        for h, r, r2 in list(zip(hyps, refs, second))[:60]:
            sentence_cases.append(dict(hyp=h, refs=[r, r2], bleu=sacrebleu.sentence_bleu(h, [r, r2]).score,
                                       bleu_floor=sacrebleu.sentence_bleu(h, [r], smooth_method="floor").score,
                                       chrf=sacrebleu.sentence_chrf(h, [r, r2]).score,
                                       chrf_pp=sacrebleu.sentence_chrf(h, [r], word_order=2).score))

# Edge segments: empty and whitespace-only hypotheses, one-word ones, and control whitespace.
edges = ["", " ", "a", "a .", "word\x1cword", "tab\tseparated  words", "ends with space "]
for h in edges:
    for r in edges[2:]:
        sentence_cases.append(dict(hyp=h, refs=[r], bleu=sacrebleu.sentence_bleu(h, [r]).score,
                                   bleu_floor=sacrebleu.sentence_bleu(h, [r], smooth_method="floor").score,
                                   chrf=sacrebleu.sentence_chrf(h, [r]).score, chrf_pp=sacrebleu.sentence_chrf(h, [r], word_order=2).score))

# ROUGE: rouge-score's own test data, pltrdy's CNN-style pairs, XSum summaries against the
# first sentences of their documents (newline-separated, for rougeLsum) and 200 generated pairs
# (perturbed Multi30k sentences), stemmed and not, one or two references.
from rouge_score import rouge_scorer

ROUGE_TYPES = ["rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum"]
rouge_pairs = []
ref_dir = os.path.join(data, "reference/rouge")
with open(os.path.join(ref_dir, "rouge_score_testdata_prediction.txt"), encoding="utf-8") as f:
    rouge_preds = [line.rstrip("\n") for line in f]
with open(os.path.join(ref_dir, "rouge_score_testdata_target.txt"), encoding="utf-8") as f:
    rouge_targets = [line.rstrip("\n") for line in f]
rouge_pairs += [(p, [t]) for p, t in zip(rouge_preds, rouge_targets)]
rouge_pairs += [(d["hyp"], [d["ref"]]) for d in json.load(open(os.path.join(ref_dir, "pltrdy_rouge_data.json")))]
for line in open(os.path.join(data, "summarization/xsum_sample.jsonl"), encoding="utf-8"):
    d = json.loads(line)
    lead = "\n".join(d["document"].split("\n")[:3])
    rouge_pairs.append((lead, [d["summary"]]))
    rouge_pairs.append((d["summary"], [lead, perturb(d["summary"], "drop")]))
english = lines("test_2016_flickr.en")
for i in range(200):
    r = english[i]
    h = perturb(perturb(r, rng.choice(PERTURBATIONS)), rng.choice(PERTURBATIONS))
    rouge_pairs.append((h, [r] if i % 3 else [r, english[i + 1]]))
rouge_cases = []
for stem in [False, True]:
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=stem)
    for pred, refs in rouge_pairs:
        scores = scorer.score_multi(refs, pred)
        rouge_cases.append(dict(pred=pred, refs=refs, stem=stem,
                                scores={k: [v.precision, v.recall, v.fmeasure] for k, v in scores.items()}))
expected_rouge = json.load(open(os.path.join(ref_dir, "expected.json")))

class_cases = []
nprng = np.random.default_rng(0)
for kind, values in [("binary", [0, 1]), ("multi", [0, 1, 2, 3, 4]), ("strings", ["cat", "dog", "eel"]), ("unseen", [0, 1, 2, 3])]:
    for size in [7, 50, 300]:
        refs = [values[i] for i in nprng.integers(0, len(values), size)]
        preds = [values[i] for i in nprng.integers(0, len(values) - (1 if kind == "unseen" else 0), size)]
        if kind == "unseen":  # a class never predicted: zero division in its precision
            preds = [p if p != 3 else 0 for p in preds]
        case = dict(preds=preds, refs=refs, accuracy=sk.accuracy_score(refs, preds), results=[])
        averages = ["micro", "macro", "weighted", None] + (["binary"] if kind == "binary" else [])
        for average in averages:
            for beta in [1, 0.5, 2]:
                p, r, f, _ = sk.precision_recall_fscore_support(refs, preds, average=average, beta=beta, zero_division=0)
                as_list = lambda x: [float(v) for v in np.atleast_1d(x)]
                case["results"].append(dict(average=average or "none", beta=beta, precision=as_list(p), recall=as_list(r), f=as_list(f)))
        labels = sorted(set(refs) | set(preds))
        subset = labels[::-1][: max(1, len(labels) - 1)]
        p, r, f, _ = sk.precision_recall_fscore_support(refs, preds, labels=subset, average="macro", zero_division=0)
        case["subset"] = dict(labels=subset, precision=float(p), recall=float(r), f=float(f))
        case["confusion"] = sk.confusion_matrix(refs, preds).tolist()
        case["confusion_subset"] = sk.confusion_matrix(refs, preds, labels=subset).tolist()
        class_cases.append(case)

with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
    json.dump(dict(texts=texts, bleu=bleu_cases, chrf=chrf_cases, sentences=sentence_cases, classification=class_cases,
                   vectors=vectors, rouge=rouge_cases, rouge_expected=expected_rouge, rouge_files=[rouge_preds, rouge_targets]), f, ensure_ascii=False)
print(f"{len(bleu_cases)} BLEU, {len(chrf_cases)} chrF, {len(sentence_cases)} sentence, {len(rouge_cases)} ROUGE and {len(class_cases)} classification cases")
