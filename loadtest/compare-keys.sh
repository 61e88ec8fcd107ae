#!/usr/bin/env bash
# The request cost of --api-keys: GET /livez (open even with keys) and
# GET /health (authenticated: a SHA-256 and a constant-time comparison of
# every key's hash a request) with and without a keys file, in alternating
# rounds of the same run. pagelens on CPU 0 (one reactor), the client
# (pagelens loadtest -t1 -c32, closed loop) on CPU 1; medians reported.
#
# Usage: loadtest/compare-keys.sh [SECONDS]   (default 3; ROUNDS from the environment, default 3)
# Traffic goes to 127.0.0.1 only and every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
need taskset util-linux
SECS=${1:-3}
ROUNDS=${ROUNDS:-3}
PORT=18091
cargo build --release --quiet
KEY=$(./target/release/pagelens keys add bench --scopes read --file "$work/keys.toml" 2>/dev/null)
rps() { taskset -c 1 ./target/release/pagelens loadtest -c32 -t1 -d"${SECS}s" "$@" | awk '/^Requests\/sec/{print $2}'; }
for round in $(seq "$ROUNDS"); do
  for mode in off on; do
    flags=()
    [ "$mode" = on ] && flags=(--api-keys "$work/keys.toml")
    taskset -c 0 ./target/release/pagelens serve --listen 127.0.0.1:$PORT --store memory --reactors 1 --workers 1 \
      --no-metrics "${flags[@]}" >/dev/null 2>&1 & pid=$!; pids+=("$pid")
    for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/livez" >/dev/null && break; sleep 0.1; done
    echo "$mode $(rps "http://127.0.0.1:$PORT/livez") $(rps -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/health")" >> "$work/rows"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {m: [statistics.median(float(r[i]) for r in rows if r[0] == m) for i in (1, 2)] for m in ("off", "on")}
print(f"# median req/s of {len(rows) // 2} rounds: keys off, keys on, on/off")
for i, name in enumerate(("/livez (open)", "/health (with a key)")):
    print(f"{name:22} {med['off'][i]:>10.0f} {med['on'][i]:>10.0f} {med['on'][i] / med['off'][i]:.3f}")
PY
