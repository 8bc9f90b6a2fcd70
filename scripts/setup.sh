#!/usr/bin/env bash
# Installs what the tests need beyond cargo, idempotently:
#  - .venv with onnx, onnxruntime, numpy (the independent ONNX runtime in the parity tests) and
#    protobuf (examples/python_client.py, run by tests/server_protobuf.rs)
#  - data/ml-100k.inter (MovieLens-100K, verified by checksum)
#  - promtool (Debian package `prometheus`) to check the /metrics exposition
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import onnx, onnxruntime, numpy, google.protobuf' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet onnx onnxruntime numpy protobuf
fi

scripts/fetch-ml100k.sh data

if ! command -v promtool >/dev/null; then
  if command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
fi
command -v promtool >/dev/null || { echo "promtool is required (Debian package prometheus)" >&2; exit 1; }
