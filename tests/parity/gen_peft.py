"""References for tests/parity/peft.lua, made by PEFT 0.21 on transformers models.

Base models: tiny random Llama (biases on, untied head), Llama with a tied head, Qwen2 and GPT-2
(Conv1D layers), saved under <out>/base/<arch>, and stories260K from the shared data. For each
case in CASES an adapter is made by PEFT with that config, its weights moved off their initial
values (so that every tensor matters), and saved under <out>/<case>/adapter; beside it
expected.safetensors holds the logits on a padded batch (also under torch.autocast to bfloat16), the gradient of every trainable tensor
after one backward of the causal-LM loss (keyed as in the adapter file, `grad.` before it) and
the weights after merge_and_unload (`merged.` before the base name); for prompt and prefix
tuning, greedy tokens from a prompt instead of merged weights. Init cases hold A, B and the
base weights PEFT's PiSSA/OLoRA initialisation leaves; combine cases hold the factors of
add_weighted_adapter. cases.lua lists every case for the Lua side (a generated base's path is relative to the fixtures
folder).
"""
import copy
import json
import os
import sys

import peft
import torch
import transformers
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

out = sys.argv[1]
data = os.environ.get("MOONTUNE_TEST_DATA", os.path.join(os.path.dirname(__file__), "../../../shared/data"))

common = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
bases = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
              dict(common, num_key_value_heads=2, attention_bias=True, mlp_bias=True, tie_word_embeddings=False)),
    "llama_tied": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(common, num_key_value_heads=2, tie_word_embeddings=True)),
    "llama_seqcls": (transformers.LlamaConfig, transformers.LlamaForSequenceClassification, dict(common, num_key_value_heads=2, num_labels=3)),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, dict(common, num_key_value_heads=2)),
    "bert_seqcls": (transformers.BertConfig, transformers.BertForSequenceClassification,
                    dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=64, pad_token_id=0, num_labels=3)),
    "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel,
             dict(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2)),
}
paths = {"stories260K": os.path.join(data, "models/stories260K")}
for name, (config_cls, model_cls, kwargs) in bases.items():
    torch.manual_seed(0)
    model = model_cls(config_cls(**kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    paths[name] = os.path.join("base", name)  # in the fixtures folder (which is renamed once complete)
    model.save_pretrained(os.path.join(out, paths[name]), safe_serialization=True)

ids = torch.tensor([[5, 17, 33, 8, 61, 12, 40, 3], [9, 44, 27, 70, 0, 0, 0, 0]])
mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]])
labels = ids.masked_fill(mask == 0, -100)

