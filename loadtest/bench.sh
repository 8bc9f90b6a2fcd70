#!/usr/bin/env bash
# Benchmark suite behind BENCHMARKS.md (issue 4, item 5). One command, from the repository root:
#
#     loadtest/bench.sh
#
# It builds release binaries, prepares the bundles, starts each target alone on this machine and
# measures it with the SAME client settings:
#   student / teacher (trained bundles, 1,682 items), student / teacher at 100k items (synthetic
#   weights, same architectures), the HTTP floor, a FastAPI + onnxruntime service (venv), and the
#   naive axum + tract baseline (examples/naive_server.rs) at 1,682 and at 100k items.
# For each: a rate sweep (max throughput with p99 <= P99_BOUND_MS), an open-loop run at a fixed
# moderate rate (p50/p99), a closed-loop `wrk -t1 -c$WRK_CONNECTIONS --latency` run with the same
# bodies ($OUT/<target>.wrk.txt), and the server's RSS. Then a hot-swap run and a cross-check of
# wrk against loadtest's closed loop.
# Results: $OUT/*.json|md|png|txt and $REPORT (default BENCHMARKS.md, by loadtest/bench_report.py).
#
# Knobs (environment): MODELS (repository with the trained bundles), STUDENT / TEACHER (their
# model names there, default ml100k / ml100k-teacher), BODIES (user<TAB>item interactions whose
# per-user histories become request bodies; default the MovieLens file scripts/setup.sh fetches),
# OUT, WARMUP, DURATION, FIXED_RATE, SWEEP_START, P99_BOUND_MS, CONNECTIONS, WRK_CONNECTIONS
# (closed-loop wrk column, default 32), REPORT (where the Markdown report goes, default
# BENCHMARKS.md: point it elsewhere for QUICK runs), QUICK=1 (short runs, for checking the
# script), SECTIONS (space-separated subset of
# "trained large engines naive floor python swap wrk protobuf workers ratios", default all: re-measures only those targets
# in the same OUT and rewrites $REPORT from every result there), ENGINES (the engines of the
# `engines` section, default "exact int8 ann") and ENGINE_SIZES (its catalogue sizes, default
# "100000 1000000").
#
# The whole run holds /tmp/distilrec-cpu.lock so builds started meanwhile wait instead of
# stealing the cores it measures.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench-out}
MODELS=${MODELS:-$ROOT/models}
STUDENT=${STUDENT:-ml100k}
TEACHER=${TEACHER:-ml100k-teacher}
BODIES=${BODIES:-$ROOT/data/ml-100k.inter}
REPORT=${REPORT:-$ROOT/BENCHMARKS.md}
[[ -f $BODIES ]] || { echo "[bench] no $BODIES: run scripts/setup.sh or set BODIES" >&2; exit 1; }
if [[ -z ${BENCH_LOCKED:-} ]]; then
    exec env BENCH_LOCKED=1 flock /tmp/distilrec-cpu.lock "$0" "$@"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
if [[ ${QUICK:-0} == 1 ]]; then
    WARMUP=${WARMUP:-1}; DURATION=${DURATION:-3}; SWEEP_MAX_STEPS=${SWEEP_MAX_STEPS:-6}
else
    WARMUP=${WARMUP:-3}; DURATION=${DURATION:-10}; SWEEP_MAX_STEPS=${SWEEP_MAX_STEPS:-16}
fi
FIXED_RATE=${FIXED_RATE:-2000}
SWEEP_START=${SWEEP_START:-1000}
P99_BOUND_MS=${P99_BOUND_MS:-10}
CONNECTIONS=${CONNECTIONS:-64}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18081}
ADMIN_TOKEN=bench-token
mkdir -p "$OUT"
RUN_LOG=$OUT/commands.log
[[ " ${SECTIONS:-all} " == *" all "* ]] && : >"$RUN_LOG"
echo "# $(date -u +%FT%TZ) loadtest/bench.sh SECTIONS=${SECTIONS:-all}" >>"$RUN_LOG"

