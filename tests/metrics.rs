//! Metrics through real sockets: counts that match a known request mix,
//! quantiles of known delays, and `promtool check metrics` on a scrape.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{config, connect, get, in_chromium, request, start_with_metrics, Reader};

/// The samples of a scrape: `name{labels}` to value.
fn scrape(addr: std::net::SocketAddr) -> (String, HashMap<String, f64>) {
    let resp = request(addr, &get("/metrics"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = resp.text();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN))))
        .collect();
    (text, samples)
}

/// Scrapes until `ready` holds (figures are merged once a second).
fn scrape_until(
    addr: std::net::SocketAddr,
    ready: impl Fn(&HashMap<String, f64>) -> bool,
) -> (String, HashMap<String, f64>) {
    let started = Instant::now();
    loop {
        let (text, samples) = scrape(addr);
        if ready(&samples) {
            return (text, samples);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "metrics never caught up:\n{text}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn counts_match_a_known_request_mix() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    let mut client = Reader::new(connect(addr));
    for _ in 0..7 {
        client.send(&get("/livez"));
        assert_eq!(client.response(false).status, 200);
    }
    for _ in 0..3 {
        client.send(&get("/no/such/page"));
        assert_eq!(client.response(false).status, 404);
    }
    for _ in 0..2 {
        client.send(b"POST /livez HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(client.response(false).status, 405);
    }
    client.send(&get("/health"));
    assert_eq!(client.response(false).status, 200);
    // A request the codec rejects: counted by its problem code.
    let mut bad = Reader::new(connect(addr));
    bad.send(b"GET /livez HTTP/1.1\r\n\r\n");
    assert_eq!(bad.response(false).status, 400);

    let series = |route: &str, method: &str, class: &str| {
        format!(
            r#"pagelens_http_request_duration_seconds_count{{route="{route}",method="{method}",status_class="{class}"}}"#
        )
    };
    let expected = [
        (series("/livez", "GET", "2xx"), 7.0),
        (series("unmatched", "GET", "4xx"), 3.0),
        // A 405 is the route's whose path matched, not "unmatched".
        (series("/livez", "POST", "4xx"), 2.0),
        (series("/health", "GET", "2xx"), 1.0),
        (series("-", "OTHER", "4xx"), 1.0),
        (r#"pagelens_http_protocol_errors_total{code="bad-host"}"#.to_string(), 1.0),
    ];
    // Each reactor flushes once a second: wait until every figure is in.
    let (_, samples) = scrape_until(addr, |s| expected.iter().all(|(k, v)| s.get(k) == Some(v)));
    let count =
        |route: &str, method: &str, class: &str| samples.get(&series(route, method, class)).copied().unwrap_or(0.0);
    assert_eq!(count("/livez", "GET", "2xx"), 7.0);
    assert_eq!(count("unmatched", "GET", "4xx"), 3.0);
    assert_eq!(count("/livez", "POST", "4xx"), 2.0);
    assert_eq!(count("unmatched", "POST", "4xx"), 0.0);
    assert_eq!(count("/health", "GET", "2xx"), 1.0);
    assert_eq!(count("-", "OTHER", "4xx"), 1.0);
    assert_eq!(samples[r#"pagelens_http_protocol_errors_total{code="bad-host"}"#], 1.0);
    // 13 requests of this test plus the scrapes: at least 13 heads in, 13 responses out.
    assert!(samples["pagelens_http_received_bytes_total"] >= 13.0 * 30.0);
    assert!(samples["pagelens_http_sent_bytes_total"] >= 13.0 * 100.0);
    let inf =
        r#"pagelens_http_request_duration_seconds_bucket{route="/livez",method="GET",status_class="2xx",le="+Inf"}"#;
    assert_eq!(samples[inf], 7.0);
    assert!(samples["pagelens_http_connections_accepted_total"] >= 2.0);
    assert!(samples["pagelens_http_connections_open"] >= 1.0);
    assert_eq!(samples["pagelens_pool_workers"], 2.0);
    assert!(samples["process_resident_memory_bytes"] > 1e6);
    assert!(samples["process_open_fds"] > 3.0);
    assert!(samples["process_max_fds"] >= samples["process_open_fds"]);
    assert!(samples["process_cpu_seconds_total"] > 0.0);
    // Started within the last hour (this test's server), by the wall clock.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let start = samples["process_start_time_seconds"];
    assert!(start <= now + 1.0 && start > now - 3600.0, "start {start}, now {now}");
    assert_eq!(samples[&format!("pagelens_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))], 1.0);
}

#[test]
fn buckets_reflect_known_delays() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    // 18 requests of 50 ms and 2 of 400 ms, all at once.
    let clients: Vec<_> = (0..20)
        .map(|i| {
            thread::spawn(move || {
                let ms = if i < 18 { 50 } else { 400 };
                assert_eq!(request(addr, &get(&format!("/delay/{ms}"))).status, 200);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // The buckets are cumulative over all time, so they are exact whenever
    // the scrape happens: none under 50 ms (a 50 ms sleep takes at least
    // that), 18 under 100 ms, all 20 under 500 ms. Quantiles describe the
    // last one-second interval only, so which requests they cover depends on
    // timing; their precision is tested on the aggregate (src/metrics/mod.rs).
    let bucket = |le: &str| {
        format!(
            r#"pagelens_http_request_duration_seconds_bucket{{route="unmatched",method="GET",status_class="2xx",le="{le}"}}"#
        )
    };
    let (text, samples) = scrape_until(addr, |s| s.get(&bucket("+Inf")) == Some(&20.0));
    let series: Vec<&str> = text.lines().filter(|l| l.contains("route=\"unmatched\"")).collect();
    // See: a completion drained with a clock reading from before it was
    // posted once recorded 49.99 ms for a 50 ms sleep (fixed in Mailbox::drain).
    assert_eq!(samples[&bucket("0.05")], 0.0, "{series:#?}");
    assert_eq!(samples[&bucket("0.1")], 18.0);
    assert_eq!(samples[&bucket("0.25")], 18.0);
    assert_eq!(samples[&bucket("0.5")], 20.0);
    let sum =
        samples[r#"pagelens_http_request_duration_seconds_sum{route="unmatched",method="GET",status_class="2xx"}"#];
    assert!((1.7..2.0).contains(&sum), "sum {sum}");
}

#[test]
fn a_scrape_passes_promtool() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    for path in ["/livez", "/health", "/nope"] {
        request(addr, &get(path));
    }
    let (text, _) = scrape_until(addr, |s| s.keys().any(|k| k.contains("route=\"/livez\"")));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (.ci/install-test-tools installs Debian's prometheus package)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openmetrics_when_the_scraper_asks_for_it() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    scrape_until(addr, |s| s.contains_key("pagelens_http_connections_accepted_total"));
    let raw = b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n\r\n";
    let resp = request(addr, raw);
    assert_eq!(resp.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let text = resp.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Counter families drop `_total`; their samples keep it.
    assert!(text.contains("# TYPE pagelens_http_connections_accepted counter\n"), "{text}");
    assert!(text.contains("\npagelens_http_connections_accepted_total "), "{text}");
    assert!(!text.contains("# TYPE pagelens_http_connections_accepted_total"), "{text}");
}

#[test]
fn the_runtime_snapshot_is_json() {
    let server = start_with_metrics(config());
    let resp = request(server.local_addr(), &get("/non-blocking/metrics"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(doc["connections"]["open"].as_u64().unwrap() >= 1);
    assert_eq!(doc["connections"]["max"], 10_000);
    assert_eq!(doc["work"]["pool"]["workers"], 2);
    assert_eq!(doc["work"]["queue"]["capacity_left"], 1000);
    assert_eq!(doc["system"]["reactors"], 2);
    assert!(doc["system"]["cores"].as_u64().unwrap() >= 1);
}

#[test]
fn task_waits_and_stage_durations_are_recorded() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    let body = r#"{"html": "<title>timed</title>"}"#;
    let raw = format!(
        "POST /analyze HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..4 {
        assert_eq!(request(addr, raw.as_bytes()).status, 200);
    }
    let want = [
        r#"pagelens_task_wait_seconds_count"#,
        r#"pagelens_job_duration_seconds_count{stage="started"}"#,
        r#"pagelens_job_duration_seconds_count{stage="parsing"}"#,
        r#"pagelens_job_duration_seconds_count{stage="encoding"}"#,
        r#"pagelens_task_duration_seconds_count"#,
        r#"pagelens_tasks_finished_total{state="completed",priority="normal"}"#,
    ];
    let (text, samples) = scrape_until(addr, |s| want.iter().all(|k| s.get(*k) == Some(&4.0)));
    let parsing_sum = samples[r#"pagelens_job_duration_seconds_sum{stage="parsing"}"#];
    assert!(parsing_sum > 0.0 && parsing_sum < 1.0, "{text}");
    assert!(text.contains("# TYPE pagelens_job_duration_seconds histogram\n"));
    assert!(samples["pagelens_task_duration_seconds_sum"] > 0.0);
    assert_eq!(samples[r#"pagelens_tasks_finished_total{state="error",priority="normal"}"#], 0.0);
}

#[test]
fn fetches_are_counted_and_timed() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    // The guard refuses loopback after resolving: a fetch that ends in an error.
    let body = r#"{"url": "http://localhost:8080/"}"#;
    let raw = format!(
        "POST /analyze HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(request(addr, raw.as_bytes()).status, 403);
    let want = [
        "pagelens_fetch_requests_total",
        "pagelens_fetch_failures_total",
        r#"pagelens_fetch_duration_seconds_count{outcome="error"}"#,
    ];
    let (text, samples) = scrape_until(addr, |s| want.iter().all(|k| s.get(*k) == Some(&1.0)));
    assert_eq!(samples["pagelens_fetch_connections_opened_total"], 0.0, "{text}");
    assert_eq!(samples[r#"pagelens_fetch_errors_total{code="blocked-address"}"#], 1.0, "{text}");
}

/// Reads the live stream on `client` until it has `n` events; returns their JSON.
fn events(client: &mut std::net::TcpStream, n: usize) -> Vec<serde_json::Value> {
    use std::io::Read;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        // Snapshots are objects; the opening `history` event's data is an array.
        let found: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|json| serde_json::from_str::<serde_json::Value>(json).expect("each event is one JSON document"))
            .filter(serde_json::Value::is_object)
            .collect();
        if found.len() >= n {
            return found;
        }
        let got = client.read(&mut chunk).expect("the stream stays open");
        assert!(got > 0, "the server ended the stream: {text}");
        raw.extend_from_slice(&chunk[..got]);
    }
}

#[test]
fn the_live_stream_sends_a_snapshot_a_second_and_drops_watchers_that_leave() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    let mut watchers: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut c = connect(addr);
            c.write_all(&get("/performance/real-time")).unwrap();
            c
        })
        .collect();
    for _ in 0..5 {
        request(addr, &get("/livez"));
    }
    // The last of three: the first may be the latest one replayed to a new watcher.
    let first = events(&mut watchers[0], 3);
    let head_seen = first.iter().all(|e| e["latency_seconds"]["p99"].is_number());
    assert!(head_seen, "{first:?}");
    assert_eq!(first[2]["watchers"], 3);
    assert!(first[2]["queue"]["workers"].as_u64() == Some(2), "{first:?}");
    assert!(first[2]["connections"]["open"].as_u64().unwrap() >= 3);
    // Two watchers leave; within a couple of seconds only one is counted.
    drop(watchers.pop());
    drop(watchers.pop());
    let started = Instant::now();
    loop {
        let latest = events(&mut watchers[0], 1).pop().unwrap();
        if latest["watchers"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "gone watchers were never dropped: {latest}");
    }
}

/// A new watcher is first sent the seconds the server already holds (in
/// brief, one `history` event) and the latest snapshot, so that a page
/// opened now is not empty for two minutes.
#[test]
fn a_new_watcher_gets_the_recent_history_first() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    let mut early = connect(addr);
    early.write_all(&get("/performance/real-time")).unwrap();
    for _ in 0..20 {
        request(addr, &get("/livez"));
    }
    // Three seconds have been recorded once an early watcher saw three snapshots.
    let seen = events(&mut early, 3);
    let mut late = connect(addr);
    late.write_all(&get("/performance/real-time")).unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16384];
    let history: serde_json::Value = loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some(at) = text.find("event: history\ndata: ") {
            if let Some(line) = text[at..].lines().nth(1) {
                if text[at..].contains("\n\n") {
                    break serde_json::from_str(line.strip_prefix("data: ").unwrap()).unwrap();
                }
            }
        }
        let got = std::io::Read::read(&mut late, &mut chunk).unwrap();
        assert!(got > 0, "{text}");
        raw.extend_from_slice(&chunk[..got]);
    };
    let points = history.as_array().unwrap();
    assert!(points.len() >= 3, "{history}");
    assert!(points.windows(2).all(|w| w[0]["t"].as_i64() < w[1]["t"].as_i64()), "in time order: {history}");
    assert!(points.iter().all(|p| p["rps"].is_number() && p["p99_ms"].is_number() && p["waiting"].is_number()));
    assert!(points.iter().any(|p| p["rps"].as_f64().unwrap() > 0.0), "the requests show: {history}");
    let (last, seen_last) = (points.last().unwrap()["t"].as_i64(), seen.last().unwrap()["time"].as_i64());
    assert!(last >= seen_last, "the history reaches the latest snapshot: {last:?} {seen_last:?}");
    // And the latest whole snapshot follows at once.
    assert!(!events(&mut late, 1).is_empty());
}

/// The dashboard has the recent history in it when served, so a plain
/// `chromium --headless --screenshot` (which takes the page at its load,
/// before any live event) shows figures and charts, not dashes.
#[test]
fn a_headless_screenshot_of_the_dashboard_shows_figures_at_once() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    let mut watcher = connect(addr);
    watcher.write_all(&get("/performance/real-time")).unwrap();
    for _ in 0..30 {
        request(addr, &get("/livez"));
    }
    let task = crate::util::submit(addr, serde_json::json!({"html": "<title>listed</title>"}));
    events(&mut watcher, 3);
    let dir = crate::util::TempDir::new("dashboard-shot");
    let chromium = |extra: &[&str]| {
        let profile = dir.path().join(format!("profile-{}", extra.len()));
        let out = Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1280,900"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("http://{addr}/dashboard"))
            .output()
            .expect("chromium runs (.ci/install-test-tools installs it)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = chromium(&["--dump-dom"]);
    let card = |id: &str| {
        let at = dom.find(&format!("id=\"{id}\">")).unwrap_or_else(|| panic!("no #{id} in {dom}"));
        let text = &dom[at + id.len() + 6..];
        text[..text.find('<').unwrap()].to_string()
    };
    for id in ["rps", "latency", "errors", "connections", "queue", "workers"] {
        let text = card(id);
        assert!(text.chars().any(|c| c.is_ascii_digit()) && !text.contains('–'), "#{id} shows {text:?}");
    }
    let points: usize = dom.split("data-points=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().parse().unwrap();
    assert!(points >= 3, "the charts start with the history: {points} points");
    assert!(dom.contains(&format!("data-id=\"{task}\"")), "the task list shows the newest tasks: {dom}");
    let shot = dir.path().join("dashboard.png");
    chromium(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} bytes", png.len());
}

/// Four clients requesting `/delay/300` (over the test alert's 100 ms p99)
/// until dropped.
struct SlowLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl SlowLoad {
    fn start(addr: std::net::SocketAddr) -> SlowLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..4)
            .map(|_| {
                let stop = std::sync::Arc::clone(&stop);
                thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        request(addr, &get("/delay/300"));
                    }
                })
            })
            .collect();
        SlowLoad { stop, threads }
    }
}

impl Drop for SlowLoad {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn alert(addr: std::net::SocketAddr, name: &str) -> serde_json::Value {
    let resp = request(addr, &get("/alerts"));
    assert_eq!(resp.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    doc["alerts"].as_array().unwrap().iter().find(|a| a["name"] == name).cloned().expect("rule listed")
}

#[test]
fn an_alert_fires_on_a_latency_spike_and_resolves() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    assert_eq!(alert(addr, "high_latency")["state"], "inactive");
    let load = SlowLoad::start(addr);
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let rule = alert(addr, "high_latency");
        seen.insert(rule["state"].as_str().unwrap().to_string());
        if rule["state"] == "firing" {
            assert!(rule["value"].as_f64().unwrap() > 0.1, "{rule}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never fired: {rule}");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(seen.contains("pending"), "went through pending first: {seen:?}");
    let (_, samples) = scrape_until(addr, |s| s.get(r#"pagelens_alerts_firing{alert="high_latency"}"#) == Some(&1.0));
    assert_eq!(samples[r#"pagelens_alerts_firing{alert="error_rate"}"#], 0.0);
    drop(load);
    let started = Instant::now();
    loop {
        let rule = alert(addr, "high_latency");
        if rule["state"] == "resolved" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never resolved: {rule}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn with_keys_the_dashboard_asks_for_one_and_sends_it() {
    let dir = crate::util::TempDir::new("dashboard-keys");
    let file = dir.path().join("keys.toml");
    let ops = crate::keys::add_key(&file, "ops", "submit,read,metrics", &[]);
    let (mut server, addr) =
        crate::binary::spawn_binary(&["--listen", "127.0.0.1:0", "--api-keys", file.to_str().unwrap()], &[]);
    // The page itself is open, and holds no figures or tasks.
    let page = request(addr, &get("/dashboard"));
    assert_eq!(page.status, 200);
    assert!(page.text().contains("const SEED = null;"), "no seed with keys on");
    assert_eq!(request(addr, &get("/performance/real-time")).status, 401, "its data is not open");
    let task = crate::keys::ask(
        addr,
        "POST",
        "/analyze/async",
        Some(&ops),
        Some(serde_json::json!({"html": "<title>t</title>"})),
    );
    let task = crate::util::json_of(&task)["task_id"].as_str().unwrap().to_string();

    // Without a key: the form asks for one.
    let asked = in_chromium(
        &format!("http://{addr}/dashboard"),
        "!document.getElementById('key-form').hidden",
        "({status: document.getElementById('status').textContent})",
        None,
    );
    assert_ne!(asked["status"], "live", "{asked}");
    // With the key in the fragment: live figures, the key's task, its events.
    // The list fills from a fetch: the row is clicked once it is there.
    let wait = "Number(document.body.dataset.snapshots || 0) >= 2 \
                && (window.clicked || (r => r && (r.click(), window.clicked = true))(document.querySelector('#tasks tbody tr'))) \
                && document.getElementById('task-detail').textContent.includes('completed')";
    let state = "({status: document.getElementById('status').textContent, \
                 address: location.href, \
                 detail: document.getElementById('task-detail').textContent})";
    let s = in_chromium(&format!("http://{addr}/dashboard#key={ops}"), wait, state, None);
    assert_eq!(s["status"], "live", "{s}");
    assert!(s["detail"].as_str().unwrap().contains(&task), "{s}");
    assert!(!s["address"].as_str().unwrap().contains(&ops), "the key leaves the address: {s}");
    crate::binary::stop(&mut server);
}

#[test]
fn the_dashboard_draws_the_live_stream_in_headless_chromium() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    let page = request(addr, &get("/dashboard"));
    assert_eq!((page.status, page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    // Slow requests (300 ms, over the test alert's 100 ms p99) until the page shows the alert.
    let load = SlowLoad::start(addr);
    let task = crate::util::submit(addr, serde_json::json!({"html": "<title>followed</title>"}));
    // Once the alert shows, a click on the task's row opens its live events.
    let wait = "document.getElementById('alerts').textContent.includes('high_latency') \
                && Number(document.body.dataset.snapshots || 0) >= 3 \
                && (window.clicked || (document.querySelector('#tasks tbody tr')?.click(), window.clicked = true)) \
                && document.getElementById('task-detail').textContent.includes('completed')";
    let state = "({status: document.getElementById('status').textContent, \
                 rps: document.getElementById('rps').textContent, \
                 latency: document.getElementById('latency').textContent, \
                 connections: document.getElementById('connections').textContent, \
                 alerts: document.getElementById('alerts').textContent, \
                 detail: document.getElementById('task-detail').textContent, \
                 drawn: document.getElementById('p99-chart').toDataURL().length, \
                 blank: Object.assign(document.createElement('canvas'), {width: 600, height: 170}).toDataURL().length})";
    let shot = std::env::temp_dir().join(format!("pagelens-dashboard-{}.png", std::process::id()));
    let s = in_chromium(&format!("http://{addr}/dashboard"), wait, state, Some(&shot));
    drop(load);
    assert_eq!(s["status"], "live", "{s}");
    assert!(s["rps"].as_str().unwrap().replace(',', "").parse::<f64>().unwrap() > 0.0, "{s}");
    let p99: f64 = s["latency"].as_str().unwrap().split(" / ").nth(1).unwrap().replace(',', "").parse().unwrap();
    assert!(p99 >= 250.0, "the 300 ms requests show in p99: {s}");
    assert!(s["connections"].as_str().unwrap().ends_with("/ 10,000"), "{s}");
    assert!(s["alerts"].as_str().unwrap().contains("high_latency"), "{s}");
    let detail = s["detail"].as_str().unwrap();
    assert!(detail.contains(&task) && detail.contains("completed 100% done"), "the task's live events: {s}");
    assert!(s["drawn"].as_u64().unwrap() > s["blank"].as_u64().unwrap(), "the chart has a line: {s}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a screenshot of the page: {} bytes",
        png.len()
    );
}

#[test]
fn a_watcher_that_stops_reading_is_dropped_not_buffered() {
    let server = start_with_metrics(config());
    let addr = server.local_addr();
    // A client with the smallest receive buffer the kernel allows, that reads one event and stops.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(1).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stalled: std::net::TcpStream = socket.into();
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stalled.write_all(&get("/performance/real-time")).unwrap();
    let mut watcher = connect(addr);
    watcher.write_all(&get("/performance/real-time")).unwrap();
    events(&mut stalled, 1);
    // The healthy watcher sees the stalled one counted, then dropped.
    let started = Instant::now();
    let mut counts = Vec::new();
    loop {
        let latest = events(&mut watcher, 1).pop().unwrap();
        counts.push(latest["watchers"].as_u64().unwrap());
        if counts.contains(&2) && latest["watchers"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "the stalled watcher was kept: {counts:?}");
    }
    // Its connection was closed: what it did not read ends in EOF (or a reset), not more events.
    let mut sink = [0u8; 4096];
    let drained = Instant::now();
    loop {
        match stalled.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(drained.elapsed() < Duration::from_secs(10), "the server kept streaming"),
        }
    }
}

#[test]
fn alert_changes_are_posted_to_the_webhook() {
    let hooks = crate::origin::Origin::start(|_| crate::origin::Action::Send(crate::origin::response(204, &[], b"")));
    let fetch = pagelens::fetch::FetchConfig { guard: pagelens::fetch::Guard::open(), ..Default::default() };
    let server = crate::util::start_with_metrics_and(config(), fetch, Some(hooks.url("/alerts").parse().unwrap()));
    let addr = server.local_addr();
    let load = SlowLoad::start(addr);
    let started = Instant::now();
    let changes = loop {
        let changes: Vec<serde_json::Value> =
            hooks.seen().iter().map(|s| serde_json::from_slice(&s.body).unwrap()).collect();
        if changes.iter().any(|c| c["change"]["state"] == "firing") {
            break changes;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no firing change posted: {changes:?}");
        thread::sleep(Duration::from_millis(100));
    };
    drop(load);
    let latency: Vec<_> = changes.iter().filter(|c| c["change"]["name"] == "high_latency").collect();
    assert_eq!(latency[0]["event"], "alert");
    assert_eq!(
        (latency[0]["change"]["previous"].as_str(), latency[0]["change"]["state"].as_str()),
        (Some("inactive"), Some("pending"))
    );
    let firing = latency.iter().find(|c| c["change"]["state"] == "firing").unwrap();
    assert_eq!(firing["change"]["previous"], "pending");
    assert!(firing["change"]["value"].as_f64().unwrap() > 0.1, "{firing}");
    assert!(hooks.seen().iter().all(|s| s.method == "POST" && s.header("content-type") == Some("application/json")));
}

#[test]
fn a_bad_alerts_file_stops_serve_with_a_clear_message() {
    let dir = crate::util::TempDir::new("alerts");
    let file = dir.path().join("alerts.toml");
    std::fs::write(&file, "[rules.no_such_rule]\nthreshold = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(["serve", "--store", "memory", "--listen", "127.0.0.1:0", "--alerts-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("alerts.toml") && err.contains("no rule named \"no_such_rule\""), "{err}");
}

/// The README's example alerts file works as it says.
#[test]
fn the_readme_alerts_file_example_is_true() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = &readme[readme.find("### Alerts file").expect("the section")..];
    let example = section.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a toml block");
    let dir = crate::util::TempDir::new("readme-alerts");
    let file = dir.path().join("alerts.toml");
    std::fs::write(&file, example).unwrap();
    let (mut child, addr) =
        crate::binary::spawn_binary(&["--listen", "127.0.0.1:0", "--alerts-file", file.to_str().unwrap()], &[]);
    let alerts: serde_json::Value = serde_json::from_slice(&request(addr, &get("/alerts")).body).unwrap();
    let rule = |name: &str| alerts["alerts"].as_array().unwrap().iter().find(|a| a["name"] == name).cloned();
    let latency = rule("high_latency").unwrap();
    assert_eq!((latency["threshold"].as_f64(), latency["for_seconds"].as_f64()), (Some(0.5), Some(10.0)));
    assert!(rule("task_timeouts").is_none_or(|r| r["state"] == "disabled"), "{alerts}");
    crate::binary::stop(&mut child);
}
