#!/usr/bin/env bash
# Result-cache hits beside cold analyses of the same URL and beside GET
# /livez, on one core: pagelens pinned to CPU 0 (one reactor, one worker),
# nginx (serving the page, on CPU 1) and the client (pagelens loadtest -t1
# -c16, closed loop, on CPU 1). Cold: --cache-ttl 0, so each request
# fetches and analyses the page; hit: the default cache, warmed by the first
# request. Medians of ROUNDS (default 3) alternating rounds.
#
# Usage: loadtest/compare-cache.sh [SECONDS]   (default 3)
# Needs nginx and ../shared (the page); says so and stops if absent.
# Traffic goes to 127.0.0.1 only and every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
need nginx nginx-light
need taskset util-linux
SECS=${1:-3}
ROUNDS=${ROUNDS:-3}
PAGE=${PAGE:-../shared/corpus/pages/py311__library__html.parser.html}
[ -f "$PAGE" ] || { echo "page not found: $PAGE (needs ../shared beside the checkout)"; exit 0; }
PL=18089; NGX=18090
cargo build --release --quiet
mkdir -p "$work/site" && cp "$PAGE" "$work/site/page.html"
start_nginx 1 "$NGX" "root $work/site;"
echo "{\"url\": \"http://127.0.0.1:$NGX/page.html\"}" > "$work/body.json"
rps() { taskset -c 1 ./target/release/pagelens loadtest -c16 -t1 -d"${SECS}s" "$@" | awk '/^Requests\/sec/{print $2}'; }
for round in $(seq "$ROUNDS"); do
  for mode in cold hit; do
    ttl=1h; [ "$mode" = cold ] && ttl=0
    taskset -c 0 ./target/release/pagelens serve --listen 127.0.0.1:$PL --store memory --reactors 1 --workers 1 \
      --allow-private-fetch --fetch-ports any --fetch-rate 100000 --cache-ttl "$ttl" >/dev/null 2>&1 & pid=$!; pids+=("$pid")
    for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PL/livez" >/dev/null && break; sleep 0.1; done
    curl -fs "http://127.0.0.1:$PL/analyze" -H 'Content-Type: application/json' -d @"$work/body.json" >/dev/null
    a=$(rps -m POST -H 'Content-Type: application/json' --body "$work/body.json" "http://127.0.0.1:$PL/analyze")
    l=$(rps "http://127.0.0.1:$PL/livez")
    echo "$mode $a $l" >> "$work/rows"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = lambda mode, i: statistics.median(float(r[i]) for r in rows if r[0] == mode)
cold, hit, livez = med("cold", 1), med("hit", 1), med("hit", 2)
print(f"# medians of {len(rows) // 2} rounds, req/s on one core")
print(f"analysis, cold (fetch + parse)  {cold:>10.0f}")
print(f"analysis, cache hit             {hit:>10.0f}   {hit / cold:.1f}x cold")
print(f"GET /livez                      {livez:>10.0f}   hit = {hit / livez:.2f}x /livez")
PY
