"""References for tests/parity/adapters.lua, made by AdapterHub's `adapters` 1.3.0 (on transformers
4.57, in the test-only environment MOONTUNE_ADAPTERS_PYTHON).

Base models: tiny random Llama, GPT-2 and BERT (saved under <out>/base/<arch> before `adapters`
touches them) and all-MiniLM-L6-v2 (MOONTUNE_MINILM). For each case `adapters` adds bottleneck
adapters with the case's config, moves every adapter tensor off its initial value (so that each
matters) and saves them (adapter_config.json + adapter.safetensors, as save_adapter writes them;
a config with ln_before shares a tensor under two names, which safetensors refuses, so those
are written with the same keys by hand); fusion cases add and save a fusion too. Beside them
expected.safetensors holds the output (LM logits, or the encoder's last hidden state) of the
case's active setup on a padded batch, the gradient of every trainable tensor after one
backward of sum(output · w) (for causal LMs with an invertible adapter, the logits of
`adapters`' LM heads: the inverse applied before the output layer) (`grad.` before its file key;
on all-MiniLM-L6-v2 also in float64, `grad64.`), and for fusions the mean fusion
attention per point (`fusion.<layer>.<location>`), and for gated adapters the mean gate per point
(`gate.<adapter>.<layer>.<location>`). cases.lua (and cases.json, for check_adapters.py) list the cases.

Union cases (UniPELT, MAM, prefix tuning, other unions of prefix tuning, a bottleneck adapter and
LoRA) run with eager attention: with sdpa `adapters` 4.57 gets a boolean mask on Llama and GPT-2,
whose inverted prefix mask would hide the prefix from every query. Their adapters hold the prefix
pool under several names, which safetensors refuses, so they are written with the same keys by
hand, as ln_before's.
"""
import copy
import json
import os
import sys

import adapters
import adapters.composition as ac
import torch
import transformers
from safetensors.torch import save_file

out = sys.argv[1]
minilm = os.environ.get("MOONTUNE_MINILM")

bases = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
              dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, tie_word_embeddings=False)),
    "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel,
             dict(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
    "bert": (transformers.BertConfig, transformers.BertModel,
             dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, pad_token_id=0)),
}
paths = {}
for name, (config_cls, model_cls, kwargs) in bases.items():
    torch.manual_seed(0)
    model = model_cls(config_cls(**kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    paths[name] = os.path.join("base", name)
    model.save_pretrained(os.path.join(out, paths[name]), safe_serialization=True)
if minilm:
    paths["minilm"] = minilm


def load(arch, eager=False):
    path = paths[arch] if arch == "minilm" else os.path.join(out, paths[arch])
    cls = {"llama": transformers.LlamaForCausalLM, "gpt2": transformers.GPT2LMHeadModel}.get(arch, transformers.BertModel)
    model = cls.from_pretrained(path, **({"attn_implementation": "eager"} if eager else {})).eval()
    adapters.init(model)
    return model


ids = torch.tensor([[5, 17, 33, 8, 61, 12, 40, 3], [9, 44, 27, 70, 11, 0, 0, 0]])
mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]])

custom = dict(mh_adapter=True, output_adapter=True, reduction_factor={"0": 4, "default": 8}, non_linearity="gelu",
              original_ln_before=True, original_ln_after=True, ln_before=True, ln_after=True, scaling="channel",
              use_gating=True, residual_before_ln="post_add", adapter_residual_before_ln=True, init_weights="houlsby")
# (case, base, {adapter: config}, setup, fusion config or None)
CASES = []
for arch in ["llama", "gpt2", "bert"] + (["minilm"] if minilm else []):
    for config in ["seq_bn", "double_seq_bn", "par_bn", "scaled_par_bn", "seq_bn_inv", "double_seq_bn_inv"]:
        CASES.append((f"{config}_{arch}", arch, {"a": config}, "a", None))
    # "post_add" takes the residual after the sublayer's add, before its norm: post-norm models only.
    post_norm = arch in ("bert", "minilm")
    CASES.append((f"custom_{arch}", arch, {"a": adapters.BnConfig(**dict(custom, residual_before_ln="post_add" if post_norm else True))}, "a", None))
