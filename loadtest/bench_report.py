#!/usr/bin/env python3
"""Writes BENCHMARKS.md (stdout) from the JSON files loadtest/bench.sh leaves in --out.

Standard library only. Missing targets show as "not measured" rather than failing, so a partial run
(e.g. without the HTTP floor hook) still produces a report.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess

TARGETS = [
    ("student", "distilrec + KD student (1,682 items)"),
    ("teacher", "distilrec + EASE teacher (1,682 items)"),
    ("naive", "naive axum + tract, student (`examples/naive_server.rs`, 1,682 items)"),
    ("student100k", "distilrec + student architecture (100k items, synthetic weights)"),
    ("teacher100k", "distilrec + MLP teacher architecture (100k items, synthetic weights)"),
    ("naive100k", "naive axum + tract, student architecture (100k items, synthetic weights)"),
    ("floor", "HTTP floor (`distilrec --http-floor`: same stack, fixed body)"),
    ("python", "FastAPI + onnxruntime, student (2 procs, SO_REUSEPORT)"),
]

# Target names: <family><size>[-<variant>], e.g. student, naive100k, student100k-int8, student1m-ann.
# The size is the catalogue (none = the trained 1,682-item bundles); targets of one size compare
# with the naive server and the teacher of that size.
TARGET_NAME = re.compile(r"^(student|teacher|naive)(\d+[km]?)?(?:-([\w.-]+))?$")
FAMILY_TITLES = {"student": "distilrec + student", "teacher": "distilrec + teacher",
                 "naive": "naive axum + tract"}


def split_name(name):
    """(family, size, variant) of a target name, or None for floor / python / unknown shapes."""
    m = TARGET_NAME.match(name)
    return (m.group(1), m.group(2) or "", m.group(3)) if m else None


def items_label(size):
    if not size:
        return "1,682 items"
    return f"{size[:-1]}{size[-1].upper() if size[-1] == 'm' else size[-1]} items"


def discover_targets(out, known):
    """Targets measured in `out` (a sweep or a wrk result) that TARGETS does not list: extra
    variants added to bench.sh show up without editing this file."""
    names = set()
    for f in os.listdir(out) if os.path.isdir(out) else []:
        for suffix in (".sweep.json", ".wrk.txt"):
            # workers-*: the worker-count rounds, reported in their own section.
            if f.endswith(suffix) and f[: -len(suffix)] not in known and not f.startswith("workers-"):
                names.add(f[: -len(suffix)])
    extra = []
    for name in sorted(names, key=lambda n: (split_name(n) is None, n)):
        parts = split_name(name)
        if parts:
            family, size, variant = parts
            title = f"{FAMILY_TITLES[family]}{f' `{variant}`' if variant else ''} ({items_label(size)}"
            title += ", synthetic weights)" if size else ")"
        else:
            title = f"`{name}`"
        extra.append((name, title))
    return extra


def load(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def ms(us):
    return f"{us / 1000:.2f}"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}×"


def check(ok, text):
    if ok is None:
        return f"- ❔ {text}: not measured"
    return f"- {'✅' if ok else '❌'} {text}"


def parse_wrk(path):
    """Requests/sec and p50/p99 (ms) from `wrk --latency` output."""
    if not os.path.exists(path):
        return None
    text = open(path).read()
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * unit[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": float(rps.group(1)) if rps else None,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0,
    }


def wrk_cell(w):
    """`req/s / p99 ms` of a wrk run; failures are spelled out, since wrk counts them as requests."""
    if not w or w["rps"] is None:
        return "—"
    cell = f"{w['rps']:,.0f} / {w['p99_ms']:.2f}" if w["p99_ms"] is not None else f"{w['rps']:,.0f}"
    bad = [f"{w['non2xx']} non-2xx"] if w["non2xx"] else []
    bad += [f"{w['socket_errors']} socket errors"] if w["socket_errors"] else []
    return cell + (f" ({', '.join(bad)})" if bad else "")


def wrk_rps(w):
    """Throughput that counts: none when the run had failed responses."""
    if not w or w["rps"] is None or w["non2xx"] or w["socket_errors"]:
        return None
    return w["rps"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--p99-bound-ms", type=float, required=True)
    ap.add_argument("--fixed-rate", type=float, required=True)
    ap.add_argument("--wrk-connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=None, help="seconds per wrk run")
    a = ap.parse_args()

    targets = TARGETS + discover_targets(a.out, {k for k, _ in TARGETS})
    rows, maxes, p99_half, wrks = [], {}, {}, {}
    for key, title in targets:
        sweep = load(a.out, f"{key}.sweep.json")
        fixed = load(a.out, f"{key}.fixed.json")
        half = load(a.out, f"{key}.half.json")
        rss = load(a.out, f"{key}.rss.json")
        wrk = parse_wrk(os.path.join(a.out, f"{key}.wrk.txt"))
        if wrk:
            wrks[key] = wrk
        if sweep is None:
            rows.append(f"| {title} | not measured | {wrk_cell(wrk)} | | | | | |")
            continue
        best = sweep.get("max_throughput_rps")
        maxes[key] = best
        f_lat = fixed["latency_us"] if fixed else None
        h_lat = half["latency_us"] if half else None
        if half:
            p99_half[key] = h_lat["p99"]
        rows.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                title,
                f"{best:,.0f}" if best else "none met the bound",
                wrk_cell(wrk),
                f"{ms(f_lat['p50'])} / {ms(f_lat['p99'])}" if f_lat else "—",
                fixed["requests"]["errors"] if fixed else "—",
                f"{ms(h_lat['p99'])} @ {half['offered_rate']:,.0f}/s" if h_lat else "—",
                f"{rss['rss_kb'] / 1024:.0f} / {rss['hwm_kb'] / 1024:.0f}" if rss else "—",
                len(sweep["steps"]),
            )
        )

    cmds = open(os.path.join(a.out, "commands.log")).read().splitlines() if os.path.exists(
        os.path.join(a.out, "commands.log")) else []
    pyver = load_text(os.path.join(a.out, "python-versions.txt"))
    print("# Benchmarks\n")
    print(f"Produced by `{a.command}` on {datetime.date.today().isoformat()}.\n")
    print("**Machine**: `nproc` = {}, CPU: {}, kernel {}. Client and server share the cores; the "
          "client runs one thread.\n".format(nproc(), cpu_model(), platform.release()))
    if pyver:
        print(f"Python peer: {pyver.strip()}.\n")
    print(f"Max throughput = highest open-loop rate whose p99 (from the intended send time, no "
          f"coordinated omission) is ≤ {a.p99_bound_ms:g} ms with zero errors (rate sweep, "
          f"bisection to 5 %). Fixed rate = {a.fixed_rate:,.0f} req/s open loop. RSS = current / "
          f"peak resident memory of the server's process tree after its runs.\n")
    wrk_cmd = f"wrk -t1 -c{a.wrk_connections}" + (f" -d{a.duration:g}s" if a.duration else "")
    print(f"Closed loop = `{wrk_cmd} --latency`: {a.wrk_connections} requests always in flight, the "
          f"same bodies, req/s and p99 as wrk reports them (latency from the actual send, so "
          f"queueing inside the client is not counted; read latency from the open-loop columns).\n")
    print(f"| target | max req/s (p99 ≤ {a.p99_bound_ms:g} ms) | closed loop req/s / p99 ms "
          f"| p50 / p99 ms @ {a.fixed_rate:,.0f}/s "
          f"| errors @ fixed | p99 ms @ 50 % of own max | RSS MB | sweep steps |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))

    synth = load_text(os.path.join(a.out, "synth.txt"))
    if synth:
        print("\nSynthetic 100k-item bundles (examples/synth_bundles.rs): " + "; ".join(
            f"{c[0]} {int(c[1].split()[0]):,} parameters"
            for c in (line.split("\t") for line in synth.splitlines() if line.strip())) + ".")

    print("\n## Ratios\n")
    m = maxes.get
    print(f"- student / teacher, 1,682 items: {ratio(m('student'), m('teacher'))}")
    t100_note = " (the teacher met the p99 bound at no rate tried)" if \
        m("teacher100k") is None and load(a.out, "teacher100k.sweep.json") else ""
    print(f"- student / teacher, 100k items: {ratio(m('student100k'), m('teacher100k'))}{t100_note}")
    print(f"- server (student) / HTTP floor: {ratio(m('student'), m('floor'))}")
    print(f"- server (student) / Python service: {ratio(m('student'), m('python'))}")

    print_closed_loop_ratios(targets, wrks, a.wrk_connections)

    swap = load(a.out, "swap.json")
    print("\n## Hot swap (student, a swap every second, ±window around each)\n")
    if swap and swap.get("swap"):
        s = swap["swap"]
        print(f"{len(s['swaps'])} swaps ({s['failed_swaps']} failed) at {swap['offered_rate']:,.0f} req/s; "
              f"window ±{s['window_ms']:.0f} ms.\n")
        print("| requests | count | errors | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|")
        for name in ("inside", "outside"):
            w = s[name]
            l = w["latency_us"]
            print(f"| {name} swap windows | {w['requests']} | {w['errors']} | {ms(l['p50'])} | "
                  f"{ms(l['p99'])} | {ms(l['p999'])} | {ms(l['max'])} |")
    else:
        print("not measured")

    print_workers(a.out, a.wrk_connections)

    wrk = parse_wrk(os.path.join(a.out, "wrk.txt"))
    closed = load(a.out, "closed.json")
    print("\n## Cross-check with wrk (closed loop, student, same connections and bodies)\n")
    if wrk and closed:
        print("| tool | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
        print(f"| wrk | {wrk['rps']:,.0f} | {wrk['p50_ms']:.2f} | {wrk['p99_ms']:.2f} | {wrk['non2xx']} |")
        l = closed["latency_us"]
        print(f"| loadtest --mode closed | {closed['throughput_rps']:,.0f} | {ms(l['p50'])} | "
              f"{ms(l['p99'])} | {closed['requests']['errors']} |")
    else:
        print("not measured")

    rates = load(a.out, "format-rates.json")
    print("\n## JSON vs protobuf bodies (student, same server, same bodies and rates)\n")
    if rates:
        print("`loadtest --protobuf` sends each body as `application/x-protobuf` and asks for a "
              "protobuf answer (Accept); the JSON rows send the same requests as JSON.\n")
        print("| format | load | req/s | p50 ms | p99 ms | errors | server inference p50 µs |\n"
              "|---|---|---|---|---|---|---|")
        def row(fmt, load_text, r):
            l = r["latency_us"]
            print(f"| {fmt} | {load_text} | {r['throughput_rps']:,.0f} | {ms(l['p50'])} | "
                  f"{ms(l['p99'])} | {r['requests']['errors']} | "
                  f"{r['server']['inference_time_us']['p50']} |")

        for fmt in ("json", "protobuf"):
            for rate in rates["rates"]:
                r = load(a.out, f"format-{fmt}-{rate}.json")
                if r:
                    row(fmt, f"open loop {rate:,}/s", r)
            r = load(a.out, f"format-{fmt}-closed.json")
            if r:
                row(fmt, f"closed loop, {r['connections']} in flight", r)
    else:
        print("not measured")

    print("\n## Acceptance targets (issue 4)\n")
    s100, t100 = m("student100k"), m("teacher100k")
    t100_sweep = load(a.out, "teacher100k.sweep.json")
    if s100 and t100 is None and t100_sweep is not None:
        lowest = min(st["report"]["offered_rate"] for st in t100_sweep["steps"])
        print(check(True, "100k items: student ≥ 3× teacher throughput at the same p99 bound "
                          f"(the teacher met the bound at no rate tried, down to {lowest:g}/s; "
                          f"the student at {s100:,.0f}/s)"))
    else:
        print(check(None if s100 is None or t100 is None else s100 >= 3 * t100,
                    "100k items: student ≥ 3× teacher throughput at the same p99 bound"))
    print(check(None if s100 is None else s100 >= 10_000, "100k items: student ≥ 10k req/s"))
    print(check(None if m("student") is None or m("floor") is None else m("student") >= 0.6 * m("floor"),
                "1,682 items: server ≥ 60 % of the HTTP floor"))
    print(check(None if m("student") is None or m("python") is None else m("student") >= 8 * m("python"),
                "1,682 items: server ≥ 8× the Python service"))
    print(check(None if "student" not in p99_half else p99_half["student"] <= 2000,
                "p99 ≤ 2 ms at 50 % of the student's max throughput"))
    if swap and swap.get("swap"):
        s = swap["swap"]
        steady = s["outside"]["latency_us"]["p99"]
        ok = swap["requests"]["errors"] == 0 and s["failed_swaps"] == 0 and \
            s["inside"]["latency_us"]["p99"] <= 1.5 * max(steady, 1)
        print(check(ok, "swap every second: zero errors and p99 inside windows ≤ 1.5× outside"))
    else:
        print(check(None, "swap every second: zero errors, p99 within 1.5× of steady state"))

    print_issue13(a.out, m, wrks, a.p99_bound_ms)

    print("""
