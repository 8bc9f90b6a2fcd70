#!/usr/bin/env bash
# Contract fuzzing: schemathesis generates requests from the served /openapi.json and checks the
# real server's answers against it (no 5xx, statuses, content types, headers and bodies as
# documented, schema-violating requests refused). Runs the debug server on the committed models/
# repository with the admin API enabled, on a free port; exits non-zero on any failure.
#
#   scripts/schemathesis.sh [extra schemathesis args]     (SCHEMATHESIS_MAX_EXAMPLES=50)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
venv=.venv-schemathesis
if [ ! -x "$venv/bin/schemathesis" ] ||
    ! "$venv/bin/pip" show schemathesis 2>/dev/null | grep -qx "Version: $SCHEMATHESIS_VERSION"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin distilrec
bin="${CARGO_TARGET_DIR:-target}/debug/distilrec"

token="schemathesis-admin-token"
log=$(mktemp)
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$log" "$work"
}
trap cleanup EXIT
# A copy, so admin loads and pins cannot touch the committed repository.
cp -r models "$work/models"
RUST_LOG=warn,distilrec=info "$bin" --models "$work/models" --addr 127.0.0.1:0 \
    --admin-token "$token" --poll-interval-ms 0 >"$log" 2>&1 &
server_pid=$!

base=""
for _ in $(seq 600); do
    base=$(grep -o 'listening on [0-9.:]*' "$log" | head -1 | sed 's/listening on //') || true
    [ -n "$base" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log"; echo "the server exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$base" ] || { cat "$log"; echo "the server did not log its address" >&2; exit 1; }
base="http://$base"
for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] && break
    sleep 0.1
done

# positive_data_acceptance is left out: JSON Schema's `integer` also matches `5.0`, which the
# server refuses (serde reads integers strictly), and no schema can say "integer literal". Every
# other check runs, including negative_data_rejection (schema-invalid requests must get a 4xx).
start=$(date +%s)
status=0
# From the scratch directory: schemathesis keeps a crash cache in the working directory.
st="$PWD/$venv/bin/schemathesis"
config="$PWD/scripts/schemathesis.toml"
(cd "$work" && "$st" --config-file "$config" run "$base/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --workers 1 \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --no-color \
    --generation-database none \
    "$@") || status=$?
echo "schemathesis: exit $status after $(( $(date +%s) - start )) s"
if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$log"
    echo "the server died during the run" >&2
    exit 1
fi
exit "$status"