CASES += [
    ("options_llama", "llama", {"a": adapters.BnConfig(mh_adapter=False, output_adapter=True, reduction_factor=2, non_linearity="tanh",
                                                       original_ln_before=False, residual_before_ln=False, leave_out=[0], scaling=0.5)}, "a", None),
    ("options_bert", "bert", {"a": adapters.BnConfig(mh_adapter=True, output_adapter=False, reduction_factor=4, non_linearity="swish",
                                                     original_ln_before=True, original_ln_after=False, residual_before_ln=False, ln_after=True)}, "a", None),
    ("fusion_dynamic_bert", "bert", {"a": "seq_bn", "b": "seq_bn", "c": "seq_bn"}, ac.Fuse("a", "b", "c"), "dynamic"),
    ("fusion_static_llama", "llama", {"a": "seq_bn", "b": "seq_bn"}, ac.Fuse("a", "b"), "static"),
    ("fusion_dynamic_gpt2", "gpt2", {"a": "double_seq_bn", "b": "double_seq_bn"}, ac.Fuse("a", "b"), "dynamic"),
    ("fusion_options_bert", "bert", {"a": "seq_bn", "b": "seq_bn"}, ac.Fuse("a", "b"),
     adapters.AdapterFusionConfig(key=True, query=True, value=True, query_before_ln=True, regularization=False, residual_before=True,
                                  temperature=False, value_before_softmax=False, value_initialized=False, dropout_prob=None)),
    ("fusion_temperature_llama", "llama", {"a": "seq_bn", "b": "seq_bn"}, ac.Fuse("a", "b"),
     adapters.AdapterFusionConfig(key=True, query=True, value=False, query_before_ln=False, regularization=False, residual_before=False,
                                  temperature=True, value_before_softmax=True, value_initialized=False, dropout_prob=None)),
    ("stack_fuse_bert", "bert", {"l": "seq_bn", "a": "seq_bn", "b": "seq_bn"}, ac.Stack("l", ac.Fuse("a", "b")), "dynamic"),
    ("stack_llama", "llama", {"a": "seq_bn", "b": "par_bn"}, ac.Stack("a", "b"), None),
    ("batch_split_bert", "bert", {"a": "seq_bn", "b": "par_bn"}, ac.BatchSplit("a", "b", batch_sizes=[1, 1]), None),
    ("parallel_llama", "llama", {"a": "seq_bn", "b": "seq_bn"}, ac.Parallel("a", "b"), None),
    ("parallel_bert", "bert", {"a": "double_seq_bn", "b": "double_seq_bn"}, ac.Parallel("a", "b"), None),
    ("average_gpt2", "gpt2", {"a": "seq_bn", "b": "seq_bn"}, ac.Average("a", "b", weights=[0.3, 0.7]), None),
]
if minilm:
    CASES.append(("fusion_dynamic_minilm", "minilm", {"a": "seq_bn", "b": "seq_bn"}, ac.Fuse("a", "b"), "dynamic"))
for arch in ["llama", "gpt2", "bert"] + (["minilm"] if minilm else []):
    CASES.append((f"unipelt_{arch}", arch, {"u": "unipelt"}, "u", None))
    CASES.append((f"mam_{arch}", arch, {"u": "mam"}, "u", None))
CASES += [
    ("prefix_tuning_llama", "llama", {"p": "prefix_tuning"}, "p", None),
    ("prefix_tuning_bert", "bert", {"p": "prefix_tuning"}, "p", None),
    ("prefix_tuning_flat_gpt2", "gpt2", {"p": "prefix_tuning_flat"}, "p", None),
    ("union_custom_llama", "llama", {"u": adapters.ConfigUnion(
        adapters.PrefixTuningConfig(prefix_length=5, bottleneck_size=16, non_linearity="relu", use_gating=True, shared_gating=False, leave_out=[1]),
        adapters.LoRAConfig(r=4, alpha=16, attn_matrices=["q", "k", "v"]))}, "u", None),
    ("union_custom_bert", "bert", {"u": adapters.ConfigUnion(
        adapters.PrefixTuningConfig(prefix_length=4, flat=True, use_gating=True),
        adapters.SeqBnConfig(reduction_factor=4, use_gating=True),
        adapters.LoRAConfig(r=2, alpha=4, attn_matrices=["k"], leave_out=[0]))}, "u", None),
    ("lora_gated_gpt2", "gpt2", {"u": adapters.LoRAConfig(r=4, attn_matrices=["k", "v"], use_gating=True)}, "u", None),
    ("lora_gpt2", "gpt2", {"u": adapters.LoRAConfig(r=4, alpha=8, attn_matrices=["q", "v"])}, "u", None),
    ("stack_unipelt_bert", "bert", {"u": "unipelt", "a": "seq_bn"}, ac.Stack("a", "u"), None),
]


def is_union(config):
    if isinstance(config, str):
        return config in ("unipelt", "mam", "prefix_tuning", "prefix_tuning_flat")
    return not isinstance(config, adapters.BnConfig)


def setup_lua(s):
    if isinstance(s, str):
        return f'"{s}"'
    kind = type(s).__name__
    children = ", ".join(setup_lua(c) for c in s.children)
    extra = ""
    if kind == "BatchSplit":
        extra = ", batch_sizes = {" + ", ".join(str(b) for b in s.batch_sizes) + "}"
    if kind == "Average":
        extra = ", weights = {" + ", ".join(repr(w) for w in s.weights) + "}"
    return "{ block = \"" + kind + "\", " + children + extra + " }"


def save_adapter(model, name, config, directory):
    try:
        model.save_adapter(directory, name, use_safetensors=True)
    except RuntimeError:  # ln_before, prefix pools: one tensor under several names, which safetensors refuses
        model.save_adapter(directory, name, use_safetensors=False)
        state = torch.load(os.path.join(directory, "pytorch_adapter.bin"))
        save_file({k: v.clone().contiguous() for k, v in state.items()}, os.path.join(directory, "adapter.safetensors"), metadata={"format": "pt"})
        os.remove(os.path.join(directory, "pytorch_adapter.bin"))


