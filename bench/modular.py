"""Modular-adapter benchmark: moontune's bottleneck adapters and AdapterFusion against AdapterHub's
`adapters` 1.3 (transformers 4.57, in the test-only environment MOONTUNE_ADAPTERS_PYTHON) on this
machine, same thread count, float32.

Run with `./dev bench` (which builds moontune in release mode first; BENCH_ROUNDS and
BENCH_THREADS adjust it). The PEFT benchmark's tiny Llama (hidden 256, 4 layers, 8 heads, 4 KV
heads, intermediate 688, vocab 8000; random weights, saved here), AdamW, causal-LM loss on a
batch of 8 × 128 tokens: a step training one seq_bn adapter, and a step training a dynamic
fusion of three seq_bn adapters. Tokens/s over the timed steps after one warm-up, and each
child's peak RSS; each side runs ROUNDS times, interleaved, the best figure counts. Prints a
Markdown table and writes it to its section of BENCHMARKS.md.
"""
import os
import subprocess
import tempfile

from models import ROOT, ROUNDS, THREADS, TIMED_STEPS, run
from report import write_section

PYTHON = os.environ["MOONTUNE_ADAPTERS_PYTHON"]

MAKE_MODEL = r"""
import sys, torch, transformers
torch.manual_seed(0)
config = transformers.LlamaConfig(vocab_size=8000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=False)
transformers.LlamaForCausalLM(config).save_pretrained(sys.argv[1], safe_serialization=True)
"""

ADAPTERS_SIDE = r"""
import json, os, time, torch, transformers, adapters
import adapters.composition as ac""" + TIMED_STEPS + r"""
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
batch, seq = int(os.environ["BENCH_BATCH"]), int(os.environ["BENCH_SEQ"])
model = transformers.LlamaForCausalLM.from_pretrained(os.environ["BENCH_MODEL"], dtype=torch.float32)
adapters.init(model)
if os.environ["BENCH_SETUP"] == "fusion":
    for n in "abc":
        model.add_adapter(n, config="seq_bn")
    model.add_adapter_fusion(ac.Fuse("a", "b", "c"), config="dynamic")
    model.train_adapter_fusion(ac.Fuse("a", "b", "c"))
else:
    model.add_adapter("a", config="seq_bn")
    model.train_adapter("a")
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
torch.manual_seed(0)
ids = torch.randint(3, model.config.vocab_size, (batch, seq))
def step():
    loss = model(input_ids=ids, labels=ids).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
print(json.dumps({"tokens_per_s": batch * seq / timed(step), "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}))
"""


def compare(path, settings):
    env = dict(os.environ, BENCH_MODEL=path, BENCH_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1", **settings)
    ours, theirs = [], []
    for _ in range(ROUNDS):
        ours.append(run([os.path.join(ROOT, "target/release/moontune"), "run", os.path.join(ROOT, "bench/modular.lua")], env))
        theirs.append(run([PYTHON, "-c", ADAPTERS_SIDE], env))
        print(f"  {settings['BENCH_SETUP']}: moontune {ours[-1][0]['tokens_per_s']:.0f} tokens/s, adapters {theirs[-1][0]['tokens_per_s']:.0f} tokens/s", flush=True)
    assert ours[0][0]["trainable"] == theirs[0][0]["trainable"], f"both sides train the same parameters ({ours[0][0]['trainable']} against {theirs[0][0]['trainable']})"
    best = lambda runs: (max(r["tokens_per_s"] for r, _ in runs), min(rss for _, rss in runs), runs[0][0]["trainable"])
    # Each round's two runs back to back: their ratio, whose median is steadier on a shared machine.
    ratios = sorted(o[0]["tokens_per_s"] / t[0]["tokens_per_s"] for o, t in zip(ours, theirs))
    return best(ours), best(theirs), ratios[len(ratios) // 2]


def main():
    settings = dict(BENCH_BATCH="8", BENCH_SEQ="128", BENCH_STEPS="20")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama-adapters-bench")
        subprocess.run([PYTHON, "-c", MAKE_MODEL, path], check=True, capture_output=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
        for setup, label in [("seq_bn", "one seq_bn adapter"), ("fusion", "fusion of three seq_bn adapters")]:
            (o_tps, o_rss, trainable), (t_tps, t_rss, _), median = compare(path, dict(settings, BENCH_SETUP=setup))
            rows.append(f"| {label} ({trainable:,} trainable) | tokens/s | {o_tps:.0f} | {t_tps:.0f} | {o_tps / t_tps:.2f}× (median of rounds {median:.2f}×) |")
            rows.append(f"| | peak RSS, MiB | {o_rss:.0f} | {t_rss:.0f} | {o_rss / t_rss:.2f}× |")
    s = settings
    lines = [
        "## Bottleneck adapters and AdapterFusion against AdapterHub's adapters",
        "",
        f"`./dev bench` (bench/modular.py) on this machine: {os.cpu_count()} cores, {THREADS} threads for both sides, float32, torch 2.11.0 for both",
        "(`adapters` 1.3.0 on transformers 4.57.6, in its own environment). The PEFT benchmark's tiny Llama (hidden 256, 4 layers,",
        f"vocab 8000, random weights), AdamW, causal-LM loss on {s['BENCH_BATCH']}×{s['BENCH_SEQ']} tokens, {s['BENCH_STEPS']} timed steps after one warm-up;",
        f"each side ran {ROUNDS} times, interleaved, the best figure of each counts; the median of the rounds' own ratios is beside it.",
        "",
        "| step | measure | moontune | adapters | ratio |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Goal (the modular-adapter issue): at least 1.25× `adapters`' tokens/s at no more memory.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("adapters", text)


if __name__ == "__main__":
    main()
