//! Fetching pages through the real service against origin servers started
//! here on loopback: analysis by URL, keep-alive reuse counted at the
//! origin, per-origin caps, 429 back-off, redirects, TLS, the SSRF guard,
//! every bad upstream, and signed callbacks with retries.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::origin::{ok, response, Action, Origin, Tls};
use crate::util::{api_config, call, config, engine_config, fetcher, json_of, post, start_full, submit, wait_for};
use pagelens::api::ApiConfig;
use pagelens::fetch::callback::signature;
use pagelens::fetch::{FetchConfig, FetchError, FetchRequest, FetchResponse, Fetcher, Guard};
use pagelens::reactor::Server;

const PAGE: &[u8] = b"<!doctype html><html lang=en><head><title>Fetched page</title>\
<meta name=description content=\"A page served by the test origin\"></head>\
<body><h1>Hello</h1><a href=/about>About</a></body></html>";

/// Fetch settings for loopback origins: the guard open, short timeouts, no throttling.
fn open() -> FetchConfig {
    FetchConfig {
        guard: Guard::open(),
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(10),
        per_origin_rate: 10_000.0,
        ..FetchConfig::default()
    }
}

fn serve(fetch: FetchConfig) -> Server {
    serve_with(fetch, api_config())
}

fn serve_with(fetch: FetchConfig, api: ApiConfig) -> Server {
    start_full(config(), engine_config(), api, fetch)
}

fn analyze(server: &Server, body: Value) -> (u16, Value) {
    let resp = call(server.local_addr(), &post("/analyze", &body, ""));
    (resp.status, json_of(&resp))
}

