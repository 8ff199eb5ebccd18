#!/usr/bin/env bash
# The whole test suite on CPU (the tensorrt-marked suite is collected and skipped where TensorRT is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec python -m pytest -q "$@"
