#!/usr/bin/env bash
# The test command: installs the test prerequisites, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DISTILREC_PYTHON="$PWD/.venv/bin/python"
export DISTILREC_ML100K="$PWD/data/ml-100k.inter"
cargo test --workspace "$@"