/// Runs one fetch on `fetcher` and waits for its end.
fn fetch_now(fetcher: &Fetcher, request: FetchRequest) -> Result<FetchResponse, FetchError> {
    let (tx, rx) = mpsc::channel();
    fetcher.fetch(
        request,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(Duration::from_secs(30)).expect("the fetch ends")
}

fn get(url: &str) -> FetchRequest {
    FetchRequest::get(url.parse().unwrap())
}

#[test]
fn a_url_is_fetched_and_analysed_with_timings() {
    let origin = Origin::start(|_| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(PAGE).unwrap();
        let body = gz.finish().unwrap();
        Action::Send(response(
            200,
            &[("Content-Type", "text/html; charset=utf-8"), ("Content-Encoding", "gzip"), ("X-Robots-Tag", "noindex")],
            &body,
        ))
    });
    let server = serve(open());
    let (status, a) = analyze(&server, json!({"url": origin.url("/page")}));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["title"], "Fetched page");
    assert_eq!(a["status_code"], 200);
    assert_eq!(a["url"], origin.url("/page"));
    assert_eq!(a["links"]["internal"], 1, "links resolve against the fetched URL: {a}");
    assert_eq!(a["robots"]["noindex"], true, "X-Robots-Tag reaches the engine: {}", a["robots"]);
    let fetch = &a["fetch"];
    assert_eq!(fetch["final_url"], origin.url("/page"));
    assert_eq!(fetch["attempts"], 1);
    for timing in ["dns_ms", "connect_ms", "tls_ms", "first_byte_ms", "total_ms"] {
        assert!(fetch["timings"][timing].as_f64().is_some(), "{timing} in {fetch}");
    }
    assert!(fetch["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    let seen = origin.seen();
    assert_eq!(seen[0].header("accept-encoding"), Some("gzip, deflate"));
    assert!(seen[0].header("user-agent").unwrap().starts_with("pagelens/"));
}

#[test]
fn an_async_task_shows_fetching_then_completes() {
    let origin = Origin::start(|_| Action::SendAfter(Duration::from_millis(400), response(200, &[], PAGE)));
    let server = serve(open());
    let addr = server.local_addr();
    let id = submit(addr, json!({"url": origin.url("/slow")}));
    // The page and its robots.txt take 400 ms each: the stage says so meanwhile.
    let started = Instant::now();
    loop {
        let s = crate::util::status(addr, &id);
        if s["progress"]["stage"] == "fetching" {
            assert_eq!(s["status"], "processing", "{s}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never seen fetching: {s}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = wait_for(addr, &id, &["completed", "error"]);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["title"], "Fetched page");
}

#[test]
fn keep_alive_reuses_one_connection_and_can_be_turned_off() {
    let origin = Origin::start(|_| ok("text/html", PAGE));
    let fetcher = fetcher(open());
    for _ in 0..20 {
        let r = fetch_now(&fetcher, get(&origin.url("/"))).unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(origin.connections(), 1, "20 sequential fetches on one kept-alive connection");
    assert_eq!(fetcher.stats().reused.load(Ordering::Relaxed), 19);

    let closing = Origin::start(|_| ok("text/html", PAGE));
    let fetcher = crate::util::fetcher(FetchConfig { keep_alive: false, ..open() });
    for _ in 0..5 {
        fetch_now(&fetcher, get(&closing.url("/"))).unwrap();
    }
    assert_eq!(closing.connections(), 5);
    assert!(closing.seen().iter().all(|s| s.header("connection") == Some("close")));
}

#[test]
fn a_connection_whose_response_was_not_fully_read_is_not_reused() {
    // The origin sends more bytes than its Content-Length: the connection is unusable.
    let origin = Origin::start(|_| {
        let mut bytes = response(200, &[("Content-Type", "text/html")], PAGE);
        bytes.extend_from_slice(b"garbage");
        Action::Send(bytes)
    });
    let fetcher = fetcher(open());
    for _ in 0..3 {
        fetch_now(&fetcher, get(&origin.url("/"))).unwrap();
    }
    assert_eq!(origin.connections(), 3);
}

#[test]
fn a_pooled_connection_the_origin_dropped_is_replaced_without_a_failed_attempt() {
    // The origin answers /1, keeps the connection, then drops it on /2 without a word.
    let origin =
        Origin::start(|s| if s.connection == 1 && s.path == "/2" { Action::Close } else { ok("text/html", PAGE) });
    let fetcher = fetcher(open());
    fetch_now(&fetcher, get(&origin.url("/1"))).unwrap();
    let r = fetch_now(&fetcher, get(&origin.url("/2"))).unwrap();
    assert_eq!((r.status, r.attempts), (200, 1));
    assert_eq!(origin.connections(), 2);
}

#[test]
fn per_origin_connections_are_capped() {
    let origin = Origin::start(|_| Action::SendAfter(Duration::from_millis(100), response(200, &[], PAGE)));
    let fetcher = fetcher(FetchConfig { per_origin_connections: 2, ..open() });
    let (tx, rx) = mpsc::channel();
    for i in 0..8 {
        let tx = tx.clone();
        fetcher.fetch(
            get(&origin.url(&format!("/{i}"))),
            Box::new(move |r| {
                let _ = tx.send(r.map(|r| r.status));
            }),
        );
    }
    for _ in 0..8 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(200));
    }
    assert_eq!(origin.peak(), 2, "never more than 2 connections at once");
    assert_eq!(origin.connections(), 2);
}

#[test]
fn per_origin_rate_is_limited() {
    let origin = Origin::start(|_| ok("text/html", PAGE));
    let fetcher = fetcher(FetchConfig { per_origin_rate: 5.0, ..open() });
    let (tx, rx) = mpsc::channel();
    for i in 0..10 {
        let tx = tx.clone();
        fetcher.fetch(
            get(&origin.url(&format!("/{i}"))),
            Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            }),
        );
    }
    for _ in 0..10 {
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    let seen = origin.seen();
    let span = seen[9].at - seen[0].at;
    // A burst of 5, then 5 more at 5/s: about a second.
    assert!(span >= Duration::from_millis(800), "10 requests at 5/s took only {span:?}");
    let first_second = seen.iter().filter(|s| s.at - seen[0].at < Duration::from_millis(500)).count();
    assert!(first_second <= 7, "{first_second} requests in the first half second");
}

#[test]
fn a_429_with_retry_after_backs_off_and_the_retry_succeeds() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let origin = Origin::start(move |_| match h.fetch_add(1, Ordering::SeqCst) {
        0 => Action::Send(response(429, &[("Retry-After", "1")], b"slow down")),
        _ => ok("text/html", PAGE),
    });
    let fetcher = fetcher(open());
    let r = fetch_now(&fetcher, get(&origin.url("/"))).unwrap();
    assert_eq!((r.status, r.attempts), (200, 2));
    let seen = origin.seen();
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(1), "Retry-After honoured: {:?}", seen[1].at - seen[0].at);
}

