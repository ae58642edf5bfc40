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
