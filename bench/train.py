"""Training-step benchmark: a full fine-tuning step of a small Llama (hidden 256, 4 layers,
vocabulary 8000, batch 8 × 128, AdamW) in moontune against transformers with torch.optim, in one
command on this machine, timed per phase (forward with the loss, backward, optimizer step).

Run with `./dev bench` (or `python bench/train.py` after a release build). The model is made by
transformers with a fixed seed and saved; both sides load it. transformers runs with AdamW's
default implementation (on CPU the single-tensor loop) and with `fused=True`; moontune with its
default (fused). Each side runs ROUNDS times interleaved in its own child process, same thread
count; the run with the best total counts. Writes its section of BENCHMARKS.md.
"""
import os
import subprocess
import sys
import tempfile

from report import run_json, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SETTINGS = dict(BENCH_BATCH="8", BENCH_SEQ="128", BENCH_STEPS="8")

MAKE_MODEL = r"""
import sys, torch, transformers
torch.manual_seed(0)
config = transformers.LlamaConfig(vocab_size=8000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                  num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=256)
model = transformers.LlamaForCausalLM(config)
model.save_pretrained(sys.argv[1], safe_serialization=True)
print(sum(p.numel() for p in model.parameters()))
"""

TORCH_SIDE = r"""
import json, os, time, torch, transformers
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
model = transformers.AutoModelForCausalLM.from_pretrained(os.environ["BENCH_MODEL"], dtype=torch.float32)
model.train()
fused = os.environ["BENCH_FUSED"] == "1"
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **(dict(fused=True) if fused else {}))
batch, seq, steps = int(os.environ["BENCH_BATCH"]), int(os.environ["BENCH_SEQ"]), int(os.environ["BENCH_STEPS"])
torch.manual_seed(0)
ids = torch.randint(model.config.vocab_size, (batch, seq))
times = dict(forward=0.0, backward=0.0, optimizer=0.0)
for step in range(steps + 2):
    t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    opt.step(); opt.zero_grad()
    t3 = time.perf_counter()
    if step >= 2:
        times["forward"] += t1 - t0
        times["backward"] += t2 - t1
        times["optimizer"] += t3 - t2
ms = {k: v * 1000 / steps for k, v in times.items()}
ms["total"] = sum(ms.values())
print(json.dumps(ms))
"""


def main():
    moontune = os.path.join(ROOT, "target/release/moontune")
    model_dir = os.path.join(tempfile.mkdtemp(prefix="moontune-bench-"), "llama")
    made = subprocess.run([sys.executable, "-c", MAKE_MODEL, model_dir], check=True, capture_output=True, text=True,
                          env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
    params = int(made.stdout.strip().splitlines()[-1])
    env = dict(os.environ, BENCH_MODEL=model_dir, BENCH_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1", **SETTINGS)
    sides = {"moontune (fused AdamW)": [], "transformers, AdamW default": [], "transformers, AdamW fused=True": []}
    for _ in range(ROUNDS):
        sides["moontune (fused AdamW)"].append(run_json([moontune, "run", os.path.join(ROOT, "bench/train.lua")], env))
        sides["transformers, AdamW default"].append(run_json([sys.executable, "-c", TORCH_SIDE], dict(env, BENCH_FUSED="0")))
        sides["transformers, AdamW fused=True"].append(run_json([sys.executable, "-c", TORCH_SIDE], dict(env, BENCH_FUSED="1")))
    best = {name: min(runs, key=lambda r: r["total"]) for name, runs in sides.items()}
    ours = best["moontune (fused AdamW)"]
    lines = [
        "## Training step against transformers",
        "",
        f"`./dev bench` (bench/train.py): one full fine-tuning step of a Llama made by transformers",
        f"({params / 1e6:.1f}M parameters: hidden 256, intermediate 1024, 4 layers, 8 heads, vocabulary 8000),",
        f"batch {SETTINGS['BENCH_BATCH']} × {SETTINGS['BENCH_SEQ']} tokens, causal-LM loss, AdamW, float32 on CPU, {THREADS} threads both",
        f"sides; milliseconds per step, mean of {SETTINGS['BENCH_STEPS']} steps after 2 warm-up steps, best total of",
        f"{ROUNDS} interleaved runs per side. Speed-up is the other side's total / moontune's, so above 1",
        "means moontune is faster.",
        "",
        "| side | forward | backward | optimizer | total | moontune speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in best.items():
        lines.append(f"| {name} | {r['forward']:.1f} | {r['backward']:.1f} | {r['optimizer']:.1f} | {r['total']:.1f} | {r['total'] / ours['total']:.2f}× |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("train", text)


if __name__ == "__main__":
    main()
