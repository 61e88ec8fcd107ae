//! Clients that try to hurt the server: readers that never read a large
//! response, clients past their rate limit.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::lifecycle::{spawn_binary, stop};
use crate::util::{connect, get, json_of, post, resident_mb, wait_for, Reader, Resp, TempDir};

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

/// A connection from a chosen loopback address (127.0.0.0/8 is all local).
fn connect_from(source: &str, addr: SocketAddr) -> Reader {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Reader::new(stream)
}

fn ask(client: &mut Reader, raw: &[u8]) -> Resp {
    client.send(raw);
    client.response(false)
}

/// `--rate-limit 4/s --rate-burst 3`: a client gets its burst, then `429`
/// with `Retry-After` and the draft's `RateLimit` fields; probes are not
/// limited; other clients (another address, or another address forwarded
/// by a trusted proxy) are unaffected; the client recovers after the
/// interval; the refusals are counted by route in `/metrics`.
#[test]
fn a_client_past_its_rate_gets_429_with_headers_and_others_do_not() {
    let (mut server, addr) = spawn_binary(
        &["--listen", "127.0.0.1:0", "--rate-limit", "4/s", "--rate-burst", "3", "--trust-proxy", "127.0.0.9"],
        &[],
    );
    let mut one = connect_from("127.0.0.1", addr);
    for remaining in [2, 1, 0] {
        let ok = ask(&mut one, &get("/health"));
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("ratelimit-policy"), Some("\"read\";q=3;w=1"));
        let state = ok.header("ratelimit").unwrap();
        assert!(state.starts_with(&format!("\"read\";r={remaining};t=")), "{state}");
    }
    let refused = ask(&mut one, &get("/health"));
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.problem_code(), "rate-limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"read\";q=3;w=1"));
    assert!(refused.header("ratelimit").unwrap().starts_with("\"read\";r=0;t="));
    // A submission is refused too (one budget for both classes here), and
    // a refused request never reaches its handler: no task is made.
    let submit = ask(&mut one, &post("/analyze/async", &json!({ "html": "<title>x</title>" }), ""));
    assert_eq!(submit.status, 202, "submissions draw on their own class's bucket");
    assert_eq!(ask(&mut one, &get("/livez")).status, 200, "probes are never limited");

    // Others are unaffected: another address, and a forwarded one.
    assert_eq!(ask(&mut connect_from("127.0.0.2", addr), &get("/health")).status, 200);
    let mut proxy = connect_from("127.0.0.9", addr);
    let forwarded = |ip: &str| format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {ip}\r\n\r\n");
    assert_eq!(ask(&mut proxy, forwarded("198.51.100.7").as_bytes()).status, 200);
    // The untrusted peer's own header is ignored: it is still 127.0.0.1.
    assert_eq!(ask(&mut one, forwarded("198.51.100.8").as_bytes()).status, 429);

    // It recovers within an interval (250 ms), without any request having counted.
    let started = Instant::now();
    loop {
        let resp = ask(&mut one, &get("/health"));
        if resp.status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "never recovered: {}", resp.status);
        std::thread::sleep(Duration::from_millis(20));
    }

    // The scrape is rendered once a second (empty before the first): wait for the count.
    let started = Instant::now();
    loop {
        let metrics = crate::util::request(addr, &get("/metrics")).text();
        let line = metrics.lines().find(|l| l.starts_with("pagelens_http_rate_limited_total{route=\"/health\"}"));
        let refused: f64 = line.map_or(0.0, |l| l.rsplit(' ').next().unwrap().parse().unwrap());
        if refused >= 2.0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{line:?} in\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(&mut server);
}
