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
REF=${REF:-../shared/reference/jobs}
PAGE=${PAGE:-../shared/corpus/pages/py311__library__html.parser.html}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
N=${N:-300}
RPORT=16381
PORT=18097
PORT_B=18096
VENV=${VENV:-/tmp/anchors/jobs/venv}
[ -f "$PAGE" ] && [ -d "$REF" ] || { echo "needs ../shared beside the checkout (page, reference/jobs)"; exit 0; }
need redis-server redis-server
if [ ! -x "$VENV/bin/celery" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q beautifulsoup4==4.15.0 lxml==6.1.3 'celery[redis]==5.7.0' redis==8.1.0
fi
cargo build --release --quiet
task_flow "$PAGE"

taskset -c 0 redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --logfile "$work/redis.log" & RPID=$!; pids+=("$RPID")
for _ in $(seq 50); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
export REDIS_URL="redis://127.0.0.1:$RPORT/0"

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

celery_round() {
  redis-cli -p $RPORT flushall >/dev/null
  (cd "$REF" && exec taskset -c 0 "$VENV/bin/celery" -A tasks_celery worker --pool=prefork --concurrency=1 \
     --loglevel=WARNING --without-gossip --without-mingle --without-heartbeat) > "$work/celery.log" 2>&1 & local w=$!
  pids+=("$w")
  (cd "$REF" && for _ in $(seq 100); do "$VENV/bin/python" -c 'import tasks_celery as t,sys; sys.exit(0 if t.app.control.ping(timeout=0.5) else 1)' 2>/dev/null && break; done)
  local out; out=$(cd "$REF" && taskset -c 1 "$VENV/bin/python" producer_celery.py analyze "$PAGE" "$N")
  kill -TERM "$w"; wait "$w" 2>/dev/null || true
  python3 -c 'import json,sys; print("celery", json.loads(sys.argv[1])["e2e_tasks_per_s"], "- - - - -")' "$out"
}

PAGE=$(realpath "$PAGE")
echo "# $(date -u +%FT%TZ) page $(wc -c < "$PAGE") bytes; redis-server and the worker side on CPU 0, clients on CPU 1; ${ROUNDS} rounds (pagelens ${SECS}s, celery N=${N})"
echo "# who tasks/s instance_cpu_us/task redis_cpu_us/task redis_commands/task round_trip_p50_ms round_trip_p99_ms"
for round in $(seq "$ROUNDS"); do
  pagelens_round one | tee -a "$work/rows"
  celery_round | tee -a "$work/rows"
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