#[test]
fn permanent_failures_are_not_retried_and_transient_ones_are_within_limits() {
    let origin = Origin::start(|s| match s.path.as_str() {
        "/404" => Action::Send(response(404, &[("Content-Type", "text/html")], b"<title>Not here</title>")),
        _ => Action::Send(response(503, &[], b"down")),
    });
    let fetcher = fetcher(FetchConfig { retries: 2, ..open() });
    // A 404 page is fetched and reported, not retried.
    let r = fetch_now(&fetcher, get(&origin.url("/404"))).unwrap();
    assert_eq!((r.status, r.attempts), (404, 1));
    // 503 is retried twice, then the last answer stands.
    let r = fetch_now(&fetcher, get(&origin.url("/503"))).unwrap();
    assert_eq!((r.status, r.attempts), (503, 3));
    assert_eq!(origin.seen().iter().filter(|s| s.path == "/503").count(), 3);
}

#[test]
fn redirects_are_followed_and_loops_refused() {
    let origin = Origin::start(|s| match s.path.as_str() {
        "/r1" => Action::Send(response(301, &[("Location", "/r2")], b"")),
        "/r2" => Action::Send(response(302, &[("Location", "/final")], b"")),
        "/loop-a" => Action::Send(response(302, &[("Location", "/loop-b")], b"")),
        "/loop-b" => Action::Send(response(302, &[("Location", "/loop-a")], b"")),
        _ => ok("text/html", PAGE),
    });
    let server = serve(open());
    let (status, a) = analyze(&server, json!({"url": origin.url("/r1")}));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["fetch"]["redirects"], 2);
    assert_eq!(a["fetch"]["redirect_chain"][0], json!({"url": origin.url("/r1"), "status": 301}));
    assert_eq!(a["fetch"]["redirect_chain"][1], json!({"url": origin.url("/r2"), "status": 302}));
    assert_eq!(a["fetch"]["final_url"], origin.url("/final"));
    assert_eq!(a["url"], origin.url("/final"));
    // The chain is a finding, with what to do.
    let finding = a["checks"].as_array().unwrap().iter().find(|c| c["id"] == "redirects").unwrap();
    assert_eq!(finding["passed"], false);
    assert!(finding["message"].as_str().unwrap().starts_with("reached through 2 redirects"), "{finding}");
    assert!(a["recommendations"].to_string().contains("Link to the final address"), "{a}");
    let (_, direct) = analyze(&server, json!({"url": origin.url("/final")}));
    let finding = direct["checks"].as_array().unwrap().iter().find(|c| c["id"] == "redirects").unwrap();
    assert_eq!(finding["passed"], true, "{finding}");
    let (status, p) = analyze(&server, json!({"url": origin.url("/loop-a")}));
    assert_eq!((status, p["code"].as_str()), (502, Some("too-many-redirects")), "{p}");
}

#[test]
fn the_guard_is_rechecked_on_every_hop() {
    let origin = Origin::start(|s| match s.path.as_str() {
        "/to-v6-loopback" => Action::Send(response(302, &[("Location", "http://[::1]/")], b"")),
        "/to-other-loopback" => Action::Send(response(302, &[("Location", "http://127.0.0.2/")], b"")),
        "/to-file" => Action::Send(response(302, &[("Location", "file:///etc/passwd")], b"")),
        _ => ok("text/html", PAGE),
    });
    // Exactly this origin's address is opened, nothing else.
    let guard = Guard { allow: vec!["127.0.0.1/32".parse().unwrap()], ports: None, ..Guard::default() };
    let server = serve(FetchConfig { guard, ..open() });
    let (status, _) = analyze(&server, json!({"url": origin.url("/")}));
    assert_eq!(status, 200);
    for (path, code) in [
        ("/to-v6-loopback", "blocked-address"),
        ("/to-other-loopback", "blocked-address"),
        ("/to-file", "blocked-scheme"),
    ] {
        let (status, p) = analyze(&server, json!({"url": origin.url(path)}));
        assert_eq!((status, p["code"].as_str()), (403, Some(code)), "{path}: {p}");
    }
}

#[test]
fn the_guard_is_closed_by_default_for_async_tasks_too() {
    let origin = Origin::start(|_| ok("text/html", PAGE));
    let server = serve(FetchConfig::default());
    let addr = server.local_addr();
    // A name that resolves to loopback passes the URL check, then fails on its address.
    let id = submit(addr, json!({"url": "http://localhost:8080/"}));
    let done = wait_for(addr, &id, &["error", "completed"]);
    assert_eq!(done["status"], "error");
    assert_eq!(done["error"]["code"], "blocked-address", "{done}");
    // Reached by its address (127.0.0.1 in the URL): refused at submission.
    let resp = call(addr, &post("/analyze/async", &json!({"url": origin.url("/")}), ""));
    assert_eq!((resp.status, resp.problem_code().as_str()), (403, "blocked-address"));
    assert_eq!(origin.connections(), 0, "nothing reached the origin");
}

