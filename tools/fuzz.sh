#!/usr/bin/env bash
# tools/fuzz.sh — `./dev fuzz [SECONDS]`: the whole fuzz suite, then the coverage-guided targets.
#
# 1. tests/fuzz.rs with MOONTUNE_FUZZ=all: every generated bad input (over 1,000), each run as a
#    child process and classified; the counts go to RELIABILITY.md's first table.
# 2. cargo fuzz (libFuzzer, nightly toolchain) on fuzz/: the safetensors parser, config parsing,
#    tokenizer loading and GGUF reading (metadata, config, tokenizer, de-quantisation), each for
#    SECONDS (default 300), seeded with the real files in ../shared/data (the GGUF seed is
#    stories260K converted by moontune); the runs' statistics go to RELIABILITY.md's second table. A crash leaves its
#    input in fuzz/artifacts/<target>/ and fails the command.
# Expects tools/env.sh to be sourced (./dev does it).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
report="RELIABILITY.md"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

status=0
MOONTUNE_FUZZ=all MOONTUNE_FUZZ_REPORT="$work/cases.md" cargo test --test fuzz -- --nocapture || status=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
rustup toolchain list | grep -q '^nightly' || { echo "./dev fuzz: the coverage-guided targets need the nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
torch_lib="$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

data="${MOONTUNE_TEST_DATA}"
seed() {  # seed DIR FILE...: copies the files that exist into DIR
    local dir="$1"; shift
    mkdir -p "$dir"
    for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/" || true; done
}
seed "$work/seeds/safetensors" "$data/models/stories260K/model.safetensors"
seed "$work/seeds/config" "$data/models/stories260K/config.json"
seed "$work/seeds/tokenizer" "$data/models/stories260K/tokenizer.json"
mkdir -p "$work/seeds/gguf"
target/debug/moontune convert "$data/models/stories260K" "$work/seeds/gguf/stories260K.gguf" --type q8_0 >/dev/null

rows=""
for target in safetensors config tokenizer gguf; do
    mkdir -p "$work/corpus/$target"
    # Inputs a little longer than the seeds: the safetensors seed is 1.1 MB, the GGUF one 0.5 MB,
    # the JSON ones 16 KB.
    case "$target" in
        safetensors) max_len=2097152 ;;
        gguf) max_len=1048576 ;;
        *) max_len=65536 ;;
    esac
    log="$work/$target.log"
    # -s none: libtorch is not built with a sanitizer; libFuzzer still catches panics, aborts and
    # leaks of whole inputs, and -rss_limit_mb catches runaway allocation.
    if cargo +nightly fuzz run -s none --fuzz-dir fuzz "$target" "$work/corpus/$target" "$work/seeds/$target" -- \
        -dict="$PWD/fuzz/dicts/$target.dict" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -max_len=$max_len -print_final_stats=1 > "$log" 2>&1; then
        outcome="no crash"
    else
        outcome="FAILED (see fuzz/artifacts/$target)"
        status=1
        tail -40 "$log" >&2
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')"
    corpus="$(ls "$work/corpus/$target" | wc -l)"
    rows="$rows| $target | ${seconds} s | ${runs:-?} | ${cov:-?} | $corpus | $outcome |"$'\n'
done

{
    cat <<'HEAD'
# Reliability

What `./dev fuzz` found on its last run (written by tools/fuzz.sh; the sampled part of the suite
runs in `./dev test`). A case is a crash when the process dies of a signal, panics or aborts; a
hang when it runs past 60 s; an unclear message when its error names neither the call, file or key
at fault nor what was wrong, or shows internals (Rust or C++ names, mlua's conversion texts,
table addresses). The suite fails on any of the three.

## Generated bad inputs (tests/fuzz)

HEAD
    cat "$work/cases.md" 2>/dev/null || echo "The suite did not finish; see the output above."
    cat <<HEAD

## Coverage-guided targets (fuzz/, cargo fuzz with libFuzzer, machine: $(nproc) cores)

| target | time | inputs run | coverage (edges) | corpus | result |
|---|---|---|---|---|---|
HEAD
    printf '%s' "$rows"
    echo
    echo "Last run: $(date -u +%Y-%m-%d)."
} > "$report"
echo "./dev fuzz: wrote $report"
exit "$status"
