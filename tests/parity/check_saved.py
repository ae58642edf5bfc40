"""Checks what tests/parity/models.lua saved with model:save: each <output>/saved_<arch>/ must
load in transformers and give the logits moontune computed before saving (within 1e-4).
Arguments: the fixtures folder (gen_models.py's) and the output folder (models.lua's)."""
import glob
import os
import sys

import torch
import transformers
from safetensors.torch import load_file

torch.set_grad_enabled(False)
fixtures, output = sys.argv[1], sys.argv[2]
dirs = sorted(glob.glob(os.path.join(output, "saved_*")))
assert dirs, "models.lua saved no model"
for path in dirs:
    name = os.path.basename(path)[len("saved_"):]
    expected = load_file(os.path.join(fixtures, name, "expected.safetensors"))
    ours = load_file(os.path.join(path, "moontune_logits.safetensors"))["logits"]
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    logits = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"]).logits
    real = expected["attention_mask"].bool().unsqueeze(-1)
    diff = ((logits - ours).abs() * real).max().item()
    assert diff < 1e-4, f"{name}: the saved model's logits differ by {diff}"
    print(f"{name}: saved by moontune, loaded by transformers, logits within {diff:.2e}")
