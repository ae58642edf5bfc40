"""Reads what moontune wrote for tests/parity/gguf.lua and `moontune convert` with the gguf package
and transformers. Arguments: the fixtures folder (gen_gguf.py's) and moontune's output folder.

- Every exported GGUF is read by gguf.GGUFReader; its model metadata is the model's, its
  vocabulary, merges, special ids and chat template are the source file's.
- stories260K written as f32 holds exactly the source file's tensors; written as f16, q8_0, q4_0
  and q4_k_m, every F16/Q8_0/Q4_0/Q5_0 tensor is bit for bit what gguf.quantize makes of the f32
  values (q4_k_m's K-quant tensors are checked through logits below).
- transformers loads the SmolLM2 exports with logits within the stated tolerances of the float
  model and tokenizes 1,000 lines as the source did, the Qwen2 and Qwen3 exports with the source's
  logits and ids, and the converted directories with the source's logits and ids.
"""
import os
import sys

import gguf
import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

fixtures, out = sys.argv[1], sys.argv[2]
smol_source = os.environ["MOONTUNE_SMOLLM2"]


def fields(path):
    reader = gguf.GGUFReader(path)
    return reader, {k: f.contents() for k, f in reader.fields.items()}


_, source = fields(smol_source)
for ty in ["f16", "q8_0", "q4_k_m"]:
    _, meta = fields(os.path.join(out, f"smollm2-{ty}.gguf"))
    for key in ["general.architecture", "llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.head_count_kv", "llama.context_length",
                "llama.rope.freq_base", "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.padding_token_id", "tokenizer.chat_template", "tokenizer.ggml.add_bos_token"]:
        assert meta[key] == source[key], f"smollm2-{ty}: {key} is {str(meta[key])[:80]}, expected {str(source[key])[:80]}"
    assert meta["general.file_type"] == {"f16": 1, "q8_0": 7, "q4_k_m": 15}[ty]

reader, meta = fields(os.path.join(fixtures, "stories260K.gguf"))
src_tensors = {t.name: np.array(t.data) for t in reader.tensors}
f32_reader, f32_meta = fields(os.path.join(out, "stories260K-f32.gguf"))
for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "llama.block_count",
            "llama.attention.head_count_kv", "llama.attention.layer_norm_rms_epsilon"]:
    assert f32_meta[key] == meta[key], f"stories260K-f32: {key}"
f32 = {t.name: np.array(t.data) for t in f32_reader.tensors}
assert f32.keys() == src_tensors.keys(), sorted(set(f32) ^ set(src_tensors))
for name, values in f32.items():
    assert np.array_equal(values, src_tensors[name]), f"stories260K-f32: {name} differs from the source file"
checked = 0
for ty in ["f16", "q8_0", "q4_0", "q4_k_m"]:
    for t in gguf.GGUFReader(os.path.join(out, f"stories260K-{ty}.gguf")).tensors:
        kind = t.tensor_type
        if kind.name in ("F16", "Q8_0", "Q4_0", "Q5_0"):
            want = gguf.quantize(f32[t.name], kind)
            assert np.array_equal(np.asarray(want).view(np.uint8).ravel(), np.asarray(t.data).view(np.uint8).ravel()), \
                f"stories260K-{ty}: {t.name} ({kind.name}) differs from gguf.quantize"
            checked += 1
print(f"check_gguf: metadata of 4 exports, {len(f32)} f32 tensors exact, {checked} quantised tensors bit-exact")

ref = load_file(os.path.join(fixtures, "smollm2.safetensors"))
lines = open(os.path.join(fixtures, "shakespeare_lines.txt"), encoding="utf-8").read().split("\n")
want_ids = ref["ids"].tolist()
# Stated tolerances: max |Δ logit| against transformers' float model of the source file, and the
# share of positions whose greedy next token agrees.
for ty, max_delta, agreement in [("q8_0", 2.0, 0.95), ("q4_k_m", 10.0, 0.75)]:
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file=f"smollm2-{ty}.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(ref["batch"]).logits
    delta = (logits - ref["logits"]).abs().max().item()
    agree = (logits.argmax(-1) == ref["logits"].argmax(-1)).float().mean().item()
    print(f"check_gguf: transformers on smollm2-{ty}.gguf: max |Δ logit| {delta:.4f}, argmax agreement {agree:.3f}")
    assert delta <= max_delta and agree >= agreement
    del model
tok = AutoTokenizer.from_pretrained(out, gguf_file="smollm2-q8_0.gguf")
assert [i for l in lines for i in tok(l).input_ids] == want_ids, "transformers' tokenizer of the export differs"

model = AutoModelForCausalLM.from_pretrained(out, gguf_file="stories260K-f32.gguf", dtype=torch.float32).eval()
sref = load_file(os.path.join(fixtures, "stories260K.safetensors"))
with torch.no_grad():
    assert (model(sref["batch"]).logits - sref["logits"]).abs().max().item() <= 1e-5

for arch in ["qwen2", "qwen3"]:
    qref = load_file(os.path.join(fixtures, f"{arch}.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file=f"{arch}-f32.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        delta = (model(qref["batch"]).logits - qref["logits"]).abs().max().item()
    assert delta <= 1e-4, f"{arch}-f32.gguf: max |Δ logit| {delta}"
    tok = AutoTokenizer.from_pretrained(out, gguf_file=f"{arch}-f32.gguf")
    qlines = open(os.path.join(fixtures, "qwen_lines.txt"), encoding="utf-8").read().split("\n")
    assert [i for l in qlines for i in tok(l).input_ids] == qref["ids"].tolist(), f"{arch}-f32.gguf: tokenizer"

# `moontune convert`: GGUF to a Hugging Face directory, and a Hugging Face directory to GGUF.
model = AutoModelForCausalLM.from_pretrained(os.path.join(out, "smollm2-hf"), dtype=torch.float32).eval()
with torch.no_grad():
    assert (model(ref["batch"]).logits - ref["logits"]).abs().max().item() <= 1e-5
tok = AutoTokenizer.from_pretrained(os.path.join(out, "smollm2-hf"))
assert [i for l in lines for i in tok(l).input_ids] == want_ids, "the converted directory's tokenizer differs"
assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == \
    AutoTokenizer.from_pretrained(os.path.dirname(smol_source), gguf_file=os.path.basename(smol_source)).apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
model = AutoModelForCausalLM.from_pretrained(out, gguf_file="stories260K-from-hf.gguf", dtype=torch.float32).eval()
hf = AutoModelForCausalLM.from_pretrained(os.path.join(os.environ["MOONTUNE_TEST_DATA"], "models/stories260K"), dtype=torch.float32).eval()
with torch.no_grad():
    assert (model(sref["batch"]).logits - hf(sref["batch"]).logits).abs().max().item() <= 1e-5
print("check_gguf: transformers loads the exports and the converted models")
