# Shared by the comparison scripts (sourced): tool checks, a work folder
# cleaned up on exit with every process started, and a one-worker nginx.

# need CMD PACKAGE: installs PACKAGE with apt-get when CMD is missing.
need() { command -v "$1" >/dev/null || { apt-get install -y -qq "$2" >/dev/null || { echo "need $1" >&2; exit 1; }; }; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# start_nginx CPU PORT SERVER_BODY [HTTP_EXTRA] [MAIN_EXTRA]: one nginx
# worker pinned to CPU, serving SERVER_BODY (directives inside `server {}`),
# with HTTP_EXTRA inside `http {}` and MAIN_EXTRA at the top; sets NGX_PID.
start_nginx() {
  mkdir -p "$work/logs"
  cat > "$work/nginx.conf" <<NGX
${5:-}
worker_processes 1;
master_process off;
daemon off;
error_log $work/logs/error.log crit;
pid $work/nginx.pid;
worker_rlimit_nofile 30000;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  types { text/html html; }
  ${4:-}
  server {
    listen 127.0.0.1:$2 reuseport backlog=4096;
    $3
  }
}
NGX
  taskset -c "$1" nginx -p "$work" -c "$work/nginx.conf" & pids+=($!)
  NGX_PID=$!
}

# serve_pagelens CPU PORT ARGS...: a release pagelens (one reactor, one
# worker, a deep queue, ARGS added) pinned to CPU, its stderr in
# $work/server-PORT.err, waited for until /livez answers; sets PL_PID.
serve_pagelens() {
  local cpu=$1 port=$2; shift 2
  taskset -c "$cpu" ./target/release/pagelens serve --listen "127.0.0.1:$port" --reactors 1 --workers 1 \
    --queue-capacity 100000 "$@" >/dev/null 2>"$work/server-$port.err" & PL_PID=$!; pids+=("$PL_PID")
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/livez" >/dev/null && break; sleep 0.1; done
}

# task_flow PAGE: the task-flow scenario of the store comparisons in $work:
# flow.toml (POST /analyze/async with page.json, PAGE as {"html": ...}, its
# status polled every 20 ms until it ends), and raw.toml, the same with PAGE
# itself as a text/html body.
task_flow() {
  python3 -c 'import json,sys; print(json.dumps({"html": open(sys.argv[1], encoding="utf-8").read()}))' "$1" > "$work/page.json"
  cp "$1" "$work/page.html"
  flow_toml() { # CONTENT_TYPE BODY_FILE
    cat <<TOML
[[task]]
name = "analyze-async"
method = "POST"
path = "/analyze/async"
headers = { "Content-Type" = "$1" }
body_file = "$2"
poll_interval = "20ms"
TOML
  }
  flow_toml application/json page.json > "$work/flow.toml"
  flow_toml "text/html; charset=utf-8" page.html > "$work/raw.toml"
}

# The reference's Celery anchor (../shared/reference/jobs): its app, in a
# venv under $VENV made from PyPI when missing.
CELERY_REF=${CELERY_REF:-../shared/reference/jobs}
VENV=${VENV:-/tmp/anchors/jobs/venv}
celery_venv() {
  [ -x "$VENV/bin/celery" ] && return
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q beautifulsoup4==4.15.0 lxml==6.1.3 'celery[redis]==5.7.0' redis==8.1.0
}

# start_redis CPU PORT: a redis-server without persistence pinned to CPU,
# waited for; sets REDIS_URL.
start_redis() {
  need redis-server redis-server
  taskset -c "$1" redis-server --port "$2" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --logfile "$work/redis-$2.log" & pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$2" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export REDIS_URL="redis://127.0.0.1:$2/0"
}

# celery_round PAGE N: the reference's layout on the Redis at $REDIS_URL
# (flushed first): one Celery worker (prefork, concurrency 1) on CPU 0, the
# reference's producer (`.delay()` N times, then `.get()` each) on CPU 1;
# prints the end-to-end tasks/s.
celery_round() {
  local page; page=$(realpath "$1")
  redis-cli -u "$REDIS_URL" flushall >/dev/null
  (cd "$CELERY_REF" && exec taskset -c 0 "$VENV/bin/celery" -A tasks_celery worker --pool=prefork --concurrency=1 \
     --loglevel=WARNING --without-gossip --without-mingle --without-heartbeat) > "$work/celery.log" 2>&1 & local w=$!
  pids+=("$w")
  (cd "$CELERY_REF" && for _ in $(seq 100); do "$VENV/bin/python" -c 'import tasks_celery as t,sys; sys.exit(0 if t.app.control.ping(timeout=0.5) else 1)' 2>/dev/null && break; done)
  local out; out=$(cd "$CELERY_REF" && taskset -c 1 "$VENV/bin/python" producer_celery.py analyze "$page" "$2")
  kill -TERM "$w"; wait "$w" 2>/dev/null || true
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])["e2e_tasks_per_s"])' "$out"
}
