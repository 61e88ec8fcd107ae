//! Each input RFC 9112 says a server must reject: a clear status, a
//! problem document, the connection closed, and other clients unaffected.

use std::io::Write;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::util::{config, connect, get, request, start, Reader};

/// Sends `raw` on a fresh connection and expects `status` with `code`, then a close.
fn rejected(addr: std::net::SocketAddr, raw: &[u8], status: u16, code: &str) {
    let mut client = Reader::new(connect(addr));
    client.send(raw);
    let resp = client.response(false);
    assert_eq!(resp.status, status, "{:?}: {}", String::from_utf8_lossy(raw), resp.text());
    assert_eq!(resp.problem_code(), code, "{:?}", String::from_utf8_lossy(raw));
    assert_eq!(resp.header("connection"), Some("close"));
    client.expect_closed();
}

#[test]
fn framing_errors_are_rejected_and_close() {
    let server = start(config());
    let addr = server.local_addr();
    let cases: &[(&[u8], u16, &str)] = &[
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "length-and-transfer-encoding",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            "bad-content-length",
        ),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc", 400, "bad-content-length"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -3\r\n\r\nabc", 400, "bad-content-length"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, "chunked-not-last"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n", 400, "chunked-not-last"),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "unsupported-transfer-encoding",
        ),
        (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "transfer-encoding-in-http10"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", 400, "bad-chunk"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n", 400, "bad-chunk"),
        // A size line that is not size [; extensions].
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3 junk\r\nabc\r\n", 400, "bad-chunk"),
        // A request smuggled into the trailer section, a NUL, a line without a colon.
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "bad-chunk",
        ),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\x00\r\n\r\n", 400, "bad-chunk"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnocolon\r\n\r\n", 400, "bad-chunk"),
        (b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n", 400, "obsolete-line-folding"),
        (b"GET /livez HTTP/1.1\r\n\r\n", 400, "bad-host"),
        (b"GET /livez HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad-host"),
        (b"GET /livez HTTP/3.0\r\nHost: t\r\n\r\n", 505, "http-version-not-supported"),
        (b"GET livez HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad-request-target"),
        (b"G(T /livez HTTP/1.1\r\nHost: t\r\n\r\n", 400, "malformed-request"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417, "expectation-failed"),
    ];
    for (raw, status, code) in cases {
        rejected(addr, raw, *status, code);
    }
    // Everyone else is still served.
    assert_eq!(request(addr, &get("/livez")).status, 200);
}

#[test]
fn oversized_heads_are_431() {
    let server = start(config());
    let addr = server.local_addr();
    let long_line = format!("GET /livez HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024));
    rejected(addr, long_line.as_bytes(), 431, "header-too-large");
    let many = format!("GET /livez HTTP/1.1\r\nHost: t\r\n{}\r\n", "X-A: b\r\n".repeat(100));
    rejected(addr, many.as_bytes(), 431, "too-many-headers");
}

#[test]
fn oversized_bodies_are_413() {
    let server = start(config()); // max body 64 KiB
    let addr = server.local_addr();
    rejected(addr, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n", 413, "body-too-large");
    let mut chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked.extend_from_slice(format!("4000\r\n{}\r\n", "z".repeat(0x4000)).as_bytes());
    }
    rejected(addr, &chunked, 413, "body-too-large");
}

#[test]
fn slowloris_is_cut_off_by_the_header_timeout() {
    let mut cfg = config();
    cfg.limits.header_timeout = Duration::from_millis(400);
    let server = start(cfg);
    let mut client = Reader::new(connect(server.local_addr()));
    let started = Instant::now();
    // One byte every 50 ms keeps the socket busy but never finishes the head.
    let mut sent_all = true;
    for byte in b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if client.stream.write_all(std::slice::from_ref(byte)).is_err() {
            sent_all = false;
            break;
        }
        sleep(Duration::from_millis(50));
    }
    assert!(!sent_all || started.elapsed() > Duration::from_millis(400));
    let resp = client.response(false);
    assert_eq!(resp.status, 408);
    assert_eq!(resp.problem_code(), "request-timeout");
    client.expect_closed();
    assert!(server.state().connections_timed_out() >= 1);
}

#[test]
fn a_stalled_body_gets_408() {
    let mut cfg = config();
    cfg.limits.body_timeout = Duration::from_millis(300);
    let server = start(cfg);
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let resp = client.response(false);
    assert_eq!(resp.status, 408);
    client.expect_closed();
}

#[test]
fn a_silent_connection_is_closed_without_a_response() {
    let mut cfg = config();
    cfg.limits.header_timeout = Duration::from_millis(300);
    let server = start(cfg);
    let mut client = Reader::new(connect(server.local_addr()));
    client.expect_closed();
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let mut cfg = config();
    cfg.limits.idle_timeout = Duration::from_millis(300);
    let server = start(cfg);
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(&get("/livez"));
    assert_eq!(client.response(false).status, 200);
    let started = Instant::now();
    client.expect_closed();
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
}
