"""LoRA training benchmark: moontune's mt.peft.lora against transformers + PEFT 0.21 on this
machine, same thread count, float32 and bf16 autocast.

Run with `./dev bench` (which builds moontune in release mode first; BENCH_ROUNDS and
BENCH_THREADS adjust it). A tiny Llama as the PEFT issue sets it (hidden 256, 4 layers, 8 heads,
4 KV heads, intermediate 688, vocab 8000), randomly initialised and saved here; LoRA r 8, α 16
on q/k/v/o_proj, AdamW, causal-LM loss on a batch of 8 × 128 tokens; tokens/s over the timed
steps after one warm-up, and each child's peak RSS. Also QLoRA against LoRA, and gradient
checkpointing against none and against transformers', on a ~100M-parameter Llama. The fraction of the matmul peak counts
4·P·tokens FLOPs per step (P the linear weights, the head included: the forward, and the
backward's input gradients; frozen weights get no weight gradients) against 180 GFLOP/s, the
float32 matmul peak the issue measured for this kind of machine. Prints a Markdown table and
writes it to its section of BENCHMARKS.md.
"""
import os
import subprocess
import sys
import tempfile

from models import ROOT, ROUNDS, THREADS, TIMED_STEPS, make_llama_100m, run, side_by_side
from report import write_section

MAKE_MODEL = r"""
import sys, torch, transformers
torch.manual_seed(0)
config = transformers.LlamaConfig(vocab_size=8000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=False)
model = transformers.LlamaForCausalLM(config)
model.save_pretrained(sys.argv[1], safe_serialization=True)
linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
print(linear)
"""

PEFT_SIDE = r"""
import json, os, time, torch, transformers, peft""" + TIMED_STEPS + r"""
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
batch, seq = int(os.environ["BENCH_BATCH"]), int(os.environ["BENCH_SEQ"])
model = transformers.AutoModelForCausalLM.from_pretrained(os.environ["BENCH_MODEL"], dtype=torch.float32)
if os.environ.get("BENCH_CHECKPOINT") == "1":
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
config = peft.LoraConfig(r=int(os.environ["BENCH_RANK"]), lora_alpha=int(os.environ["BENCH_ALPHA"]), lora_dropout=0.0,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
model = peft.get_peft_model(model, config)
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
torch.manual_seed(0)
ids = torch.randint(3, model.config.vocab_size, (batch, seq))
autocast = os.environ.get("BENCH_AUTOCAST", "")
def step():
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
    else:
        loss = model(input_ids=ids, labels=ids).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
print(json.dumps({"tokens_per_s": batch * seq / timed(step), "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}))
"""

MATMUL_PEAK = 180e9
BF16_PEAK = 420e9


