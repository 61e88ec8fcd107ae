#!/usr/bin/env bash
# pagelens TLS termination beside nginx (one worker, OpenSSL) with the same
# ECDSA P-256 certificate, in the same run.
#
# Two figures per server, each the server's own CPU time (utime+stime from
# /proc/PID/stat over the run) divided by the requests it served, so that
# the client's speed does not rank the servers:
#   - handshakes: a new connection per request (--no-keepalive, sessions
#     not resumed), i.e. a full TLS handshake each; also handshakes/s;
#   - keep-alive: 64 connections kept open, GET /livez over TLS.
# A plain-HTTP keep-alive row for each shows what TLS adds.
#
# The servers are pinned to CPU 0 and the client (pagelens loadtest -t1) to
# CPU 1. Each configuration runs ROUNDS times (default 3), alternating
# servers; medians and pagelens/nginx ratios are reported.
#
# Usage: loadtest/compare-tls.sh [DURATION_SECONDS]   (default 5; ROUNDS from the environment)
# Needs nginx (with its ssl module), openssl, python3 and taskset; installs
# nginx-light and openssl with apt-get when missing. Traffic goes to
# 127.0.0.1 only and every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
ROUNDS=${ROUNDS:-3}
PL_PORT=18092
PL_TLS=18093
NGX_PORT=18094
NGX_TLS=18095

. loadtest/lib.sh
need nginx nginx-light
need openssl openssl
need taskset util-linux
cargo build --release --quiet

# A CA and a leaf it signed (a self-signed leaf carries CA:TRUE, which webpki refuses).
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 2 -keyout "$work/ca-key.pem" -out "$work/ca.pem" -subj "/CN=bench CA" 2>/dev/null
openssl req "${ec[@]}" -keyout "$work/key.pem" -out "$work/leaf.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' > "$work/leaf.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" -CAcreateserial \
  -days 2 -extfile "$work/leaf.ext" -out "$work/cert.pem" 2>/dev/null

start_nginx 0 "$NGX_PORT" "
    listen 127.0.0.1:$NGX_TLS ssl reuseport backlog=4096;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type text/plain; return 200 \"ok\"; }"
taskset -c 0 ./target/release/pagelens serve --listen 127.0.0.1:$PL_PORT --tls-listen 127.0.0.1:$PL_TLS \
  --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --reactors 1 --workers 1 --store memory \
  >/dev/null 2>&1 & pids+=($!); PL_PID=$!
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run NAME PID URL CONNS ROWS [FLAGS...] -> one row to $work/ROWS: name conns depth rps p50 p99 us/req
run() {
  local name=$1 pid=$2 url=$3 conns=$4 rows=$5
  shift 5
  local t0; t0=$(cpu_ticks "$pid")
  taskset -c 1 ./target/release/pagelens loadtest -t1 -c"$conns" -d"${DURATION}s" --warmup 1s \
    --ca-file "$work/ca.pem" "$@" "$url" > "$work/out"
  local t1; t1=$(cpu_ticks "$pid")
  awk -v name="$name" -v c="$conns" -v t=$((t1 - t0)) -v hz="$HZ" '
    $1 == "latency" { p50 = $2; p99 = $5 }
    /requests in/ { n = $1 }
    /^Requests\/sec/ { rps = $2 }
    END { printf "%s %s 1 %s %sms %sms %.2f\n", name, c, rps, p50, p99, t / hz * 1e6 / n }' "$work/out" >> "$work/$rows"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores; server on CPU 0, pagelens loadtest -t1 on CPU 1; ${DURATION}s runs, median of $ROUNDS"
for round in $(seq "$ROUNDS"); do
  for server in nginx pagelens; do
    if [ "$server" = nginx ]; then pid=$NGX_PID; tls=$NGX_TLS; plain=$NGX_PORT; else pid=$PL_PID; tls=$PL_TLS; plain=$PL_PORT; fi
    run "$server" "$pid" "https://localhost:$tls/livez" 16 handshakes --no-keepalive
    run "$server" "$pid" "https://localhost:$tls/livez" 64 keepalive
    run "$server" "$pid" "http://127.0.0.1:$plain/livez" 64 plain
  done
done
echo "# a full TLS handshake per request (new connection, no resumption), 16 connections"
python3 loadtest/medians.py nginx pagelens < "$work/handshakes"
echo "# TLS keep-alive, 64 connections"
python3 loadtest/medians.py nginx pagelens < "$work/keepalive"
echo "# plain HTTP keep-alive, 64 connections (what TLS adds)"
python3 loadtest/medians.py nginx pagelens < "$work/plain"
