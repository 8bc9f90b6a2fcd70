#!/usr/bin/env bash
# Reproduce README numbers. Each timed run holds the shared CPU lock.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-ann}
nice -n 10 cargo build --release
B=$CARGO_TARGET_DIR/release/ann-compare
N=${N:-100000}
CRATES=${CRATES:-"usearch_ip usearch_l2 hnsw_rs_ip hnsw_rs instant_ip instant"}
BUILD1=${BUILD1:-$CRATES}
mkdir -p results
# 1) 2-thread build + full search sweep
for c in $CRATES; do
  flock /tmp/distilrec-cpu.lock $B --crate $c --n $N --dim 64 --nq 2000 \
      --efs 16,32,64,128,256 --build-threads 2 --m 16 --efc 128 | tee results/$c-n$N.txt
done
# 2) single-thread build only (time + RSS)
for c in $BUILD1; do
  flock /tmp/distilrec-cpu.lock $B --crate $c --n $N --dim 64 \
      --build-threads 1 --m 16 --efc 128 --build-only | tee results/$c-n$N-build1.txt
done
