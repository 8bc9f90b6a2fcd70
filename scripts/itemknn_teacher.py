#!/usr/bin/env python3
"""Build an item-kNN teacher with numpy and write it as a distilrec model bundle with the `onnx`
package: a teacher made by another tool, for `distill --teacher-bundle`.

The model: cosine similarity between item columns of the user x item matrix (shrunk by
`--shrink`, each item keeping its `--neighbours` most similar items); a user's score for item j is
the sum over their history of sim(h, j). As ONNX (opset 13):

    history int64 [batch, L] --Gather(S)--> [batch, L, n_rows] --ReduceSum(axis 1)--> scores

S is [n_rows, n_rows] float32 with row/column 0 (padding) zero, so padded history slots add
nothing. The bundle directory gets model.onnx, items.tsv and a format-1 manifest.json (sha256s
filled in), as docs/model-bundle.md describes.

Usage:
    itemknn_teacher.py INTERACTIONS OUT_DIR [--name NAME] [--neighbours 100] [--shrink 10]
        [--items-order sorted|reversed] [--extra-items N] [--train-split SPLIT_DIR]

INTERACTIONS: tab-separated `user item ...` lines; a first line containing ':' (RecBole header)
or starting with `user` is skipped. With --train-split, only SPLIT_DIR/train.tsv is used
(`user_id<TAB>item_id` lines, as distill writes), so the teacher never sees valid/test items.
--items-order and --extra-items shuffle and pad the vocabulary (tests: the mapping onto the
dataset's items must follow ids, not positions).
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def read_pairs(path):
    pairs = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            line = line.rstrip("\n")
            if not line:
                continue
            cols = line.split("\t")
            if i == 0 and (":" in line or cols[0].lower().startswith("user")):
                continue
            if len(cols) < 2:
                sys.exit(f"{path}:{i + 1}: expected at least 2 tab-separated columns")
            pairs.append((cols[0], cols[1]))
    return pairs


def similarity(pairs, items, neighbours, shrink):
    col = {it: j for j, it in enumerate(items)}
    users = sorted({u for u, _ in pairs})
    row = {u: i for i, u in enumerate(users)}
    x = np.zeros((len(users), len(items)), dtype=np.float32)
    for u, it in pairs:
        x[row[u], col[it]] = 1.0
    co = x.T @ x
    norms = np.sqrt(np.diag(co))
    sim = co / (np.outer(norms, norms) + shrink + 1e-9)
    np.fill_diagonal(sim, 0.0)
    if neighbours < len(items):
        # Keep each item's `neighbours` largest similarities (per row).
        cut = np.partition(sim, -neighbours, axis=1)[:, -neighbours][:, None]
        sim = np.where(sim >= cut, sim, 0.0)
    return sim.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("interactions")
    ap.add_argument("out_dir")
    ap.add_argument("--name", default="itemknn")
    ap.add_argument("--neighbours", type=int, default=100)
    ap.add_argument("--shrink", type=float, default=10.0)
    ap.add_argument("--items-order", choices=["sorted", "reversed"], default="sorted")
    ap.add_argument("--extra-items", type=int, default=0)
    ap.add_argument("--train-split", help="use SPLIT_DIR/train.tsv instead of every interaction")
    a = ap.parse_args()

    pairs = read_pairs(os.path.join(a.train_split, "train.tsv") if a.train_split else a.interactions)
    every = {it for _, it in read_pairs(a.interactions)}
    items = sorted(every, reverse=a.items_order == "reversed")
    items += [f"extra-{k}" for k in range(a.extra_items)]
    sim = similarity(pairs, items, a.neighbours, a.shrink)
    n_rows = len(items) + 1
    s = np.zeros((n_rows, n_rows), dtype=np.float32)
    s[1:, 1:] = sim

    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["S", "history"], ["gathered"], axis=0),
            helper.make_node("ReduceSum", ["gathered", "axes"], ["scores"], keepdims=0),
        ],
        "itemknn",
        [helper.make_tensor_value_info("history", TensorProto.INT64, ["batch", "L"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_rows])],
        [numpy_helper.from_array(s, "S"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="itemknn_teacher.py (onnx " + onnx.__version__ + ")")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    model_bytes = model.SerializeToString()

    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "model.onnx"), "wb") as f:
        f.write(model_bytes)
    items_tsv = "row\titem_id\ttitle\n0\t[PAD]\t\n" + "".join(f"{r}\t{it}\t\n" for r, it in enumerate(items, 1))
    with open(os.path.join(a.out_dir, "items.tsv"), "w", encoding="utf-8") as f:
        f.write(items_tsv)
    manifest = {
        "format_version": 1,
        "name": a.name,
        "version": 1,
        "role": "teacher",
        "created_at": int(time.time()),
        "n_rows": n_rows,
        "history_length": None,
        "input": {"name": "history", "dtype": "int64", "shape": ["batch", "L"]},
        "output": {"name": "scores", "dtype": "float32", "shape": ["batch", n_rows]},
        "architecture": {
            "kind": "itemknn",
            "description": f"item-kNN: sum over the history of shrunk cosine similarities "
                           f"({a.neighbours} neighbours, shrink {a.shrink:g}), numpy + onnx",
        },
        "parameters": int(n_rows * n_rows),
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "items_sha256": hashlib.sha256(items_tsv.encode("utf-8")).hexdigest(),
    }
    with open(os.path.join(a.out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps({"dir": a.out_dir, "n_rows": n_rows, "parameters": manifest["parameters"]}))


if __name__ == "__main__":
    main()
