#!/usr/bin/env bash
# The main job, end to end, offline: synth → train → evaluate → predict → export --int8 → slsg-edge run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec slsg demo "${1:-slsg-demo}" "${@:2}"
