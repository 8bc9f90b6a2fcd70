#!/usr/bin/env python3
"""Independent check of a distilrec model bundle with the reference ONNX tooling.

1. `onnx.checker.check_model(path, full_check=True)` (schema, types and shape inference);
2. the declared contract: one int64 input `history` [batch, L], one float32 output
   `scores` [batch, n_rows] with n_rows from manifest.json (format 1), or `user_vector`
   [batch, d] with d = item_side.dim (format 2, two-tower);
3. onnxruntime's scores for the given histories equal the expected ones (tract's, written by
   the Rust test) within a tolerance. For format 2 the scores are computed here from the user
   vectors and items.f32 (read with numpy, sha256 checked): user_vector · V[r] + bias[r].

Setup (once):
    python3 -m venv /work/venv
    /work/venv/bin/pip install onnx onnxruntime numpy
    export DISTILREC_PYTHON=/work/venv/bin/python

Usage:
    onnx_check.py BUNDLE_DIR EXPECTED_JSON [--tol 1e-4]

EXPECTED_JSON: {"histories": [[row, ...], ...], "scores": [[float x n_rows], ...]}.
Histories are padded with 0 to the longest (an empty one becomes [0]), as the server does.
Exit status 0 on success, 1 on a failed check (with a message on stderr).
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def fail(msg):
    print(f"onnx_check: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def dims(value_info):
    shape = value_info.type.tensor_type.shape
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in shape.dim]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("expected")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    model_path = os.path.join(args.bundle, "model.onnx")
    with open(os.path.join(args.bundle, "manifest.json")) as f:
        manifest = json.load(f)
    n_rows = manifest["n_rows"]
    two_tower = manifest["format_version"] == 2
    out_name = "user_vector" if two_tower else "scores"
    width = manifest["item_side"]["dim"] if two_tower else n_rows
    items = bias = None
    if two_tower:
        side = manifest["item_side"]
        path = os.path.join(args.bundle, side["file"])
        with open(path, "rb") as f:
            raw = f.read()
        if hashlib.sha256(raw).hexdigest() != side["sha256"]:
            fail(f"{side['file']} does not match its sha256")
        d = side["dim"]
        if side.get("dtype") == "int8_row_scaled":
            # int8 codes [n_rows, d], then f32 scales [n_rows] (and biases [n_rows]).
            codes = np.frombuffer(raw[: n_rows * d], dtype=np.int8).reshape(n_rows, d)
            flat = np.frombuffer(raw[n_rows * d :], dtype="<f4")
            items = codes.astype(np.float32) * flat[:n_rows, None]
            flat = flat[n_rows:]
            bias = flat if side["has_bias"] else np.zeros(n_rows, dtype=np.float32)
        else:
            flat = np.frombuffer(raw, dtype="<f4")
            items = flat[: n_rows * d].reshape(n_rows, d)
            bias = flat[n_rows * d :] if side["has_bias"] else np.zeros(n_rows, dtype=np.float32)
        if bias.shape != (n_rows,):
            fail(f"{side['file']} has {flat.size} floats, expected {n_rows} x {d} (+ bias)")

    onnx.checker.check_model(model_path, full_check=True)
    model = onnx.load(model_path)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if [i.name for i in inputs] != ["history"]:
        fail(f"inputs {[i.name for i in inputs]}, expected ['history']")
    if [o.name for o in model.graph.output] != [out_name]:
        fail(f"outputs {[o.name for o in model.graph.output]}, expected ['{out_name}']")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.INT64:
        fail("history is not int64")
    if model.graph.output[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        fail(f"{out_name} is not float32")
    in_dims, out_dims = dims(inputs[0]), dims(model.graph.output[0])
    if len(in_dims) != 2 or not all(isinstance(d, str) and d for d in in_dims):
        fail(f"history dims {in_dims}, expected two symbolic dims")
    if len(out_dims) != 2 or out_dims[1] != width:
        fail(f"{out_name} dims {out_dims}, expected [batch, {width}]")

    with open(args.expected) as f:
        expected = json.load(f)
    histories = expected["histories"]
    want = np.asarray(expected["scores"], dtype=np.float32)
    length = max([len(h) for h in histories] + [1])
    batch = np.zeros((len(histories), length), dtype=np.int64)
    for i, h in enumerate(histories):
        batch[i, : len(h)] = h

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])

    def run(hist):
        (out,) = sess.run([out_name], {"history": hist})
        if two_tower:
            if out.shape[1] != width:
                fail(f"onnxruntime user_vector width {out.shape[1]}, expected {width}")
            return out.astype(np.float64) @ items.T.astype(np.float64) + bias
        return out

    got = run(batch)
    if got.shape != (len(histories), n_rows):
        fail(f"onnxruntime output shape {got.shape}, expected {(len(histories), n_rows)}")
    if want.shape != got.shape:
        fail(f"expected scores have shape {want.shape}, onnxruntime gave {got.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not diff <= args.tol:
        fail(f"max |onnxruntime - expected| = {diff:.3g} > {args.tol}")
    # Also one history at a time: padding and batching must not change a row's scores.
    for i, h in enumerate(histories):
        single = np.asarray([h or [0]], dtype=np.int64)
        row = run(single)
        d = float(np.max(np.abs(row[0] - want[i])))
        if not d <= args.tol:
            fail(f"history {i} alone differs from the batch by {d:.3g}")
    print(
        f"onnx_check: OK {manifest['architecture']['kind']} format={manifest['format_version']} n_rows={n_rows} "
        f"batch={len(histories)} max_diff={diff:.3g} onnx={onnx.__version__} ort={ort.__version__}"
    )


if __name__ == "__main__":
    main()
