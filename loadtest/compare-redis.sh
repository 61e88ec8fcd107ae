#!/usr/bin/env bash
# Tasks on Redis, end to end: pagelens with --store redis (one instance: one
# reactor, one worker) against Celery (prefork, concurrency 1) on the same
# redis-server and the same 55 KB page, in alternating rounds of one run;
# then two pagelens instances against one.
#
# Layout (the reference's Celery anchor's): redis-server and the worker side
# (the pagelens instance, or the Celery worker) on CPU 0; the clients on CPU 1.
# pagelens' client is the native task-flow client (`pagelens loadtest
# --scenario`: closed loop, 128 connections, POST /analyze/async with the page
# as JSON, status polled every 20 ms until it ends); Celery's is the
# reference's producer (`.delay()` N times, then `.get()` each). A task
# counts once it has ended `completed`.
#
# Also reported per pagelens round: CPU microseconds a task of the instance
# and of redis-server (/proc/PID/stat), Redis commands a task (INFO stats),
# and the instance's Redis round trip p50/p99 (its HDR histogram's buckets).
# "two" runs instance A on CPU 0 and B on CPU 1 behind the same Redis (on
# CPU 0), the client unpinned: the client then shares the cores, which is
# said beside the figure.
#
# Needs ../shared beside the checkout (the page, the Celery app); makes the
# Celery venv under /tmp/anchors/jobs from PyPI if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
PAGE=${PAGE:-../shared/corpus/pages/py311__library__html.parser.html}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
N=${N:-300}
RPORT=16381
PORT=18097
PORT_B=18096
[ -f "$PAGE" ] && [ -d "$CELERY_REF" ] || { echo "needs ../shared beside the checkout (page, reference/jobs)"; exit 0; }
celery_venv
cargo build --release --quiet
task_flow "$PAGE"
start_redis 0 $RPORT
RPID=${pids[-1]}

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
commands() { redis-cli -p $RPORT info stats | awk -F: '/^total_commands_processed/{print $2+0}'; }

# instance CPU PORT: starts pagelens on the Redis; sets IPID.
instance() {
  serve_pagelens "$1" "$2" --store "$REDIS_URL"; IPID=$PL_PID
}

pagelens_round() { # NAME: one instance (or, for "two", two) under the task-flow client
  local name=$1
  redis-cli -p $RPORT flushall >/dev/null
  instance 0 $PORT; local a=$IPID b=""
  local targets=("http://127.0.0.1:$PORT/") pin=(taskset -c 1)
  if [ "$name" = two ]; then
    instance 1 $PORT_B; b=$IPID
    pin=()
  fi
  local t0 r0 c0; t0=$(ticks "$a"); r0=$(ticks "$RPID"); c0=$(commands)
  # Two instances: half the connections to each (two clients, each on one
  # instance's port), so both take submissions as a load balancer would spread them.
  if [ -n "$b" ]; then
    "${pin[@]}" ./target/release/pagelens loadtest "http://127.0.0.1:$PORT_B/" --scenario "$work/flow.toml" \
      -c 64 -t 1 -d "${SECS}s" --warmup 2s --json "$work/report-b.json" >/dev/null 2>&1 &
    local other=$!
  fi
  local conns=128; [ -n "$b" ] && conns=64
  "${pin[@]}" ./target/release/pagelens loadtest "${targets[0]}" --scenario "$work/flow.toml" \
    -c "$conns" -t 1 -d "${SECS}s" --warmup 2s --json "$work/report.json" >/dev/null 2>&1 || true
  [ -n "$b" ] && wait "$other" || true
  local t1 r1 c1; t1=$(ticks "$a"); r1=$(ticks "$RPID"); c1=$(commands)
  local tb=0; [ -n "$b" ] && tb=$(ticks "$b")
  curl -fs "http://127.0.0.1:$PORT/metrics" > "$work/metrics.txt"
  kill "$a" ${b:+"$b"}; wait "$a" ${b:+"$b"} 2>/dev/null || true
  python3 - "$name" "$work" "$((t1 - t0 + tb))" "$((r1 - r0))" "$((c1 - c0))" "$(getconf CLK_TCK)" <<'PY'
import json, os, re, sys
name, work, inst_ticks, redis_ticks, cmds, hz = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
done, secs = 0, 0.0
for f in ("report.json", "report-b.json"):
    path = os.path.join(work, f)
    if os.path.exists(path) and (name == "two" or f == "report.json"):
        r = json.load(open(path))
        done += r["tasks"]["outcomes"].get("completed", 0) if r["tasks"] else 0
        secs = max(secs, r["duration_s"])
metrics = open(os.path.join(work, "metrics.txt")).read()
buckets = [(float(le), float(n)) for le, n in re.findall(r'^pagelens_redis_round_trip_seconds_bucket\{le="([^"+]+)"\} (\S+)', metrics, re.M)]
count = float((re.search(r"^pagelens_redis_round_trip_seconds_count (\S+)", metrics, re.M) or [0, 0])[1])
q = lambda f: next((le for le, n in sorted(buckets) if count and n >= f * count), 0.0)
# CPU over the whole round (warm-up included) against the tasks completed in
# it as seen by the clients: an upper bound per task.
tasks = max(done, 1)
print(f"{name} {done / secs:.1f} {inst_ticks / hz / tasks * 1e6:.0f} {redis_ticks / hz / tasks * 1e6:.0f} "
      f"{cmds / tasks:.1f} {q(0.5) * 1e3:.2f} {q(0.99) * 1e3:.2f}")
PY
}

echo "# $(date -u +%FT%TZ) page $(wc -c < "$PAGE") bytes; redis-server and the worker side on CPU 0, clients on CPU 1; ${ROUNDS} rounds (pagelens ${SECS}s, celery N=${N})"
echo "# who tasks/s instance_cpu_us/task redis_cpu_us/task redis_commands/task round_trip_p50_ms round_trip_p99_ms"
for round in $(seq "$ROUNDS"); do
  pagelens_round one | tee -a "$work/rows"
  echo "celery $(celery_round "$PAGE" "$N") - - - - -" | tee -a "$work/rows"
  pagelens_round two | tee -a "$work/rows"
done
python3 - "$work/rows" <<'PY'
import statistics, sys
from collections import defaultdict
rate = defaultdict(list)
for line in open(sys.argv[1]):
    who, tps, *_ = line.split()
    rate[who].append(float(tps))
med = {k: statistics.median(v) for k, v in rate.items()}
print(f"median pagelens, one instance: {med['one']:.1f} tasks/s = {med['one'] / med['celery']:.0f}x Celery ({med['celery']:.1f})")
print(f"median pagelens, two instances (client unpinned, sharing the cores): {med['two']:.1f} tasks/s = {med['two'] / med['one']:.2f}x one")
PY
