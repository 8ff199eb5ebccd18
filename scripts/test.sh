#!/usr/bin/env bash
# The whole test suite on CPU (the tensorrt-marked suite is collected and skipped where TensorRT is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# GenICam cameras through Aravis: PyGObject builds against the system's gobject-introspection (CI installs it:
# scripts/ci_services.sh); without it the GenICam tests are skipped with that reason.
if pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then
  PY=python bash scripts/pip-quiet.sh -e ".[genicam]" || echo "test.sh: PyGObject did not build: the GenICam tests are skipped"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec python -m pytest -q "$@"