def main():
    settings = dict(BENCH_BATCH="8", BENCH_SEQ="128", BENCH_STEPS="5", BENCH_RANK="8", BENCH_ALPHA="16")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama-lora-bench")
        made = subprocess.run([sys.executable, "-c", MAKE_MODEL, path], check=True, capture_output=True, text=True,
                              env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
        linear = int(made.stdout.strip().splitlines()[-1])
        ours, theirs = side_by_side("bench/lora.lua", PEFT_SIDE, path, settings,
                                    lambda o, t: f"moontune {o['tokens_per_s']:.0f} tokens/s, PEFT {t['tokens_per_s']:.0f} tokens/s")
        ours16, theirs16 = side_by_side("bench/lora.lua", PEFT_SIDE, path, dict(settings, BENCH_AUTOCAST="bf16"),
                                        lambda o, t: f"bf16 autocast: moontune {o['tokens_per_s']:.0f} tokens/s, PEFT {t['tokens_per_s']:.0f} tokens/s")
        cmd = [os.path.join(ROOT, "target/release/moontune"), "run", os.path.join(ROOT, "bench/lora.lua")]
        env = dict(os.environ, BENCH_MODEL=path, BENCH_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS), BENCH_METHOD="lua", **settings)
        in_lua = [run(cmd, env) for _ in range(ROUNDS)]
    assert ours[0][0]["trainable"] == theirs[0][0]["trainable"], "both sides train the same number of parameters"
    lua_tps = max(r["tokens_per_s"] for r, _ in in_lua)
    o16, t16 = max(r["tokens_per_s"] for r, _ in ours16), max(r["tokens_per_s"] for r, _ in theirs16)
    o16_rss, t16_rss = min(rss for _, rss in ours16), min(rss for _, rss in theirs16)
    o_tps, t_tps = max(r["tokens_per_s"] for r, _ in ours), max(r["tokens_per_s"] for r, _ in theirs)
    o_rss, t_rss = min(rss for _, rss in ours), min(rss for _, rss in theirs)
    flops_per_token = 4 * linear
    s = settings
    lines = [
        "## LoRA training against transformers + PEFT",
        "",
        f"`./dev bench` (bench/lora.py) on this machine: {os.cpu_count()} cores, {THREADS} threads for both sides, float32, torch 2.11.0",
        "for both. A tiny Llama (hidden 256, 4 layers, 8 heads, 4 KV heads, intermediate 688, vocab 8000, random",
        f"weights), LoRA r {s['BENCH_RANK']}, α {s['BENCH_ALPHA']} on q/k/v/o_proj ({ours[0][0]['trainable']:,} trainable parameters on both sides), AdamW",
        f"(moontune's default fused kernel; torch.optim's default on CPU), causal-LM loss on {s['BENCH_BATCH']}×{s['BENCH_SEQ']} tokens, {s['BENCH_STEPS']} timed",
        f"steps after one warm-up; each side ran {ROUNDS} times, interleaved, the best figure of each counts. The matmul",
        f"fraction counts 4·P FLOPs per token (P = {linear:,} linear weights) against 180 GFLOP/s.",
        "",
        "| measure | moontune | transformers + PEFT | ratio |",
        "|---|---|---|---|",
        f"| tokens/s, float32 | {o_tps:.0f} | {t_tps:.0f} | {o_tps / t_tps:.2f}× |",
        f"| tokens/s, bf16 autocast | {o16:.0f} | {t16:.0f} | {o16 / t16:.2f}× |",
        f"| peak RSS, MiB (float32) | {o_rss:.0f} | {t_rss:.0f} | {o_rss / t_rss:.2f}× |",
        f"| peak RSS, MiB (bf16 autocast) | {o16_rss:.0f} | {t16_rss:.0f} | {o16_rss / t16_rss:.2f}× |",
        f"| fraction of the float32 matmul peak | {o_tps * flops_per_token / MATMUL_PEAK:.1%} | {t_tps * flops_per_token / MATMUL_PEAK:.1%} | |",
        f"| fraction of the bf16 matmul peak | {o16 * flops_per_token / BF16_PEAK:.1%} | {t16 * flops_per_token / BF16_PEAK:.1%} | |",
        "",
        f"The same LoRA written in Lua (`mt.peft.register`, its forward a Lua function called per layer): {lua_tps:.0f} tokens/s,",
        f"{lua_tps / o_tps:.2f}× the built-in's ({(1 / lua_tps - 1 / o_tps) * int(s['BENCH_BATCH']) * int(s['BENCH_SEQ']) * 1000:+.0f} ms per step).",
        "",
        "Goal (the PEFT issue): at least 1.25× PEFT's tokens/s in both precisions and at most 0.6× its peak RSS.",
        "bf16 autocast is `mt.autocast(\"bf16\", fn)` around the forward and loss here, `torch.autocast(\"cpu\",",
        "dtype=torch.bfloat16)` there; its matmul peak is taken as 420 GFLOP/s.",
    ]
    lines += qlora_against_lora()
    lines += checkpointing()
    text = "\n".join(lines) + "\n"
    print(text)
    write_section("lora", text)