#[test]
fn bad_upstreams_end_in_clear_errors_within_their_deadlines() {
    let origin = Origin::start(|s| match s.path.as_str() {
        "/hang" => Action::Hang,
        "/trickle" => Action::Trickle(response(200, &[], &[b'x'; 200]), Duration::from_millis(50)),
        "/huge" => Action::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n".to_vec()),
        "/endless" => Action::Endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n".to_vec()),
        "/image" => ok("image/png", b"\x89PNG"),
        "/garbage" => Action::Send(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()),
        "/cut" => Action::Trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec(), Duration::ZERO),
        _ => Action::Close,
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed again at once
    let fetch = FetchConfig {
        retries: 0,
        first_byte_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(1),
        max_response_bytes: 1024 * 1024,
        ..open()
    };
    let server = serve(fetch);
    let cases = [
        (origin.url("/hang"), 504, "first-byte-timeout"),
        (origin.url("/trickle"), 504, "fetch-timeout"),
        (origin.url("/huge"), 502, "response-too-large"),
        (origin.url("/endless"), 502, "response-too-large"),
        (origin.url("/image"), 422, "not-html"),
        (origin.url("/garbage"), 502, "malformed-response"),
        (origin.url("/cut"), 502, "malformed-response"),
        (origin.url("/close"), 502, "connection-closed"),
        (format!("http://{dead}/"), 502, "connect-refused"),
        ("http://no-such-host.invalid/".to_string(), 502, "dns-failed"),
    ];
    for (url, want_status, want_code) in cases {
        let started = Instant::now();
        let (status, p) = analyze(&server, json!({"url": url}));
        assert_eq!((status, p["code"].as_str()), (want_status, Some(want_code)), "{url}: {p}");
        assert!(started.elapsed() < Duration::from_secs(3), "{url} took {:?}", started.elapsed());
    }
    // The service is still fine.
    let (status, _) = analyze(&server, json!({"html": "<title>still here</title>"}));
    assert_eq!(status, 200);
}

#[test]
fn https_with_a_trusted_ca_works_and_bad_certificates_fail() {
    let tls = Tls::new(&["localhost"]);
    let origin = Origin::start_tls(Some(&tls), |_| ok("text/html", PAGE));
    let port = origin.addr.port();
    let trusted = FetchConfig { extra_roots: vec![tls.ca.clone()], ..open() };
    let server = serve(trusted.clone());
    let (status, a) = analyze(&server, json!({"url": format!("https://localhost:{port}/")}));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["title"], "Fetched page");
    assert!(a["fetch"]["timings"]["tls_ms"].as_f64().unwrap() > 0.0, "{}", a["fetch"]);
    // Reused over TLS too.
    let (status, _) = analyze(&server, json!({"url": format!("https://localhost:{port}/again")}));
    assert_eq!(status, 200);
    assert_eq!(origin.connections(), 1);

    // The certificate names another host.
    let wrong = Tls::new(&["other.test"]);
    let wrong_origin = Origin::start_tls(Some(&wrong), |_| ok("text/html", PAGE));
    let server = serve(FetchConfig { extra_roots: vec![wrong.ca.clone()], ..open() });
    let (status, p) = analyze(&server, json!({"url": format!("https://localhost:{}/", wrong_origin.addr.port())}));
    assert_eq!((status, p["code"].as_str()), (502, Some("tls-failed")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("certificate"), "{p}");

    // A CA nobody trusts.
    let server = serve(open());
    let (status, p) = analyze(&server, json!({"url": format!("https://localhost:{port}/")}));
    assert_eq!((status, p["code"].as_str()), (502, Some("tls-failed")), "{p}");
}

#[test]
fn callbacks_are_signed_and_retried_until_taken() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let receiver = Origin::start(move |s| {
        if s.path != "/hook" {
            return ok("text/html", PAGE);
        }
        match h.fetch_add(1, Ordering::SeqCst) {
            0 => Action::Send(response(500, &[], b"oops")),
            1 => Action::Close,
            _ => Action::Send(response(204, &[], b"")),
        }
    });
    let api = ApiConfig { callback_secret: Some(b"s3cret".as_slice().into()), ..api_config() };
    let server = serve_with(open(), api);
    let addr = server.local_addr();
    let id = submit(addr, json!({"url": receiver.url("/page"), "callback_url": receiver.url("/hook")}));
    wait_for(addr, &id, &["completed"]);
    let started = Instant::now();
    let hooks = loop {
        let hooks: Vec<_> = receiver.seen().into_iter().filter(|s| s.path == "/hook").collect();
        if hooks.len() >= 3 || started.elapsed() > Duration::from_secs(15) {
            break hooks;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(hooks.len(), 3, "a 500 and a dropped connection, then taken");
    for hook in &hooks {
        assert_eq!(hook.method, "POST");
        assert_eq!(hook.header("content-type"), Some("application/json"));
        assert_eq!(hook.header("x-pagelens-signature"), Some(signature(b"s3cret", &hook.body).as_str()));
        let status: Value = serde_json::from_slice(&hook.body).unwrap();
        assert_eq!((status["task_id"].as_str(), status["status"].as_str()), (Some(id.as_str()), Some("completed")));
        assert_eq!(status["result"]["title"], "Fetched page");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.seen().iter().filter(|s| s.path == "/hook").count(), 3, "no more once taken");
}

#[test]
fn a_batch_of_urls_runs_through_the_fetcher() {
    let origin = Origin::start(|s| match s.path.as_str() {
        "/missing" => Action::Send(response(302, &[("Location", "gopher://x/")], b"")),
        _ => ok("text/html", PAGE),
    });
    let server = serve(open());
    let addr = server.local_addr();
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"url": origin.url(&format!("/p{i}"))}))
        .chain([json!({"url": origin.url("/missing")})])
        .collect();
    let resp = call(addr, &post("/bulk/analyze/async", &json!({"items": items}), ""));
    assert_eq!(resp.status, 202, "{}", resp.text());
    let id = json_of(&resp)["task_id"].as_str().unwrap().to_string();
    let done = wait_for(addr, &id, &["completed", "error"]);
    assert_eq!(done["result"], json!({"total": 7, "completed": 6, "failed": 1}), "{done}");
    assert!(origin.connections() <= 6, "per-origin cap holds for batches");
}

