#!/usr/bin/env bash
# Soak run (issue 10): the student on two versions of the committed bundle, open loop at 50 % of
# its max throughput, a hot swap through the admin API every SWAP_EVERY seconds, and hostile
# requests (malformed JSON, oversized bodies, garbage methods, stalled connections) mixed in at
# HOSTILE_FRACTION of the rate. The harness samples the server's RSS and open fds from /proc.
# Run it alone, holding the CPU lock:
#
#     flock /tmp/distilrec-cpu.lock loadtest/soak.sh
#
# Knobs (environment): RATE (default: half the student's max throughput in BENCHMARKS.md),
# DURATION (s, default 600), SWAP_EVERY (s, default 2), HOSTILE_FRACTION (default 0.01), MODELS,
# MODEL (default ml100k), BODIES (user<TAB>item file; default data/ml-100k.inter, else synthetic
# histories over 1,682 items), OUT (default bench-out/soak), PORT / ADMIN_PORT.
# Pass criteria (printed at the end, exit status 1 if one fails): 0 5xx on valid requests, every
# swap succeeded, RSS at the end ≤ +5 % of RSS after the first minute, fds at the end ≤ the
# first-minute count + 16.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench-out/soak}
MODELS=${MODELS:-$ROOT/models}
MODEL=${MODEL:-ml100k}
DURATION=${DURATION:-600}
SWAP_EVERY=${SWAP_EVERY:-2}
HOSTILE_FRACTION=${HOSTILE_FRACTION:-0.01}
BODIES=${BODIES:-$ROOT/data/ml-100k.inter}
PORT=${PORT:-18090}
ADMIN_PORT=${ADMIN_PORT:-18091}
ADMIN_TOKEN=soak-admin-token
if [[ -z ${RATE:-} ]]; then
    max=$(grep -oP 'distilrec \+ KD student \(1,682 items\) \| \K[0-9,]+' BENCHMARKS.md | tr -d ,)
    RATE=$((max / 2))
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
log() { echo "[soak] $*" >&2; }
source loadtest/lib.sh

log "building release binaries"
nice -n 10 cargo build --release -p distilrec --no-default-features --bin distilrec
nice -n 10 cargo build --release -p loadtest --bin loadtest

mkdir -p "$OUT"
repo=$OUT/repo
two_versions "$(newest_version "$MODELS/$MODEL")" "$repo" "$MODEL"

"$BIN/distilrec" --models "$repo" --default-model "$MODEL" --addr "127.0.0.1:$PORT" \
    --admin-addr "127.0.0.1:$ADMIN_PORT" --admin-token "$ADMIN_TOKEN" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { log "server exited; see $OUT/server.log"; exit 1; }
    sleep 0.2
done

if [[ -f $BODIES ]]; then body_args=(--bodies "$BODIES"); else body_args=(--synthetic-items 1682); fi
cmd=("$BIN/loadtest" --url "http://127.0.0.1:$PORT" --mode open --rate "$RATE"
     --duration "$DURATION" --warmup 5 --threads 1 --connections 64 --k 10 --seed 42
     --history-len 50 --timeout 5 --quiet --model "$MODEL"
     --swap-every "$SWAP_EVERY" --swap-versions 1,2 --admin-url "http://127.0.0.1:$ADMIN_PORT"
     --admin-token "$ADMIN_TOKEN" --hostile-fraction "$HOSTILE_FRACTION"
     --server-pid "$SERVER_PID" --sample-every 5 "${body_args[@]}"
     --json-out "$OUT/soak.json" --md-out "$OUT/soak.md" --soak-json-out "$OUT/soak-resources.json"
     --label "soak: student at $RATE req/s, swap every ${SWAP_EVERY}s, hostile ${HOSTILE_FRACTION}")
log "rate $RATE req/s for $DURATION s: ${cmd[*]}"
echo "${cmd[*]}" >"$OUT/command.txt"
"${cmd[@]}" >/dev/null

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
r = json.load(open(f"{out}/soak.json"))
s = json.load(open(f"{out}/soak-resources.json"))
by_status = r["errors"]["by_status"]
valid_5xx = sum(n for st, n in by_status.items() if st.startswith("5"))
swap = r.get("swap") or {}
a, e = s["after_first_minute"], s["end"]
checks = {
    "0 5xx on valid requests": valid_5xx == 0,
    "no other errors on valid requests": r["requests"]["errors"] == 0,
    "every swap succeeded": swap.get("failed_swaps", 1) == 0 and len(swap.get("swaps", [])) > 0,
    "RSS end <= +5 % of first minute": s["rss_growth_pct"] is not None and s["rss_growth_pct"] <= 5.0,
    "fds flat (end <= first minute + 16)": e["fds"] <= a["fds"] + 16,
}
print(f"valid requests: {r['requests']['total']} ({r['throughput_rps']:.0f}/s over {r['measured_seconds']:.0f} s), "
      f"errors {r['requests']['errors']}, 5xx {valid_5xx}, by status {by_status}")
print(f"swaps: {len(swap.get('swaps', []))}, failed {swap.get('failed_swaps')}")
print(f"hostile: sent {s['hostile_sent']}, {json.dumps(s['hostile'])}")
print(f"RSS {a['rss_kb']} kB at {a['t_s']:.0f} s -> {e['rss_kb']} kB at {e['t_s']:.0f} s ({s['rss_growth_pct']:+.2f} %); "
      f"fds {a['fds']} -> {e['fds']} (max {s['max_fds']})")
for name, ok in checks.items():
    print(("PASS " if ok else "FAIL ") + name)
sys.exit(0 if all(checks.values()) else 1)
PY
