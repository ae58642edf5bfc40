"""Model benchmark: moontune against transformers on this machine, same thread count.

Run with `./dev bench` (which builds moontune in release mode first; BENCH_ROUNDS and
BENCH_THREADS adjust it). For stories260K and a
randomly initialised ~100M-parameter Llama (made here with transformers, saved as
safetensors), each side runs in its own child process of this one and reports load time,
forward throughput (tokens/s over a batch) and greedy generation throughput (tokens/s, batch 1,
KV cache); this process reads each child's peak RSS from wait4. Prints a Markdown table of both
sides and the ratios, and writes it to its section of BENCHMARKS.md.
"""
import json
import os
import subprocess
import sys
import tempfile

from report import write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("MOONTUNE_TEST_DATA", os.path.join(ROOT, "../shared/data"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
# Each side runs this many times, interleaved; the best figure of each counts (this shared
# machine's run-to-run noise is several percent).
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

# transformers' throughput, shared by the benchmarks' Python sides: forward tokens/s over a
# (batch, seq) batch after a warm-up, and greedy generation tokens/s (batch 1, a 16-token prompt,
# no early stop). Settings come from BENCH_* variables.
MEASURE = r"""
import json, os, time, torch, transformers
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
batch, seq = int(os.environ["BENCH_BATCH"]), int(os.environ["BENCH_SEQ"])
new_tokens, reps = int(os.environ["BENCH_NEW_TOKENS"]), int(os.environ["BENCH_REPS"])

def measure(model, vocab):
    torch.manual_seed(0)
    ids = torch.randint(3, vocab, (batch, seq))
    with torch.no_grad():
        model(input_ids=ids)
        t = time.perf_counter()
        for _ in range(reps):
            model(input_ids=ids)
        forward = reps * batch * seq / (time.perf_counter() - t)
        prompt = torch.randint(3, vocab, (1, 16))
        kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
        model.generate(prompt, max_new_tokens=4, min_new_tokens=4, **kw)
        t = time.perf_counter()
        model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        generate = new_tokens / (time.perf_counter() - t)
    return ids, forward, generate
"""

# Seconds per call of a Python side's `step()`: one warm-up call, then BENCH_STEPS timed ones.
TIMED_STEPS = r"""
def timed(step):
    step()
    t = time.perf_counter()
    for _ in range(int(os.environ["BENCH_STEPS"])):
        step()
    return (time.perf_counter() - t) / int(os.environ["BENCH_STEPS"])
"""

TRANSFORMERS_SIDE = MEASURE + r"""
t0 = time.perf_counter()
model = transformers.AutoModelForCausalLM.from_pretrained(os.environ["BENCH_MODEL"], dtype=torch.float32).eval()
load_s = time.perf_counter() - t0
_, forward, generate = measure(model, int(os.environ["BENCH_VOCAB"]))
print(json.dumps({"load_s": load_s, "forward_tokens_per_s": forward, "generate_tokens_per_s": generate}))
"""


def run(cmd, env):
    """Runs a child, returns (its JSON result line, its peak RSS in MiB)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"{cmd[0]} failed:\n{stdout}\n{stderr}")
    line = [l for l in stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line), usage.ru_maxrss / 1024


MAKE_LLAMA_100M = r"""
import sys, torch, transformers
torch.manual_seed(0)
config = transformers.LlamaConfig(vocab_size=16000, hidden_size=768, intermediate_size=2048, num_hidden_layers=10,
                                  num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=1024)
model = transformers.LlamaForCausalLM(config)
model.save_pretrained(sys.argv[1], safe_serialization=True)
print(sum(p.numel() for p in model.parameters()))
"""


def side_by_side(lua_script, python_side, path, settings, show):
    """Runs moontune's side (a Lua script) and transformers' (Python code) ROUNDS times each,
    interleaved, on model `path` with BENCH_* `settings`; `show` prints a line per round.
    Returns both lists of (result, peak RSS)."""
    env = dict(os.environ, BENCH_MODEL=path, BENCH_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1", **settings)
    ours_runs, their_runs = [], []
    for _ in range(ROUNDS):
        ours_runs.append(run([os.path.join(ROOT, "target/release/moontune"), "run", os.path.join(ROOT, lua_script)], env))
        their_runs.append(run([sys.executable, "-c", python_side], env))
        print("  run:", show(ours_runs[-1][0], their_runs[-1][0]), flush=True)
    return ours_runs, their_runs


def best(runs):
    """The best of several runs: highest throughputs, lowest load time and peak RSS."""
    results = [r for r, _ in runs]
    return ({"load_s": min(r["load_s"] for r in results),
             "forward_tokens_per_s": max(r["forward_tokens_per_s"] for r in results),
             "generate_tokens_per_s": max(r["generate_tokens_per_s"] for r in results)},
            min(rss for _, rss in runs))


def make_llama_100m(path):
    # In a child, so that this process stays small: Linux carries a process's peak RSS across
    # fork and exec into the children whose peaks we measure.
    out = subprocess.run([sys.executable, "-c", MAKE_LLAMA_100M, path], check=True, capture_output=True, text=True,
                         env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
    return int(out.stdout.strip().splitlines()[-1])


def main():
    work = tempfile.mkdtemp(prefix="moontune-bench-")
    llama_dir = os.path.join(work, "llama100m")
    llama_params = make_llama_100m(llama_dir)
    cases = [
        ("stories260K (292.8K params)", os.path.join(DATA, "models/stories260K"),
         dict(BENCH_BATCH="8", BENCH_SEQ="256", BENCH_NEW_TOKENS="200", BENCH_REPS="50", BENCH_VOCAB="512")),
        (f"Llama, random init ({llama_params / 1e6:.1f}M params)", llama_dir,
         dict(BENCH_BATCH="2", BENCH_SEQ="256", BENCH_NEW_TOKENS="64", BENCH_REPS="8", BENCH_VOCAB="16000")),
    ]
    rows = []
    for name, path, settings in cases:
        ours_runs, their_runs = side_by_side("bench/models.lua", TRANSFORMERS_SIDE, path, settings, lambda o, t:
            f"moontune {o['forward_tokens_per_s']:.0f}, transformers {t['forward_tokens_per_s']:.0f} forward tokens/s")
        ours, ours_rss = best(ours_runs)
        theirs, their_rss = best(their_runs)
        forward_runs = ", ".join(f"{o['forward_tokens_per_s']:.0f}/{t['forward_tokens_per_s']:.0f}" for (o, _), (t, _) in zip(ours_runs, their_runs))
        rows.append((name, settings, ours, ours_rss, theirs, their_rss, forward_runs))
        print(name, ours, f"{ours_rss:.0f} MiB", theirs, f"{their_rss:.0f} MiB", flush=True)

    lines = [
        "## Models against transformers",
        "",
        f"`./dev bench` (bench/models.py) on this machine: {os.cpu_count()} cores, {THREADS} threads for both sides,",
        "float32 on CPU, torch 2.11.0 for both (moontune links the same libtorch). Each side runs in its",
        "own child process of the benchmark; peak RSS is that process's maximum resident set (wait4).",
        "Load time excludes interpreter start and imports; forward is tokens/s over a batch after one",
        "warm-up pass; generation is greedy with a KV cache, batch 1, a 16-token prompt, no early stop.",
        f"Each side ran {ROUNDS} times, interleaved, and the best figure of each counts: single runs on this",
        "shared machine vary by several percent.",
        "Ratios are moontune / transformers for throughput and transformers / moontune for load time and",
        "RSS, so above 1 means moontune is better.",
        "",
        "| model | measure | moontune | transformers | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, s, ours, ours_rss, theirs, their_rss, _ in rows:
        fwd = f"forward ({s['BENCH_BATCH']}×{s['BENCH_SEQ']} tokens), tokens/s"
        gen = f"greedy generation ({s['BENCH_NEW_TOKENS']} tokens), tokens/s"
        lines.append(f"| {name} | {fwd} | {ours['forward_tokens_per_s']:.0f} | {theirs['forward_tokens_per_s']:.0f} | {ours['forward_tokens_per_s'] / theirs['forward_tokens_per_s']:.2f}× |")
        lines.append(f"| | {gen} | {ours['generate_tokens_per_s']:.1f} | {theirs['generate_tokens_per_s']:.1f} | {ours['generate_tokens_per_s'] / theirs['generate_tokens_per_s']:.2f}× |")
        lines.append(f"| | load, seconds | {ours['load_s']:.3f} | {theirs['load_s']:.3f} | {theirs['load_s'] / ours['load_s']:.2f}× |")
        lines.append(f"| | peak RSS, MiB | {ours_rss:.0f} | {their_rss:.0f} | {their_rss / ours_rss:.2f}× |")
    lines.append("")
    lines.append("Every run's forward tokens/s, moontune/transformers, in the order they ran:")
    lines.append("")
    for name, *_, forward_runs in rows:
        lines.append(f"- {name}: {forward_runs}")
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("models", text)


if __name__ == "__main__":
    main()
