#!/usr/bin/env python3
"""Reads rows `server conns depth req/s p50 p99 cpu_us/req` (wrk's units on
latencies) and prints per-configuration medians and the ratios of each
subject (the arguments after the first, default pagelens) to the baseline
named by the first argument (default nginx)."""
import statistics
import sys
from collections import defaultdict

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def ms(text):
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * UNITS[unit]
    raise ValueError(text)


BASE = sys.argv[1] if len(sys.argv) > 1 else "nginx"
SUBJECTS = sys.argv[2:] or ["pagelens"]
runs = defaultdict(list)
for line in sys.stdin:
    server, conns, depth, rps, p50, p99, cpu = line.split()
    runs[(conns, depth, server)].append((float(rps), ms(p50), ms(p99), float(cpu)))

print(f"{'server':11} {'conns':>5} {'depth':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10}")
medians = {}
for key in sorted(runs, key=lambda k: (int(k[1]), int(k[0]), k[2])):
    cols = list(zip(*runs[key]))
    med = [statistics.median(c) for c in cols]
    medians[key] = med
    conns, depth, server = key
    # wrk's latency percentiles are not valid for Lua-pipelined batches.
    p50, p99 = (f"{med[1]:>8.3f}", f"{med[2]:>8.3f}") if depth == "1" else (f"{'n/a':>8}", f"{'n/a':>8}")
    print(f"{server:11} {conns:>5} {depth:>5} {med[0]:>10.0f} {p50} {p99} {med[3]:>10.2f}")

for subject in SUBJECTS:
    print(f"# ratios {subject}/{BASE}: req/s, p99, cpu per request")
    for (conns, depth, server), med in medians.items():
        if server != subject or (conns, depth, BASE) not in medians:
            continue
        base = medians[(conns, depth, BASE)]
        p99 = f"{med[2] / base[2]:.2f}x" if depth == "1" else "n/a"
        print(f"conns={conns} depth={depth}: req/s {med[0] / base[0]:.2f}x  p99 {p99}  cpu/req {med[3] / base[3]:.2f}x")
