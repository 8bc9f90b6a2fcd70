#!/usr/bin/env bash
# Two server builds (or two model repositories) side by side under the same closed-loop load:
# alternated rounds, each server freshly started, the order swapped every round, one `wrk`
# warm-up second and then a measured run. Prints one line per run and the median of each, and
# the median of the per-round ratios B / A.
#
#   loadtest/ab.sh ROUNDS A_BIN A_MODELS B_BIN B_MODELS
#
# Environment: WRK_SCRIPT (default bench-out/wrk-post-1682.lua, the script and bodies
# `loadtest/bench.sh` writes), WRK_SCRIPT_B (B's client script, default WRK_SCRIPT: with the
# same build twice this compares two clients), MODEL (ml100k), SECONDS_PER_RUN (4),
# CONNECTIONS (32), PORT (18091).
set -euo pipefail
[[ $# -eq 5 ]] || { sed -n '2,12p' "$0" >&2; exit 2; }
rounds=$1
bins=("$2" "$4")
repos=("$3" "$5")
scripts=("${WRK_SCRIPT:-bench-out/wrk-post-1682.lua}")
scripts+=("${WRK_SCRIPT_B:-${scripts[0]}}")
model=${MODEL:-ml100k}
secs=${SECONDS_PER_RUN:-4}
conns=${CONNECTIONS:-32}
port=${PORT:-18091}
for s in "${scripts[@]}"; do
    [[ -f $s ]] || { echo "no wrk script $s: run loadtest/bench.sh (any section) first" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 2; }

results=$(mktemp)
trap 'rm -f "$results"' EXIT
run() { # label index
    local bin=${bins[$2]} repo=${repos[$2]} script=${scripts[$2]} pid rps
    "$bin" --models "$repo" --default-model "$model" --addr "127.0.0.1:$port" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
        sleep 0.1
    done
    wrk -t1 -c"$conns" -d1s -s "$script" "http://127.0.0.1:$port" >/dev/null
    rps=$(wrk -t1 -c"$conns" -d"${secs}s" -s "$script" "http://127.0.0.1:$port" |
        awk '/Requests\/sec/ {print $2}')
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$3 $1 $rps" | tee -a "$results"
}
for r in $(seq 1 "$rounds"); do
    if ((r % 2)); then run A 0 "$r"; run B 1 "$r"; else run B 1 "$r"; run A 0 "$r"; fi
done
python3 - "$results" <<'PY'
import statistics, sys
runs = {"A": {}, "B": {}}
for line in open(sys.argv[1]):
    rnd, label, rps = line.split()
    runs[label][rnd] = float(rps)
a, b = runs["A"], runs["B"]
print(f"median req/s: A {statistics.median(a.values()):,.0f}  B {statistics.median(b.values()):,.0f}")
ratios = [b[r] / a[r] for r in a]
print(f"B / A per round: {' '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}")
PY