#[test]
fn cancelling_a_task_closes_its_upstream_connection() {
    let origin = Origin::start(|_| Action::Hang);
    let server = serve(FetchConfig {
        first_byte_timeout: Duration::from_secs(30),
        total_timeout: Duration::from_secs(60),
        ..open()
    });
    let addr = server.local_addr();
    let id = submit(addr, json!({"url": origin.url("/hang")}));
    let started = Instant::now();
    while origin.open() == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the fetch never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let resp = call(addr, format!("DELETE /tasks/{id} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let cancelled = Instant::now();
    while origin.open() > 0 {
        assert!(cancelled.elapsed() < Duration::from_secs(2), "the upstream connection outlived the task");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_retry_shows_in_the_task_status() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let origin = Origin::start(move |_| match h.fetch_add(1, Ordering::SeqCst) {
        0 => Action::Send(response(503, &[("Retry-After", "1")], b"busy")),
        _ => ok("text/html", PAGE),
    });
    let server = serve(open());
    let addr = server.local_addr();
    let id = submit(addr, json!({"url": origin.url("/")}));
    let started = Instant::now();
    loop {
        let s = crate::util::status(addr, &id);
        if s["progress"]["stage"] == "fetching (attempt 2)" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no attempt 2 in {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = wait_for(addr, &id, &["completed", "error"]);
    assert_eq!((done["status"].as_str(), done["result"]["fetch"]["attempts"].as_u64()), (Some("completed"), Some(2)));
}

#[test]
fn robots_txt_is_fetched_once_per_origin_and_judged() {
    let origin = Origin::start(|s| match s.path.as_str() {
        "/robots.txt" => {
            ok("text/plain", b"User-agent: *\nDisallow: /private/\nSitemap: http://example.com/sitemap.xml\n")
        }
        _ => ok("text/html", PAGE),
    });
    let server = serve(open());
    let (status, open_page) = analyze(&server, json!({"url": origin.url("/public/page")}));
    assert_eq!(status, 200, "{open_page}");
    let r = &open_page["robots_txt"];
    assert_eq!((r["status"].as_str(), r["allowed"].as_bool()), (Some("found"), Some(true)), "{r}");
    assert_eq!(r["sitemaps"][0], "http://example.com/sitemap.xml");
    let check = |a: &Value| a["checks"].as_array().unwrap().iter().find(|c| c["id"] == "robots-txt").cloned().unwrap();
    assert_eq!(check(&open_page)["passed"], true);
    let (_, blocked) = analyze(&server, json!({"url": origin.url("/private/page")}));
    assert_eq!(blocked["robots_txt"]["allowed"], false);
    assert_eq!(blocked["robots_txt"]["matched"]["pattern"], "/private/");
    assert_eq!(check(&blocked)["passed"], false);
    assert!(check(&blocked)["message"].as_str().unwrap().contains("blocks this page"), "{}", check(&blocked));
    assert_eq!(origin.seen().iter().filter(|s| s.path == "/robots.txt").count(), 1, "cached per origin");

    // No robots.txt (404): everything may be crawled.
    let bare = Origin::start(|s| match s.path.as_str() {
        "/robots.txt" => Action::Send(response(404, &[], b"")),
        _ => ok("text/html", PAGE),
    });
    let (_, a) = analyze(&server, json!({"url": bare.url("/")}));
    assert_eq!(
        (a["robots_txt"]["status"].as_str(), check(&a)["passed"].as_bool()),
        (Some("missing"), Some(true)),
        "{a}"
    );
    // A robots.txt that answers 503: crawlers treat the site as disallowed.
    let down = Origin::start(|s| match s.path.as_str() {
        "/robots.txt" => Action::Send(response(503, &[], b"")),
        _ => ok("text/html", PAGE),
    });
    let fast = serve(FetchConfig { retries: 0, ..open() });
    let (_, a) = analyze(&fast, json!({"url": down.url("/")}));
    assert_eq!(
        (a["robots_txt"]["status"].as_str(), check(&a)["passed"].as_bool()),
        (Some("unreachable"), Some(false)),
        "{a}"
    );
}

#[test]
fn idle_connections_expire() {
    let origin = Origin::start(|_| ok("text/html", PAGE));
    let fetcher = fetcher(FetchConfig { idle_timeout: Duration::from_millis(200), ..open() });
    fetch_now(&fetcher, get(&origin.url("/1"))).unwrap();
    fetch_now(&fetcher, get(&origin.url("/2"))).unwrap();
    assert_eq!(origin.connections(), 1, "reused while fresh");
    let started = Instant::now();
    while origin.open() > 0 {
        assert!(started.elapsed() < Duration::from_secs(3), "the idle connection was never closed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() >= Duration::from_millis(100), "closed only once idle for its timeout");
    let r = fetch_now(&fetcher, get(&origin.url("/3"))).unwrap();
    assert_eq!((r.status, r.reused_connection), (200, false));
    assert_eq!(origin.connections(), 2);
}

#[test]
fn a_connect_that_never_completes_times_out() {
    // A listener that never accepts, its queue already full: further SYNs go unanswered.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(&addr.into());
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let fetcher = fetcher(FetchConfig { connect_timeout: Duration::from_millis(300), retries: 0, ..open() });
    let started = Instant::now();
    let e = fetch_now(&fetcher, get(&format!("http://{addr}/"))).unwrap_err();
    assert_eq!((e.status, e.code), (504, "connect-timeout"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    drop(fillers);
}

#[test]
fn an_absurd_retry_after_is_capped_not_obeyed_past_the_deadline() {
    let origin = Origin::start(|s| match s.path.as_str() {
        "/busy" => Action::Send(response(503, &[("Retry-After", "18446744073709551615")], b"")),
        _ => ok("text/html", PAGE),
    });
    let fetcher = fetcher(open());
    let started = Instant::now();
    let r = fetch_now(&fetcher, get(&origin.url("/busy"))).unwrap();
    // A wait past the deadline is not taken: the answer stands at once.
    assert_eq!((r.status, r.attempts), (503, 1));
    assert!(started.elapsed() < Duration::from_secs(2));
    // That origin is paused (capped at 5 minutes); others are not.
    let other = Origin::start(|_| ok("text/html", PAGE));
    assert_eq!(fetch_now(&fetcher, get(&other.url("/"))).unwrap().status, 200, "the fetcher still works");
}
