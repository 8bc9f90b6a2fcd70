#!/usr/bin/env python3
"""Writes a small synthetic `mean_mlp` model bundle (docs/model-bundle.md) with random weights.

For deploy/check.sh's live test when the repository holds no trained bundle yet: the deploy checks
exercise the server, Prometheus and the rules, not the model's quality. Publishes atomically like
`distill`: staging directory `.tmp-*`, then rename to the next version.

    make_synthetic_bundle.py REPO [--name ml100k] [--items 300] [--dim 16] [--seed 7]
"""
import argparse
import hashlib
import json
import os
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_model(n_rows, dim, hidden, rng):
    E = rng.normal(0, 0.1, (n_rows, dim)).astype(np.float32)
    W = rng.normal(0, 0.3, (dim, hidden)).astype(np.float32)
    b = np.zeros(hidden, np.float32)
    Et = rng.normal(0, 0.1, (hidden, n_rows)).astype(np.float32)
    bias = rng.normal(0, 0.01, n_rows).astype(np.float32)
    inits = [
        numpy_helper.from_array(E, "E"), numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(b, "b"), numpy_helper.from_array(Et, "Et"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    n = helper.make_node
    nodes = [
        n("Greater", ["history", "zero"], ["is_item"]),
        n("Cast", ["is_item"], ["mask"], to=TensorProto.FLOAT),
        n("Gather", ["E", "history"], ["emb"], axis=0),
        n("Unsqueeze", ["mask", "axis2"], ["mask3"]),
        n("Mul", ["emb", "mask3"], ["masked"]),
        n("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        n("ReduceSum", ["mask", "axis1"], ["count"], keepdims=1),
        n("Max", ["count", "one"], ["count1"]),
        n("Div", ["summed", "count1"], ["u"]),
        n("MatMul", ["u", "W"], ["h0"]),
        n("Add", ["h0", "b"], ["h1"]),
        n("Relu", ["h1"], ["h"]),
        n("MatMul", ["h", "Et"], ["s0"]),
        n("Add", ["s0", "bias"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "synthetic_mean_mlp",
        [helper.make_tensor_value_info("history", TensorProto.INT64, ["batch", "L"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_rows])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="distilrec-deploy-check")
    onnx.checker.check_model(model, full_check=True)
    params = E.size + W.size + b.size + Et.size + bias.size
    return model.SerializeToString(), int(params)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--name", default="ml100k")
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    n_rows = args.items + 1
    model_bytes, params = build_model(n_rows, args.dim, args.hidden, rng)
    model_dir = os.path.join(args.repo, args.name)
    os.makedirs(model_dir, exist_ok=True)
    versions = [int(d) for d in os.listdir(model_dir) if d.isdigit() and not d.startswith("0")]
    version = max(versions, default=0) + 1

    manifest = {
        "format_version": 1, "name": args.name, "version": version, "role": "student",
        "created_at": int(time.time()), "n_rows": n_rows, "history_length": None,
        "input": {"name": "history", "dtype": "int64", "shape": ["batch", "L"]},
        "output": {"name": "scores", "dtype": "float32", "shape": ["batch", n_rows]},
        "architecture": {"kind": "mean_mlp", "description": "synthetic random weights (deploy check)",
                         "embedding_dim": args.dim, "hidden": [args.hidden], "activation": "relu"},
        "parameters": params, "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "dataset": None, "split": None, "distillation": None, "metrics": {},
    }
    items = "row\titem_id\ttitle\n0\t[PAD]\t\n" + "".join(f"{r}\ti{r}\tSynthetic item {r}\n" for r in range(1, n_rows))
    users = "user_id\thistory_rows\n" + "".join(
        f"u{u}\t{','.join(str(x) for x in rng.integers(1, n_rows, 10))}\n" for u in range(1, 6))

    staging = os.path.join(model_dir, f".tmp-{os.getpid()}-synthetic")
    os.makedirs(staging)
    for fname, data in (("model.onnx", model_bytes), ("manifest.json", json.dumps(manifest, indent=2).encode()),
                        ("items.tsv", items.encode()), ("users.tsv", users.encode())):
        with open(os.path.join(staging, fname), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    final = os.path.join(model_dir, str(version))
    os.rename(staging, final)
    print(final)


if __name__ == "__main__":
    main()