# (case, base, method, PEFT config)
CASES = [
    ("lora_llama", "llama", "LORA", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])),
    ("rslora_patterns_llama", "llama", "LORA", dict(r=4, lora_alpha=6, use_rslora=True, target_modules="all-linear",
                                                     rank_pattern={"v_proj": 2, "down_proj": 3}, alpha_pattern={"layers.1.self_attn.q_proj": 3})),
    ("dora_llama", "llama", "LORA", dict(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], bias="lora_only")),
    ("saved_head_llama", "llama", "LORA", dict(r=2, lora_alpha=4, target_modules=["gate_proj", "up_proj"], modules_to_save=["lm_head"],
                                               bias="all", layers_to_transform=[1], layers_pattern="layers")),
    ("regex_tied", "llama_tied", "LORA", dict(r=3, lora_alpha=5, target_modules=r".*\.layers\.0\..*(q|o)_proj", modules_to_save=["lm_head"])),
    ("dora_qwen2", "qwen2", "LORA", dict(r=4, lora_alpha=16, use_dora=True, target_modules="all-linear")),
    ("lora_gpt2", "gpt2", "LORA", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)),
    ("dora_gpt2", "gpt2", "LORA", dict(r=2, lora_alpha=4, use_dora=True, target_modules=["c_attn"], fan_in_fan_out=True)),
    ("ia3_llama", "llama", "IA3", dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
    ("ia3_gpt2", "gpt2", "IA3", dict(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"], fan_in_fan_out=True)),
    ("lora_stories", "stories260K", "LORA", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])),
    ("seqcls_llama", "llama_seqcls", "LORA", dict(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])),
    ("seqcls_bert", "bert_seqcls", "LORA", dict(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value", "intermediate.dense"])),
    ("ia3_seqcls_bert", "bert_seqcls", "IA3", dict(task_type="SEQ_CLS", target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"])),
    ("prompt_llama", "llama", "PROMPT_TUNING", dict(num_virtual_tokens=3)),
    ("prompt_gpt2", "gpt2", "PROMPT_TUNING", dict(num_virtual_tokens=4)),
    ("prompt_stories", "stories260K", "PROMPT_TUNING", dict(num_virtual_tokens=5)),
    ("prefix_llama", "llama", "PREFIX_TUNING", dict(num_virtual_tokens=3)),
    ("prefix_qwen2", "qwen2", "PREFIX_TUNING", dict(num_virtual_tokens=2)),
    ("prefix_gpt2", "gpt2", "PREFIX_TUNING", dict(num_virtual_tokens=4)),
    ("prefix_projected_llama", "llama", "PREFIX_TUNING", dict(num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=24)),
]
PROMPT_METHODS = ("PROMPT_TUNING", "PREFIX_TUNING")


def load(base):
    cls = transformers.AutoModelForSequenceClassification if base.endswith("_seqcls") else {"gpt2": transformers.GPT2LMHeadModel}.get(base, transformers.AutoModelForCausalLM)
    return cls.from_pretrained(os.path.join(out, paths[base])).eval()


def make_config(method, kwargs):
    if method == "LORA":
        return peft.LoraConfig(**dict(dict(task_type="CAUSAL_LM", lora_dropout=0.0), **kwargs))
    if method == "PROMPT_TUNING":
        return peft.PromptTuningConfig(task_type="CAUSAL_LM", **kwargs)
    if method == "PREFIX_TUNING":
        return peft.PrefixTuningConfig(task_type="CAUSAL_LM", **kwargs)
    return peft.IA3Config(**dict(dict(task_type="CAUSAL_LM"), **kwargs))


def perturb(model, seed):
    """Moves every trainable tensor (and, with bias='all', the biases) off its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


def rename(model, tensors, name="default"):
    return {k: v.contiguous() for k, v in get_peft_model_state_dict(model, state_dict=tensors, adapter_name=name).items()}


listing = []
for i, (case, base, method, kwargs) in enumerate(CASES):
    torch.manual_seed(i)
    model = peft.get_peft_model(load(base), make_config(method, kwargs))
    perturb(model, 100 + i)
    path = os.path.join(out, case)
    model.save_pretrained(os.path.join(path, "adapter"))
    model.eval()
    # A classifier's labels are classes, and its logits have no token positions to mask.
    case_labels = torch.tensor([2, 0]) if base.endswith("_seqcls") else labels
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits_bf16 = model(input_ids=ids, attention_mask=mask).logits.float()
    loss = model(input_ids=ids, attention_mask=mask, labels=case_labels).loss
    loss.backward()
    full = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    extra = {}
    if method in PROMPT_METHODS:
        # Virtual tokens: PEFT's logits cover them too (prompt tuning); gradients by parameter
        # name (a projected prefix trains its MLP, which its file folds away: no gradients then).
        n = kwargs["num_virtual_tokens"]
        real = torch.cat([torch.ones(2, n, dtype=mask.dtype), mask], 1) if method == "PROMPT_TUNING" else mask.clone()
        grads = {} if kwargs.get("prefix_projection") else {f"grad.{k}": v.contiguous() for k, v in full.items()}
        merged = {}
        # Greedy continuation by PEFT's forward on the whole sequence at every step. (PEFT's own
        # generate places the new tokens as if the virtual tokens were not there — transformers'
        # cache_position counts only real tokens — and so disagrees with its forward; moontune's
        # generate follows the forward.)
        prompt = ids[:1, :3].clone()
        seq = prompt
        with torch.no_grad():
            for _ in range(8):
                seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
        extra["greedy"] = seq
        extra["prompt"] = prompt
        extra["real"] = real
    else:
        if base.endswith("_seqcls"):
            extra["real"] = torch.ones(2, dtype=mask.dtype)
        grads = {f"grad.{k}": v for k, v in rename(model, full).items()}
        merged = model.merge_and_unload()
        merged = {f"merged.{n}": p.detach().clone() for n, p in merged.state_dict().items()}
    save_file({"input_ids": ids, "attention_mask": mask, "labels": case_labels, "logits": logits.contiguous(),
               "logits_bf16": logits_bf16.contiguous(), "loss": loss.detach(), **grads, **merged, **extra}, os.path.join(path, "expected.safetensors"))
    listing.append(dict(case=case, base=paths[base], arch=base, method=method, kind="load"))

# Initialisations that depend on the base weights: A, B and the residual base weights.
for case, options, config in [
    ("pissa_llama", dict(r=4, alpha=8, targets=["q_proj", "down_proj"], init="pissa"), dict(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], init_lora_weights="pissa")),
    ("olora_llama", dict(r=4, alpha=8, targets=["q_proj", "down_proj"], init="olora"), dict(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], init_lora_weights="olora")),
    ("pissa_gpt2", dict(r=3, alpha=6, targets=["c_attn"], init="pissa"), dict(r=3, lora_alpha=6, target_modules=["c_attn"], init_lora_weights="pissa", fan_in_fan_out=True)),
    ("dora_init_llama", dict(r=4, alpha=8, targets=["q_proj"], use_dora=True), dict(r=4, lora_alpha=8, target_modules=["q_proj"], use_dora=True)),
]:
    arch = "gpt2" if "gpt2" in case else "llama"
    model = peft.get_peft_model(load(arch), peft.LoraConfig(**config))
    tensors = {f"init.{k}": v for k, v in rename(model, dict(model.state_dict())).items() if "lora_B" in k or "magnitude" in k or ("pissa" in case or "olora" in case)}
    base_weights = {f"base.{n}": p.detach().contiguous() for n, p in model.get_base_model().state_dict().items() if "lora_" not in n and "base_layer" in n}
    tensors.update({k.replace(".base_layer", ""): v for k, v in base_weights.items()})
    os.makedirs(os.path.join(out, case), exist_ok=True)
    save_file(tensors, os.path.join(out, case, "expected.safetensors"))
    listing.append(dict(case=case, base=paths[arch], arch=arch, method="LORA", kind="init", options=options))

# add_weighted_adapter of two LoRA adapters on llama (ranks 4 and 4; cat adds, svd picks 3).
model = peft.get_peft_model(load("llama"), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), adapter_name="a")
model.add_adapter("b", peft.LoraConfig(r=4, lora_alpha=4, target_modules=["v_proj", "o_proj"]))
with torch.no_grad():
    g = torch.Generator().manual_seed(7)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
path = os.path.join(out, "combine_llama")
model.save_pretrained(path)  # in path/a and path/b
combined = {}
for how in ["linear", "cat", "svd"]:
    model.add_weighted_adapter(["a", "b"], [0.7, -0.4], f"c_{how}", combination_type=how, svd_rank=3 if how == "svd" else None)
    sd = {n: p for n, p in model.state_dict().items() if f".c_{how}." in n}
    combined.update({f"{how}.{k}": v for k, v in rename(model, sd, f"c_{how}").items()})
save_file(combined, os.path.join(path, "expected.safetensors"))
listing.append(dict(case="combine_llama", base=paths["llama"], arch="llama", method="LORA", kind="combine"))



def lua(v):
    """A Python value as a Lua constructor."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "{ " + ", ".join(lua(x) for x in v) + " }"
    return "{ " + ", ".join(f"[{json.dumps(k)}] = {lua(x)}" for k, x in v.items()) + " }"


with open(os.path.join(out, "cases.lua"), "w") as f:
    f.write("return {\n" + "".join(f"  {lua(c)},\n" for c in listing) + "}\n")
