//! Pipelined requests and many connections at once.

use std::thread;

use crate::util::{config, connect, get, start, Reader};

#[test]
fn hundred_pipelined_requests_in_one_write_are_answered_in_order() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    let paths = ["/livez", "/readyz", "/nope", "/health"];
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend_from_slice(&get(paths[i % paths.len()]));
    }
    client.send(&batch);
    for i in 0..100 {
        let resp = client.response(false);
        match paths[i % paths.len()] {
            "/livez" => assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "#{i}"),
            "/readyz" => assert_eq!((resp.status, resp.text().as_str()), (200, "ready"), "#{i}"),
            "/nope" => assert_eq!(resp.status, 404, "#{i}"),
            _ => assert_eq!(resp.header("content-type"), Some("application/json"), "#{i}"),
        }
    }
    assert_eq!(server.state().connections_accepted(), 1);
}

#[test]
fn responses_keep_request_order_when_later_work_finishes_first() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    let mut batch = Vec::new();
    for path in ["/delay/400", "/delay/50", "/livez", "/delay/0", "/nope", "/delay/150"] {
        batch.extend_from_slice(&get(path));
    }
    client.send(&batch);
    let bodies: Vec<(u16, String)> = (0..6)
        .map(|_| {
            let r = client.response(false);
            (r.status, if r.status == 404 { String::from("404") } else { r.text() })
        })
        .collect();
    let want = [(200, "slept 400"), (200, "slept 50"), (200, "ok"), (200, "slept 0"), (404, "404"), (200, "slept 150")];
    let want: Vec<(u16, String)> = want.iter().map(|(s, b)| (*s, b.to_string())).collect();
    assert_eq!(bodies, want);
}

#[test]
fn a_thousand_concurrent_connections_are_all_served() {
    let server = start(config());
    let addr = server.local_addr();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                // Open all first so that they are concurrent, then use each.
                let mut clients: Vec<Reader> = (0..250).map(|_| Reader::new(connect(addr))).collect();
                for client in &mut clients {
                    client.send(&get("/livez"));
                }
                for client in &mut clients {
                    assert_eq!(client.response(false).text(), "ok");
                }
                clients
            })
        })
        .collect();
    let clients: Vec<Vec<Reader>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(clients.iter().map(Vec::len).sum::<usize>(), 1000);
    assert!(server.state().connections_open() >= 1000, "{}", server.state().connections_open());
}

#[test]
fn a_streamed_response_holds_back_the_ones_after_it() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    let mut batch = get("/stream/5");
    batch.extend_from_slice(&get("/livez"));
    batch.extend_from_slice(b"HEAD /stream/3 HTTP/1.1\r\nHost: t\r\n\r\n");
    batch.extend_from_slice(&get("/readyz"));
    client.send(&batch);
    let streamed = client.response(false);
    assert_eq!(streamed.header("transfer-encoding"), Some("chunked"));
    assert_eq!(streamed.header("content-length"), None);
    let lines: Vec<String> = streamed.text().lines().map(String::from).collect();
    assert_eq!(lines, (0..5).map(|i| format!("{{\"line\":{i}}}")).collect::<Vec<_>>());
    assert_eq!(client.response(false).text(), "ok");
    let head = client.response(true);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(client.response(false).text(), "ready");
}

#[test]
fn a_streamed_response_to_http10_ends_with_the_connection() {
    let server = start(config());
    let mut client = Reader::new(connect(server.local_addr()));
    client.send(b"GET /stream/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut client.stream, &mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.contains("Connection: close\r\n"), "{raw}");
    assert!(!raw.contains("Transfer-Encoding"), "{raw}");
    assert!(raw.ends_with("{\"line\":0}\n{\"line\":1}\n{\"line\":2}\n"), "{raw}");
}
