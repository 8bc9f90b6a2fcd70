#!/usr/bin/env bash
# The hot-swap tail of two server builds side by side (issue 22): alternated rounds, a fresh
# server per run, the order swapped every round. Each run is the swap scenario of
# docs/bench-runs/2026-12-07-ann-at-scale.md: two copies of the newest models/ml100k version as
# versions 1 and 2, `--poll-interval-ms 0`, an admin token, open-loop load at RATE req/s and an
# admin load of the other version every SWAP_EVERY s. Prints, per run, p99 of the requests in
# flight inside the ±WINDOW_MS windows around each swap, p99 outside them, and their ratio; then
# the median ratio of each build. From the repository root:
#
#   loadtest/swap-ab.sh ROUNDS A_BIN B_BIN
#
# A_BIN / B_BIN are `distilrec` binaries (copy them out of target/ first: a build replaces them).
# Environment: RATE (req/s, default 13997), DURATION (60), SWAP_EVERY (2), WINDOW_MS (250),
# WARMUP (3), CONNECTIONS (64), LOADTEST (default $CARGO_TARGET_DIR/release/loadtest),
# BODIES (data/ml-100k.inter), MODELS (models), MODEL (ml100k), OUT (bench-out/swap-ab),
# PORT (18280; the admin API on PORT+1), SERVER_ARGS (more server flags for both builds),
# LOCKS (files each run holds with flock, default /tmp/distilrec-cpu.lock: one run at a time
# takes the cores, and nothing else that takes the lock runs during it).
# The phases split the windows: requests before the admin request was sent (the server does
# nothing about the swap yet: the windows' own noise), during it (load and swap), after it.
# Per run: $OUT/<round>-<A|B>.json (loadtest report) and .log (server log: per-phase load times).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
source loadtest/lib.sh
OUT=${OUT:-$ROOT/bench-out/swap-ab}

# One run, under the locks: `swap-ab.sh --run ROUND LABEL BIN`.
if [[ ${1:-} == --run ]]; then
    round=$2 label=$3 bin=$4
    port=${PORT:-18280} admin_port=$(( ${PORT:-18280} + 1 )) token=swap-ab-token
    loadtest=${LOADTEST:-${CARGO_TARGET_DIR:-$ROOT/target}/release/loadtest}
    log=$OUT/$round-$label.log json=$OUT/$round-$label.json
    "$bin" --models "$OUT/repo" --default-model "${MODEL:-ml100k}" --addr "127.0.0.1:$port" \
        --admin-addr "127.0.0.1:$admin_port" --admin-token "$token" --poll-interval-ms 0 \
        ${SERVER_ARGS:-} >"$log" 2>&1 &  # word splitting wanted: several flags
    pid=$!
    trap 'kill "$pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { echo "server exited; see $log" >&2; exit 1; }
        sleep 0.2
    done
    "$loadtest" --url "http://127.0.0.1:$port" --threads 1 --connections "${CONNECTIONS:-64}" \
        --warmup "${WARMUP:-3}" --k 10 --seed 42 --history-len 50 --timeout 5 --quiet \
        --duration "${DURATION:-60}" --mode open --rate "${RATE:-13997}" --model "${MODEL:-ml100k}" \
        --swap-every "${SWAP_EVERY:-2}" --swap-versions 1,2 --swap-window-ms "${WINDOW_MS:-250}" \
        --admin-url "http://127.0.0.1:$admin_port" --admin-token "$token" \
        --bodies "${BODIES:-$ROOT/data/ml-100k.inter}" --json-out "$json" >/dev/null
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    trap - EXIT
    python3 - "$round" "$label" "$json" <<'PY' | tee -a "$OUT/results.txt"
import json, sys
rnd, label, path = sys.argv[1:]
s = json.load(open(path))["swap"]
i, o = s["inside"], s["outside"]
ms = lambda w: w["latency_us"]["p99"] / 1e3
phases = " ".join(f"{name} {ms(w):.2f}" for name, w in s.get("phases", []))
took = sorted((e["end_us"] - e["start_us"]) / 1e3 for e in s["swaps"])
print(f"round {rnd} {label}: p99 in {ms(i):.2f} ms, out {ms(o):.2f} ms, ratio {ms(i) / ms(o):.2f}; "
      f"{len(s['swaps'])} swaps, {s['failed_swaps']} failed, errors {i['errors']}+{o['errors']}; "
      f"p99 by phase (ms): {phases}; admin load median {took[len(took) // 2]:.0f} ms")
PY
    exit 0
fi

[[ $# -eq 3 ]] || { sed -n '2,20p' "$0" >&2; exit 2; }
rounds=$1
bins=("$2" "$3")
labels=(A B)
for b in "${bins[@]}"; do [[ -x $b ]] || { echo "not an executable: $b" >&2; exit 2; }; done
MODELS=${MODELS:-$ROOT/models}
model=${MODEL:-ml100k}
mkdir -p "$OUT"
: >"$OUT/results.txt"

# Versions 1 and 2: copies of the newest version on disk, renumbered in their manifests.
two_versions "$(newest_version "$MODELS/$model")" "$OUT/repo" "$model"

locked() { # command...: under every lock in LOCKS
    local locks=(${LOCKS:-/tmp/distilrec-cpu.lock}) cmd=("$@") i
    for ((i = ${#locks[@]} - 1; i >= 0; i--)); do cmd=(flock "${locks[i]}" "${cmd[@]}"); done
    "${cmd[@]}"
}
for r in $(seq 1 "$rounds"); do
    order=(0 1)
    ((r % 2)) || order=(1 0)
    for i in "${order[@]}"; do
        locked "$0" --run "$r" "${labels[i]}" "${bins[i]}"
    done
done
python3 - "$OUT/results.txt" <<'PY'
import re, statistics, sys
ratios = {}
for line in open(sys.argv[1]):
    m = re.match(r"round \d+ (\w+): .* ratio ([\d.]+);", line)
    ratios.setdefault(m.group(1), []).append(float(m.group(2)))
for label, rs in sorted(ratios.items()):
    print(f"{label}: in/out p99 ratios {' '.join(f'{r:.2f}' for r in rs)}; median {statistics.median(rs):.2f}")
PY