def setup_json(s):
    if isinstance(s, str):
        return s
    d = {"block": type(s).__name__, "children": [setup_json(c) for c in s.children]}
    if hasattr(s, "batch_sizes"):
        d["batch_sizes"] = list(s.batch_sizes)
    if hasattr(s, "weights"):
        d["weights"] = list(s.weights)
    return d


lines = ["return {"]
listed = []
for case, arch, configs, setup, fusion in CASES:
    torch.manual_seed(1)
    eager = any(is_union(c) for c in configs.values())
    model = load(arch, eager)
    for name, config in configs.items():
        model.add_adapter(name, config=config)
    if fusion:
        fuse = setup if isinstance(setup, ac.Fuse) else next(c for c in setup.children if isinstance(c, ac.Fuse))
        model.add_adapter_fusion(fuse, config=fusion)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "adapters." in n or "invertible_adapters" in n or "adapter_fusion_layer" in n or "loras." in n or "prefix_tuning" in n:
                p.add_(torch.randn_like(p) * 0.1)
    if fusion:
        model.train_adapter_fusion(fuse)
        model.set_active_adapters(setup)
    else:
        model.train_adapter(list(configs))
        model.set_active_adapters(setup)
    model.eval()
    kwargs = dict(input_ids=ids, attention_mask=mask)
    if fusion:
        kwargs["output_adapter_fusion_attentions"] = True
    # (adapters also reports a "gate" for an ungated bottleneck adapter in the same forward: not one)
    gated_names = [n for n, c in configs.items() if getattr(c, "use_gating", False) or (isinstance(c, str) and c == "unipelt") or any(getattr(p, "use_gating", False) for p in getattr(c, "configs", []))]
    gated = bool(gated_names)
    if gated:
        kwargs["output_adapter_gating_scores"] = True
    result = model(**kwargs)
    output = result.logits if hasattr(result, "logits") else result.last_hidden_state
    if hasattr(result, "logits") and any(c.endswith("_inv") for c in configs.values() if isinstance(c, str)):
        # With a plain transformers LM class `adapters` runs the invertible adapter after the
        # embeddings only; its own LM heads (heads/language_modeling.py) run the inverse before
        # the output layer, as MAD-X does and as moontune does: the same here, by hand.
        hidden = model(**kwargs, output_hidden_states=True).hidden_states[-1]
        output = model.lm_head(model.base_model.invertible_adapters_forward(hidden, rev=True))
    torch.manual_seed(2)
    w = torch.randn_like(output)
    (output * w).sum().backward()
    expected = {"input_ids": ids, "attention_mask": mask, "output": output.detach(), "w": w}
    for n, p in model.named_parameters(remove_duplicate=False):  # a prefix pool under each of its names
        if p.requires_grad and p.grad is not None:
            expected["grad." + n] = p.grad.clone()
    if arch == "minilm":
        # The same forward and backward in float64: on MiniLM `adapters`' own float32 gradients
        # are up to 3.4e-5 (relative, fusion) from the exact ones, so the test compares there.
        exact = copy.deepcopy(model).double()
        exact.zero_grad(set_to_none=True)
        (exact(input_ids=ids, attention_mask=mask).last_hidden_state * w.double()).sum().backward()
        for n, p in exact.named_parameters(remove_duplicate=False):
            if p.requires_grad and p.grad is not None:
                expected["grad64." + n] = p.grad.clone()
    if fusion:
        for fname, per_layer in result.adapter_fusion_attentions.items():
            for layer, per_location in per_layer.items():
                for location, probs in per_location.items():
                    expected[f"fusion.{layer}.{location}"] = torch.tensor(probs).reshape(-1, probs.shape[-1]).float().mean(0)
    if gated:
        for name, per_layer in ((n, g) for n, g in result.adapter_gating_scores.items() if n in gated_names):
            for layer, per_location in per_layer.items():
                for location, gate in per_location.items():
                    expected[f"gate.{name}.{layer}.{location}"] = torch.tensor(gate).float().mean().reshape(1)
    d = os.path.join(out, case)
    os.makedirs(d, exist_ok=True)
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(d, "expected.safetensors"))
    for name, config in configs.items():
        save_adapter(model, name, config, os.path.join(d, name))
    if fusion:
        model.save_adapter_fusion(os.path.join(d, "fusion"), fuse.name, use_safetensors=True)
    base = paths[arch] if arch == "minilm" else paths[arch]
    lines.append(f'  {{ case = "{case}", arch = "{arch}", base = "{base}", adapters = {{ {", ".join(json.dumps(n) for n in configs)} }}, '
                 f'setup = {setup_lua(setup)}, fusion = {json.dumps(bool(fusion))}, eager = {json.dumps(eager)} }},')
    listed.append(dict(case=case, arch=arch, base=base, adapters=list(configs), setup=setup_json(setup), fusion=bool(fusion), eager=eager))
lines.append("}")
with open(os.path.join(out, "cases.json"), "w") as f:
    json.dump(listed, f, indent=1)
with open(os.path.join(out, "cases.lua"), "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"{len(CASES)} AdapterHub cases")
