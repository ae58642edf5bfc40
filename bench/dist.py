"""Data-parallel benchmark: the LoRA benchmark's model and step (bench/lora.py) on 2 ranks × 1
thread (`moontune launch --nproc 2`, 4 × 128 tokens per rank) against 1 process × 2 threads
(8 × 128 tokens), the same global batch, on this machine. Reports tokens/s, the step time with
and without gradient averaging (`no_sync`: the same work, no communication), and an all-reduce of
the adapter's gradients alone; with LoRA that all-reduce must cost under 5% of a step. Each side
runs BENCH_ROUNDS times, interleaved; the best tokens/s counts. Writes its section of
BENCHMARKS.md.
"""
import os
import subprocess
import sys
import tempfile

from lora import MAKE_MODEL
from models import ROOT, ROUNDS, run
from report import write_section


def main():
    binary = os.path.join(ROOT, "target/release/moontune")
    recipe = os.path.join(ROOT, "bench/dist.lua")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama-lora-bench")
        subprocess.run([sys.executable, "-c", MAKE_MODEL, path], check=True, capture_output=True, text=True,
                       env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
        base = dict(os.environ, BENCH_MODEL=path, BENCH_SEQ="128", BENCH_STEPS="5")
        base.pop("OMP_NUM_THREADS", None)
        one, two = [], []
        for _ in range(ROUNDS):
            one.append(run([binary, "run", recipe], dict(base, BENCH_BATCH="8", OMP_NUM_THREADS="2"))[0])
            two.append(run([binary, "launch", "--nproc", "2", recipe], dict(base, BENCH_BATCH="4"))[0])
            print(f"1 × 2 threads {one[-1]['tokens_per_s']:.0f} tokens/s, 2 ranks × 1 thread {two[-1]['tokens_per_s']:.0f} tokens/s", file=sys.stderr)
    o = max(one, key=lambda r: r["tokens_per_s"])
    t = max(two, key=lambda r: r["tokens_per_s"])
    overhead = (t["step_ms"] - t["no_sync_step_ms"]) / t["step_ms"]
    reduce_share = t["all_reduce_ms"] / t["step_ms"]
    text = f"""## Data-parallel training on 2 ranks

`python bench/dist.py` on this machine (2 cores): the LoRA benchmark's tiny Llama and step (LoRA r 8, α 16 on
q/k/v/o_proj, {t['trainable']:,} trainable parameters, AdamW, causal-LM loss), 8 × 128 tokens per step in all:
one process with 2 threads against `moontune launch --nproc 2` (Gloo over loopback, one thread per rank,
4 × 128 tokens each, `mt.dist.data_parallel` on the model). 5 timed steps after one warm-up, {ROUNDS} rounds
interleaved, the best tokens/s of each side.

| | 1 process × 2 threads | 2 ranks × 1 thread |
|---|---|---|
| tokens/s | {o['tokens_per_s']:.0f} | {t['tokens_per_s']:.0f} ({t['tokens_per_s'] / o['tokens_per_s']:.2f}×) |
| step, ms | {o['step_ms']:.1f} | {t['step_ms']:.1f} |
| step with gradient averaging off (`no_sync`), ms | | {t['no_sync_step_ms']:.1f} |
| all-reduce of the adapter's gradients alone ({t['trainable'] * 4 / 1024:.0f} KiB), ms | | {t['all_reduce_ms']:.2f} |

Communication per step on 2 ranks: the step costs {t['step_ms'] - t['no_sync_step_ms']:.2f} ms more with gradient averaging than
without ({100 * overhead:.1f}% of the step); the all-reduce of the adapter's gradients alone takes {t['all_reduce_ms']:.2f} ms
({100 * reduce_share:.1f}% of the step). Goal (the distributed issue): under 5% of a step with LoRA.
"""
    print(text)
    write_section("dist", text)


if __name__ == "__main__":
    main()