# Identical client settings for every target. One client thread leaves the other core to the
# server (both share the machine's cores; NOTES.md baselines were taken the same way).
CLIENT=(--threads 1 --connections "$CONNECTIONS" --warmup "$WARMUP"
        --k 10 --seed 42 --history-len 50 --timeout 5 --quiet)
SWEEP=(--mode sweep --sweep-over rate --p99-bound-ms "$P99_BOUND_MS"
       --sweep-growth 2 --sweep-precision 0.05 --sweep-pause 1 --sweep-max-steps "$SWEEP_MAX_STEPS")

log() { echo "[bench] $*" >&2; }
want() { [[ " ${SECTIONS:-all} " == *" all "* || " ${SECTIONS:-} " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
build() {
    log "building release binaries"
    cargo build --release -p distilrec ${BUILD_FEATURES---no-default-features} --bin distilrec --example synth_bundles \
        --example naive_server
    cargo build --release -p loadtest --bin loadtest
}

venv() {
    local v=$OUT/venv
    if [[ ! -x $v/bin/python ]] || ! "$v/bin/python" -c 'import fastapi, uvicorn, uvloop, httptools, onnxruntime, numpy' 2>/dev/null; then
        log "creating the Python venv ($v)"
        python3 -m venv "$v"
        "$v/bin/pip" install --quiet fastapi 'uvicorn[standard]' onnxruntime numpy
    fi
    PY=$v/bin/python
    "$PY" -c 'import fastapi, uvicorn, onnxruntime; print("fastapi", fastapi.__version__, "uvicorn", uvicorn.__version__, "onnxruntime", onnxruntime.__version__)' >"$OUT/python-versions.txt"
}

latest_version() { ls "$1" | grep -E '^[0-9]+$' | sort -n | tail -1; }

# One repository per target, holding only that model, so RSS is the server plus one model.
single_model_repo() { # label source_model_dir -> prints repo path
    local repo=$OUT/repos/$1
    rm -rf "$repo"; mkdir -p "$repo"
    ln -s "$2" "$repo/$(basename "$2")"
    echo "$repo"
}

# 100k-item bundles with synthetic weights: the student's trained architecture and the MLP
# teacher's (EASE cannot exist at 100k items: 10^10 floats). Written once, reused by later runs.
make_synthetic_100k() {
    local synth=$OUT/synth
    if [[ -d $synth/student100k/1 && -d $synth/teacher100k/1 ]]; then return 0; fi
    rm -rf "$synth"; mkdir -p "$synth"
    log "writing synthetic 100k-item bundles into $synth"
    "$BIN/examples/synth_bundles" --out "$synth" --items 100000 \
        --student-bundle "$MODELS/$STUDENT/$(latest_version "$MODELS/$STUDENT")" >"$OUT/synth.txt"
}

# ---------------------------------------------------------------------------------------------
SERVER_PID=
start_distilrec() { # repo model   (EXTRA_SERVER_ARGS: more flags, e.g. "--engine ann")
    # shellcheck disable=SC2086
    "$BIN/distilrec" --models "$1" --default-model "$2" --addr "127.0.0.1:$PORT" \
        --admin-addr "127.0.0.1:$ADMIN_PORT" --admin-token "$ADMIN_TOKEN" ${EXTRA_SERVER_ARGS:-} \
        >"$OUT/server-$2.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/readyz"
}

# The HTTP floor: the same binary, router and middleware answering a fixed 10-item body after
# parsing the request (`--http-floor`), so it costs everything but the model.
start_floor() {
    mkdir -p "$OUT/repos/empty"
    "$BIN/distilrec" --http-floor --models "$OUT/repos/empty" --addr "127.0.0.1:$PORT" \
        >"$OUT/server-floor.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/readyz"
}

# The baseline every change must beat: examples/naive_server.rs on one bundle directory.
start_naive() { # bundle_dir label
    "$BIN/examples/naive_server" --bundle "$1" --addr "127.0.0.1:$PORT" >"$OUT/server-$2.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/readyz"
}

start_python() { # bundle_dir
    "$PY" "$ROOT/loadtest/python_service.py" "$1" --port "$PORT" --processes "$(nproc)" \
        >"$OUT/server-python.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/readyz"
}

wait_ready() { # url   (READY_TIMEOUT: seconds, default 60; an ANN index over 1M items takes minutes)
    for _ in $(seq 1 $(( ${READY_TIMEOUT:-60} * 5 ))); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then log "server exited; see $OUT/server-*.log"; return 1; fi
        sleep 0.2
    done
    log "server not ready after ${READY_TIMEOUT:-60} s"; return 1
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local kids
    kids=$(pgrep -P "$SERVER_PID" || true)
    kill "$SERVER_PID" $kids 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap stop_server EXIT

# Resident memory of the server process tree, kB: current (VmRSS) and peak (VmHWM).
rss_kb() {
    local pids="$SERVER_PID $(pgrep -P "$SERVER_PID" | tr '\n' ' ')" rss=0 hwm=0 p
    for p in $pids; do
        [[ -r /proc/$p/status ]] || continue
        rss=$((rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
        hwm=$((hwm + $(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")))
    done
    echo "{\"rss_kb\": $rss, \"hwm_kb\": $hwm}"
}

loadtest() { # name args...   (DUR=seconds overrides --duration for one call)
    local name=$1; shift
    local cmd=("$BIN/loadtest" --url "http://127.0.0.1:$PORT" "${CLIENT[@]}" --duration "${DUR:-$DURATION}"
               "$@" --label "$name")
    echo "${cmd[*]}" >>"$RUN_LOG"
    "${cmd[@]}"
}

# Sweep + fixed-rate run + closed-loop wrk run + RSS for the server currently running.
measure() { # name n_items   (START=rate overrides the sweep's first rate)
    local name=$1 items=$2
    # shellcheck disable=SC2046
    set -- $(body_args "$items")
    log "measuring $name"
    loadtest "$name" "${SWEEP[@]}" --rate "${START:-$SWEEP_START}" "$@" --json-out "$OUT/$name.sweep.json" \
        --md-out "$OUT/$name.sweep.md" --plot "$OUT/$name.sweep.png" >/dev/null
    loadtest "$name" --mode open --rate "$FIXED_RATE" "$@" --json-out "$OUT/$name.fixed.json" \
        --md-out "$OUT/$name.fixed.md" --plot "$OUT/$name.fixed.png" >/dev/null
    # p99 at half of this target's own max throughput (the acceptance's "50 % of max").
    local half
    half=$(half_max "$OUT/$name.sweep.json")
    loadtest "$name" --mode open --rate "$half" "$@" --json-out "$OUT/$name.half.json" \
        --md-out "$OUT/$name.half.md" >/dev/null
    wrk_run "$OUT/$name.wrk.txt" "$items" "$WRK_CONNECTIONS"
    rss_kb >"$OUT/$name.rss.json"
}

half_max() { # sweep.json -> half the max throughput (at least 100/s)
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(max(100, int((d['max_throughput_rps'] or 200) / 2)))" "$1"
}

body_args() { # n_items: real histories at 1,682 items, synthetic ids for synthetic bundles
    if [[ $1 == 1682 ]]; then
        echo "--bodies $BODIES"
    else
        echo "--synthetic-items $1"
    fi
}

ensure_wrk() {
    command -v wrk >/dev/null && return 0
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1 || log "could not install wrk"
    command -v wrk >/dev/null
}

# The bodies loadtest sends for n_items (body_args), dumped once per run, and a wrk script that
# POSTs them one per request, in order. Prints the script's path.
wrk_script() { # n_items
    local bodies=$OUT/bodies-$1.jsonl script=$OUT/wrk-post-$1.lua
    # shellcheck disable=SC2046
    "$BIN/loadtest" --url "http://127.0.0.1:$PORT" --k 10 --seed 42 --history-len 50 \
        $(body_args "$1") --dump-bodies "$bodies" >/dev/null
    cat >"$script" <<EOF
-- POST the same bodies loadtest sends, one per request, in order. The requests are formatted
-- once, in init (which runs after wrk has set the Host header), so the client's per-request
-- work is a table lookup: the client shares the cores with the server it measures.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local requests, i = {}, 0
init = function(args)
    for line in io.lines("$bodies") do
        requests[#requests + 1] = wrk.format(nil, "/recommend", nil, line)
    end
end
request = function()
    i = i % #requests + 1
    return requests[i]
end
EOF
    echo "$script"
}

# Closed loop with an independent tool against the server currently running: one client thread,
# `connections` requests in flight, latency percentiles (--latency) into out_file.
wrk_run() { # out_file n_items connections
    ensure_wrk || { log "no wrk: skipping $1"; return 0; }
    local script
    script=$(wrk_script "$2")
    echo "wrk -t1 -c$3 -d${DURATION}s --latency -s $script http://127.0.0.1:$PORT > $1" >>"$RUN_LOG"
    wrk -t1 -c"$3" -d"${DURATION}s" --latency -s "$script" "http://127.0.0.1:$PORT" >"$1"
}

# Two-tower students (user encoder + items.f32) at 100k and 1M items, one server per engine
# (--engine), the same synthetic bodies; each measured like every other target.
make_synthetic_tt() { # n_items
    local synth=$OUT/synth n=$1 label
    label=$(size_label "$1")
    [[ -d $synth/student$label-tt/1 ]] && return 0
    mkdir -p "$synth"
    log "writing the synthetic two-tower student at $n items"
    "$BIN/examples/synth_bundles" --out "$synth" --items "$n" --write student-tt \
        --student-bundle "$student_bundle" >>"$OUT/synth.txt"
}
size_label() { if (( $1 % 1000000 == 0 )); then echo "$(( $1 / 1000000 ))m"; else echo "$(( $1 / 1000 ))k"; fi; }


# ---------------------------------------------------------------------------------------------
build
want python && venv
if want large || want naive; then make_synthetic_100k; fi
student_bundle=$MODELS/$STUDENT/$(latest_version "$MODELS/$STUDENT")
# The naive server and the Python peer run format-1 ONNX (history -> every score): the newest
# format-1 version of the same student (the distill job's two-tower export serves from format 2).
student_v1_bundle=$(python3 -c '
import json, os, sys
d = sys.argv[1]
vs = sorted((int(v) for v in os.listdir(d) if v.isdigit()), reverse=True)
print(next(os.path.join(d, str(v)) for v in vs
           if json.load(open(os.path.join(d, str(v), "manifest.json")))["format_version"] == 1))
' "$MODELS/$STUDENT")

want trained && for target in "student:$STUDENT" "teacher:$TEACHER"; do
    label=${target%%:*} model=${target#*:}
    [[ -d $MODELS/$model ]] || { log "no $MODELS/$model; run the distill job first"; exit 1; }
    repo=$(single_model_repo "$label" "$MODELS/$model")
    start_distilrec "$repo" "$model"
    measure "$label" 1682
    stop_server
done
# The same student as a format-1 bundle (one ONNX graph scoring every item), side by side with
# the two-tower export above when the student's newest version is format 2.
if want trained && [[ $student_v1_bundle != "$student_bundle" ]]; then
    repo=$OUT/repos/student-v1
    rm -rf "$repo"; mkdir -p "$repo/$STUDENT"
    ln -s "$student_v1_bundle" "$repo/$STUDENT/$(basename "$student_v1_bundle")"
    start_distilrec "$repo" "$STUDENT"
    measure student-v1 1682
    stop_server
fi

# The MLP teacher at 100k items takes ~7 ms per request here: start its sweep lower.
want large && for target in student100k:$SWEEP_START teacher100k:100; do
    model=${target%%:*}
    repo=$(single_model_repo "$model" "$OUT/synth/$model")
    start_distilrec "$repo" "$model"
    START=${target#*:} measure "$model" 100000
    stop_server
done

if want engines; then
    for n in ${ENGINE_SIZES:-100000 1000000}; do
        make_synthetic_tt "$n"
        label=$(size_label "$n")
        model=student$label-tt
        for engine in ${ENGINES:-exact int8 ann}; do
            name=student$label-$engine
            case $name in
                student100k-exact) start=500 ;; student100k-int8) start=1000 ;; student100k-ann) start=4000 ;;
                student1m-exact) start=50 ;; student1m-int8) start=100 ;; student1m-ann) start=500 ;;
            esac
            repo=$(single_model_repo "$name" "$OUT/synth/$model")
            READY_TIMEOUT=3600 EXTRA_SERVER_ARGS="--engine $engine --load-timeout-ms 3600000" start_distilrec "$repo" "$model"
            # At 10^6 items the load thread has just written ~1 GB (matrix + index): let the
            # kernel and allocator settle before the first sweep step (it failed right after the
            # build in an earlier run and passed 20 s later).
            [[ $label == 1m ]] && sleep "${SETTLE_1M:-15}"
            START=$start measure "$name" "$n"
            if [[ $name == student1m-ann ]]; then
                # The issue's 1M point: open loop at exactly 500 req/s.
                DUR=20 loadtest "$name" --mode open --rate 500 $(body_args "$n") \
                    --json-out "$OUT/$name.r500.json" >/dev/null
            fi
            stop_server
        done
    done
fi

# The naive baseline on the same bundles: the trained student, and the synthetic 100k student.
if want naive; then
    start_naive "$student_v1_bundle" naive
    measure naive 1682
    stop_server
    start_naive "$OUT/synth/student100k/$(latest_version "$OUT/synth/student100k")" naive100k
    measure naive100k 100000
    stop_server
fi

if want floor; then
    start_floor
    measure floor 1682
    stop_server
fi

if want python; then
    start_python "$student_v1_bundle"
    measure python 1682
    stop_server
fi

if want swap; then
    # Hot swap: the student at half its max throughput, a swap every second between two versions.
    log "hot-swap scenario"
    # Two versions of the student: copies of the trained bundle, the second renumbered.
    swap_repo=$OUT/repos/swap
    rm -rf "$swap_repo"; mkdir -p "$swap_repo/$STUDENT"
    for v in 1 2; do
        cp -r "$student_bundle" "$swap_repo/$STUDENT/$v"
        python3 -c 'import json,sys; p=sys.argv[1]; m=json.load(open(p)); m["version"]=int(sys.argv[2]); json.dump(m, open(p, "w"), indent=2)' \
            "$swap_repo/$STUDENT/$v/manifest.json" "$v"
    done
    swap_rate=$(half_max "$OUT/student.sweep.json")
    start_distilrec "$swap_repo" "$STUDENT"
    # shellcheck disable=SC2046
    DUR=$((DURATION * 2)) loadtest "student swap" --mode open --rate "$swap_rate" \
        --model "$STUDENT" --swap-every 1 --swap-versions 1,2 --admin-url "http://127.0.0.1:$ADMIN_PORT" \
        --admin-token "$ADMIN_TOKEN" $(body_args 1682) --json-out "$OUT/swap.json" \
        --md-out "$OUT/swap.md" --plot "$OUT/swap.png" >/dev/null
    stop_server
fi

if want wrk; then
    log "cross-check with wrk"
    start_distilrec "$(single_model_repo student "$MODELS/$STUDENT")" "$STUDENT"
    # Cross-check one point with an independent tool: wrk (closed loop) vs loadtest closed loop,
    # same connection count, same bodies, same server (the student).
    if ensure_wrk; then
        wrk_run "$OUT/wrk.txt" 1682 "$CONNECTIONS"
        # shellcheck disable=SC2046
        loadtest "student closed" --mode closed --concurrency "$CONNECTIONS" $(body_args 1682) \
            --json-out "$OUT/closed.json" --md-out "$OUT/closed.md" >/dev/null
    fi
    stop_server
fi

if want workers; then
    # The --http-workers default (CPUs minus inference threads) against one worker per CPU:
    # the student alone, wrk closed loop, alternated over three rounds.
    log "async worker threads"
    repo=$(single_model_repo student "$MODELS/$STUDENT")
    cpus=$(nproc)
    for round in 1 2 3; do
        for w in "$cpus" default; do
            if [[ $w == default ]]; then EXTRA_SERVER_ARGS= start_distilrec "$repo" "$STUDENT"
            else EXTRA_SERVER_ARGS="--http-workers $w" start_distilrec "$repo" "$STUDENT"; fi
            grep -o 'http_workers=[0-9]*' "$OUT/server-$STUDENT.log" | head -1 >"$OUT/workers-$w-$round.count" || true
            wrk_run "$OUT/workers-$w-$round.wrk.txt" 1682 "$WRK_CONNECTIONS"
            stop_server
        done
    done
fi

if want ratios; then
    # The 1,682-item closed-loop ratios of issue 13 (student vs the naive server and the Python
    # peer, with the HTTP floor), in three rounds whose target order rotates, each target freshly
    # started: a host that slows down mid-run moves every target, not only the last one.
    # Summary (per-round req/s, median ratios): $OUT/ratios.md.
    log "alternated closed-loop ratios at 1,682 items"
    want python || venv
    repo=$(single_model_repo student "$MODELS/$STUDENT")
    orders=("floor student naive python" "python naive student floor" "student python floor naive")
    for round in 1 2 3; do
        for t in ${orders[$((round - 1))]}; do
            case $t in
                floor) start_floor ;;
                student) start_distilrec "$repo" "$STUDENT" ;;
                naive) start_naive "$student_v1_bundle" naive ;;
                python) start_python "$student_v1_bundle" ;;
            esac
            DURATION=1 wrk_run /dev/null 1682 "$WRK_CONNECTIONS" # warm-up
            wrk_run "$OUT/ratios-$t-$round.wrk.txt" 1682 "$WRK_CONNECTIONS"
            stop_server
        done
    done
    python3 - "$OUT" >"$OUT/ratios.md" <<'PY'
import re, statistics, sys
out = sys.argv[1]
rps = lambda t, r: float(re.search(r"Requests/sec:\s*([\d.]+)", open(f"{out}/ratios-{t}-{r}.wrk.txt").read()).group(1))
targets = ["floor", "student", "naive", "python"]
runs = {t: [rps(t, r) for r in (1, 2, 3)] for t in targets}
print("| round | " + " | ".join(targets) + " | student / naive | student / python |")
print("|---|" + "--:|" * (len(targets) + 2))
for i in range(3):
    row = [runs[t][i] for t in targets]
    print(f"| {i + 1} | " + " | ".join(f"{v:,.0f}" for v in row)
          + f" | {runs['student'][i] / runs['naive'][i]:.2f}x | {runs['student'][i] / runs['python'][i]:.2f}x |")
med = {t: statistics.median(v) for t, v in runs.items()}
print(f"| median | " + " | ".join(f"{med[t]:,.0f}" for t in targets)
      + f" | {med['student'] / med['naive']:.2f}x | {med['student'] / med['python']:.2f}x |")
PY
    cat "$OUT/ratios.md" >&2
fi

if want protobuf; then
    # The same bodies as JSON and as protobuf (loadtest --protobuf), same server, same rates: the
    # fixed moderate rate and half the student's max; then closed-loop saturation for each.
    log "JSON vs protobuf"
    start_distilrec "$(single_model_repo student "$MODELS/$STUDENT")" "$STUDENT"
    half=$(half_max "$OUT/student.sweep.json")
    for fmt in json protobuf; do
        flag=(); [[ $fmt == protobuf ]] && flag=(--protobuf)
        for rate in "$FIXED_RATE" "$half"; do
            # shellcheck disable=SC2046
            loadtest "student $fmt" --mode open --rate "$rate" "${flag[@]}" $(body_args 1682) \
                --json-out "$OUT/format-$fmt-$rate.json" >/dev/null
        done
        # shellcheck disable=SC2046
        loadtest "student $fmt closed" --mode closed --concurrency "$CONNECTIONS" "${flag[@]}" \
            $(body_args 1682) --json-out "$OUT/format-$fmt-closed.json" >/dev/null
    done
    echo "{\"rates\": [$FIXED_RATE, $half]}" >"$OUT/format-rates.json"
    stop_server
fi

python3 "$ROOT/loadtest/bench_report.py" --out "$OUT" --command "loadtest/bench.sh" \
    --p99-bound-ms "$P99_BOUND_MS" --fixed-rate "$FIXED_RATE" --wrk-connections "$WRK_CONNECTIONS" \
    --duration "$DURATION" >"$REPORT"
log "wrote $REPORT"
