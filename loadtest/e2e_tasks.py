#!/usr/bin/env python3
"""End-to-end task throughput: submit N pages to POST /analyze/async over
pipelined keep-alive connections, then poll GET /tasks/stats until all N
have ended. Standard library only; 127.0.0.1 only; bounded by N and a
time limit.

Usage: e2e_tasks.py PORT PAGE N [CONNECTIONS=4] [LIMIT_S=300]
Prints: submitted=N accepted=A submit_per_s=S end_to_end_per_s=E seconds=T"""
import socket
import sys
import time

PORT, PAGE, N = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
CONNS = int(sys.argv[4]) if len(sys.argv) > 4 else 4
LIMIT = float(sys.argv[5]) if len(sys.argv) > 5 else 300.0
WINDOW = 64  # requests in flight per connection

body = open(PAGE, "rb").read()
REQ = (b"POST /analyze/async HTTP/1.1\r\nHost: bench\r\nContent-Type: text/html\r\n"
       b"Content-Length: %d\r\n\r\n" % len(body)) + body


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        self.buf = b""

    def response(self):
        """Reads one response; returns (status, body)."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise SystemExit("server closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = self.s.recv(65536)
            if not chunk:
                raise SystemExit("server closed inside a body")
            rest += chunk
        self.buf = rest[length:]
        return status, rest[:length]


def ended(stats_conn):
    stats_conn.s.sendall(b"GET /tasks/stats HTTP/1.1\r\nHost: bench\r\n\r\n")
    _, payload = stats_conn.response()
    import json
    tasks = json.loads(payload)["tasks"]
    return sum(tasks[s]["total"] for s in ("completed", "error", "cancelled", "timed_out"))


conns = [Conn() for _ in range(CONNS)]
stats = Conn()
base = ended(stats)
start = time.monotonic()
accepted = 0
sent = [0] * CONNS
done = [0] * CONNS
share = [N // CONNS + (1 if i < N % CONNS else 0) for i in range(CONNS)]
while sum(done) < N:
    for i, c in enumerate(conns):
        while sent[i] < share[i] and sent[i] - done[i] < WINDOW:
            c.s.sendall(REQ)
            sent[i] += 1
        if done[i] < sent[i]:
            status, _ = c.response()
            done[i] += 1
            accepted += status == 202
    if time.monotonic() - start > LIMIT:
        raise SystemExit("time limit reached while submitting")
submitted_at = time.monotonic()
while ended(stats) - base < accepted:
    if time.monotonic() - start > LIMIT:
        raise SystemExit("time limit reached while waiting for tasks")
    time.sleep(0.005)
finished = time.monotonic()
print(f"submitted={N} accepted={accepted} submit_per_s={N / (submitted_at - start):.0f} "
      f"end_to_end_per_s={accepted / (finished - start):.1f} seconds={finished - start:.2f}")
