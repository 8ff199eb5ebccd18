#!/usr/bin/env bash
# TensorRT check on a Jetson or a dGPU: builds fp32/fp16/int8 engines for BUNDLE, compares each with
# ONNX Runtime on real images, times engine-only and end-to-end latency (p50/p99), prints one table and
# writes JSON (./trt_check.json unless --json FILE). With --fused FUSED (the same run exported with
# --fused-graph-attention) it also builds FUSED's engines with the fused plugin where TensorRT >= 10.9
# (older: rows saying why not). Every row names the path its engine took (standard ops or fused plugin;
# GPU or DLA core). Runs from any directory: paths are the caller's.
#   benchmarks/trt_check.sh BUNDLE --images DIR [--precisions fp32,fp16,int8] [--fused FUSED] [--iterations N]
#                                              [--json FILE]
# Exit codes: 0 ok, 1 a failure (recorded in the table and the JSON), 2 TensorRT is not installed here.
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: $0 BUNDLE --images DIR [--precisions fp32,fp16,int8] [--fused FUSED] [--iterations N]" \
         "[--json FILE]" >&2
    exit 64
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python3}" -m benchmarks.trt_check "$@"
