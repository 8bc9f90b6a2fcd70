#!/usr/bin/env python3
"""The live half of deploy/check.sh: wait for endpoints, send traffic, query Prometheus.

    live_check.py wait URL [--timeout S]           until URL answers 200
    live_check.py traffic ADDR ITEMS_TSV [--seconds S] [--threads N]
    live_check.py verify PROM_URL --client-rate R   recording rules and rule health

Standard library only, loopback only, bounded in time.
"""
import argparse
import http.client
import json
import math
import random
import sys
import threading
import time
import urllib.parse
import urllib.request


def get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def cmd_wait(args):
    deadline = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            status, _ = get(args.url)
            if status == 200:
                return 0
            last = status
        except Exception as e:  # connection refused while starting, 503 while warming up
            last = e
        time.sleep(0.2)
    print(f"timed out after {args.timeout}s waiting for {args.url}: {last}", file=sys.stderr)
    return 1


def cmd_traffic(args):
    host, port = args.addr.rsplit(":", 1)
    with open(args.items) as f:
        ids = [line.split("\t")[1] for line in f.read().splitlines()[2:] if line]
    stats = {"ok": 0, "client_error": 0, "other": 0, "exceptions": 0}
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds

    def worker(seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        n = 0
        while time.monotonic() < stop:
            n += 1
            if n % 50 == 0:
                # A few malformed requests, so 4xx statuses show up in the metrics too.
                body, expect = b'{"history": [', "client_error"
            else:
                hist = rng.sample(ids, k=min(len(ids), rng.randint(1, 30)))
                body, expect = json.dumps({"history": hist, "k": 10}).encode(), "ok"
            try:
                conn.request("POST", "/recommend", body=body, headers={"content-type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if 200 <= resp.status < 300:
                    kind = "ok"
                elif 400 <= resp.status < 500:
                    kind = "client_error"
                else:
                    kind = "other"
                if kind != expect:
                    print(f"unexpected status {resp.status} for {body[:80]!r}", file=sys.stderr)
            except Exception as e:
                kind = "exceptions"
                print(f"request failed: {e}", file=sys.stderr)
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
            with lock:
                stats[kind] += 1
            if args.pause_ms:
                time.sleep(args.pause_ms / 1000)
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    total = sum(stats.values())
    stats["seconds"] = round(elapsed, 2)
    stats["rate"] = round(total / elapsed, 1)
    print(json.dumps(stats))
    # Every well-formed request must succeed; every malformed one must be a 4xx.
    return 0 if stats["ok"] > 0 and stats["other"] == 0 and stats["exceptions"] == 0 else 1


def query(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = get(url, timeout=5)
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise RuntimeError(f"query {expr!r} failed: {doc}")
    return doc["data"]["result"]


def cmd_verify(args):
    p99_expr = 'job_route:distilrec_http_request_duration_seconds:p99_1m{job="distilrec", route="/recommend"}'
    p50_expr = 'job_route:distilrec_http_request_duration_seconds:p50_1m{job="distilrec", route="/recommend"}'
    rate_expr = 'job:distilrec_http_requests:rate1m{job="distilrec"}'
    failures = []
    deadline = time.monotonic() + args.timeout
    # The rules are evaluated every second; retry until the first evaluations after the traffic exist.
    while True:
        values = {}
        for name, expr in (("p99", p99_expr), ("p50", p50_expr), ("rate", rate_expr)):
            res = query(args.prom, expr)
            values[name] = float(res[0]["value"][1]) if len(res) == 1 else None
        ok = all(v is not None and not math.isnan(v) for v in values.values())
        if ok or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(f"prometheus: p50={values['p50']} s, p99={values['p99']} s, request rate={values['rate']} req/s "
          f"(client sent {args.client_rate} req/s)")
    p99, p50, rate = values["p99"], values["p50"], values["rate"]
    if p99 is None or math.isnan(p99) or not (0 < p99 < 1):
        failures.append(f"p99 recording rule: expected a value in (0, 1) s, got {p99}")
    if p50 is not None and p99 is not None and not p50 <= p99:
        failures.append(f"p50 {p50} > p99 {p99}")
    # rate() over 1m sees at most the traffic window: it cannot exceed what the client sent (plus
    # probe and scrape noise), and must be clearly above zero.
    if rate is None or math.isnan(rate) or not (0 < rate <= 1.5 * args.client_rate + 5):
        failures.append(f"request rate recording rule: expected (0, {1.5 * args.client_rate + 5:.0f}], got {rate}")

    up = query(args.prom, 'up{job="distilrec"}')
    if not up or float(up[0]["value"][1]) != 1:
        failures.append(f"target not up: {up}")
    live = query(args.prom, 'distilrec_model_live_info{job="distilrec"} == 1')
    if not live:
        failures.append("no distilrec_model_live_info == 1 series")
    else:
        print("live models: " + ", ".join(f"{r['metric'].get('model')} v{r['metric'].get('version')}" for r in live))

    status, body = get(f"{args.prom}/api/v1/rules", timeout=5)
    groups = json.loads(body)["data"]["groups"]
    n_rules = 0
    for g in groups:
        for r in g["rules"]:
            n_rules += 1
            if r.get("health") != "ok":
                failures.append(f"rule {r.get('name')} health={r.get('health')}: {r.get('lastError')}")
    print(f"{n_rules} rules loaded in {len(groups)} groups")
    if n_rules == 0:
        failures.append("no rules loaded")
    for f in failures:
        print("ERROR", f, file=sys.stderr)
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("url")
    w.add_argument("--timeout", type=float, default=60)
    t = sub.add_parser("traffic")
    t.add_argument("addr")
    t.add_argument("items")
    t.add_argument("--seconds", type=float, default=20)
    t.add_argument("--threads", type=int, default=4)
    t.add_argument("--pause-ms", type=float, default=0)
    v = sub.add_parser("verify")
    v.add_argument("prom")
    v.add_argument("--client-rate", type=float, required=True)
    v.add_argument("--timeout", type=float, default=20)
    args = ap.parse_args()
    return {"wait": cmd_wait, "traffic": cmd_traffic, "verify": cmd_verify}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
