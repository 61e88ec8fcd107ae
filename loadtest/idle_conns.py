#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one request on each,
reads the answer, then holds them all idle and reports the server's resident
memory before and after. Usage: idle_conns.py PORT PID N [PATH]"""
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


def main():
    port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/livez"
    before = rss_kib(pid)
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(req)
        conns.append(s)
    for s in conns:
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("server closed a connection")
            got += chunk
    time.sleep(1.0)
    after = rss_kib(pid)
    print(f"{n} {before} {after} {(after - before) * 1024 / n:.0f}")
    for s in conns:
        s.close()


main()
