#!/usr/bin/env bash
# Memory over many hot swaps of a large catalogue, one command from the repository root:
#
#     loadtest/swap-rss.sh
#
# Writes the synthetic two-tower student (examples/synth_bundles, ITEMS rows, d 64, bundle
# BUNDLE), saves its ANN graph in it (`distilrec index`), publishes it as versions 1 and 2 of one
# model, starts `distilrec --engine ENGINE` with the admin API, and then loads version 2, 1, 2, …
# through `POST /admin/models/{name}/load` SWAPS times, one after another (each call returns once
# the version is live). After every swap one `POST /recommend` must answer 200 from the version
# just loaded. The server's RSS is read from /proc after every swap.
# Pass criteria (exit status 1 if one fails): every swap and every request succeeded, and RSS over
# the last 10 swaps ≤ +5 % of RSS over swaps 2–11 (medians: a sample read just after a swap may
# still hold the old version, which is freed on a background thread moments later; swap 1 loads
# the version already live and costs nothing).
# Results: $OUT/swap-rss.md and $OUT/rss.tsv (swap, seconds it took, RSS kB).
#
# Knobs: ITEMS (default 1000000), BUNDLE (student-tt-int8; or student-tt), ENGINE (ann), SWAPS
# (1000), OUT (bench-out/swap-rss), MODELS (repository holding the trained student whose
# architecture is copied, default models/), PORT / ADMIN_PORT.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ITEMS=${ITEMS:-1000000}
BUNDLE=${BUNDLE:-student-tt-int8}
ENGINE=${ENGINE:-ann}
SWAPS=${SWAPS:-1000}
OUT=${OUT:-$ROOT/bench-out/swap-rss}
MODELS=${MODELS:-$ROOT/models}
PORT=${PORT:-18094}
ADMIN_PORT=${ADMIN_PORT:-18095}
TOKEN=swap-rss-token
if [[ -z ${BENCH_LOCKED:-} ]]; then
    exec env BENCH_LOCKED=1 flock /tmp/distilrec-cpu.lock "$0" "$@"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
log() { echo "[swap-rss] $*" >&2; }
source loadtest/lib.sh
mkdir -p "$OUT"

log "building release binaries"
cargo build --release -p distilrec --no-default-features --bin distilrec --example synth_bundles

student=$(newest_version "$MODELS/ml100k")
size=$(( ITEMS / 1000 ))k
(( ITEMS % 1000000 == 0 )) && size=$(( ITEMS / 1000000 ))m
name=${BUNDLE/student/student$size}
synth=$OUT/synth
if [[ ! -f $synth/$name/1/index.usearch ]]; then
    rm -rf "$synth"; mkdir -p "$synth"
    log "writing the synthetic $ITEMS-item student and its graph"
    "$BIN/examples/synth_bundles" --out "$synth" --items "$ITEMS" --write "$BUNDLE" \
        --student-bundle "$student" >"$OUT/synth.txt"
    "$BIN/distilrec" index "$synth/$name/1" >"$OUT/index.txt"
fi
repo=$OUT/repo
two_versions "$synth/$name/1" "$repo" "$name"

"$BIN/distilrec" --models "$repo" --default-model "$name" --engine "$ENGINE" \
    --addr "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$ADMIN_PORT" --admin-token "$TOKEN" \
    >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true' EXIT
until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz") == 200 ]]; do
    kill -0 "$SERVER_PID" 2>/dev/null || { log "server exited; see $OUT/server.log"; exit 1; }
    sleep 0.2
done

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }
failed=0
: >"$OUT/rss.tsv"
log "$SWAPS swaps of $name ($ENGINE)"
for (( i = 1; i <= SWAPS; i++ )); do
    version=$(( i % 2 == 1 ? 2 : 1 ))
    t0=$(date +%s.%N)
    status=$(curl -s -o "$OUT/last-swap.json" -w '%{http_code}' -H "authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' -d "{\"version\": $version}" \
        "http://127.0.0.1:$ADMIN_PORT/admin/models/$name/load")
    took=$(echo "$(date +%s.%N) - $t0" | bc)
    served=$(curl -s -o /dev/null -D - -H 'content-type: application/json' \
        -d '{"history": ["i1", "i2", "i3"], "k": 10}' "http://127.0.0.1:$PORT/recommend" |
        tr -d '\r' | awk -v v="$version" 'NR == 1 {ok = ($2 == 200)} tolower($1) == "x-model-version:" {same = ($2 == v)} END {print (ok && same) ? "ok" : "bad"}')
    if [[ $status != 200 || $served != ok ]]; then
        failed=$(( failed + 1 ))
        log "swap $i to version $version: admin status $status, request $served: $(cat "$OUT/last-swap.json")"
    fi
    echo -e "$i\t$took\t$(rss_kb)" >>"$OUT/rss.tsv"
    (( i % 100 == 0 )) && log "swap $i: $(tail -1 "$OUT/rss.tsv")"
done

status=0
python3 - "$OUT" "$name" "$ENGINE" "$SWAPS" "$failed" >"$OUT/swap-rss.md" <<'EOF' || status=$?
import statistics, sys
out, name, engine, swaps, failed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = [l.split("\t") for l in open(f"{out}/rss.tsv")]
took = [float(r[1]) for r in rows]
rss = {int(r[0]): int(r[2]) for r in rows}
ordered = [rss[i] for i in sorted(rss)]
first = statistics.median(ordered[1:11] or ordered)
last = statistics.median(ordered[-10:])
growth = 100.0 * (last - first) / first
print(f"# {swaps} hot swaps of `{name}` (`--engine {engine}`)\n")
print("Command: `loadtest/swap-rss.sh` (ITEMS, BUNDLE, ENGINE, SWAPS in the environment).\n")
print(f"- swaps failed (admin call or the request after it): {failed}")
print(f"- swap time (admin call until live): median {statistics.median(took):.2f} s, "
      f"max {max(took):.2f} s")
print(f"- RSS after each swap, median of swaps 2–11: {first / 1024:.0f} MB; of the last 10: "
      f"{last / 1024:.0f} MB (**{growth:+.2f} %**); single samples after swap 10 / {swaps}: "
      f"{rss[min(10, swaps)] / 1024:.0f} / {rss[swaps] / 1024:.0f} MB; min "
      f"{min(rss.values()) / 1024:.0f} MB, max {max(rss.values()) / 1024:.0f} MB; "
      f"{sum(v > 1.3 * first for v in ordered)} of {swaps} samples still held the old version")
ok = failed == 0 and growth <= 5.0
print(f"- {'PASS' if ok else 'FAIL'}: every swap succeeded and RSS grew ≤ +5 %")
sys.exit(0 if ok else 1)
EOF
cat "$OUT/swap-rss.md"
exit $status