def qlora_against_lora():
    """Peak RSS and tokens/s of a LoRA and a QLoRA step in moontune on a ~100M-parameter Llama."""
    settings = dict(BENCH_BATCH="2", BENCH_SEQ="128", BENCH_STEPS="2", BENCH_RANK="8", BENCH_ALPHA="16")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama-100m")
        params = make_llama_100m(path)
        env = dict(os.environ, BENCH_MODEL=path, BENCH_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS), **settings)
        ours16, theirs16 = side_by_side("bench/lora.lua", PEFT_SIDE, path, dict(settings, BENCH_AUTOCAST="bf16"),
                                        lambda o, t: f"bf16 autocast: moontune {o['tokens_per_s']:.0f} tokens/s, PEFT {t['tokens_per_s']:.0f} tokens/s")
        cmd = [os.path.join(ROOT, "target/release/moontune"), "run", os.path.join(ROOT, "bench/lora.lua")]
        lora = [run(cmd, dict(env, BENCH_QLORA="0")) for _ in range(ROUNDS)]
        qlora = [run(cmd, dict(env, BENCH_QLORA="1")) for _ in range(ROUNDS)]
    l_rss, q_rss = min(r for _, r in lora), min(r for _, r in qlora)
    l_step, q_step = min(r["step_peak_mib"] for r, _ in lora), min(r["step_peak_mib"] for r, _ in qlora)
    l_tps, q_tps = max(r["tokens_per_s"] for r, _ in lora), max(r["tokens_per_s"] for r, _ in qlora)
    return [
        "",
        f"QLoRA against LoRA in moontune, a randomly initialised Llama of {params / 1e6:.0f}M parameters (bench/models.py's),",
        f"r 8 on q/k/v/o_proj, AdamW, {settings['BENCH_BATCH']}×{settings['BENCH_SEQ']} tokens, float32 compute; QLoRA stores the linear weights in NF4 with",
        "double quantisation (the output head stays float32). Peak RSS of the steps (the high-water mark reset",
        "once the model is ready) and of the whole process (which includes loading: the model is read in float32",
        "before it is quantised):",
        "",
        "| | LoRA | QLoRA | ratio |",
        "|---|---|---|---|",
        f"| peak RSS of the steps, MiB | {l_step:.0f} | {q_step:.0f} | {q_step / l_step:.2f}× |",
        f"| peak RSS of the process, MiB | {l_rss:.0f} | {q_rss:.0f} | {q_rss / l_rss:.2f}× |",
        f"| tokens/s | {l_tps:.0f} | {q_tps:.0f} | {q_tps / l_tps:.2f}× |",
    ]


def checkpointing():
    """Peak RSS and tokens/s of LoRA with every layer checkpointed, moontune against transformers'
    gradient_checkpointing_enable (non-reentrant) + PEFT, and moontune without it, on the ~100M Llama."""
    settings = dict(BENCH_BATCH="4", BENCH_SEQ="256", BENCH_STEPS="2", BENCH_RANK="8", BENCH_ALPHA="16")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama-100m")
        make_llama_100m(path)
        ours, theirs = side_by_side("bench/lora.lua", PEFT_SIDE, path, dict(settings, BENCH_CHECKPOINT="1"),
                                    lambda o, t: f"checkpointed: moontune {o['tokens_per_s']:.0f} tokens/s, PEFT {t['tokens_per_s']:.0f} tokens/s")
        cmd = [os.path.join(ROOT, "target/release/moontune"), "run", os.path.join(ROOT, "bench/lora.lua")]
        env = dict(os.environ, BENCH_MODEL=path, BENCH_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS), **settings)
        plain = [run(cmd, env) for _ in range(ROUNDS)]
    o_rss, t_rss, p_rss = min(r for _, r in ours), min(r for _, r in theirs), min(r for _, r in plain)
    o_tps, t_tps, p_tps = (max(r["tokens_per_s"] for r, _ in runs) for runs in (ours, theirs, plain))
    return [
        "",
        f"Gradient checkpointing (`model:gradient_checkpointing(true)`; transformers' `gradient_checkpointing_enable`,",
        f"non-reentrant, on the PEFT side), the same ~100M Llama, LoRA r 8 on q/k/v/o_proj, {settings['BENCH_BATCH']}×{settings['BENCH_SEQ']} tokens, float32:",
        "",
        "| | moontune, checkpointed | transformers + PEFT, checkpointed | moontune, not checkpointed |",
        "|---|---|---|---|",
        f"| peak RSS, MiB | {o_rss:.0f} | {t_rss:.0f} | {p_rss:.0f} |",
        f"| tokens/s | {o_tps:.0f} | {t_tps:.0f} | {p_tps:.0f} |",
    ]


if __name__ == "__main__":
    main()
