#!/usr/bin/env python3
"""Reference Python recommendation service for the benchmark suite (loadtest/bench.sh).

FastAPI + uvicorn (uvloop, httptools) + onnxruntime, serving one model bundle
(`model.onnx` + `items.tsv`) with the same top-k semantics as the distilrec server: history ids are
mapped to vocabulary rows (unknown ids are skipped and listed), row 0 (padding), the history rows and
NaN scores are never recommended, ties go to the lower row.

Its best configuration on this machine: one single-threaded process per core, each with its own
listening socket on the same port (SO_REUSEPORT, the kernel spreads connections). `uvicorn
--workers 2` was measured 10x slower here (shared/NOTES.md).

    python_service.py BUNDLE_DIR [--port 8090] [--processes 2] [--name student]
"""
import argparse
import multiprocessing
import os
import signal
import socket
import sys


def load_vocab(path):
    """items.tsv: header `row<TAB>item_id<TAB>title`, row 0 is padding."""
    ids, titles = {}, {}
    n_rows = 0
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n")
        if header != "row\titem_id\ttitle":
            raise SystemExit(f"{path}: unexpected header {header!r}")
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            cols = line.split("\t", 2)
            row = int(cols[0])
            n_rows = max(n_rows, row + 1)
            if row == 0:
                continue
            ids[row] = cols[1]
            if len(cols) > 2 and cols[2]:
                titles[row] = cols[2]
    return ids, titles, n_rows


def build_app(bundle, name):
    # Heavy imports happen in the worker only, so the launcher stays small.
    import json
    import time

    import numpy as np
    import onnxruntime as ort
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    row_id, titles, n_rows = load_vocab(os.path.join(bundle, "items.tsv"))
    index = {item: row for row, item in row_id.items()}
    version = os.path.basename(os.path.normpath(bundle))

    opts = ort.SessionOptions()
    # One process per core: more threads per process would only fight over the same cores.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        os.path.join(bundle, "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    # Warm up before accepting traffic.
    session.run(["scores"], {"history": np.zeros((1, 1), dtype=np.int64)})

    app = FastAPI()

    def error(status, message):
        body = json.dumps({"error": message, "error_type": "validation"})
        return Response(content=body, status_code=status, media_type="application/json")

    @app.post("/recommend")
    async def recommend(request: Request):
        try:
            req = json.loads(await request.body())
            history = req["history"]
            k = int(req.get("k", 10))
        except (ValueError, KeyError, TypeError):
            return error(422, "expected {\"history\": [...], \"k\": n}")
        if not 1 <= k <= 100:
            return error(422, "k must be between 1 and 100")
        rows, unknown = [], []
        for item in history:
            row = index.get(str(item))
            if row is None:
                unknown.append(str(item))
            else:
                rows.append(row)
        t1 = time.perf_counter()
        hist = np.array([rows or [0]], dtype=np.int64)
        scores = session.run(["scores"], {"history": hist})[0][0].copy()
        scores[0] = -np.inf
        if rows:
            scores[rows] = -np.inf
        scores[np.isnan(scores)] = -np.inf
        k_eff = min(k, n_rows - 1)
        top = np.argpartition(-scores, k_eff - 1)[:k_eff]
        # Descending score, then ascending row: the Rust server's tie rule.
        top = top[np.lexsort((top, -scores[top]))]
        items = []
        for row in top.tolist():
            s = float(scores[row])
            if s == -np.inf:
                break
            item = {"id": row_id[row], "score": s}
            if row in titles:
                item["title"] = titles[row]
            items.append(item)
        t2 = time.perf_counter()
        body = json.dumps(
            {
                "model": name,
                "version": int(version) if version.isdigit() else version,
                "items": items,
                "unknown_items": unknown,
                "timing": {"queue_us": 0, "inference_us": int((t2 - t1) * 1e6), "batch_size": 1},
            }
        )
        headers = {
            "x-model-version": version,
            "x-queue-time": "0",
            "x-inference-time": str(int((t2 - t1) * 1e6)),
        }
        return Response(content=body, media_type="application/json", headers=headers)

    @app.get("/readyz")
    async def readyz():
        return {"ready": True}

    return app


def worker(bundle, name, host, port):
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    config = uvicorn.Config(
        build_app(bundle, name),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=2048,
    )
    uvicorn.Server(config).run(sockets=[sock])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory: models/<name>/<version>")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--name", default=None, help="model name reported (default: the bundle's parent dir)")
    args = p.parse_args()
    bundle = os.path.abspath(args.bundle)
    name = args.name or os.path.basename(os.path.dirname(bundle))

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(bundle, name, args.host, args.port)) for _ in range(args.processes)]
    for proc in procs:
        proc.start()

    def stop(*_):
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.join()
    sys.exit(max((proc.exitcode or 0) for proc in procs))


if __name__ == "__main__":
    main()
