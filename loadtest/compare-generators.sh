#!/usr/bin/env bash
# pagelens loadtest beside wrk (max throughput) and oha (fixed rate with
# latency correction, the wrk2 method) against nginx `return 200` and
# pagelens `GET /livez`, in the same run, alternating, median of ROUNDS.
#
# The servers (nginx one worker, pagelens one reactor) are pinned to CPU 0
# and every generator runs one thread on CPU 1. Reported:
#   - max req/s, closed loop, -c64, and pipelined 16 deep (where the
#     generator, not nginx, is the limit), with the generator's CPU time per
#     request (utime+stime from /proc over the run);
#   - p50/p99 at a fixed rate, 16 connections, pagelens loadtest --rate
#     beside oha -q --latency-correction, against two targets:
#     nginx `return 200` at RATE (default 20000/s), where the generators'
#     own overhead is most of what they measure; and nginx answering after a
#     known service time (echo_sleep: 30% 1 ms, 60% 2 ms, 8% 5 ms, 2% 10 ms,
#     so that p50 and p99 fall inside a mode, not on the edge between two)
#     at SLOW_RATE (default 1000/s, one request per connection every 16 ms,
#     so nothing queues), where a correct measurement reads the server's
#     distribution and both generators should agree.
#
# Usage: loadtest/compare-generators.sh [DURATION_SECONDS]   (default 10)
# Needs wrk, nginx and its echo module, python3, taskset (installed with
# apt-get when missing)
# and oha (built with `cargo install oha --root` into $OHA_ROOT, default
# target/oha, when missing). Traffic goes to 127.0.0.1 only; runs are bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-20000}
SLOW_RATE=${SLOW_RATE:-1000}
NGX_PORT=18101
PL_PORT=18102
OHA_ROOT=${OHA_ROOT:-target/oha}

. loadtest/lib.sh
need wrk wrk
need nginx nginx-light
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so
[ -f "$ECHO_MODULE" ] || apt-get install -y -qq libnginx-mod-http-echo >/dev/null
need taskset util-linux
OHA=$(command -v oha || echo "$OHA_ROOT/bin/oha")
[ -x "$OHA" ] || cargo install oha --locked --quiet --root "$OHA_ROOT"

cargo build --release --quiet
PL=./target/release/pagelens
start_nginx 0 "$NGX_PORT" 'location / { default_type text/plain; return 200 "ok"; }
    location = /sleep { echo_sleep $delay; echo ok; }' \
  'split_clients "${request_id}" $delay { 30% 0.001; 60% 0.002; 8% 0.005; * 0.010; }' \
  "load_module $ECHO_MODULE;"
taskset -c 0 "$PL" serve --listen 127.0.0.1:$PL_PORT --reactors 1 >/dev/null 2>&1 & pids+=($!)
sleep 0.5
URL="http://127.0.0.1:$NGX_PORT/"
HZ=$(getconf CLK_TCK)

cpu_of() { /usr/bin/time -f '%U %S' -o "$work/time" "$@" > "$work/out" 2>&1; }

echo "# $(date -u +%FT%TZ) nginx on CPU 0; generators -t1 on CPU 1; ${DURATION}s runs, median of $ROUNDS"
for _ in $(seq "$ROUNDS"); do
  for target in "nginx $URL" "pagelens http://127.0.0.1:$PL_PORT/livez"; do
    set -- $target
    for depth in 1 16; do
      script=(); [ "$depth" -gt 1 ] && script=(-s loadtest/pipeline.lua)
      cpu_of taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "${script[@]}" "$2" -- "$depth"
      awk -v d="$1/$depth" -v t="$(cat "$work/time")" '/Requests\/sec/ {rps=$2} /requests in/ {n=$1}
        END {split(t, c, " "); printf "wrk %s %s %.3f\n", d, rps, (c[1]+c[2])*1e6/n}' "$work/out" >> "$work/max"
      cpu_of taskset -c 1 "$PL" loadtest "$2" -t1 -c64 -d"${DURATION}s" --pipeline "$depth"
      awk -v d="$1/$depth" -v t="$(cat "$work/time")" '/Requests\/sec/ {rps=$2} /requests in/ {n=$1}
        END {split(t, c, " "); printf "pagelens %s %s %.3f\n", d, rps, (c[1]+c[2])*1e6/n}' "$work/out" >> "$work/max"
    done
  done
  for target in "return-200 $RATE $URL" "echo_sleep $SLOW_RATE ${URL}sleep"; do
    set -- $target
    taskset -c 1 "$PL" loadtest "$3" -t1 -c16 -d"${DURATION}s" --rate "$2" --json "$work/pl.json" > /dev/null
    python3 -c "import json; d=json.load(open('$work/pl.json')); l=d['latency']['corrected']; print('$1 pagelens', d['requests_per_s'], l['p50_ms'], l['p99_ms'])" >> "$work/fixed"
    taskset -c 1 "$OHA" --worker-threads 1 -c16 -z "${DURATION}s" -q "$2" --latency-correction --no-tui --output-format json "$3" > "$work/oha.json"
    python3 -c "import json; d=json.load(open('$work/oha.json')); p=d['latencyPercentiles']; print('$1 oha', d['summary']['requestsPerSec'], p['p50']*1e3, p['p99']*1e3)" >> "$work/fixed"
  done
done

python3 - "$work/max" "$work/fixed" "$RATE" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    name, depth, rps, cpu = line.split()
    rows[(depth, name)].append((float(rps), float(cpu)))
print(f"{'generator':9} {'target/depth':>14} {'req/s':>12} {'cpu us/req':>10}")
med = {}
for key in sorted(rows):
    m = [statistics.median(c) for c in zip(*rows[key])]
    med[key] = m
    print(f"{key[1]:9} {key[0]:>14} {m[0]:>12.0f} {m[1]:>10.3f}")
for depth in sorted({d for d, _ in med}):
    pl, wrk = med.get((depth, "pagelens")), med.get((depth, "wrk"))
    if pl and wrk:
        print(f"{depth}: pagelens/wrk req/s {pl[0] / wrk[0]:.2f}x, cpu/req {pl[1] / wrk[1]:.2f}x")
fixed = defaultdict(list)
for line in open(sys.argv[2]):
    target, name, rps, p50, p99 = line.split()
    fixed[(target, name)].append((float(rps), float(p50), float(p99)))
print("# fixed rate, 16 connections, corrected latency (ms), medians")
m = {k: [statistics.median(c) for c in zip(*v)] for k, v in fixed.items()}
for (target, name), (rps, p50, p99) in sorted(m.items()):
    print(f"{target:10} {name:9} achieved {rps:>9.0f}/s  p50 {p50:7.3f}  p99 {p99:7.3f}")
for target in sorted({t for t, _ in m}):
    pl, oha = m.get((target, "pagelens")), m.get((target, "oha"))
    if pl and oha:
        print(f"{target}: pagelens/oha p50 {pl[1] / oha[1]:.2f}x, p99 {pl[2] / oha[2]:.2f}x")
PY
