#!/usr/bin/env bash
# tools/cuda-dist-check.sh — the distributed issue's checks that need NVIDIA GPUs, in one go:
# mt.dist's collectives on CUDA tensors through NCCL (a one-rank group, and 2 ranks where there are
# 2 GPUs), the data-parallel gradients and AdamW weights through NCCL against a plain run, and the
# LoRA data-parallel step on the GPU as a plain run against `launch --nproc 1`
# (the launcher's overhead; a world of one makes no group) and against `launch --nproc 1 --backend
# nccl` (a one-rank NCCL group averaging the gradients). Run from the repository root with a built
# moontune (MOONTUNE_BIN, default target/release/moontune) whose libtorch is on LD_LIBRARY_PATH.
set -u
bin="${MOONTUNE_BIN:-target/release/moontune}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gpus="$(nvidia-smi -L 2>/dev/null | wc -l)"
echo "cuda-dist-check: $gpus GPU(s); $("$bin" --version 2>&1)"
status=0
check() {
    local what="$1"; shift
    if out="$("$@" 2>&1)"; then echo "ok    $what: $(echo "$out" | tail -1)"; else echo "FAIL  $what:"; echo "$out" | tail -15; status=1; fi
}
check "collectives, NCCL, 1 rank" env MOONTUNE_TEST_DEVICE=cuda "$bin" launch --nproc 1 --backend nccl --timeout 60 --headless --runs-dir "$work/runs" tests/dist/collectives.lua
if [ "$gpus" -ge 2 ]; then
    check "collectives, NCCL, 2 ranks" env MOONTUNE_TEST_DEVICE=cuda "$bin" launch --nproc 2 --backend nccl --timeout 60 --headless --runs-dir "$work/runs" tests/dist/collectives.lua
fi
if [ "$gpus" -eq 1 ]; then
    # Two ranks on one GPU: rank 1's "cuda" is cuda:1, which is not there; an error that says so.
    out="$(MOONTUNE_TEST_DEVICE=cuda "$bin" launch --nproc 2 --backend gloo --timeout 60 --headless --runs-dir "$work/runs" tests/dist/collectives.lua 2>&1)"
    if echo "$out" | grep -q "start at most 1 ranks per machine"; then echo "ok    2 ranks on 1 GPU: the error names the limit"; else echo "FAIL  2 ranks on 1 GPU:"; echo "$out" | tail -15; status=1; fi