## Reading these numbers

- Client and server share the machine's cores, so every target pays for the client's CPU; the
  ratios (same client, same settings, one run) are the result, absolute values move between runs
  on a shared machine.
- The 100k-item rows use synthetic weights with the student's trained architecture and the
  `distill` job's MLP-teacher shape (the EASE teacher would need a 100k × 100k matrix). At that
  size one model call streams the whole item matrix, so a lone request costs milliseconds and the
  teacher's single-request latency sits near the p99 bound by itself.
- The naive row is the baseline every serving change must beat: `examples/naive_server.rs`,
  one tract call per request on the async worker, no batching, nothing reused between requests
  but the optimized plan.
- wrk runs a Lua `request()` per request to rotate bodies; that costs client CPU on these shared
  cores, which is why it can report less throughput than `loadtest --mode closed` at the same
  connection count. Latency percentiles of the two should still agree in magnitude.
- The hot-swap run loads and warms a full model version every second (on a low-priority thread);
  "inside" is the window around each swap request shown above.""")

    if cmds:
        print("\n## Commands\n\n```")
        print("\n".join(cmds))
        print("```")


def print_workers(out, connections):
    """The `--http-workers` default against one async worker per CPU (bench.sh section `workers`)."""
    print(f"\n## Worker threads (student, 1,682 items, wrk -t1 -c{connections}, alternated)\n")
    cpus = nproc()
    runs = {}
    for w in (str(cpus), "default"):
        for r in (1, 2, 3):
            wrk = parse_wrk(os.path.join(out, f"workers-{w}-{r}.wrk.txt"))
            if wrk:
                runs.setdefault(w, []).append(wrk_rps(wrk))
    if not runs:
        print("not measured")
        return
    resolved = (load_text(os.path.join(out, "workers-default-1.count")) or "").strip() or "see server log"
    print("| `--http-workers` | round 1 | round 2 | round 3 | mean req/s |\n|---|---|---|---|---|")
    for w, label in ((str(cpus), f"{cpus} (one per CPU)"), ("default", f"default ({resolved})")):
        v = runs.get(w, [])
        cells = " | ".join(f"{x:,.0f}" for x in v) + " | " * (3 - len(v))
        mean = f"{sum(v) / len(v):,.0f}" if v else "not measured"
        print(f"| {label} | {cells} | {mean} |")
    if runs.get(str(cpus)) and runs.get("default"):
        a = sum(runs["default"]) / len(runs["default"])
        b = sum(runs[str(cpus)]) / len(runs[str(cpus)])
        print(f"\nDefault vs one worker per CPU: {a / b:.2f}× (means of the rounds above).")


def passing_step(sweep, rate, bound_ms):
    """The sweep step at the lowest offered rate ≥ `rate` that met the bound (p99 ≤ bound, no
    errors), as (offered rate, p99 ms), or None."""
    if not sweep:
        return None
    ok = []
    for st in sweep["steps"]:
        r = st["report"]
        p99 = r["latency_us"]["p99"] / 1000
        if r["offered_rate"] >= rate and p99 <= bound_ms and r["requests"]["errors"] == 0:
            ok.append((r["offered_rate"], p99))
    return min(ok) if ok else None


def print_issue13(out, m, wrks, bound_ms):
    """The catalogue-scale targets (issue 13), from this run's results."""
    print("\n## Acceptance targets (issue 13: serving at catalogue scale)\n")
    rps = {k: wrk_rps(w) for k, w in wrks.items()}
    engines = [e for e in ("exact", "int8", "ann") if m(f"student100k-{e}") is not None]
    best = max(engines, key=lambda e: m(f"student100k-{e}"), default=None)
    b = m(f"student100k-{best}") if best else None
    print(check(None if b is None else b >= 10_000,
                f"100k items, student (best engine `{best}`): ≥ 10k req/s at p99 ≤ {bound_ms:g} ms "
                f"(open loop): {b:,.0f}" if b is not None else "100k items, student ≥ 10k req/s"))
    n = m("naive100k")
    if b is not None and n:
        print(check(b >= 5 * n, f"100k items: ≥ 5× the naive server (open-loop max): "
                                f"{b:,.0f} / {n:,.0f} = {b / n:.1f}×"))
    wb, wn = rps.get(f"student100k-{best}"), rps.get("naive100k")
    if wb and wn:
        print(check(wb >= 5 * wn, f"100k items: ≥ 5× the naive server (wrk closed loop): "
                                  f"{wb:,.0f} / {wn:,.0f} = {wb / wn:.1f}×"))
    r500 = load(out, "student1m-ann.r500.json")
    rss = load(out, "student1m-ann.rss.json")
    if r500:
        p99 = r500["latency_us"]["p99"] / 1000
        print(check(p99 <= bound_ms and r500["requests"]["errors"] == 0,
                    f"1M items, ANN: p99 ≤ 10 ms at 500 req/s (open loop, "
                    f"{r500['requests']['total']:,} requests): p99 {p99:.2f} ms, "
                    f"{r500['requests']['errors']} errors"))
    step = passing_step(load(out, "student1m-ann.sweep.json"), 500, bound_ms)
    print(check(None if load(out, "student1m-ann.sweep.json") is None else step is not None,
                "1M items, ANN: a sweep step ≥ 500 req/s with p99 ≤ 10 ms" + (
                    f" (sweep step at {step[0]:,.0f}/s: p99 {step[1]:.2f} ms)" if step else "") + (
                    f"; RSS {rss['rss_kb'] / 1024:,.0f} MB (peak {rss['hwm_kb'] / 1024:,.0f} MB)"
                    if rss else "")))
    t = m("teacher100k")
    t_sweep = load(out, "teacher100k.sweep.json")
    if b is not None and t:
        print(check(b >= 10 * t, f"100k items: student ≥ 10× the MLP teacher (open-loop max): "
                                 f"{b / t:.1f}×"))
    elif b is not None and t_sweep is not None:
        lowest = min(st["report"]["offered_rate"] for st in t_sweep["steps"])
        print(check(True, f"100k items: student ≥ 10× the MLP teacher (the teacher met the p99 "
                          f"bound at no rate tried, down to {lowest:g}/s)"))
    wt = rps.get("teacher100k")
    if wb and wt:
        print(check(wb >= 10 * wt, f"100k items: student ≥ 10× the MLP teacher (wrk closed loop): "
                                   f"{wb:,.0f} / {wt:,.0f} = {wb / wt:.1f}×"))
    # The alternated rounds (`ratios` section) when they ran: targets measured minutes apart in
    # the single-shot columns above can see a host of a different speed.
    rounds = {t: [rps.get(f"ratios-{t}-{r}") for r in (1, 2, 3)] for t in ("student", "naive", "python")}
    if all(all(v) for v in rounds.values()):
        ws, wnv, wp = (statistics.median(rounds[t]) for t in ("student", "naive", "python"))
        per_round = lambda base: " / ".join(f"{s / b:.2f}×" for s, b in zip(rounds["student"], rounds[base]))
        how = lambda base: f" (medians of the three alternated rounds; per round {per_round(base)})"
    else:
        ws, wnv, wp = rps.get("student"), rps.get("naive"), rps.get("python")
        how = lambda base: ""
    print(check(None if not (ws and wnv) else ws >= 1.5 * wnv,
                "1,682 items, wrk -t1 -c32: ≥ 1.5× the naive server"
                + (f": {ws:,.0f} / {wnv:,.0f} = {ws / wnv:.2f}×{how('naive')}" if ws and wnv else "")))
    print(check(None if not (ws and wp) else ws >= 8 * wp,
                "1,682 items, wrk -t1 -c32: ≥ 8× the FastAPI + onnxruntime peer"
                + (f": {ws:,.0f} / {wp:,.0f} = {ws / wp:.1f}×{how('python')}" if ws and wp else "")))


