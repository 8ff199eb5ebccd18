#!/usr/bin/env bash
# `pip install -q ARGS…` with pip's known noise filtered out and everything else kept, errors included;
# exits with pip's own status, so a failed install fails the caller (setup.sh, demo.sh, CI).
# Filtered: "WARNING: Location '…' is ignored" (a find-links folder this machine lacks), pip's new-version
# notice, and setuptools' multi-line "BuildBackendWarning: Editable installation" block.
set -uo pipefail
PY=${PY:-python}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q "$@" >"$log" 2>&1
status=$?
awk '
  /^WARNING: Location .* is ignored/ { next }
  /^\[notice\]/ { next }
  /BuildBackendWarning: Editable installation/ { skip = 1; bangs = 0; next }
  skip {                                   # the block: "!!", a framed text, "!!", then the source line
    if ($0 ~ /^[[:space:]]*!![[:space:]]*$/) { bangs++; next }
    if (bangs < 2) next
    skip = 0
    if ($0 ~ /^[[:space:]]+with strategy, WheelFile/) next
  }
  { print }
' "$log" >&2
exit $status
