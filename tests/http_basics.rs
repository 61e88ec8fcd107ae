//! Everyday HTTP/1.1 through a real socket: keep-alive, HEAD, bodies,
//! 100-continue, routing errors, HTTP/1.0.

use std::io::Write;
use std::thread::sleep;
use std::time::Duration;

use crate::util::{config, connect, get, request, start, Reader};

#[test]
fn livez_answers_ok_with_date_and_length() {
    let server = start(config());
    let resp = request(server.local_addr(), &get("/livez"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    assert_eq!(resp.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(resp.header("content-length"), Some("2"));
    let date = resp.header("date").expect("Date header");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
}

#[test]
fn keep_alive_reuses_one_connection() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    for _ in 0..50 {
        client.send(&get("/livez"));
        let resp = client.response(false);
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        assert_eq!(resp.header("connection"), None);
    }
    assert_eq!(server.state().connections_accepted(), 1);
}

#[test]
fn readyz_and_health() {
    let server = start(config());
    let ready = request(server.local_addr(), &get("/readyz"));
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready"));
    let health = request(server.local_addr(), &get("/health"));
    assert_eq!(health.status, 200);
    assert_eq!(health.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["reactors"], 2);
    assert!(doc["connections"]["open"].as_u64().unwrap() >= 1, "{doc}");
}

#[test]
fn head_sends_length_without_body() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.response(true);
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").unwrap().parse::<usize>().unwrap() > 10);
    // The next response on the same connection starts right after the head.
    client.send(&get("/livez"));
    assert_eq!(client.response(false).text(), "ok");
}

#[test]
fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(&get("/no/such/thing"));
    let missing = client.response(false);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.problem_code(), "not-found");
    client.send(b"DELETE /livez HTTP/1.1\r\nHost: t\r\n\r\n");
    let wrong = client.response(false);
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"));
    assert_eq!(wrong.problem_code(), "method-not-allowed");
    // Neither error closes the connection.
    client.send(&get("/livez"));
    assert_eq!(client.response(false).status, 200);
}

#[test]
fn content_length_body_is_delivered() {
    let server = start(config());
    let body = "x".repeat(40_000);
    let raw = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let resp = request(server.local_addr(), raw.as_bytes());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), body);
}

#[test]
fn chunked_body_is_decoded() {
    let server = start(config());
    let raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";
    let resp = request(server.local_addr(), raw);
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello world"));
}

#[test]
fn request_split_byte_by_byte_is_assembled() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    let raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
                GET /livez HTTP/1.1\r\nHost: t\r\n\r\n";
    for byte in raw.iter() {
        client.stream.write_all(std::slice::from_ref(byte)).unwrap();
        sleep(Duration::from_micros(300));
    }
    assert_eq!(client.response(false).text(), "abcde");
    assert_eq!(client.response(false).text(), "ok");
}

#[test]
fn expect_100_continue_asks_for_the_body() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let interim = client.response(false);
    assert_eq!(interim.status, 100);
    client.send(b"body");
    let resp = client.response(false);
    assert_eq!((resp.status, resp.text().as_str()), (200, "body"));
}

#[test]
fn expect_100_continue_with_too_large_body_is_refused_before_sending_it() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\nExpect: 100-continue\r\n\r\n");
    let resp = client.response(false);
    assert_eq!(resp.status, 413);
    assert_eq!(resp.problem_code(), "body-too-large");
    // The answer says the limit (config(): 64 KiB).
    assert!(resp.text().contains("limit of 65536 bytes"), "{}", resp.text());
    client.expect_closed();
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let server = start(config());
    let mut plain = Reader::new(connect(server.local_addr()));
    plain.send(b"GET /livez HTTP/1.0\r\n\r\n");
    let resp = plain.response(false);
    assert_eq!(resp.header("connection"), Some("close"));
    plain.expect_closed();

    let mut kept = Reader::new(connect(server.local_addr()));
    for _ in 0..3 {
        kept.send(b"GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let resp = kept.response(false);
        assert_eq!((resp.status, resp.header("connection")), (200, Some("keep-alive")));
    }
}

#[test]
fn connection_close_is_honoured() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /livez HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.response(false);
    assert_eq!((resp.status, resp.header("connection")), (200, Some("close")));
    // The second request after `close` is not answered.
    client.expect_closed();
}

#[test]
fn a_panicking_handler_is_a_500_and_the_server_lives_on() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(&get("/panic"));
    let resp = client.response(false);
    assert_eq!(resp.status, 500);
    assert_eq!(resp.problem_code(), "internal");
    client.send(&get("/livez"));
    assert_eq!(client.response(false).status, 200);
}
