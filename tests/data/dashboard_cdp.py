#!/usr/bin/env python3
"""Opens a page in headless Chromium and waits until an expression is true,
over the DevTools protocol (a minimal WebSocket client: the standard
library has none). Prints the page's state as JSON.

Usage: dashboard_cdp.py URL WAIT_EXPR STATE_EXPR [TIMEOUT_S [SCREENSHOT.png]]
  WAIT_EXPR  JavaScript that becomes truthy when the page is ready
  STATE_EXPR JavaScript whose JSON-serialisable value is printed
  SCREENSHOT where a PNG of the ready page is saved
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebSocket:
    def __init__(self, url):
        rest = url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head.decode(errors="replace"))
        self.next_id = 0

    def _recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise RuntimeError("devtools connection closed")
            out += chunk
        return out

    def send(self, payload):
        data = payload.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        n = len(data)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        b1, b2 = self._recv_exact(2)
        n = b2 & 0x7F
        if n == 126:
            n = int.from_bytes(self._recv_exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self._recv_exact(8), "big")
        return self._recv_exact(n).decode(errors="replace")

    def call(self, method, **params):
        self.next_id += 1
        self.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg.get("result", {})

    def evaluate(self, expr):
        result = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return result.get("result", {}).get("value")


def main():
    url, wait_expr, state_expr = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 15
    screenshot = sys.argv[5] if len(sys.argv) > 5 else None
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium not found (.ci/install-test-tools installs it)")
    port = free_port()
    profile = tempfile.mkdtemp(prefix="pagelens-chromium-")
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        pages = None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [p for p in json.load(r) if p.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        if not pages:
            sys.exit("chromium did not open its DevTools port")
        ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
        ws.call("Page.navigate", url=url)
        while time.time() < deadline:
            if ws.evaluate(wait_expr):
                if screenshot:
                    png = ws.call("Page.captureScreenshot", format="png")["data"]
                    with open(screenshot, "wb") as f:
                        f.write(base64.b64decode(png))
                print(json.dumps(ws.evaluate(state_expr)))
                return
            time.sleep(0.2)
        print(json.dumps({"timed_out": True, "state": ws.evaluate(state_expr)}))
        sys.exit(1)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
