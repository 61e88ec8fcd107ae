#!/usr/bin/env bash
# The site audit's speed: `pagelens crawl` over a generated site of PAGES
# pages (loadtest/gen_site.py: ~11 KB each, 15 links, a tree five clicks
# deep) on a local one-worker nginx, against, in the same run:
#   - `pagelens serve` analysing the same pages by URL (sync POST /analyze
#     {"url", "include_links": true} through wrk, cycling over every page;
#     result cache off): what the crawl's per-page work is measured against
#     (its CPU a page should be under 1.15x this one's);
#   - `wget --recursive --spider` over the same site.
# pagelens (crawl or serve) and wget run pinned to CPU 0; nginx and wrk on
# CPU 1. Crawl: --rate 0 (the site is on loopback, opened with
# --allow-private-fetch), no external links. Reported: pages, wall seconds,
# pages/s, CPU ms a page (user + system of the process), peak resident MB
# and bytes of it a discovered URL; for the server, analyses/s and CPU a
# page from /proc over the timed run.
#
# Usage: PAGES=20000 SECS=10 ROUNDS=3 [WORDS=1500] loadtest/compare-crawl.sh (medians of ROUNDS)
# (PAGES=100000 WORDS=150 is the memory check: small pages, many URLs.)
# Writes only in a temporary folder; traffic to 127.0.0.1 only; every run
# is bounded (the crawl by the site's size, wrk by SECS).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
PAGES=${PAGES:-20000}
WORDS=${WORDS:-1500}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
PORT=18101 API=18102
need nginx nginx-light
need wget wget
need wrk wrk
need taskset util-linux
need curl curl
cargo build --release --quiet

python3 loadtest/gen_site.py "$work/site" "$PAGES" "$WORDS"
start_nginx 1 "$PORT" "root $work/site;"
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
HZ=$(getconf CLK_TCK)
site="http://127.0.0.1:$PORT/"
echo "# $(date -u +%FT%TZ) $PAGES pages ($(du -sm "$work/site" | cut -f1) MB); crawler/server/wget on CPU 0, nginx and wrk on CPU 1"

find "$work/site" -name '*.html' | sed "s|$work/site|http://127.0.0.1:$PORT|; s|/index.html$|/|" > "$work/urls"
serve_pagelens 0 "$API" --store memory --cache-ttl 0 --allow-private-fetch --fetch-ports any \
  --fetch-rate 1000000 --fetch-per-origin 64; api=$PL_PID
export URLS="$work/urls" INCLUDE_LINKS=1
taskset -c 1 wrk -t1 -c32 -d2s -s loadtest/post_urls.lua "http://127.0.0.1:$API/analyze" >/dev/null

round() {
  # The crawl.
  /usr/bin/time -f "%e %U %S %M" -o "$work/crawl.time" taskset -c 0 ./target/release/pagelens crawl "$site" \
    --max-pages $((PAGES + 10)) --max-per-pattern $((PAGES + 10)) --max-depth 50 --rate 0 --no-external \
    --allow-private-fetch --fetch-ports any --out "$work/crawl" > "$work/crawl.out"
  read -r wall user sys rss < "$work/crawl.time"
  python3 - "$work/crawl/report.json" "$wall" "$user" "$sys" "$rss" > "$work/crawl.row" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); wall, user, sys_, rss = map(float, sys.argv[2:])
n = r["pages_fetched"]
print(f"crawl {n} {wall:.2f} {n / wall:.0f} {(user + sys_) * 1000 / n:.3f} {rss / 1024:.0f} {rss * 1024 / max(r['urls_discovered'], 1):.0f} issues={len(r['issues'])}")
PY

  # The same pages analysed by URL through the service.
  t0=$(awk '{print $14 + $15}' "/proc/$api/stat")
  taskset -c 1 wrk -t1 -c32 -d"${SECS}s" --timeout 10s -s loadtest/post_urls.lua "http://127.0.0.1:$API/analyze" > "$work/wrk.out"
  t1=$(awk '{print $14 + $15}' "/proc/$api/stat")
  grep -q Non-2xx "$work/wrk.out" && { echo "analyze by URL: $(grep Non-2xx "$work/wrk.out")" >&2; }
  awk -v t=$((t1 - t0)) -v hz="$HZ" -v s="$SECS" '/requests in/ {n=$1} END {
    printf "analyze-by-url %d %.2f %.0f %.3f - -\n", n, s, n / s, t / hz * 1000 / n }' "$work/wrk.out" > "$work/api.row"

  # wget's spider over the same site.
  /usr/bin/time -f "%e %U %S %M" -o "$work/wget.time" taskset -c 0 wget --recursive --spider --level=inf \
    --no-directories --no-verbose -P "$work/wget" -o "$work/wget.log" "$site" || true
  read -r wall user sys rss < "$work/wget.time"
  fetched=$(sed -n 's/^Downloaded: \([0-9]*\) files.*/\1/p' "$work/wget.log")
  python3 -c "import sys; n, w, u, s, m = int(sys.argv[1]), *map(float, sys.argv[2:]); print(f'wget-spider {n} {w:.2f} {n / w:.0f} {(u + s) * 1000 / max(n, 1):.3f} {m / 1024:.0f} -')" \
    "$fetched" "$wall" "$user" "$sys" "$rss" > "$work/wget.row"

  cat "$work/crawl.row" "$work/api.row" "$work/wget.row" | tee -a "$work/rows"
}

echo "# tool pages seconds pages/s cpu_ms/page peak_MB bytes/url"
for _ in $(seq "$ROUNDS"); do round; done
kill "$api"
python3 - "$work/rows" <<'PY'
import statistics, sys
from collections import defaultdict
rate, cpu = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    rate[f[0]].append(float(f[3])); cpu[f[0]].append(float(f[4]))
med = lambda d, k: statistics.median(d[k])
for k in rate:
    print(f"median {k}: {med(rate, k):.0f} pages/s, {med(cpu, k) * 1000:.1f} us of CPU a page")
print(f"crawl CPU a page / analyze-by-URL CPU a page: {med(cpu, 'crawl') / med(cpu, 'analyze-by-url'):.2f}x (target under 1.15x)")
print(f"crawl pages/s / wget --spider pages/s: {med(rate, 'crawl') / med(rate, 'wget-spider'):.2f}x")
PY
