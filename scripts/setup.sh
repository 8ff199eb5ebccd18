#!/usr/bin/env bash
# Creates .venv (if missing) and installs slsg with training, kernels, line-output (mqtt, modbus) and dev extras.
# torch is pinned first: 2.13.0 is the CPU build these machines install from disk; the project's range
# then installs nothing more (elsewhere pip picks the build that fits your machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
python -m pip install -q -e ".[train,kernels,dev,mqtt,modbus]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, onnxruntime, cv2, slsg, edge_runtime, paho.mqtt.client, pymodbus" # fail loudly if incomplete
