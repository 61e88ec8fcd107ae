#!/usr/bin/env bash
# The cost of metrics on the hot path: GET /livez with metrics on
# ("pagelens") and off ("off", --no-metrics) in the same run, each pinned to
# CPU 0 in turn, wrk -t1 on CPU 1, median of ROUNDS (default 3) runs.
# Reports req/s, p50, p99 and server CPU microseconds per request. Then the
# same metrics-on server while a scraper (loadtest/scrape.py, one kept-alive
# connection, sharing wrk's core) fetches GET /metrics every SCRAPE_INTERVAL
# seconds (default 1; Prometheus scrapes every 15 s or so): a scrape is
# rendered off the reactors and served from a cached string.
# Usage: loadtest/compare-metrics.sh [DURATION_SECONDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
taskset -c 0 ./target/release/pagelens serve --listen 127.0.0.1:18083 --reactors 1 >/dev/null 2>&1 & pids+=($!); ON=$!
taskset -c 0 ./target/release/pagelens serve --listen 127.0.0.1:18084 --reactors 1 --no-metrics >/dev/null 2>&1 & pids+=($!); OFF=$!
sleep 1
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
run() {
  local name=$1 pid=$2 port=$3
  taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/livez" >/dev/null
  local t0; t0=$(cpu_ticks "$pid")
  taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:$port/livez" > "$work/out"
  local t1; t1=$(cpu_ticks "$pid")
  local reqs; reqs=$(awk '/requests in/ {print $1}' "$work/out")
  echo "$name 64 1 $(awk '/Requests\/sec/ {print $2}' "$work/out") $(awk '$1=="50%" {print $2}' "$work/out") \
$(awk '$1=="99%" {print $2}' "$work/out") $(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')" >> "$work/rows"
}
echo "# $(date -u +%FT%TZ) /livez, metrics on (pagelens) vs off; ${DURATION}s runs, median of $ROUNDS"
for _ in $(seq "$ROUNDS"); do
  run off "$OFF" 18084
  run pagelens "$ON" 18083
  taskset -c 1 python3 loadtest/scrape.py 18083 "${SCRAPE_INTERVAL:-1}" & SCRAPER=$!
  run scraped "$ON" 18083
  kill "$SCRAPER"; wait "$SCRAPER" 2>/dev/null || true
done
grep -v '^scraped' "$work/rows" | python3 loadtest/medians.py off
echo "# scraped every ${SCRAPE_INTERVAL:-1} s vs not scraped (both metrics on)"
grep -v '^off' "$work/rows" | python3 loadtest/medians.py pagelens scraped
echo "# scrape size: $(curl -s http://127.0.0.1:18083/metrics | wc -c) bytes, $(curl -s http://127.0.0.1:18083/metrics | grep -vc '^#') samples"
