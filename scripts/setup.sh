#!/usr/bin/env bash
# Set up ssimae in ./.venv from a fresh clone (CPU build of PyTorch).
# GPU users: install the torch build you want first, then `pip install -e .`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# Pin torch explicitly: an unpinned torch makes pip pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
echo "ssimae set up in .venv (activate with: . .venv/bin/activate)"
