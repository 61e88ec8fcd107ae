#!/usr/bin/env bash
# The floor under the SQLite store's cost on one core: what the kernel
# alone charges to write a task's bytes the way SQLite's WAL does, with no
# database at all. dd writes BYTES (default 120,000: what compare-stores.sh
# measured a task writes to storage, WAL and checkpoints) per task in
# 4,120-byte writes (a WAL frame: 24-byte header and a 4 KiB page), pinned
# to CPU 0 like the server:
#   - appended to a new file, synced every 64 MiB (a checkpoint's writeback);
#   - over a file already in the page cache, never synced (a reused WAL);
#   - in one write a task to a new file, synced (no framing: the least any
#     store could do).
# Then the best ratio a store paying that could reach against the memory
# store, whose whole task costs 1/TASKS_PER_S (pass the memory figure of
# compare-stores.sh; default 3645 tasks/s, measured 2026-11-30).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
BYTES=${BYTES:-120000}
MEMORY_TASKS_PER_S=${MEMORY_TASKS_PER_S:-3645}
TASKS=4000
frames=$(( (BYTES + 4095) / 4096 ))
f="$work/wal"
sys_us() { # dd args...: system+user CPU microseconds a task, median of 3
  for _ in 1 2 3; do
    rm -f "$f.new"
    /usr/bin/time -f "%S %U" taskset -c 0 dd status=none if=/dev/zero "$@" 2>&1 >/dev/null | tail -1
  done | awk -v n=$TASKS '{print ($1 + $2) * 1e6 / n}' | sort -n | sed -n 2p
}
framed=$(sys_us of="$f.new" bs=4120 count=$((TASKS * frames)) conv=fsync)
dd status=none if=/dev/zero of="$f" bs=4120 count=$((TASKS * frames))
overwrite=$(sys_us of="$f" bs=4120 count=$((TASKS * frames)) conv=notrunc)
whole=$(sys_us of="$f.new" bs="$BYTES" count=$TASKS conv=fsync)
python3 - "$framed" "$overwrite" "$whole" "$MEMORY_TASKS_PER_S" "$BYTES" <<'PY'
import sys
framed, overwrite, whole, rate, size = map(float, sys.argv[1:])
task = 1e6 / rate
print(f"# {size:.0f} bytes a task; the memory store's whole task: {task:.0f} us (at {rate:.0f} tasks/s)")
for name, us in [("4 KiB frames, new file, synced", framed), ("4 KiB frames over cached pages", overwrite), ("one write a task, synced", whole)]:
    print(f"{name:34} {us:6.1f} us a task -> at best {task / (task + us):.2f}x the memory store")
PY
