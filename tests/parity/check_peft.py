"""Loads every adapter tests/parity/peft.lua saved (in <output>/<case>) with PEFT's
PeftModel.from_pretrained, unchanged, and checks that PEFT's logits on the case's batch equal the
ones moontune computed with it (1e-5, real tokens) — the adapter_config.json and the tensor keys
moontune writes are PEFT's own — and that transformers loads the model moontune merged and saved
(<output>/<case>/merged) with the same logits (1e-4)."""
import os
import sys

import peft
import torch
import transformers
from safetensors.torch import load_file

fixtures, output = sys.argv[1], sys.argv[2]
cases = [c for c in os.listdir(output) if os.path.exists(os.path.join(output, c, "adapter_config.json"))]
assert cases, f"no saved adapters in {output}"
with open(os.path.join(fixtures, "cases.lua")) as f:
    text = f.read()
bases = {}
for line in text.splitlines():
    if '["case"]' in line:
        case = line.split('["case"] = "')[1].split('"')[0]
        bases[case] = (line.split('["base"] = "')[1].split('"')[0], line.split('["arch"] = "')[1].split('"')[0])
for case in sorted(cases):
    base, arch = bases[case]
    if base.startswith("base/"):  # a generated base, in the fixtures folder
        base = os.path.join(fixtures, base)
    cls = transformers.AutoModelForSequenceClassification if arch.endswith("_seqcls") else {"gpt2": transformers.GPT2LMHeadModel}.get(arch, transformers.AutoModelForCausalLM)
    model = peft.PeftModel.from_pretrained(cls.from_pretrained(base), os.path.join(output, case)).eval()
    ref = load_file(os.path.join(fixtures, case, "expected.safetensors"))
    ours = load_file(os.path.join(output, case, "logits.safetensors"))["logits"]
    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
    pad = (ref.get("real", ref["attention_mask"]) == 0).unsqueeze(-1)
    diff = (logits.masked_fill(pad, 0) - ours).abs().max().item()
    assert diff <= 1e-5, f"{case}: PEFT's logits with moontune's saved adapter differ by {diff}"
    if "greedy" in ref:  # virtual tokens: nothing merged
        print(f"{case}: PEFT loads moontune's adapter; logits within {diff:.2e}")
        continue
    merged = cls.from_pretrained(os.path.join(output, case, "merged")).eval()
    with torch.no_grad():
        merged_logits = merged(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
    merged_diff = (merged_logits.masked_fill(pad, 0) - ours).abs().max().item()
    assert merged_diff <= 1e-4, f"{case}: transformers on moontune's merged model differs by {merged_diff}"
    print(f"{case}: PEFT loads moontune's adapter, logits within {diff:.2e}; transformers loads the merged model, within {merged_diff:.2e}")
