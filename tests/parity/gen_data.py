"""References for tests/parity/data.lua, written to <out>:

- Parquet files written by pyarrow 26 (Snappy, gzip, Zstandard, LZ4 and uncompressed; several
  row groups; strings with non-ASCII text, integers, floats, booleans, nulls, lists and structs),
  their rows as JSON (parquet_rows.json), and one whose `label` column holds strings.
- Training rows: the first 40 Alpaca examples through Alpaca's template, tokenised by the Hugging
  Face `tokenizers` library (stories260K's tokenizer.json, BOS from its post-processor, EOS from
  tokenizer_config.json) with labels -100 on tokens wholly inside the prompt (by their character offsets);
  then 12 of them flattened by transformers' DataCollatorWithFlattening (the packed row) and the
  loss LlamaForCausalLM gives that row without a cache, where transformers keeps attention inside
  each document (tokens.json).
- Evaluation references from transformers (eval.json): the summed log-probability of " bad" and
  " good" after a prompt for the first 12 SST-2 sentences (label log-likelihood classification),
  and the strided perplexity of the first 3,000 characters of Tiny Shakespeare by the windows of
  transformers' perplexity guide (max_length 64, stride 32), each window's loss weighted by the
  tokens it averages over.
"""
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer
from transformers import DataCollatorWithFlattening, LlamaForCausalLM

out = sys.argv[1]
data = os.environ.get("MOONTUNE_TEST_DATA", os.path.join(os.path.dirname(__file__), "../../../shared/data"))

# --- Parquet -------------------------------------------------------------------------------
rows = []
for i in range(237):
    rows.append({
        "text": f"example {i}: " + ["café", "naïve", "日本語", "plain"][i % 4] * (i % 3 + 1),
        "label": i % 3,
        "score": i / 7,
        "ok": i % 2 == 0,
        "note": None if i % 5 == 0 else f"n{i}",
        "tags": [f"t{j}" for j in range(i % 4)],
        "meta": {"a": i, "b": str(i * 2)},
    })
table = pa.Table.from_pylist(rows)
for codec in ["snappy", "gzip", "zstd", "lz4", "none"]:
    pq.write_table(table, os.path.join(out, f"rows_{codec}.parquet"), compression=codec, row_group_size=50)
with open(os.path.join(out, "parquet_rows.json"), "w") as f:
    json.dump(rows, f, ensure_ascii=False)
wrong = pa.Table.from_pylist([{"text": "a", "label": "positive"}, {"text": "b", "label": "negative"}])
pq.write_table(wrong, os.path.join(out, "label_as_string.parquet"))

# --- Tokenisation, flattening and the packed loss -------------------------------------------
model_dir = os.path.join(data, "models/stories260K")
tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
config = json.load(open(os.path.join(model_dir, "tokenizer_config.json")))
eos = tok.token_to_id(config["eos_token"])
WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
              "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
            "### Instruction:\n{instruction}\n\n### Response:\n")
alpaca = json.load(open(os.path.join(data, "instruct/alpaca_en_demo.json"), encoding="utf-8"))[:40]
examples = []
for ex in alpaca:
    prompt = (WITH_INPUT if ex["input"] else NO_INPUT).format(**ex)
    text = prompt + ex["output"]
    enc = tok.encode(text)
    labels = [i if (s < e and e > len(prompt) and not special) else -100
              for i, (s, e), special in zip(enc.ids, enc.offsets, enc.special_tokens_mask)]
    examples.append({"input_ids": enc.ids + [eos], "labels": labels + [eos]})

short = [{"input_ids": e["input_ids"][:100], "labels": e["input_ids"][:100]} for e in examples[:12]]
flat = DataCollatorWithFlattening(return_position_ids=True)(short)
model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="sdpa").eval()
with torch.no_grad():
    # transformers finds packed documents only when the forward has no cache (use_cache=False):
    # with one, a row attends across its documents.
    packed_loss = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], labels=flat["labels"], use_cache=False).loss.item()
    running = torch.arange(flat["input_ids"].shape[1]).unsqueeze(0)
    unmasked_loss = model(input_ids=flat["input_ids"], position_ids=running, labels=flat["labels"], use_cache=False).loss.item()
with open(os.path.join(out, "tokens.json"), "w") as f:
    json.dump({
        "examples": examples,
        "flattened": {k: flat[k][0].tolist() for k in ("input_ids", "labels", "position_ids")},
        "packed_loss": packed_loss,
        "unmasked_loss": unmasked_loss,
    }, f)
# --- Evaluation ------------------------------------------------------------------------------
import csv

with open(os.path.join(data, "classification/sst2/dev.tsv"), encoding="utf-8") as f:
    sst2 = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:12]
scores = []
with torch.no_grad():
    for row in sst2:
        ctx = tok.encode("Review: " + row["sentence"] + "\nSentiment:").ids
        per_label = []
        for label in (" bad", " good"):
            cont = tok.encode(label, add_special_tokens=False).ids
            ids = torch.tensor([ctx + cont])
            logp = model(input_ids=ids, use_cache=False).logits[0, :-1].log_softmax(-1)
            per_label.append(sum(logp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont)))
        scores.append(per_label)
text = open(os.path.join(data, "text/tinyshakespeare.txt"), encoding="utf-8").read()[:3000]
ids = torch.tensor([tok.encode(text).ids])
max_length, stride, nll, count, prev_end = 64, 32, 0.0, 0, 0
with torch.no_grad():
    for begin in range(0, ids.size(1), stride):
        end = min(begin + max_length, ids.size(1))
        trg_len = end - prev_end
        window = ids[:, begin:end]
        target = window.clone()
        target[:, :-trg_len] = -100
        loss = model(input_ids=window, labels=target, use_cache=False).loss
        # The tokens the loss averages over (the guide's "valid tokens - 1" is off by one for
        # every window after the first, whose first target has context before it).
        n = (target[:, 1:] != -100).sum().item()
        nll += loss.item() * n
        count += n
        prev_end = end
        if end == ids.size(1):
            break
with open(os.path.join(out, "eval.json"), "w") as f:
    json.dump({"sentences": [r["sentence"] for r in sst2], "scores": scores, "shakespeare": text,
               "perplexity": float(torch.exp(torch.tensor(nll / count))), "tokens": count}, f)

print(f"gen_data: {len(rows)} Parquet rows in 5 codecs, {len(examples)} tokenised examples, packed loss {packed_loss:.6f} (positions running on: {unmasked_loss:.6f})")
