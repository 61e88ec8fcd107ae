#!/usr/bin/env bash
# pagelens GET /livez beside nginx (one worker, `return 200`) in the same run,
# on both I/O engines: `pagelens` is epoll, `pl-uring` io_uring.
#
# The server is pinned to CPU 0 and wrk to CPU 1, so that the figure that
# separates servers is the server's own CPU time per request (utime+stime
# from /proc/PID/stat over the run, divided by requests served), not the
# requests/s a single wrk thread can drive.
#
# Closed loop, a server's CPU per request also depends on how many requests
# each wake-up finds (the faster server finds fewer: it sleeps ~2x as often
# per request as nginx under wrk -c64), so the same figure is also taken at
# fixed offered rates below saturation (open loop: pagelens loadtest -t1 on
# CPU 1), where both servers see the same arrivals.
#
# A third peer, loadtest/floor (a mio loop that parses nothing and answers
# every request end with pagelens' bytes, through the same calls), shows the
# least CPU per request any mio server can reach here: the gap from it to
# pagelens is pagelens' own work, the gap from it to nginx is the most a mio
# server can win. Its io_uring twin, floor-uring
# (loadtest/floor/src/bin/pagelens-floor-uring.rs: multishot accept and
# receive, a provided-buffer ring, one send in flight a connection, the ring
# set up as pagelens' is), shows the least any io_uring server can reach: the
# gap between the two floors is what io_uring itself wins on this kernel.
#
# Each configuration runs ROUNDS times (default 5), alternating servers, and
# the medians are reported with ratios against nginx, the floor and pagelens
# on epoll: this machine is shared and noisy, so single runs mislead. Where
# the kernel refuses io_uring, pl-uring runs on epoll and the script says so.
#
# Usage: loadtest/compare-plaintext.sh [DURATION_SECONDS]   (default 10; ROUNDS, RATES and
# IDLE_CONNS (default 1000) from the environment)
# Needs wrk, nginx, python3 and taskset; installs wrk and nginx-light with
# apt-get when missing. Traffic goes to 127.0.0.1 only and every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
PL_PORT=18082
NGX_PORT=18081
FLOOR_PORT=18083
URING_PORT=18084
FLOOR_URING_PORT=18085
IDLE=${IDLE_CONNS:-1000}
ROUNDS=${ROUNDS:-5}

. loadtest/lib.sh
need wrk wrk
need nginx nginx-light
need taskset util-linux
ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet
cargo build --release --quiet --manifest-path loadtest/floor/Cargo.toml --target-dir target/floor

start_nginx 0 "$NGX_PORT" 'location / { default_type text/plain; return 200 "ok"; }'

serve_pagelens 0 "$URING_PORT" --store memory --io-engine io_uring; URING_PID=$PL_PID
serve_pagelens 0 "$PL_PORT" --store memory --io-engine epoll
taskset -c 0 ./target/floor/release/pagelens-floor 127.0.0.1:$FLOOR_PORT & pids+=($!); FLOOR_PID=$!
taskset -c 0 ./target/floor/release/pagelens-floor-uring 127.0.0.1:$FLOOR_URING_PORT & pids+=($!); FLOOR_URING_PID=$!
sleep 1
grep -h "io_uring" "$work/server-$URING_PORT.err" || true  # the fallback's line, if the kernel refused

# The servers compared, in the order they run and are reported.
SERVERS=(nginx pagelens pl-uring floor floor-uring)
declare -A PID=([nginx]=$NGX_PID [pagelens]=$PL_PID [pl-uring]=$URING_PID [floor]=$FLOOR_PID [floor-uring]=$FLOOR_URING_PID)
declare -A PORT=([nginx]=$NGX_PORT [pagelens]=$PL_PORT [pl-uring]=$URING_PORT [floor]=$FLOOR_PORT [floor-uring]=$FLOOR_URING_PORT)
# each CMD ARGS...: CMD NAME PID URL ARGS... for every server in turn.
each() {
  local cmd=$1 name; shift
  for name in "${SERVERS[@]}"; do "$cmd" "$name" "${PID[$name]}" "http://127.0.0.1:${PORT[$name]}/livez" "$@"; done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run NAME PID URL CONNS [DEPTH] -> appends one row to $work/rows
run() {
  local name=$1 pid=$2 url=$3 conns=$4 depth=${5:-1}
  local script=()
  [ "$depth" -gt 1 ] && script=(-s loadtest/pipeline.lua)
  taskset -c 1 wrk -t1 -c"$conns" -d2s "${script[@]}" "$url" -- "$depth" >/dev/null  # warm-up
  local t0; t0=$(cpu_ticks "$pid")
  taskset -c 1 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "${script[@]}" "$url" -- "$depth" > "$work/out"
  local t1; t1=$(cpu_ticks "$pid")
  local reqs rps p50 p99
  reqs=$(awk '/requests in/ {print $1}' "$work/out")
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/out")
  p50=$(awk '$1=="50%" {print $2}' "$work/out")
  p99=$(awk '$1=="99%" {print $2}' "$work/out")
  local us_per_req
  us_per_req=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  echo "$name $conns $depth $rps $p50 $p99 $us_per_req" >> "$work/rows"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores; server on CPU 0, wrk -t1 on CPU 1; ${DURATION}s runs, median of $ROUNDS"
for round in $(seq "$ROUNDS"); do
  for c in 64 512; do
    each run "$c"
  done
  # Pipelined, depth 16: nginx, not wrk, is the limit; pagelens and the floor
  # reach wrk's, so their CPU per request is what ranks them here.
  each run 64 16
done
python3 loadtest/medians.py "${SERVERS[@]}" < "$work/rows"
python3 loadtest/medians.py floor pagelens pl-uring floor-uring < "$work/rows" | sed -n '/^# ratios/,$p'
python3 loadtest/medians.py pagelens pl-uring < "$work/rows" | sed -n '/^# ratios/,$p'
python3 loadtest/medians.py floor-uring pl-uring < "$work/rows" | sed -n '/^# ratios/,$p'

# rate_run NAME PID URL RATE -> appends one row to $work/rate-RATE
rate_run() {
  local name=$1 pid=$2 url=$3 rate=$4
  local t0; t0=$(cpu_ticks "$pid")
  taskset -c 1 ./target/release/pagelens loadtest -t1 -c64 --rate "$rate" -d"${DURATION}s" --warmup 0s "$url" > "$work/out"
  local t1; t1=$(cpu_ticks "$pid")
  awk -v name="$name" -v t=$((t1 - t0)) -v hz="$HZ" '
    $1 == "corrected" { p50 = $2; p99 = $5 }
    /requests in/ { n = $1 }
    /^Requests\/sec/ { rps = $2 }
    END { printf "%s 64 1 %s %sms %sms %.2f\n", name, rps, p50, p99, t / hz * 1e6 / n }' "$work/out" >> "$work/rate-$rate"
}

RATES=${RATES:-20000 60000}
for round in $(seq "$ROUNDS"); do
  for rate in $RATES; do
    each rate_run "$rate"
  done
done
for rate in $RATES; do
  echo "# open loop at $rate req/s over 64 connections (p50 and p99 corrected for coordinated omission)"
  python3 loadtest/medians.py "${SERVERS[@]}" < "$work/rate-$rate"
done

echo "# resident memory with $IDLE idle keep-alive connections (KiB before, after; bytes per connection)"
for name in nginx pagelens pl-uring; do
  printf '%-9s' "$name"; python3 loadtest/idle_conns.py "${PORT[$name]}" "${PID[$name]}" "$IDLE"
done
