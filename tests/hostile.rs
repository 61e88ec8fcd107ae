//! Clients that try to hurt the server: clients past their rate limit.
//! (Readers that never read a large response are in the heavy tests.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::binary::{spawn_binary, stop};
use crate::util::{get, post, Reader, Resp};

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
