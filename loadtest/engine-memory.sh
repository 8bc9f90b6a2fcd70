#!/usr/bin/env bash
# Server memory per engine and catalogue size, one command from the repository root:
#
#     loadtest/engine-memory.sh
#
# For each size in SIZES (default "100000 1000000") it writes the synthetic two-tower student
# twice (examples/synth_bundles: `student-tt` with f32 items, `student-tt-int8` exported int8),
# then for each (bundle, engine) pair starts `distilrec --engine <engine>` on that bundle alone,
# waits until it is ready, reads VmRSS / VmHWM from /proc, checks it answers, and stops it.
# The `ann` rows use a graph saved with `distilrec index` (the rollout path). Every server runs
# alone on the machine. Results: $OUT/engine-memory.md.
#
# Knobs: SIZES, ENGINES (default "exact int8 ann"), OUT (bench-out/engine-memory), MODELS
# (repository holding the trained student whose architecture is copied, default models/).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SIZES=${SIZES:-"100000 1000000"}
ENGINES=${ENGINES:-"exact int8 ann"}
OUT=${OUT:-$ROOT/bench-out/engine-memory}
MODELS=${MODELS:-$ROOT/models}
if [[ -z ${BENCH_LOCKED:-} ]]; then
    exec env BENCH_LOCKED=1 flock /tmp/distilrec-cpu.lock "$0" "$@"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
log() { echo "[engine-memory] $*" >&2; }
mkdir -p "$OUT"
REPORT=$OUT/engine-memory.md

log "building release binaries"
cargo build --release -p distilrec --bin distilrec --example synth_bundles

student=$MODELS/ml100k/$(ls "$MODELS/ml100k" | grep -E '^[0-9]+$' | sort -n | tail -1)
mb() { echo $(( $1 / 1024 )); }

# Starts the server on repository $1 with engine $2, prints "rss_kb hwm_kb load_s status".
measure() {
    local repo=$1 engine=$2 name=$3 srvlog=$OUT/server.log
    local t0 addr="" pid
    t0=$(date +%s.%N)
    "$BIN/distilrec" --models "$repo" --default-model "$name" --engine "$engine" \
        --addr 127.0.0.1:0 --poll-interval-ms 0 >"$srvlog" 2>&1 &
    pid=$!
    for _ in $(seq 6000); do
        addr=$(grep -o 'listening on [0-9.:]*' "$srvlog" | head -1 | sed 's/listening on //') || true
        if [[ -n $addr ]] && [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz") == 200 ]]; then
            break
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$srvlog" >&2; echo "server exited" >&2; exit 1; }
        sleep 0.1
    done
    local load_s
    load_s=$(echo "$(date +%s.%N) - $t0" | bc)
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
        -d '{"history": ["i1", "i2", "i3"], "k": 10}' "http://$addr/recommend")
    local rss hwm
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$rss $hwm $load_s $status"
}

[[ -s $REPORT ]] || {
    echo "# Server memory per engine ($(date -u +%Y-%m-%d), build $(git rev-parse --short HEAD))"
    echo
    echo "Command: \`loadtest/engine-memory.sh\` (SIZES=\"$SIZES\"). One server at a time, the bundle"
    echo "alone in its repository, RSS read from /proc once \`/readyz\` answers 200 (after a first"
    echo "request); peak = VmHWM. Synthetic two-tower student (architecture of $student,"
    echo "clustered item side)."
    echo
    echo "| items | item file | engine | RSS MB | peak RSS MB | ready after s | first request |"
    echo "|--:|---|---|--:|--:|--:|--:|"
} >"$REPORT"

for items in $SIZES; do
    synth=$OUT/synth-$items
    if [[ ! -d $synth ]]; then
        log "writing the synthetic $items-item students"
        "$BIN/examples/synth_bundles" --out "$synth" --items "$items" \
            --write student-tt,student-tt-int8 --student-bundle "$student" >"$OUT/synth-$items.txt"
    fi
    for name in $(ls "$synth"); do
        file=f32
        [[ $name == *-int8 ]] && file=int8
        for engine in $ENGINES; do
            repo=$OUT/repo
            rm -rf "$repo"; mkdir -p "$repo/$name"
            cp -r "$synth/$name/1" "$repo/$name/1"
            if [[ $engine == ann ]]; then
                "$BIN/distilrec" index "$repo/$name/1" >/dev/null
            fi
            log "$items items, $file items, $engine"
            read -r rss hwm load_s status < <(measure "$repo" "$engine" "$name")
            echo "| $items | $file | $engine | $(mb "$rss") | $(mb "$hwm") | $load_s | $status |" >>"$REPORT"
        done
    done
done
rm -rf "$OUT/repo"
cat "$REPORT"
