#!/usr/bin/env bash
# Calling the JSON API with curl. Start the server first (`cargo run --release --bin distilrec`,
# it serves models/ on 127.0.0.1:8080) or point DISTILREC_URL at another one.
# Ids are MovieLens ids of the default ml100k bundle; the API takes them as strings or integers.
set -euo pipefail
URL="${DISTILREC_URL:-http://127.0.0.1:8080}"
USER_ID="${DISTILREC_USER:-1}"

# Prints each command (shell-quoted, so it can be pasted) before running it.
show() { printf '$' >&2; printf ' %q' "$@" >&2; echo >&2; "$@"; echo; }

# Liveness, readiness (the default model is loaded and warmed up) and the models served.
show curl -sS --fail "$URL/healthz"
show curl -sS --fail "$URL/readyz"
show curl -sS --fail "$URL/v1/models"

# Top 5 for a history (oldest first), never returning item 1; -i shows the headers
# x-model-version, x-queue-time and x-inference-time (microseconds).
show curl -sS --fail -i "$URL/recommend" -H 'content-type: application/json' \
  -d '{"history": ["50", "181", 258], "k": 5, "exclude": ["1"]}'

# Top 10 for a known user (their stored history is scored and excluded), on a named model.
show curl -sS --fail "$URL/recommend" -H 'content-type: application/json' \
  -d "{\"user_id\": \"$USER_ID\", \"model\": \"$(curl -sS --fail "$URL/readyz" | sed -E 's/.*"model":"([^"]*)".*/\1/')\"}"

# Errors are {"error", "error_type"} with a stable error_type; this one is 404 unknown_user.
show curl -sS "$URL/recommend" -H 'content-type: application/json' -d '{"user_id": "no-such-user"}'

# Protobuf bodies (proto/recommend.proto) use the same route: send
#   -H 'content-type: application/x-protobuf' --data-binary @request.bin
# and add -H 'accept: application/json' to read the answer as JSON; see python_client.py.
