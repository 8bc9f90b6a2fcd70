#!/usr/bin/env bash
# distill at catalogue scale: generates synthetic logs with planted structure
# (examples/synth_log.rs), runs the README's default `distill` command on each under
# /usr/bin/time, and writes one table (wall time, peak RSS, the plan's peak, phase times,
# NDCG@10 of every model) to docs/bench-runs/distill-scale.md and into BENCHMARKS.md.
#
#   scripts/bench-distill.sh                 # ml100k 9k 20k 100k
#   SIZES="9k 20k" scripts/bench-distill.sh  # a subset
#
# Sizes: ml100k = data/ml-100k.inter (scripts/fetch-ml100k.sh); 9k = 671 users / 9,000 items /
# 100k interactions (the shape of MovieLens' ml-latest-small); 20k = 50k users / 20k items / 2M;
# 100k = 200k users / 100k items / 10M. Extra `distill` flags: DISTILL_ARGS. SKIP_RUN="100k"
# rebuilds the table from that size's earlier results in $WORK (its build is in rev-<size>.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"ml100k 9k 20k 100k"}
WORK=${WORK:-/tmp/distilrec-bench-distill}
OUT=docs/bench-runs/distill-scale.md
mkdir -p "$WORK" docs/bench-runs

cargo build --release --bin distill --bin distilrec --example synth_log -p distilrec >&2
cargo build --release -p loadtest >&2
BIN=target/release/distill
GEN=target/release/examples/synth_log
SERVER=target/release/distilrec
LOADTEST=target/release/loadtest

# Serves the student bundle a sampled run exported (its own engine, default flags) and loads it
# open loop at SERVE_RATE (1,000) req/s for SERVE_SECONDS (20) with histories from the log:
# writes $WORK/serve-<size>.json (the harness' report).
serve() {
  local size=$1 data=$2 models=$WORK/models-$1
  [[ -d $models/bench-$size ]] || { echo "== $size: no student bundle to serve" >&2; return 0; }
  local bodies=$WORK/bodies-$size.tsv srvlog=$WORK/serve-$size.log
  # The first 200k interactions as user<TAB>item (histories grouped by user, most recent kept).
  awk -F, 'NR > 200001 { exit } NR > 1 { print $1 "\t" $2 }' "$data" > "$bodies"
  RUST_LOG=info $SERVER --models "$models" --default-model "bench-$size" --addr 127.0.0.1:0 \
    --poll-interval-ms 0 > "$srvlog" 2>&1 &
  local pid=$! addr=""
  for _ in $(seq 1200); do
    addr=$(grep -o 'listening on [0-9.:]*' "$srvlog" | head -1 | sed 's/listening on //') || true
    [[ -n $addr ]] && [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz") == 200 ]] && break
    kill -0 $pid 2>/dev/null || { cat "$srvlog" >&2; echo "the server exited" >&2; return 1; }
    sleep 0.5
  done
  $LOADTEST --url "http://$addr" --mode open --rate "${SERVE_RATE:-1000}" \
    --duration "${SERVE_SECONDS:-20}" --warmup 3 --bodies "$bodies" --quiet \
    --json-out "$WORK/serve-$size.json" --label "bench-$size" >&2 || true
  kill $pid; wait $pid 2>/dev/null || true
}

log_for() {
  case "$1" in
    ml100k) scripts/fetch-ml100k.sh data >&2; echo data/ml-100k.inter ;;
    9k) [[ -s $WORK/log-9k.csv ]] || $GEN --users 671 --items 9000 --interactions 100000 --out "$WORK/log-9k.csv" >&2
        echo "$WORK/log-9k.csv" ;;
    20k) [[ -s $WORK/log-20k.csv ]] || $GEN --users 50000 --items 20000 --interactions 2000000 --out "$WORK/log-20k.csv" >&2
         echo "$WORK/log-20k.csv" ;;
    100k) [[ -s $WORK/log-100k.csv ]] || $GEN --users 200000 --items 100000 --interactions 10000000 --out "$WORK/log-100k.csv" >&2
          echo "$WORK/log-100k.csv" ;;
    *) echo "unknown size $1" >&2; exit 2 ;;
  esac
}

for size in $SIZES; do
  if [[ " ${SKIP_RUN:-} " == *" $size "* ]]; then
    echo "== $size: reusing $WORK/run-$size" >&2
    continue
  fi
  data=$(log_for "$size")
  run="$WORK/run-$size"
  rm -rf "$run" "$WORK/models-$size"
  echo "== $size: $data" >&2
  echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo -dirty)" > "$WORK/rev-$size.txt"
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$WORK/time-$size.txt" \
    $BIN --data "$data" --models "$WORK/models-$size" --run-dir "$run" --name "bench-$size" ${DISTILL_ARGS:-} \
    2> >(tee "$WORK/log-$size.txt" >&2)
  [[ $size == ml100k ]] || serve "$size" "$data"
