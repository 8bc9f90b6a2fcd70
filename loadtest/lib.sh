# Shell functions shared by the load scripts (`source loadtest/lib.sh` from the repository root).

# newest_version MODEL_DIR: the path of MODEL_DIR's highest-numbered version directory.
newest_version() {
    echo "$1/$(ls "$1" | grep -E '^[0-9]+$' | sort -n | tail -1)"
}

# two_versions SRC REPO MODEL: a fresh REPO/MODEL holding versions 1 and 2, both copies of the
# version directory SRC with the version number in their manifests changed to match: the pair a
# hot-swap run alternates between.
two_versions() {
    local src=$1 repo=$2 model=$3 v
    rm -rf "$repo"; mkdir -p "$repo/$model"
    for v in 1 2; do
        cp -r "$src" "$repo/$model/$v"
        python3 -c 'import json,sys; p=sys.argv[1]; m=json.load(open(p)); m["version"]=int(sys.argv[2]); json.dump(m, open(p, "w"), indent=2)' \
            "$repo/$model/$v/manifest.json" "$v"
    done
}
