"""Schemathesis hooks for pagelens' API test: every generated `url` (of a
page or a batch item) is rewritten to a loopback address, so that the
fuzzer's traffic never leaves the machine (the server's SSRF guard then
refuses it with 403, a documented answer) and no DNS query is made."""
import schemathesis

LOOPBACK = "http://127.0.0.1:1/page"


def _loopback(value):
    if isinstance(value, dict):
        return {k: (LOOPBACK if k in ("url", "callback_url") and isinstance(v, str) else _loopback(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_loopback(v) for v in value]
    return value


@schemathesis.hook
def map_body(ctx, body):
    return _loopback(body)