fi
check "collectives, Gloo on CUDA tensors, 1 rank" env MOONTUNE_TEST_DEVICE=cuda "$bin" launch --nproc 1 --backend gloo --timeout 60 --headless --runs-dir "$work/runs" tests/dist/collectives.lua
# The suite's data-parallel tests on the GPU with a one-rank NCCL group (tests/dist/train.lua, LoRA
# on stories260K, which needs ../shared/data or MOONTUNE_TEST_DATA): the gradients of one backward
# (float64; plain and with gradient checkpointing) and the weights after 20 AdamW steps must equal
# a plain run's on the same GPU, as tests/dist.rs asks of 2 and 3 ranks on CPU; a run whose rank is
# killed resumes exactly.
data="${MOONTUNE_TEST_DATA:-../shared/data}"
same() {  # same WHAT TOLERANCE REFERENCE OTHER
    local out
    out="$(MOONTUNE_COMPARE="$3 $4" "$bin" run tests/dist/compare.lua 2>&1)"
    if awk -v tol="$2" '$1 == "max_diff" { ok = $2 <= tol * ($4 > 1 ? $4 : 1) && $4 > 1e-3 } END { exit !ok }' <<<"$out"; then
        echo "ok    $1: $out"
    else
        echo "FAIL  $1: $out"; status=1
    fi
}
if [ -f "$data/models/stories260K/config.json" ] && [ -f "$data/text/tinyshakespeare.txt" ]; then
    train=(tests/dist/train.lua device=cuda "data=$data")
    for ckpt in false true; do
        mkdir -p "$work/grads-$ckpt/nccl" "$work/grads-$ckpt/plain"
        check "gradients, NCCL 1 rank, checkpointing=$ckpt" "$bin" launch --nproc 1 --backend nccl --timeout 60 --headless --runs-dir "$work/runs" "${train[@]}" mode=grads dtype=float64 batch=4 checkpointing=$ckpt "out=$work/grads-$ckpt/nccl"
        check "gradients, plain run, checkpointing=$ckpt" "$bin" run --headless --runs-dir "$work/runs" "${train[@]}" mode=grads dtype=float64 batch=4 checkpointing=$ckpt "out=$work/grads-$ckpt/plain"
        same "gradients through NCCL equal the plain run's (checkpointing=$ckpt)" 1e-6 "$work/grads-$ckpt/plain/grads-rank0.safetensors" "$work/grads-$ckpt/nccl/grads-rank0.safetensors"
    done
    mkdir -p "$work/adamw/nccl" "$work/adamw/plain"
    check "20 AdamW steps, NCCL 1 rank" "$bin" launch --nproc 1 --backend nccl --timeout 60 --headless --runs-dir "$work/runs" "${train[@]}" mode=train steps=20 batch=4 "out=$work/adamw/nccl"
    check "20 AdamW steps, plain run" "$bin" run --headless --runs-dir "$work/runs" "${train[@]}" mode=train steps=20 batch=4 "out=$work/adamw/plain"
    same "weights after 20 steps through NCCL equal the plain run's" 1e-5 "$work/adamw/plain/train-rank0.safetensors" "$work/adamw/nccl/train-rank0.safetensors"
    # The rank killed after the checkpoint of step 10, then `--resume`: the weights at step 40
    # must be those of the same run never stopped, exactly (the GPU's optimizer state, the
    # rank's random streams and data position come back from the checkpoint).
    nccl=(launch --nproc 1 --backend nccl --timeout 20 --headless)
    settings=("${train[@]}" mode=train steps=40 batch=2 save_every=5 noise=0.5)
    mkdir -p "$work/resume/straight" "$work/resume/killed"
    check "40 steps through NCCL, never stopped" "$bin" "${nccl[@]}" --runs-dir "$work/resume/straight/runs" "${settings[@]}" "out=$work/resume/straight"
    "$bin" "${nccl[@]}" --runs-dir "$work/resume/killed/runs" "${settings[@]}" "out=$work/resume/killed" pause=0.05 >"$work/resume/killed.log" 2>&1 &
    launcher=$!
    for _ in $(seq 600); do compgen -G "$work/resume/killed/runs/*/checkpoints/step-10" >/dev/null && break; sleep 0.2; done
    rank="$(pgrep -P "$launcher" | head -1)"
    if [ -n "$rank" ] && compgen -G "$work/resume/killed/runs/*/checkpoints/step-10" >/dev/null; then
        kill -9 "$rank"
        wait "$launcher" && { echo "FAIL  the launcher succeeded although its rank was killed"; status=1; }
        run="$(compgen -G "$work/resume/killed/runs/*")"
        out="$("$bin" "${nccl[@]}" --resume "$run" "${train[@]}" "out=$work/resume/killed" pause=0 2>&1)"
        if grep -q "resumed from" <<<"$out"; then echo "ok    --resume through NCCL after the rank was killed: $(grep -o 'resumed from.*' <<<"$out" | head -1)"; else echo "FAIL  --resume through NCCL:"; tail -15 <<<"$out"; status=1; fi
        same "the resumed run's weights equal the run never stopped" 0 "$work/resume/straight/train-rank0.safetensors" "$work/resume/killed/train-rank0.safetensors"
    else
        echo "FAIL  no checkpoint of step 10 appeared, or no rank to kill:"; tail -15 "$work/resume/killed.log"; status=1
        kill "$launcher" 2>/dev/null
    fi
else
    echo "SKIPPED  the data-parallel tests on the GPU: $data has no stories260K or tinyshakespeare.txt"
fi
# The PEFT benchmark's tiny Llama (bench/lora.py's shape), made and saved by moontune itself.
cat > "$work/make.lua" <<'LUA'
local mt = require "moontune"
local model = mt.models.new("LlamaForCausalLM", { vocab_size = 8000, hidden_size = 256, intermediate_size = 688, num_hidden_layers = 4,
  num_attention_heads = 8, num_key_value_heads = 4, max_position_embeddings = 512, tie_word_embeddings = false })
assert(model:save(os.getenv("MODEL_DIR")))
LUA
check "benchmark model" env MODEL_DIR="$work/model" "$bin" run "$work/make.lua"
# Three rounds, the three ways in turn, so that drifting clocks or load fall on all of them.
bench() { env BENCH_MODEL="$work/model" BENCH_DEVICE=cuda BENCH_BATCH=8 BENCH_SEQ=128 BENCH_STEPS="${BENCH_STEPS:-100}" "$@"; }
for round in 1 2 3; do
    check "round $round: LoRA step on the GPU, plain run" bench "$bin" run bench/dist.lua
    check "round $round: LoRA step on the GPU, launch --nproc 1" bench "$bin" launch --nproc 1 bench/dist.lua
    check "round $round: LoRA step on the GPU, launch --nproc 1 --backend nccl" bench "$bin" launch --nproc 1 --backend nccl bench/dist.lua
done
exit $status
