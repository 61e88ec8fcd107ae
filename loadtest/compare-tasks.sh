#!/usr/bin/env bash
# The task engine under load, on the page the Python reference uses
# (library/html.parser.html from python3.11-doc, 55 KB; tests/data has no
# copy, so it comes from ../shared/corpus and the script says so if absent).
#
# pagelens runs pinned to CPU 0 (one reactor, one worker: the cores the
# Python reference's server and workers had); clients run on CPU 1.
# Reports:
#   - sync POST /analyze: wrk -t1 -c64 -d8s req/s, p50, p99
#   - async submit rate: wrk on POST /analyze/async (202s only)
#   - end to end: submit N, wait until all ended (loadtest/e2e_tasks.py)
# The Python figures are measured by ../shared/reference/jobs (run_all.sh);
# run both in the same session before quoting ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
PAGE=${PAGE:-../shared/corpus/pages/py311__library__html.parser.html}
N=${N:-3000}
PORT=18097
[ -f "$PAGE" ] || { echo "page not found: $PAGE (needs ../shared beside the checkout)"; exit 0; }
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
export PAGE
cargo build --release --quiet

start() {
  taskset -c 0 ./target/release/pagelens serve --listen 127.0.0.1:$PORT --reactors 1 --workers 1 \
    --sync-wait 30s "$@" >/dev/null 2>&1 & PID=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/livez" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
stop() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
trap stop EXIT
summary() {
  awk '/Requests\/sec/{rps=$2} $1=="50%"{p50=$2} $1=="99%"{p99=$2} /requests in/{n=$1}
       /Non-2xx/{bad=$NF} END{printf "req/s=%s p50=%s p99=%s requests=%s non2xx=%d\n", rps, p50, p99, n, bad}' "$1"
}

echo "# $(date -u +%FT%TZ) page $(wc -c < "$PAGE") bytes; pagelens on CPU 0 (1 reactor, 1 worker), clients on CPU 1"
start
taskset -c 1 wrk -t1 -c64 -d2s -s loadtest/post_page.lua "http://127.0.0.1:$PORT/analyze" >/dev/null
taskset -c 1 wrk -t1 -c64 -d8s --latency --timeout 10s -s loadtest/post_page.lua "http://127.0.0.1:$PORT/analyze" > /tmp/pl-sync.txt
echo "sync POST /analyze, 64 connections: $(summary /tmp/pl-sync.txt)"
stop

start
taskset -c 1 wrk -t1 -c64 -d8s --latency -s loadtest/post_page.lua "http://127.0.0.1:$PORT/analyze/async" > /tmp/pl-async.txt
s=$(summary /tmp/pl-async.txt); echo "async submit, 64 connections: $s"
awk '/requests in/{n=$1; t=$4} /Non-2xx/{bad=$NF} END{sub("s","",t); printf "  202 accepted per second: %.0f\n", (n-bad)/t}' /tmp/pl-async.txt
stop

start --queue-capacity $((N + 100))
echo "end to end, N=$N: $(taskset -c 1 python3 loadtest/e2e_tasks.py $PORT "$PAGE" "$N")"
stop
