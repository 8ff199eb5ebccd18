#!/usr/bin/env bash
# Creates .venv (if missing) and installs slsg with training, kernels, line-output (mqtt, modbus, opcua), OpenVINO and dev extras.
# torch is pinned first: 2.13.0 is the CPU build these machines install from disk; the project's range
# then installs nothing more (elsewhere pip picks the build that fits your machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# Quiet on success, so the main job's output starts with its own first line; pip's real errors still show and
# fail the script (scripts/pip-quiet.sh filters only its known noise). Upgrading pip is best effort (offline).
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
PY=python bash scripts/pip-quiet.sh "torch==2.13.0"
PY=python bash scripts/pip-quiet.sh -e ".[train,kernels,dev,mqtt,modbus,opcua,openvino]"
python -c "import torch, onnxruntime, cv2, slsg, edge_runtime, paho.mqtt.client, pymodbus, openvino" # fail loudly if incomplete
