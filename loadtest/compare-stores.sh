#!/usr/bin/env bash
# End-to-end task throughput by store: --store memory beside --store sqlite
# (durability process, and power), in alternating rounds of the same run.
#
# pagelens runs pinned to CPU 0 (one reactor, one worker; its committer,
# intake and store readers share that core); the native task-flow client
# (`pagelens loadtest --scenario`, closed loop: each connection submits
# POST /analyze/async with the 55 KB Python docs page as JSON and polls its
# status every 20 ms until it ends; 128 connections, enough to keep the
# server busy: at 32 the memory store waits on the client) runs on CPU 1.
# A task counts once it has ended `completed`. Also reported per run:
# commit groups, writes a group, the commit-group p99 (from the HDR
# histogram, in /tasks/stats), bytes in the data folder (the
# database and its WAL) a stored task, and bytes the server wrote to storage
# a task (write_bytes of /proc/PID/io: WAL, checkpoints, everything).
#
# Each round also runs the reference's Celery anchor (one prefork worker and
# its Redis broker on CPU 0, the reference's producer of N tasks on CPU 1;
# the venv made from PyPI if missing), so the stores are quoted against
# Celery measured in the same run.
#
# Needs ../shared beside the checkout for the page and the Celery app; says
# so and stops if absent.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
PAGE=${PAGE:-../shared/corpus/pages/py311__library__html.parser.html}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
PORT=18098
N=${N:-300}
[ -f "$PAGE" ] && [ -d "$CELERY_REF" ] || { echo "needs ../shared beside the checkout (page, reference/jobs)"; exit 0; }
celery_venv
cargo build --release --quiet
task_flow "$PAGE"
start_redis 0 16382

run() { # NAME FLAGS...
  local name=$1; shift
  rm -rf "$work/data"
  serve_pagelens 0 "$PORT" "$@"; local pid=$PL_PID
  taskset -c 1 ./target/release/pagelens loadtest "http://127.0.0.1:$PORT/" --scenario "$work/flow.toml" \
    -c "${CONNS:-128}" -t 1 -d "${SECS}s" --warmup 2s --json "$work/report.json" >/dev/null 2>&1 || true
  curl -fs "http://127.0.0.1:$PORT/metrics" > "$work/metrics.txt"
  curl -fs "http://127.0.0.1:$PORT/tasks/stats" > "$work/stats.json"
  local bytes; bytes=$( (du -sb "$work/data" 2>/dev/null || echo 0) | cut -f1)
  local written; written=$(awk '/^write_bytes/{print $2}' "/proc/$pid/io")
  kill "$pid" || { echo "the server had stopped:" >&2; cat "$work/server-$PORT.err" >&2; exit 1; }
  wait "$pid" 2>/dev/null || true
  python3 - "$name" "$work/report.json" "$work/metrics.txt" "$bytes" "$written" "$work/stats.json" <<'PY'
import json, re, sys
name, report, metrics, disk, written = sys.argv[1], json.load(open(sys.argv[2])), open(sys.argv[3]).read(), int(sys.argv[4]), int(sys.argv[5])
stats = json.load(open(sys.argv[6]))
done = report["tasks"]["outcomes"].get("completed", 0) if report["tasks"] else 0
secs = report["duration_s"]
def value(pattern):
    m = re.search(pattern, metrics, re.M)
    return float(m.group(1)) if m else 0.0
groups = value(r"^pagelens_store_commit_groups_total (\S+)")
writes = value(r"^pagelens_store_writes_total (\S+)")
p99_ms = (stats["store"].get("commits") or {}).get("p99_ms", 0.0)
submitted = value(r'^pagelens_tasks\{state="completed",priority="normal"\} (\S+)')
per_task = disk / submitted if submitted else 0
written_per_task = written / submitted if submitted else 0
print(f"{name} {done / secs:.1f} {groups:.0f} {writes / max(groups, 1):.1f} {p99_ms:.3f} {per_task:.0f} {written_per_task:.0f}")
PY
}

echo "# $(date -u +%FT%TZ) page $(wc -c < "$PAGE") bytes as JSON; pagelens on CPU 0 (1 reactor, 1 worker), client on CPU 1; ${ROUNDS} rounds of ${SECS}s; Celery N=${N}"
echo "# store tasks/s commit_groups writes/group commit_p99_ms disk_bytes/task written_bytes/task"
for round in $(seq "$ROUNDS"); do
  run memory --store memory | tee -a "$work/rows"
  run sqlite --store "sqlite:$work/data/tasks.db" | tee -a "$work/rows"
  run sqlite-power --store "sqlite:$work/data/tasks.db" --durability power | tee -a "$work/rows"
  echo "celery $(celery_round "$PAGE" "$N")" | tee -a "$work/rows"
done
python3 - "$work/rows" <<'PY'
import statistics, sys
from collections import defaultdict
rate = defaultdict(list)
for line in open(sys.argv[1]):
    name, tps, *_ = line.split()
    rate[name].append(float(tps))
med = {k: statistics.median(v) for k, v in rate.items()}
for k, v in med.items():
    print(f"median {k}: {v:.1f} tasks/s ({v / med['memory']:.2f}x memory, {v / med['celery']:.0f}x Celery)")
PY
