#!/usr/bin/env bash
# JSON intake against raw bodies: the same page sent as {"html": "..."} and
# as a text/html body, end to end through the task flow, on each I/O engine
# (ENGINES, default "epoll io_uring"), in alternating rounds of the same run.
#
# pagelens runs pinned to CPU 0 (one reactor, one worker, --store memory, so
# the intake is what differs); the native task-flow client (128 connections,
# each submitting POST /analyze/async and polling its status every 20 ms
# until it ends) runs on CPU 1. Reported per run: tasks completed a second
# (client side) and the server's CPU time a completed task (utime + stime of
# the process over its completed tasks, from /proc and /metrics: on one
# saturated core the fairer figure). The page is the Python reference's 55 KB
# docs page, JSON-encoded by Python's json.dumps (3,156 escapes: `\"`, `\n`
# and `\uXXXX` for non-ASCII).
#
# Needs ../shared beside the checkout for the page; says so and stops if absent.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
PAGE=${PAGE:-../shared/corpus/pages/py311__library__html.parser.html}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-6}
PORT=18099
[ -f "$PAGE" ] || { echo "page not found: $PAGE (needs ../shared beside the checkout)"; exit 0; }
cargo build --release --quiet
task_flow "$PAGE"
ticks=$(getconf CLK_TCK)

ENGINES=${ENGINES:-epoll io_uring}

run() { # NAME SCENARIO ENGINE
  serve_pagelens 0 "$PORT" --store memory --io-engine "$3"; local pid=$PL_PID
  taskset -c 1 ./target/release/pagelens loadtest "http://127.0.0.1:$PORT/" --scenario "$2" \
    -c 128 -t 1 -d "${SECS}s" --warmup 2s --json "$work/report.json" >/dev/null 2>&1 || true
  local cpu; cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  local ended; ended=$(curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^pagelens_tasks\{state="completed",priority="normal"\}/{print $2}')
  kill "$pid" || { echo "the server had stopped:" >&2; cat "$work/server-$PORT.err" >&2; exit 1; }
  wait "$pid" 2>/dev/null || true
  python3 - "$1" "$work/report.json" "$cpu" "$ticks" "$ended" <<'PY'
import json, sys
name, report, cpu, ticks, ended = sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5] or 0)
done = report["tasks"]["outcomes"].get("completed", 0) if report["tasks"] else 0
print(f"{name} {done / report['duration_s']:.1f} {cpu / ticks / max(ended, 1) * 1e6:.1f}")
PY
}

echo "# $(date -u +%FT%TZ) page $(wc -c < "$PAGE") bytes ($(wc -c < "$work/page.json") as JSON); pagelens on CPU 0 (1 reactor, 1 worker, memory store), client on CPU 1; ${ROUNDS} rounds of ${SECS}s"
echo "# body tasks/s server_cpu_us/task"
for round in $(seq "$ROUNDS"); do
  for engine in $ENGINES; do
    run "json-$engine" "$work/flow.toml" "$engine" | tee -a "$work/rows"
    run "raw-$engine" "$work/raw.toml" "$engine" | tee -a "$work/rows"
  done
done
python3 - "$work/rows" <<'PY'
import statistics, sys
from collections import defaultdict
rate, cpu = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    name, tps, us = line.split()
    rate[name].append(float(tps)); cpu[name].append(float(us))
r = {k: statistics.median(v) for k, v in rate.items()}
c = {k: statistics.median(v) for k, v in cpu.items()}
for k in r:
    print(f"median {k}: {r[k]:.1f} tasks/s, {c[k]:.1f} us of server CPU a task")
engines = sorted({k.split("-", 1)[1] for k in r})
for e in engines:
    j, w = f"json-{e}", f"raw-{e}"
    print(f"{e}: JSON / raw: {r[j] / r[w]:.3f}x the tasks/s, {c[j] / c[w]:.3f}x the CPU a task")
for body in ("json", "raw"):
    if f"{body}-epoll" in r and f"{body}-io_uring" in r:
        u, p = f"{body}-io_uring", f"{body}-epoll"
        print(f"{body}: io_uring / epoll: {r[u] / r[p]:.3f}x the tasks/s, {c[u] / c[p]:.3f}x the CPU a task")
PY
