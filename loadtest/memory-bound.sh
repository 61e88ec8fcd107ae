#!/usr/bin/env bash
# Memory under big tasks: 300 submissions of a 6 MB page with 60,000 links
# (each analysis about 5 MB of JSON) to a release build with default flags,
# on the SQLite store and on --store memory. A client honours 503 +
# Retry-After, waits for every task and reads every result; the server's
# resident memory is sampled every 100 ms (VmRSS) and its peak read at the
# end (VmHWM). Prints the peak while queued, after, and overall. The memory
# store keeps at most --max-result-bytes (1 GiB) of results, so there some
# of the oldest are forgotten (404): counted, not an error.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
N=${N:-300}
PORT=18096
cargo build --release --quiet
for store in ${STORES:-"sqlite:$work/data/tasks.db" memory}; do
  ./target/release/pagelens serve --listen 127.0.0.1:$PORT --store "$store" >/dev/null 2>&1 & pid=$!; pids+=("$pid")
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/livez" >/dev/null && break; sleep 0.1; done
  python3 - "$PORT" "$pid" "$N" "$store" <<'PY'
import http.client, json, sys, threading, time
port, pid, n, store = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
links = "".join(f'<p>Item {i} <a href="/p/{i}">link number {i}</a></p>\n' for i in range(60000))
filler = "<p>" + "filler words for a long page " * 40 + "</p>\n"
page = "<html><head><title>Big</title></head><body>" + links
while len(page) < 6_000_000:
    page += filler
body = json.dumps({"html": page + "</body></html>"})
def rss(key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1]) // 1024
peak_queued = 0
stop = False
def sample():
    global peak_queued
    while not stop:
        peak_queued = max(peak_queued, rss("VmRSS:"))
        time.sleep(0.1)
threading.Thread(target=sample, daemon=True).start()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
ids, refused = [], 0
started = time.time()
while len(ids) < n:
    c.request("POST", "/analyze/async", body, {"Content-Type": "application/json"})
    r = c.getresponse(); doc = json.loads(r.read())
    if r.status == 503:
        refused += 1; time.sleep(int(r.getheader("Retry-After", "1")))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)  # it may have gone idle meanwhile
        continue
    assert r.status == 202, doc
    ids.append(doc["task_id"])
submitted = time.time() - started
queued = peak_queued
forgotten = 0
for i in ids:
    while True:
        c.request("GET", f"/analyze/status/{i}")
        r = c.getresponse(); doc = json.loads(r.read())
        if r.status == 404:
            forgotten += 1
            break
        if doc["status"] == "completed":
            assert doc["result"]["links"]["total"] == 60000
            break
        assert doc["status"] in ("queued", "processing"), doc["status"]
        time.sleep(0.2)
stop = True
print(f"{store.split(':')[0]:7} {n} tasks: submitted in {submitted:.0f} s ({refused} refusals, retried), read back after {time.time() - started:.0f} s "
      f"({forgotten} forgotten); "
      f"resident peak {queued} MB while submitting, {rss('VmRSS:')} MB after, {rss('VmHWM:')} MB overall")
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
