//! Clients that try to hurt the server: readers that never read a large
//! response.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::lifecycle::{spawn_binary, stop};
use crate::util::{connect, get, json_of, post, resident_mb, wait_for, Reader, TempDir};

/// A page whose analysis (with its list of links) is about 12 MB of JSON.
fn page_with_a_12mb_analysis() -> String {
    let mut page = String::from("<html><head><title>Big</title></head><body>");
    for i in 0..67_000 {
        page.push_str(&format!(
            "<p><a href=\"/catalogue/products/item-{i:08}\">the product listed under number {i:08} of the catalogue</a></p>\n"
        ));
    }
    page + "</body></html>"
}

/// Milliseconds `GET /livez` takes on a kept-alive connection.
fn livez_ms(client: &mut Reader) -> f64 {
    let started = Instant::now();
    client.send(&get("/livez"));
    assert_eq!(client.response(false).status, 200);
    started.elapsed().as_secs_f64() * 1e3
}

/// 100 connections each pipeline 8 reads of a 12 MB result and then read
/// nothing. Every response shares the one result (no copy per response),
/// a connection stops taking requests while its output is queued, and the
/// reactor never copies the body: resident memory stays within 100 MB of
/// its idle figure and `/livez` answers in under 10 ms at the 99th
/// percentile meanwhile; a reader that finally reads gets every byte.
#[test]
fn slow_readers_of_a_large_result_hold_no_copies_and_do_not_slow_the_loop() {
    let dir = TempDir::new("slow-readers");
    let store = format!("sqlite:{}", dir.path().join("tasks.db").display());
    let (mut server, addr) =
        spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "1", "--workers", "1", "--store", &store], &[]);
    let body = json!({ "html": page_with_a_12mb_analysis() });
    let mut client = Reader::new(connect(addr));
    client.send(&post("/analyze/async", &body, ""));
    let accepted = client.response(false);
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let id = json_of(&accepted)["task_id"].as_str().unwrap().to_string();
    wait_for(addr, &id, &["completed"]);
    let status = get(&format!("/analyze/status/{id}"));
    client.send(&status);
    let full = client.response(false).body;
    assert!(full.len() > 12_000_000, "the result is {} bytes", full.len());
    let (idle, _) = resident_mb(server.id());

    let mut readers: Vec<SlowReader> = (0..100).map(|_| SlowReader::new(addr, &status.repeat(8))).collect();
    let mut probes = Vec::new();
    let mut peak = idle;
    for _ in 0..300 {
        probes.push(livez_ms(&mut client));
        peak = peak.max(resident_mb(server.id()).0);
    }
    probes.sort_by(f64::total_cmp);
    let p99 = probes[probes.len() * 99 / 100];
    eprintln!(
        "idle {idle} MB, peak {peak} MB with 100 slow readers; /livez p50 {:.2} ms, p99 {p99:.2} ms",
        probes[150]
    );
    assert!(peak < idle + 100, "resident {peak} MB with slow readers, {idle} MB idle");
    assert!(p99 < 10.0, "/livez p99 {p99:.2} ms with slow readers");

    // A slow reader that reads after all gets every response whole.
    let mut late = readers.pop().unwrap().0;
    late.unread(b"HTTP/1.1 200");
    for _ in 0..8 {
        let resp = late.response(false);
        assert_eq!(resp.status, 200);
        assert!(resp.body == full, "a response differs from the result");
    }
    drop(readers);
    stop(&mut server);
}

/// A client that sends its requests, reads the first response's head (so
/// the server is known to be answering) and then reads nothing more.
struct SlowReader(Reader);

impl SlowReader {
    fn new(addr: SocketAddr, requests: &[u8]) -> SlowReader {
        let mut reader = Reader::new(connect(addr));
        reader.send(requests);
        let mut head = [0u8; 12];
        reader.stream.read_exact(&mut head).expect("the first response begins");
        assert_eq!(&head, b"HTTP/1.1 200");
        reader.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        SlowReader(reader)
    }
}