def print_closed_loop_ratios(targets, wrks, connections):
    """Every student target against the baselines of its catalogue size, from the wrk runs."""
    print(f"\n## Closed-loop ratios (wrk -t1 -c{connections}, same run)\n")
    rows = []
    rps = {k: wrk_rps(w) for k, w in wrks.items()}
    for key, title in targets:
        parts = split_name(key)
        if not parts or parts[0] != "student" or key not in wrks:
            continue
        _, size, _ = parts
        mine = rps[key]

        def vs(base):
            return ratio(mine, rps.get(base)) if base in wrks else "not measured"

        rows.append(f"| `{key}` | {items_label(size)} | {wrk_cell(wrks[key])} | {vs('naive' + size)} | "
                    f"{vs('teacher' + size)} | {vs('floor')} | {vs('python') if not size else '—'} |")
    if not rows:
        print("not measured")
        return
    print("Throughput ratios of wrk req/s. The naive server and the teacher are those of the same "
          "catalogue size; the HTTP floor answers without a model; the Python peer serves the "
          "trained student (1,682 items). A run with failed responses has no ratio.\n")
    print("| target | catalogue | req/s / p99 ms | vs naive | vs teacher | vs HTTP floor | "
          "vs Python peer |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def nproc():
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return str(os.cpu_count())


def load_text(path):
    return open(path).read() if os.path.exists(path) else None


if __name__ == "__main__":
    main()
