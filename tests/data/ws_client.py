"""A WebSocket client written with Python's standard library only (RFC 6455:
handshake, masked frames, fragments, control frames), to drive pagelens'
GET /ws from outside the Rust code that implements it.

    ws_client.py PORT follow KEY ID...   subscribe to ids; print each message
                                         until every id has ended or failed
    ws_client.py PORT all KEY N          follow all tasks; print each message
                                         until N have ended
    ws_client.py PORT protocol           ping/pong, a fragmented command, the
                                         closing handshake; print what came back
    ws_client.py PORT close-code CASE    send a bad frame; print the close code
    ws_client.py PORT stall              follow all, read nothing until a line
                                         comes on stdin, then print how it ended

KEY is an API key, or "-" for none. Each line printed is flushed at once, so
the test can act on it while the client runs.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def say(line):
    print(line, flush=True)


class WebSocket:
    def __init__(self, port, key=None, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        nonce = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{auth}\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit("the server closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            say(f"refused {lines[0].split()[1]}")
            sys.exit(1)
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        expected = base64.b64encode(hashlib.sha1(nonce.encode() + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise SystemExit("wrong Sec-WebSocket-Accept")

    def send_frame(self, opcode, payload, fin=True, masked=True, rsv=0):
        first = (0x80 if fin else 0) | rsv << 4 | opcode
        n = len(payload)
        mask_bit = 0x80 if masked else 0
        if n < 126:
            header = struct.pack("!BB", first, mask_bit | n)
        elif n < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, n)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, n)
        if masked:
            mask = os.urandom(4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            header += mask
        self.sock.sendall(header + payload)

    def send_text(self, value):
        self.send_frame(TEXT, json.dumps(value).encode())

    def _take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        """(opcode, payload) of the next frame; server frames are never masked."""
        first, second = self._take(2)
        if second & 0x80:
            raise SystemExit("the server masked a frame")
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8))
        return first & 0x0F, self._take(n)

    def recv_message(self):
        """The next text message as JSON; control frames printed as they come."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == TEXT:
                return json.loads(payload)
            if opcode == PING:
                self.send_frame(PONG, payload)
            elif opcode == CLOSE:
                return {"type": "closed", "code": close_code(payload)}


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def key_of(arg):
    return None if arg == "-" else arg


def follow(port, key, ids):
    ws = WebSocket(port, key_of(key))
    ws.send_text({"op": "subscribe", "tasks": ids})
    open_ids = set(ids)
    while open_ids:
        message = ws.recv_message()
        say(json.dumps(message))
        if message["type"] == "end":
            open_ids.discard(message["task"]["task_id"])
        elif message["type"] == "error":
            open_ids.discard(message.get("task"))
        elif message["type"] == "closed":
            return


def follow_all(port, key, n):
    ws = WebSocket(port, key_of(key))
    ws.send_text({"op": "subscribe", "all": True})
    ended = 0
    while ended < n:
        message = ws.recv_message()
        say(json.dumps(message))
        if message["type"] == "end":
            ended += 1
        elif message["type"] == "closed":
            return


def protocol(port):
    ws = WebSocket(port)
    ws.send_frame(PING, b"are you there")
    opcode, payload = ws.recv_frame()
    say(f"pong {opcode == PONG} {payload.decode()}")
    # A command in three fragments, a ping between them (RFC 6455 §5.4).
    command = json.dumps({"op": "subscribe", "tasks": ["no-such-task"]}).encode()
    ws.send_frame(TEXT, command[:10], fin=False)
    ws.send_frame(PING, b"mid")
    ws.send_frame(CONTINUATION, command[10:20], fin=False)
    ws.send_frame(CONTINUATION, command[20:], fin=True)
    opcode, payload = ws.recv_frame()
    say(f"pong {opcode == PONG} {payload.decode()}")
    say(json.dumps(ws.recv_message()))
    ws.send_frame(TEXT, b"this is not JSON")
    say(json.dumps(ws.recv_message()))
    ws.send_frame(CLOSE, struct.pack("!H", 1000) + b"bye")
    opcode, payload = ws.recv_frame()
    say(f"close {opcode == CLOSE} {close_code(payload)}")
    try:
        ws._take(1)
        say("eof false")
    except EOFError:
        say("eof true")


def bad_frame(port, case):
    ws = WebSocket(port)
    if case == "unmasked":
        ws.send_frame(TEXT, b'{"op":"subscribe","all":true}', masked=False)
    elif case == "oversized":
        ws.send_frame(TEXT, b"x" * (64 * 1024 + 1))
    elif case == "binary":
        ws.send_frame(BINARY, b"\x00\x01")
    elif case == "bad-utf8":
        ws.send_frame(TEXT, b'{"op": "\xff\xfe"}')
    elif case == "reserved-bits":
        ws.send_frame(TEXT, b"{}", rsv=0b100)
    elif case == "fragmented-ping":
        ws.send_frame(PING, b"a", fin=False)
    elif case == "bad-opcode":
        ws.send_frame(0x3, b"")
    else:
        raise SystemExit(f"unknown case {case}")
    while True:
        try:
            opcode, payload = ws.recv_frame()
        except EOFError:
            say("eof")
            return
        if opcode == CLOSE:
            say(f"close {close_code(payload)}")
            return


def stall(port):
    # A small receive buffer, so the server's side fills up soon.
    ws = WebSocket(port, rcvbuf=4096)
    ws.send_text({"op": "subscribe", "all": True})
    say(json.dumps(ws.recv_message()))
    # Now read nothing until told (a line on stdin), then see how it ended.
    sys.stdin.readline()
    frames = 0
    try:
        while True:
            opcode, _ = ws.recv_frame()
            frames += 1
    except (EOFError, ConnectionResetError):
        say(f"ended after {frames} frames")


def main():
    port, scenario, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if scenario == "follow":
        follow(port, args[0], args[1:])
    elif scenario == "all":
        follow_all(port, args[0], int(args[1]))
    elif scenario == "protocol":
        protocol(port)
    elif scenario == "close-code":
        bad_frame(port, args[0])
    elif scenario == "stall":
        stall(port)
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()
