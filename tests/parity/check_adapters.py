"""Loads every adapter and fusion tests/parity/adapters.lua saved in AdapterHub's format (in
<output>/<case>) with `adapters`' own load_adapter and load_adapter_fusion, activates the case's
setup, and checks that the output on the case's batch equals the one moontune computed (1e-5,
relative to its largest entry where above 1; 5e-5 on all-MiniLM-L6-v2, as adapters.lua):
the adapter_config.json, adapter_fusion_config.json and tensor keys moontune writes are
AdapterHub's."""
import json
import os
import sys

import adapters
import adapters.composition as ac
import torch
import transformers
from safetensors.torch import load_file

fixtures, output = sys.argv[1], sys.argv[2]
with open(os.path.join(fixtures, "cases.json")) as f:
    cases = json.load(f)


def setup_of(v):
    if isinstance(v, str):
        return v
    kids = [setup_of(c) for c in v["children"]]
    if v["block"] == "BatchSplit":
        return ac.BatchSplit(*kids, batch_sizes=v["batch_sizes"])
    if v["block"] == "Average":
        return ac.Average(*kids, weights=v["weights"], normalize_weights=False)
    return getattr(ac, v["block"])(*kids)


checked = 0
for c in cases:
    case = c["case"]
    if not os.path.exists(os.path.join(output, case, "output.safetensors")):
        continue
    base = c["base"] if not c["base"].startswith("base/") else os.path.join(fixtures, c["base"])
    cls = {"llama": transformers.LlamaForCausalLM, "gpt2": transformers.GPT2LMHeadModel}.get(c["arch"], transformers.BertModel)
    model = cls.from_pretrained(base, **({"attn_implementation": "eager"} if c.get("eager") else {})).eval()
    adapters.init(model)
    names = c["adapters"]
    for name in names:
        model.load_adapter(os.path.join(output, case, name), load_as=name, use_safetensors=True)
    setup = setup_of(c["setup"])
    if c["fusion"]:
        model.load_adapter_fusion(os.path.join(output, case, "fusion"), use_safetensors=True)
    model.set_active_adapters(setup)
    model.eval()
    ref = load_file(os.path.join(fixtures, case, "expected.safetensors"))
    ours = load_file(os.path.join(output, case, "output.safetensors"))["output"]
    with torch.no_grad():
        result = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"])
        out = result.logits if hasattr(result, "logits") else result.last_hidden_state
        if hasattr(result, "logits") and "_inv_" in case:  # the inverse before the output layer, as gen_adapters.py
            hidden = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"], output_hidden_states=True).hidden_states[-1]
            out = model.lm_head(model.base_model.invertible_adapters_forward(hidden, rev=True))
    # As adapters.lua: 1e-5 relative to the largest entry where above 1, 5e-5 on all-MiniLM-L6-v2.
    tol = (5e-5 if c["arch"] == "minilm" else 1e-5) * max(1.0, out.abs().max().item())
    diff = (out - ours).abs().max().item()
    assert diff <= tol, f"{case}: adapters' output with moontune's saved files differs by {diff} (tolerance {tol})"
    checked += 1
assert checked > 0, f"nothing saved in {output}"
print(f"adapters loads moontune's AdapterHub files: {checked} cases within tolerance")
