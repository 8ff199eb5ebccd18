#!/usr/bin/env bash
# The runtime's tests on Python 3.8, as on JetPack 5: a .venv38 with the pins in scripts/requirements-py38.txt,
# slsg installed from a wheel built by the main venv (pip on 3.8 installs it; it cannot build it: the
# build backend needs setuptools >= 77, which has no 3.8 release), tests run against the installed copy.
# Python 3.8 is found as $PYTHON38, python3.8 on PATH, or pyenv's 3.8.x.
set -euo pipefail
cd "$(dirname "$0")/.."
is38() { [ -n "$1" ] && "$1" -c "import sys; assert sys.version_info[:2] == (3, 8)" 2>/dev/null; }
PY38=${PYTHON38:-}
for candidate in "$(command -v python3.8 || true)" "$HOME"/.pyenv/versions/3.8*/bin/python3.8; do
  if [ -z "$PY38" ] && is38 "$candidate"; then PY38=$candidate; fi  # a pyenv shim may not run: try each
done
if ! is38 "$PY38"; then
  echo "test_py38: no Python 3.8 found (set PYTHON38=/path/to/python3.8)" >&2
  if [ -n "${CI:-}" ]; then exit 1; fi
  exit 0
fi
if [ ! -x .venv38/bin/python ]; then
  "$PY38" -m venv .venv38
fi
.venv38/bin/python -m pip install -q --upgrade "pip<25.1" 2>&1 | grep -v "^WARNING: Location" || true
.venv38/bin/python -m pip install -q -r scripts/requirements-py38.txt 2>&1 | grep -v "^WARNING: Location" || true
rm -rf .venv38/wheel build && mkdir -p .venv38/wheel  # build/: setuptools would reuse stale files from an older build
"${MAIN_PYTHON:-.venv/bin/python}" -m pip wheel -q --no-deps --no-build-isolation -w .venv38/wheel . 2>&1 | grep -v "^WARNING: Location" || true
.venv38/bin/python -m pip install -q --no-deps --force-reinstall .venv38/wheel/slsg-*.whl 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv38/bin/python -m pip check
# outside the source tree, so the installed package is what is imported and tested
cd "$(mktemp -d)"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$OLDPWD/.venv38/bin/python" -m pytest -q -p no:cacheprovider --pyargs edge_runtime "$@"
