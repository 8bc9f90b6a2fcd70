#!/usr/bin/env bash
# A 1M-item two-tower student served with the `ann` engine and otherwise default flags, as an
# operator rolls it out. One command, from the repository root:
#
#     loadtest/scale.sh
#
# 1. writes the synthetic 1M-item student (examples/synth_bundles, d = 64), copies it, and runs
#    `distilrec index` on one copy (the graph saved in the bundle; the other copy has none);
# 2. starts `distilrec --engine ann` on an empty model directory, moves the indexed version into
#    it (one rename, as a publisher does) and times how long until GET /v1/models/<name> reports
#    it live; then reads the server's RSS and runs the load harness open loop at RATE req/s;
# 3. does the same with the copy without an index (the graph is built at load, past the default
#    --load-timeout-ms while it makes progress), sampling the build progress the API reports.
# Results: $OUT/scale.md (and the raw files next to it).
#
# Knobs: ITEMS (default 1000000), RATE (2000), DURATION (30), PLAIN=0 (skip step 3),
# BUNDLE (student-tt, default: f32 items and encoder; student-tt-int8: the int8 export),
# OUT (bench-out/scale), MODELS
# (repository holding the trained student whose architecture is copied, default models/).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ITEMS=${ITEMS:-1000000}
RATE=${RATE:-2000}
DURATION=${DURATION:-30}
BUNDLE=${BUNDLE:-student-tt}
OUT=${OUT:-$ROOT/bench-out/scale}
MODELS=${MODELS:-$ROOT/models}
PORT=${PORT:-18090}
if [[ -z ${BENCH_LOCKED:-} ]]; then
    exec env BENCH_LOCKED=1 flock /tmp/distilrec-cpu.lock "$0" "$@"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
log() { echo "[scale] $*" >&2; }
now() { date +%s.%N; }
mkdir -p "$OUT"
REPORT=$OUT/scale.md

log "building release binaries"
cargo build --release -p distilrec --no-default-features --bin distilrec --example synth_bundles
cargo build --release -p loadtest --bin loadtest

student=$MODELS/ml100k/$(ls "$MODELS/ml100k" | grep -E '^[0-9]+$' | sort -n | tail -1)
synth=$OUT/synth
size=$(( ITEMS / 1000 ))k
(( ITEMS % 1000000 == 0 )) && size=$(( ITEMS / 1000000 ))m
name=${BUNDLE/student/student$size}
if [[ ! -d $synth/$name/1 ]]; then
    rm -rf "$synth"; mkdir -p "$synth"
    log "writing the synthetic $ITEMS-item student"
    "$BIN/examples/synth_bundles" --out "$synth" --items "$ITEMS" --write "$BUNDLE" \
        --student-bundle "$student" >"$OUT/synth.txt"
fi
plain=$OUT/staging/plain indexed=$OUT/staging/indexed
rm -rf "$OUT/staging"; mkdir -p "$OUT/staging"
cp -r "$synth/$name/1" "$plain"
cp -r "$synth/$name/1" "$indexed"
log "distilrec index"
t0=$(now)
"$BIN/distilrec" index "$indexed" >"$OUT/index.txt"
index_s=$(echo "$(now) - $t0" | bc)
index_bytes=$(stat -c %s "$indexed/index.usearch")
item_file=$indexed/items.f32
[[ -f $item_file ]] || item_file=$indexed/items.i8
vector_bytes=$(stat -c %s "$item_file")

SERVER_PID=
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap stop_server EXIT

# Starts the server on an empty repository (only the model's directory), waits until it answers.
start() { # label
    local repo=$OUT/repo-$1
    rm -rf "$repo"; mkdir -p "$repo/$name"
    "$BIN/distilrec" --models "$repo" --default-model "$name" --engine ann \
        --addr "127.0.0.1:$PORT" >"$OUT/server-$1.log" 2>&1 &
    SERVER_PID=$!
    until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null; do
        kill -0 "$SERVER_PID" || { log "server exited: $OUT/server-$1.log"; exit 1; }
        sleep 0.05
    done
    REPO=$repo
}

detail() { curl -fsS "http://127.0.0.1:$PORT/v1/models/$name" 2>/dev/null || echo '{}'; }
# A Python expression over `d`, the model detail's JSON.
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$1" "$2" 2>/dev/null || echo; }

