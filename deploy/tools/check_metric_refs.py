#!/usr/bin/env python3
"""Checks that every metric the Grafana dashboard and the Prometheus rules query exists.

A name is accepted when it is
  - a metric family the server exports (from a live /metrics exposition: `--exposition`, and/or the
    names registered in the server's metrics module: `--source`), with the `_bucket`/`_sum`/`_count`
    series of a histogram;
  - a series recorded by one of the rule files (`level:metric:operation` names);
  - one of Prometheus' own series (`up`, `ALERTS`, ...).
Anything else (a typo, a renamed metric, a metric the server stopped exporting) fails the check.

PromQL is not parsed fully: string literals, label matchers, ranges and label lists are removed and
what is left that is neither a function call nor a keyword is a metric name. That is exact for the
expressions shipped here, which tests/ under this directory exercise.
"""
import argparse
import json
import re
import sys

import yaml

PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
    "bool", "atan2", "inf", "nan", "Inf", "NaN",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set:
    """Metric names referenced by one PromQL expression (Grafana variables allowed)."""
    e = re.sub(r"label_values\((.*),\s*[a-zA-Z_]\w*\s*\)", r"\1", expr.strip())
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)  # Grafana variables outside matchers
    e = re.sub(r"\b\d[\w.]*", " ", e)  # numbers, durations, exponents
    names = set()
    for m in IDENT.finditer(e):
        name = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or name in KEYWORDS:
            continue
        names.add(name)
    return names


def dashboard_exprs(node, path="$"):
    """(where, expr) for every query in a Grafana dashboard: panel targets, variables, annotations."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key == "expr" and isinstance(value, str):
                yield where, value
            elif key == "query" and isinstance(value, str) and path.startswith("$.templating"):
                if value != "prometheus":  # the data source variable's plugin type, not PromQL
                    yield where, value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield where + ".query", value["query"]
            else:
                yield from dashboard_exprs(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from dashboard_exprs(value, f"{path}[{i}]")


def rule_exprs(files):
    """(where, expr) for every rule, and the set of recorded names."""
    exprs, recorded = [], set()
    for path in files:
        with open(path) as f:
            doc = yaml.safe_load(f)
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("record") or rule.get("alert")
                exprs.append((f"{path}: {name}", rule["expr"]))
                if "record" in rule:
                    recorded.add(rule["record"])
    return exprs, recorded


def exposition_families(path):
    """Metric family -> type from a Prometheus text exposition."""
    families = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"#\s*TYPE\s+(\S+)\s+(\S+)", line)
            if m:
                families[m.group(1)] = m.group(2)
    return families


def source_names(path, prefix):
    """Metric family -> type registered in the server's metrics module.

    Understands both spellings the `prometheus` crate allows: full names as string literals
    (`"distilrec_x_total"`), and short names passed to the module's `counter(` / `gauge(` /
    `histogram(` helpers with `.namespace(PREFIX)` where `const PREFIX: &str = "distilrec";`.
    """
    with open(path) as f:
        text = f.read()
    names = {n: "unknown" for n in re.findall(r'"(%s[a-zA-Z0-9_]+)"' % re.escape(prefix), text)}
    m = re.search(r'const\s+PREFIX\s*:\s*&str\s*=\s*"([a-zA-Z0-9_]+)"', text)
    if m and ".namespace(PREFIX)" in text:
        ns = m.group(1) + "_"
        for kind, short in re.findall(r'\b(counter|gauge|histogram)\(\s*"([a-zA-Z0-9_]+)"', text):
            names[ns + short] = kind
    return names
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dashboard", action="append", default=[], help="Grafana dashboard JSON")
    ap.add_argument("--rules", action="append", default=[], help="Prometheus rule file")
    ap.add_argument("--exposition", help="a /metrics scrape of the server (text format)")
    ap.add_argument("--source", help="the server's metrics module (names as string literals)")
    ap.add_argument("--prefix", default="distilrec_")
    args = ap.parse_args()
    if not args.exposition and not args.source:
        ap.error("need --exposition and/or --source to know the exported metrics")

    families = {}  # name -> type ("unknown" when only the source says it exists)
    if args.source:
        families.update(source_names(args.source, args.prefix))
    if args.exposition:
        live = exposition_families(args.exposition)
        if args.source:
            # The scrape must not export names the parser of the source missed (and vice versa for
            # families that exist before their first observation, which is fine).
            stray = sorted(n for n in live if n.startswith(args.prefix) and n not in families)
            if stray:
                print(f"note: exported but not found in {args.source}: {', '.join(stray)}")
        families.update(live)

    def exported(name):
        if name in families:
            return True
        for suffix in HISTOGRAM_SUFFIXES:
            base = name[: -len(suffix)] if name.endswith(suffix) else None
            if base and families.get(base) in ("histogram", "unknown"):
                return True
        return False

    rexprs, recorded = rule_exprs(args.rules)
    exprs = list(rexprs)
    for path in args.dashboard:
        with open(path) as f:
            exprs += [(f"{path} {where}", e) for where, e in dashboard_exprs(json.load(f))]

    problems, used = [], set()
    for where, expr in exprs:
        for name in sorted(metric_names(expr)):
            used.add(name)
            if name in recorded or name in PROMETHEUS_OWN or exported(name):
                continue
            problems.append(f"{where}: unknown metric {name!r}")
    print(f"checked {len(exprs)} expressions against {len(families)} exported families "
          f"and {len(recorded)} recording rules; {len(used)} distinct names referenced")
    unused = sorted(n for n in families if n.startswith(args.prefix)
                    and not any(u == n or u.startswith(n + "_") for u in used)
                    and not any(n in e for _, e in exprs))
    if unused:
        print(f"note: exported but not on the dashboard or in the rules: {', '.join(unused)}")
    for p in problems:
        print("ERROR", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
