"""Optimizer benchmark: one AdamW step of moontune against torch.optim.AdamW, each of the three
implementations (single-tensor, foreach, fused) on both sides, in one command on this machine.

Run with `./dev bench` (or `python bench/optim.py` after a release build). Two tensor sets: 224
LoRA-shaped tensors (8×256 and 256×8) and four 1024×1024 tensors, gradients set once; each side
times BENCH_STEPS steps after 3 warm-up steps, in its own child process, same thread count. The
sides run ROUNDS times interleaved and the best of each counts. Writes its section of
BENCHMARKS.md.
"""
import os
import sys

from report import run_json, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
KERNELS = ("single", "foreach", "fused")

TORCH_SIDE = r"""
import json, os, time, torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
torch.manual_seed(0)
set_, steps = os.environ["BENCH_SET"], int(os.environ["BENCH_STEPS"])
def params():
    if set_ == "lora":
        shapes = [(8, 256), (256, 8)] * 112
    else:
        shapes = [(1024, 1024)] * 4
    out = [torch.randn(s, requires_grad=True) for s in shapes]
    for p in out:
        p.sum().backward()
    return out
result = {}
for kernel, choice in [("single", dict(foreach=False)), ("foreach", dict(foreach=True)), ("fused", dict(fused=True))]:
    opt = torch.optim.AdamW(params(), lr=1e-3, weight_decay=0.01, **choice)
    for _ in range(3):
        opt.step()
    t = time.perf_counter()
    for _ in range(steps):
        opt.step()
    result[kernel] = (time.perf_counter() - t) * 1000 / steps
print(json.dumps(result))
"""


def main():
    moontune = os.path.join(ROOT, "target/release/moontune")
    sets = [("lora", "224 LoRA-shaped tensors (8×256, 256×8)", "200"), ("big", "four 1024×1024 tensors", "20")]
    rows = []
    for key, label, steps in sets:
        env = dict(os.environ, BENCH_SET=key, BENCH_STEPS=steps, BENCH_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
        ours, theirs = [], []
        for _ in range(ROUNDS):
            ours.append(run_json([moontune, "run", os.path.join(ROOT, "bench/optim.lua")], env))
            theirs.append(run_json([sys.executable, "-c", TORCH_SIDE], env))
        best_ours = {k: min(r[k] for r in ours) for k in KERNELS}
        best_theirs = {k: min(r[k] for r in theirs) for k in KERNELS}
        rows.append((label, best_ours, best_theirs))
        print(label, best_ours, best_theirs, flush=True)
    lines = [
        "## Optimizer step against torch.optim",
        "",
        f"`./dev bench` (bench/optim.py): one AdamW step (lr 1e-3, weight decay 0.01), milliseconds, on",
        f"this machine ({os.cpu_count()} cores, {THREADS} threads both sides), gradients set once. Both sides",
        "run each implementation: single-tensor (torch `foreach=False`), foreach and fused",
        f"(`fused=True`). Best of {ROUNDS} interleaved runs per side. moontune's default is the fused",
        "kernel; the goal is at most 1.2× torch's fused time.",
        "",
        "| tensors | kernel | moontune, ms | torch.optim, ms | moontune / torch fused |",
        "|---|---|---|---|---|",
    ]
    for label, ours, theirs in rows:
        for i, k in enumerate(KERNELS):
            lines.append(f"| {label if i == 0 else ''} | {k} | {ours[k]:.3f} | {theirs[k]:.3f} | {ours[k] / theirs['fused']:.2f}× |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("optim", text)


if __name__ == "__main__":
    main()
