#!/usr/bin/env python3
"""Summarises the output directory of docs/bench-scenarios.sh (and of
docs/bench-scaleout.sh): per scenario and figure, the median and the range
over the runs, as a Markdown table.

    python3 docs/bench-summary.py bench-results
"""
import glob
import json
import os
import re
import statistics
import sys


def fmt(vals, digits):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    f = "{:.%df}" % digits
    if len(vals) == 1:
        return f.format(med)
    return "%s (%s-%s)" % (f.format(med), f.format(min(vals)), f.format(max(vals)))


def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


BENCH = [  # column, JSON path, digits, scale
    ("result", "result", None, None),
    ("established", "connections.established", 0, 1),
    ("connect/s", "connections.connect_rate", 0, 1),
    ("expected", "deliveries.expected", 0, 1),
    ("lost", "deliveries.lost", 0, 1),
    ("deliveries/s", "deliveries.per_second", 0, 1),
    ("p50 ms", "latency_ms.p50", 1, 1),
    ("p90 ms", "latency_ms.p90", 1, 1),
    ("p99 ms", "latency_ms.p99", 1, 1),
    ("max ms", "latency_ms.max", 1, 1),
    ("server µs/delivery", "server.cpu_us_per_delivery", 2, 1),
    ("server CPU %", "server.cpu_percent", 1, 1),
    ("bench µs/delivery", "bench.cpu_us_per_delivery", 2, 1),
    ("RSS KiB/conn", "server.rss_per_conn_bytes", 2, 1 / 1024),
    ("RSS KiB/conn at the end", "server.rss_end_per_conn_bytes", 2, 1 / 1024),
]


def bench_rows(name, files):
    runs = []
    for f in files:
        try:
            with open(f) as fh:
                runs.append(json.load(fh))
        except (OSError, ValueError) as e:
            print("skipping %s: %s" % (f, e), file=sys.stderr)
    if not runs:
        return None
    cells = []
    for col, path, digits, scale in BENCH:
        vals = [get(r, path) for r in runs]
        if digits is None:
            cells.append("/".join(str(v) for v in vals))
        else:
            cells.append(fmt([v * scale if v is not None else None for v in vals], digits))
    return "| %s | %d | %s |" % (name, len(runs), " | ".join(cells))


def wrk_row(name, files):
    rps, p99, non2xx = [], [], []
    for f in files:
        text = open(f).read()
        m = re.search(r"Requests/sec:\s+([\d.]+)", text)
        rps.append(float(m.group(1)) if m else None)
        m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
        if m:
            p99.append(float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)])
        m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        non2xx.append(int(m.group(1)) if m else 0)
    return "| %s | %d | %s | %s | %s |" % (name, len(files), fmt(rps, 0), fmt(p99, 2), fmt(non2xx, 0))


def floor_rows(files):
    by = {}
    for f in files:
        for line in open(f):
            d = json.loads(line)
            key = (d["conns"], d["rate"], d["batch"])
            by.setdefault(key, []).append(d)
    rows = []
    for (conns, rate, batch), ds in sorted(by.items()):
        pace = "%g passes/s" % rate if rate else "back to back"
        rows.append("| %d | %s | %d | %d | %s | %s |" % (
            conns, pace, batch, len(ds),
            fmt([d["cpu_us_per_write"] for d in ds], 2),
            fmt([d["cpu_us_per_message"] for d in ds], 2)))
    return rows


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "bench-results"
    groups = {}
    for f in sorted(glob.glob(os.path.join(out, "*-[0-9]*.*"))):
        m = re.match(r"(.+)-(\d+)\.(json|txt)$", os.path.basename(f))
        if m:
            groups.setdefault((m.group(1), m.group(3)), []).append(f)

    floor = groups.pop(("floor", "json"), None)
    if floor:
        print("| conns | pace | messages per write | runs | CPU µs per write | CPU µs per message |")
        print("|---|---|---|---|---|---|")
        print("\n".join(floor_rows(floor)))
        print()
    rows = [bench_rows(n, fs) for (n, ext), fs in sorted(groups.items()) if ext == "json"]
    rows = [r for r in rows if r]
    if rows:
        print("| scenario | runs | " + " | ".join(c for c, *_ in BENCH) + " |")
        print("|---|---|" + "---|" * len(BENCH))
        print("\n".join(rows))
        print()
    wrk = [wrk_row(n, fs) for (n, ext), fs in sorted(groups.items()) if ext == "txt"]
    if wrk:
        print("| scenario | runs | requests/s | p99 ms | non-2xx |")
        print("|---|---|---|---|---|")
        print("\n".join(wrk))


if __name__ == "__main__":
    main()
