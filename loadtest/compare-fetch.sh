#!/usr/bin/env bash
# URL analysis throughput: POST /analyze {"url"} against a local nginx
# serving the 300 pages of ../shared/corpus, with upstream keep-alive (the
# default) beside one new connection per fetch (--fetch-no-keepalive), in
# the same run, alternating, median of ROUNDS.
#
# pagelens (1 reactor, 1 worker, its fetcher and resolver threads) is pinned
# to CPU 0; nginx and wrk -t1 share CPU 1. Reported per configuration:
# analyses/s, p50, p99, pagelens CPU per analysis, and at the end the
# upstream connections each instance opened (from its /metrics).
#
# Usage: loadtest/compare-fetch.sh [DURATION_SECONDS]   (default 10)
# Needs ../shared/corpus beside the checkout (says so and exits when absent),
# wrk, nginx, python3, taskset. Traffic goes to 127.0.0.1 only; runs are bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
CORPUS=$(realpath -m ../shared/corpus/pages)
NGX_PORT=18091 KA_PORT=18092 NEW_PORT=18093
[ -d "$CORPUS" ] || { echo "corpus not found: $CORPUS (needs ../shared beside the checkout)"; exit 0; }

. loadtest/lib.sh
need wrk wrk
need nginx nginx-light
need taskset util-linux
need curl curl

cargo build --release --quiet

start_nginx 1 "$NGX_PORT" "root $CORPUS;"
ls "$CORPUS" | grep '\.html$' | sed "s|^|http://127.0.0.1:$NGX_PORT/|" > "$work/urls"
export URLS="$work/urls"

serve() {
  taskset -c 0 ./target/release/pagelens serve --listen "127.0.0.1:$1" --reactors 1 --workers 1 \
    --allow-private-fetch --fetch-ports any --fetch-rate 1000000 --fetch-per-origin 64 "${@:2}" \
    >/dev/null 2>&1 & pids+=($!)
}
serve $KA_PORT; KA_PID=$!
serve $NEW_PORT --fetch-no-keepalive; NEW_PID=$!
for port in $KA_PORT $NEW_PORT; do
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/livez" >/dev/null && break; sleep 0.1; done
done
curl -fs -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$NGX_PORT/$(head -1 "$work/urls" | sed 's|.*/||')" | grep -q 200 \
  || { echo "nginx does not serve the corpus" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
run() {
  local name=$1 pid=$2 port=$3
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s loadtest/post_urls.lua "http://127.0.0.1:$port/analyze" >/dev/null
  local t0; t0=$(cpu_ticks "$pid")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency --timeout 10s -s loadtest/post_urls.lua \
    "http://127.0.0.1:$port/analyze" > "$work/out"
  local t1; t1=$(cpu_ticks "$pid")
  if grep -q Non-2xx "$work/out"; then echo "$name: $(grep Non-2xx "$work/out")" >&2; fi
  awk -v t=$((t1 - t0)) -v hz="$HZ" -v name="$name" -v c="$CONNS" '
    /requests in/ {n=$1} /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
    END {printf "%s %s 1 %s %s %s %.2f\n", name, c, rps, p50, p99, t / hz * 1e6 / n}' "$work/out" >> "$work/rows"
}

echo "# $(date -u +%FT%TZ) $(wc -l < "$work/urls") corpus pages from nginx; pagelens on CPU 0 (1 reactor, 1 worker),"
echo "# nginx and wrk -t1 -c$CONNS on CPU 1; ${DURATION}s runs, median of $ROUNDS; keep-alive vs new connections"
for _ in $(seq "$ROUNDS"); do
  run keepalive "$KA_PID" $KA_PORT
  run newconn "$NEW_PID" $NEW_PORT
done
python3 loadtest/medians.py newconn keepalive < "$work/rows"
for pair in "keepalive $KA_PORT" "newconn $NEW_PORT"; do
  set -- $pair
  curl -fs "http://127.0.0.1:$2/metrics" | awk -v name="$1" '
    /^pagelens_fetch_requests_total/ {f=$2} /^pagelens_fetch_connections_opened_total/ {c=$2}
    /^pagelens_fetch_failures_total/ {e=$2}
    END {printf "%s: %d fetches, %d upstream connections opened, %d failed\n", name, f, c, e}'
done
