//! Resident memory bounded in bytes: big tasks waiting in the store, and
//! slow readers of a large result.

use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use serde_json::json;

use crate::binary::{spawn_binary, stop};
use crate::util::{connect, get, json_of, metric, post, wait_for, Reader, TempDir};

/// A 6 MB page with 60,000 links: its analysis is about 5 MB of JSON.
fn big_page() -> String {
    let mut page = String::from("<html><head><title>Big</title></head><body>");
    for i in 0..60_000 {
        page.push_str(&format!("<p>Item {i} <a href=\"/p/{i}\">link number {i}</a></p>\n"));
    }
    let filler = format!("<p>{}</p>\n", "filler words for a long page ".repeat(40));
    while page.len() < 6_000_000 {
        page.push_str(&filler);
    }
    page + "</body></html>"
}

/// Inputs wait in the store and results live there, not in RAM: 40 tasks of
/// a 6 MB page (about 460 MB of inputs and results; the engine that kept
/// them in memory reached 5.4 GB with 300) stay under 400 MB resident while
/// they queue and after, and every result is readable. The benchmark
/// `loadtest/memory-bound.sh` runs the full 300 on a release build.
#[test]
fn big_tasks_are_bounded_in_memory_by_the_store() {
    let dir = TempDir::new("big-tasks");
    let _turn = crate::one_at_a_time();
    let store = format!("sqlite:{}", dir.path().join("tasks.db").display());
    let (mut server, addr) =
        spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "1", "--workers", "2", "--store", &store], &[]);
    let body = serde_json::to_vec(&json!({ "html": big_page() })).unwrap();
    let mut client = Reader::new(connect(addr));
    let mut ids = Vec::new();
    for _ in 0..40 {
        let head = format!(
            "POST /analyze/async HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.send(head.as_bytes());
        client.send(&body);
        let resp = client.response(false);
        assert_eq!(resp.status, 202, "{}", resp.text());
        ids.push(json_of(&resp)["task_id"].as_str().unwrap().to_string());
    }
    let (queued_rss, _) = resident_mb(server.id());
    for id in &ids {
        assert_eq!(wait_for(addr, id, &["completed"])["result"]["links"]["total"], 60_000);
    }
    let (after_rss, peak) = resident_mb(server.id());
    eprintln!("resident: {queued_rss} MB queued, {after_rss} MB after, {peak} MB at the peak");
    assert!(peak < 400, "peak resident {peak} MB (queued: {queued_rss} MB, after: {after_rss} MB)");
    stop(&mut server);
}

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
    let _turn = crate::one_at_a_time();
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
        // Peeked, not read: the bytes stay for a reader that reads after all.
        let mut head = [0u8; 12];
        while reader.stream.peek(&mut head).expect("the first response begins") < head.len() {}
        assert_eq!(&head, b"HTTP/1.1 200");
        reader.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        SlowReader(reader)
    }
}

/// An idle keep-alive connection holds no buffer on either engine (epoll
/// gives its buffers back to the reactor's pool, io_uring receives into a
/// ring the reactor's connections share): 1,000 of them, each having sent
/// one request, cost under 1 KiB each of resident memory. Measured after
/// the same 1,000 came and went once, so that buffers the first wave
/// touched (the pool, the ring) are in the baseline.
#[test]
fn idle_keep_alive_connections_hold_under_a_kib_each_on_both_engines() {
    let _turn = crate::one_at_a_time();
    // 1,000 sockets on each side: the test's soft descriptor limit (1,024 on
    // a stock system) is raised toward its hard limit; the server inherits it.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write one rlimit we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_cur.max(limit.rlim_max.min(4096));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 1200,
        "1,000 connections need about 1,100 descriptors a side: the hard limit is {}",
        limit.rlim_max
    );
    for engine in ["epoll", "io_uring"] {
        let (mut server, addr) =
            spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "1", "--io-engine", engine], &[]);
        let wave = || -> Vec<Reader> {
            (0..1000)
                .map(|_| {
                    let mut reader = Reader::new(connect(addr));
                    reader.send(&get("/livez"));
                    reader
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|mut reader| {
                    assert_eq!(reader.response(false).status, 200);
                    reader
                })
                .collect()
        };
        drop(wave());
        // The first wave's connections are closed once /metrics says so
        // (the one asking is the one left open).
        let settled = |want: f64| metric(addr, "pagelens_http_connections_open", |n| n <= want);
        settled(1.0);
        let before = resident_kib(server.id()).0;
        let held = wave();
        settled(1001.0);
        let after = resident_kib(server.id()).0;
        let per_connection = after.saturating_sub(before) * 1024 / held.len() as u64;
        eprintln!("{engine}: {before} KiB, {after} KiB with 1,000 idle connections: {per_connection} bytes each");
        assert!(per_connection < 1024, "{engine}: {per_connection} bytes an idle connection");
        drop(held);
        stop(&mut server);
    }
}

/// `VmRSS` and `VmHWM` (the peak) of a process, in MB.
pub fn resident_mb(pid: u32) -> (u64, u64) {
    let (rss, peak) = resident_kib(pid);
    (rss / 1024, peak / 1024)
}

/// `VmRSS` and `VmHWM` (the peak) of a process, in KiB.
pub fn resident_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}