# Moves `staged` in as version 1 and waits until it is live; prints the seconds it took and
# samples the load progress once a second into $OUT/progress-<label>.txt. The 50 ms poll is a
# curl and a string match: anything heavier would compete with the load it times.
publish_and_wait() { # staged label
    local t0 d i=0
    : >"$OUT/progress-$2.txt"
    t0=$(now)
    mv "$1" "$REPO/$name/1"
    while :; do
        d=$(detail)
        case $d in *'"live":{"version":1,'*) break ;; esac
        case $d in *'"load_failures":[{'*) log "refused: $d"; exit 1 ;; esac
        if (( i++ % 20 == 0 )); then
            echo "$(echo "$(now) - $t0" | bc) $(field "$d" "d.get('loading')")" >>"$OUT/progress-$2.txt"
        fi
        kill -0 "$SERVER_PID" || { log "server exited"; exit 1; }
        sleep 0.05
    done
    echo "$(now) - $t0" | bc
}

rss() { awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {printf "%d %d\n", r/1024, h/1024}' "/proc/$SERVER_PID/status"; }

run_load() { # label
    "$BIN/loadtest" --url "http://127.0.0.1:$PORT" --mode open --rate "$RATE" --duration "$DURATION" \
        --warmup 3 --threads 1 --connections 64 --k 10 --seed 42 --history-len 50 --timeout 5 \
        --synthetic-items "$ITEMS" --quiet --label "$1" --json-out "$OUT/load-$1.json" >/dev/null
}

log "with the saved index"
start indexed
live_indexed=$(publish_and_wait "$indexed" indexed)
read -r rss_indexed hwm_indexed < <(rss)
graph_indexed=$(field "$(detail)" "d['live'].get('ann_graph')")
run_load indexed
stop_server

live_plain=0 rss_plain=0 hwm_plain=0
: >"$OUT/progress-plain.txt"
if [[ ${PLAIN:-1} != 0 ]]; then
    log "without an index (built at load)"
    start plain
    live_plain=$(publish_and_wait "$plain" plain)
    read -r rss_plain hwm_plain < <(rss)
    stop_server
fi

python3 - "$OUT" "$name" "$ITEMS" "$RATE" "$DURATION" "$index_s" "$index_bytes" "$vector_bytes" \
    "$live_indexed" "$graph_indexed" "$rss_indexed" "$hwm_indexed" "$live_plain" "$rss_plain" "$hwm_plain" \
    >"$REPORT" <<'EOF'
import json, sys
(out, name, items, rate, duration, index_s, index_bytes, vector_bytes, live_i, graph_i, rss_i, hwm_i,
 live_p, rss_p, hwm_p) = sys.argv[1:]
mb = lambda b: int(b) / 2**20
load = json.load(open(f"{out}/load-indexed.json"))
lat = load["latency_us"]
p50, p99 = lat["p50"] / 1e3, lat["p99"] / 1e3
errors = load["requests"]["errors"]
achieved = load["throughput_rps"]
prog = [l.split(" ", 1) for l in open(f"{out}/progress-plain.txt") if "rows_indexed" in l]
raw = mb(index_bytes)
print(f"# {int(items):,} items, d 64, `--engine ann`, default flags, bundle `{name}`\n")
print("Command: `loadtest/scale.sh` (ITEMS, RATE, DURATION, BUNDLE in the environment).\n")
print(f"- `distilrec index`: {float(index_s):.1f} s; index.usearch {raw:.0f} MB "
      f"(vectors and links; the bundle's item file alone {mb(vector_bytes):.0f} MB)")
print(f"- with the saved index (graph `{graph_i}`): live {float(live_i):.2f} s after the version's directory was moved in; "
      f"RSS {rss_i} MB (peak {hwm_i} MB) = {int(rss_i) / raw:.2f}× the index file "
      f"(peak {int(hwm_i) / raw:.2f}×)")
import re
phases = re.search(r"read_ms=(\d+) engine_ms=(\d+) warm_ms=(\d+)", open(f"{out}/server-indexed.log").read())
if phases:
    print(f"  (server log: read {phases[1]} ms, engine {phases[2]} ms, warm-up {phases[3]} ms)")
print(f"- open loop {rate} req/s for {duration} s on it ({achieved:.0f} req/s achieved): p50 {p50:.2f} ms, "
      f"p99 {p99:.2f} ms, errors {errors}")
if float(live_p) == 0:
    print("- without an index: not run (PLAIN=0)")
    sys.exit()
print(f"- without an index: live {float(live_p):.1f} s after it was moved in (graph built at load, "
      f"default --load-timeout-ms 60 s); RSS {rss_p} MB (peak {hwm_p} MB); "
      f"{len(prog)} progress samples from GET /v1/models/{{name}}, last: {prog[-1][1].strip() if prog else 'none'}")
EOF
cat "$REPORT"