done

python3 - "$WORK" "$OUT" $SIZES <<'EOF'
import json, re, sys, datetime, subprocess
work, out, sizes = sys.argv[1], sys.argv[2], sys.argv[3:]
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [f"<!-- distill-scale:begin -->",
         f"## distill at catalogue scale ({datetime.datetime.utcnow():%Y-%m-%d}, build {rev}; `scripts/bench-distill.sh`)",
         "",
         "| log | build | users | items | interactions | trainer | wall | peak RSS | planned peak | teacher test NDCG@10 | exported student (params, share of teacher) | student / teacher | gain over its no-KD twin | popularity | student served: p99 at 1,000 req/s open loop (errors) |",
         "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
def served(size):
    try:
        j = json.load(open(f"{work}/serve-{size}.json"))
    except OSError:
        return "–"
    return f"{j['latency_us']['p99']/1000:.2f} ms at {j['throughput_rps']:.0f}/s ({j['requests']['errors']})"
details = []
for size in sizes:
    t = open(f"{work}/time-{size}.txt").read()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (.*)", t).group(1)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024
    r = json.load(open(f"{work}/run-{size}/report.json"))
    try:
        build = open(f"{work}/rev-{size}.txt").read().strip()
    except OSError:
        build = "?"
    d = r["dataset"]
    if r.get("trainer") == "sampled":
        models = {m["name"]: m for m in r["models"]}
        teacher = models[r["teacher"]]
        kd = models[r["exported_student"]]
        plain = models[r["exported_student"].removesuffix("-kd")]
        # With KD at every width flagged as hurting, the exported student can be a no-KD twin.
        pop = models["popularity"]
        tn, kn, pn = teacher["test"]["ndcg@10"], kd["test"]["ndcg@10"], plain["test"]["ndcg@10"]
        planned = max(p["bytes"] for p in r["plan"]["phases"] if p["skipped"] is None)
        lines.append(f"| {size} | {build} | {d['n_users']} | {d['n_items']} | {d['n_interactions']} | sampled | {wall} | {rss/1e9:.2f} GB | {planned/1e9:.2f} GB | {tn:.4f} | `{kd['name']}` ({kd['parameters']}, {100*kd['parameters']/teacher['parameters']:.1f} %) | {100*kn/tn:.1f} % | {100*(kn/pn-1):+.1f} % | {pop['test']['ndcg@10']:.4f} | {served(size)} |")
        details.append(f"\n### {size}: every model (test split, full ranking)\n")
        details.append("| model | params | test NDCG@10 | test Recall@10 | epochs (best) | seconds | notes |\n|---|---:|---:|---:|---:|---:|---|")
        for m in r["models"]:
            ep = f"{m['epochs']} ({m['best_epoch']})" if m["epochs"] is not None else "–"
            details.append(f"| {m['name']} | {m['parameters']} | {m['test']['ndcg@10']:.4f} | {m['test']['recall@10']:.4f} | {ep} | {m['seconds']:.1f} | {'; '.join(m['flags'])} |")
        details.append("\n| phase | seconds |\n|---|---:|")
        for name, secs in r["phases"]:
            details.append(f"| {name} | {secs:.1f} |")
    else:
        ratios = r["main"]["ratios"]
        lines.append(f"| {size} | {build} | {d['n_users']} | {d['n_items']} | {d['n_interactions']} | dense | {wall} | {rss/1e9:.2f} GB | – | {ratios['teacher_test_ndcg10']:.4f} | `{ratios['kd_student']}` ({100*ratios['param_ratio']:.1f} %) | {100*ratios['ndcg_ratio']:.1f} % | {100*ratios['kd_gain']:+.1f} % | {ratios['popularity_test_ndcg10']:.4f} | – |")
        details.append(f"\n### {size}: phases (dense trainer)\n\n| phase | seconds |\n|---|---:|")
        for p in r["phases"]:
            details.append(f"| {p['name']} | {p['seconds']:.1f} |")
text = "\n".join(lines + details + ["<!-- distill-scale:end -->"]) + "\n"
open(out, "w").write(text)
b = open("BENCHMARKS.md").read()
if "<!-- distill-scale:begin -->" in b:
    b = re.sub(r"<!-- distill-scale:begin -->.*<!-- distill-scale:end -->\n", lambda _: text, b, flags=re.S)
else:
    b = b.rstrip("\n") + "\n\n" + text
open("BENCHMARKS.md", "w").write(b)
print(text)
EOF
