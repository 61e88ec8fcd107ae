//! Several instances of the real binary on one real `redis-server`: any
//! instance accepts, runs and answers for any task; a cancel reaches the
//! instance running the task; an idempotency key holds across instances; a
//! killed instance's tasks are taken over by another.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis as redis_client;
use serde_json::{json, Value};

use crate::binary::{spawn_binary, stop};
use crate::origin::{response, Action, Origin};
use crate::util::{call, get, json_of, metric, post, status, submit, submit_pipelined, wait_for, Resp};

/// A `redis-server` on a free loopback port, stopped when dropped.
pub struct Redis {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl Redis {
    /// Without persistence.
    pub fn start() -> Redis {
        Redis::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// With `args` (persistence settings, a folder).
    pub fn start_with(args: &[&str]) -> Redis {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut all = vec!["--bind".to_string(), "127.0.0.1".into(), "--port".into(), port.to_string()];
            all.extend(args.iter().map(|a| a.to_string()));
            let mut redis = Redis { child: spawn_redis(&all), port, args: all };
            if redis.wait_up() {
                return redis;
            }
            let _ = redis.child.kill();
        }
        panic!("redis-server did not start");
    }

    fn wait_up(&mut self) -> bool {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn store(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops it (as a crash would: SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again, on the same port and settings.
    pub fn restart(&mut self) {
        self.child = spawn_redis(&self.args);
        assert!(self.wait_up(), "redis-server did not start again");
    }
}

fn spawn_redis(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (.ci/install-test-tools installs it)")
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process (an instance, a server), killed if a failed test leaves
/// it running (an instance whose Redis is gone would retry for good).
struct Process(Child);

impl Process {
    /// SIGTERM; asserts a clean exit.
    fn stop(mut self) {
        stop(&mut self.0);
    }

    /// SIGKILL, as a crash.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// An instance on `redis`, with two workers, fetching from loopback
/// origins, and `extra` flags.
fn instance(redis: &Redis, extra: &[&str]) -> (Process, SocketAddr) {
    let store = redis.store();
    let mut args = vec!["--listen", "127.0.0.1:0", "--workers", "2", "--store", &store];
    args.extend(["--allow-private-fetch", "--fetch-ports", "any"]);
    args.extend_from_slice(extra);
    let (child, addr) = spawn_binary(&args, &[]);
    (Process(child), addr)
}

/// A page that takes the engine a millisecond or so.
fn page(n: usize) -> Value {
    let words = "lorem <b>ipsum</b> dolor <a href=/x>sit</a> amet ".repeat(200);
    json!({"html": format!("<html><head><title>Page {n}</title></head><body><h1>{n}</h1><p>{words}</p></body></html>")})
}

#[test]
fn any_instance_accepts_runs_and_answers_for_any_task() {
    let redis = Redis::start();
    let (a, at_a) = instance(&redis, &[]);
    let (b, at_b) = instance(&redis, &[]);
    let ids = submit_pipelined(at_a, (0..40).map(page));
    for (n, id) in ids.iter().enumerate() {
        let done = wait_for(at_b, id, &["completed"]);
        assert_eq!(done["result"]["title"], format!("Page {n}"), "read on B: {done}");
    }
    // Both instances ran some of them.
    let ran = |addr: SocketAddr| json_of(&call(addr, &get("/tasks/stats")))["pool"]["completed"].as_u64().unwrap();
    let (on_a, on_b) = (ran(at_a), ran(at_b));
    assert_eq!(on_a + on_b, 40, "each task ran once");
    assert!(on_a > 0 && on_b > 0, "A ran {on_a}, B ran {on_b}");
    // The counts are the cluster's, on either instance; the queue's own figures are each's.
    for addr in [at_a, at_b] {
        let stats = json_of(&call(addr, &get("/tasks/stats")));
        assert_eq!(stats["tasks"]["completed"]["total"], 40, "{stats}");
        metric(addr, "pagelens_shared_queue_up", |v| v == 1.0);
        metric(addr, "pagelens_redis_round_trip_seconds_count", |v| v > 0.0);
    }
    let on_a = metric(at_a, "pagelens_shared_tasks_taken_total", |v| v > 0.0);
    metric(at_b, "pagelens_shared_tasks_taken_total", |v| v + on_a == 40.0);

    // A batch of slow pages submitted on B: its results stream on both
    // instances while it runs (on one of them; the other reads the store).
    let origin = Origin::start(|_| {
        Action::SendAfter(
            Duration::from_millis(200),
            response(200, &[("Content-Type", "text/html")], b"<title>Slow</title>"),
        )
    });
    let items: Vec<Value> = (0..6).map(|i| json!({"url": origin.url(&format!("/slow/{i}"))})).collect();
    let batch = call(at_b, &post("/bulk/analyze/async", &json!({ "items": items }), ""));
    assert_eq!(batch.status, 202, "{}", batch.text());
    let batch_id = json_of(&batch)["task_id"].as_str().unwrap().to_string();
    let readers: Vec<_> = [at_a, at_b]
        .into_iter()
        .map(|addr| {
            let path = format!("/bulk/{batch_id}/results");
            std::thread::spawn(move || call(addr, &get(&path)).text())
        })
        .collect();
    for reader in readers {
        let text = reader.join().unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines.iter().all(|l| l["result"]["title"] == "Slow"), "{text}");
    }

    // An idempotency key used on A and again on B: one task.
    let keyed = |addr: SocketAddr| call(addr, &post("/analyze/async", &page(99), "Idempotency-Key: order-7\r\n"));
    let first: Resp = keyed(at_a);
    let again = keyed(at_b);
    assert_eq!((first.status, again.status), (202, 200), "{}", again.text());
    assert_eq!(json_of(&first)["task_id"], json_of(&again)["task_id"]);
    a.stop();
    b.stop();
}

#[test]
fn a_cancel_on_one_instance_stops_the_task_where_it_runs() {
    let redis = Redis::start();
    // The origin never answers: the task runs (waits on it) until stopped.
    let origin = Origin::start(|_| Action::Hang);
    let (a, at_a) = instance(&redis, &[]);
    let id = submit(at_a, json!({"url": origin.url("/slow")}));
    // Running on A (the only instance yet): its fetch is open.
    wait_for(at_a, &id, &["processing"]);
    let started = Instant::now();
    while origin.open() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "A never fetched");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (b, at_b) = instance(&redis, &[]);
    // Followed live on B, which does not run it: the stream opens with the
    // task processing and stays open until its end.
    let mut stream = crate::util::connect(at_b);
    stream.write_all(&get(&format!("/analyze/status/{id}/events"))).unwrap();
    let mut events = Vec::new();
    while !String::from_utf8_lossy(&events).contains("event: status") {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&events));
        events.extend_from_slice(&chunk[..n]);
    }
    let cancelled = call(at_b, format!("DELETE /tasks/{id} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    let asked = Instant::now();
    assert_eq!(json_of(&cancelled)["status"], "cancelled");
    // A lets go of the origin: its fetch was stopped.
    while origin.open() > 0 {
        assert!(asked.elapsed() < Duration::from_secs(2), "A's fetch went on after the cancel");
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!("cancel on B stopped A's fetch after {:?}", asked.elapsed());
    assert_eq!(status(at_a, &id)["status"], "cancelled");
    while !String::from_utf8_lossy(&events).contains("\r\n0\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the stream ended without its last chunk");
        events.extend_from_slice(&chunk[..n]);
    }
    let events = String::from_utf8_lossy(&events).to_string();
    let kinds: Vec<&str> = events.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(kinds.first(), Some(&"status"), "{events}");
    assert_eq!(kinds.last(), Some(&"end"), "{events}");
    assert!(events.contains("\"status\":\"processing\"") && events.contains("\"status\":\"cancelled\""), "{events}");
    a.stop();
    b.stop();
}

#[test]
fn a_killed_instance_loses_nothing_another_takes_its_tasks() {
    let redis = Redis::start();
    let slow = ["--reclaim-after", "1s"];
    let (a, at_a) = instance(&redis, &slow);
    let ids = submit_pipelined(at_a, (0..300).map(page));
    // Killed with tasks queued and running on it.
    let done = json_of(&call(at_a, &get("/tasks/stats")))["tasks"]["completed"]["total"].as_u64().unwrap();
    assert!(done < 300, "all done before the kill: nothing to take over");
    a.kill();
    let (b, at_b) = instance(&redis, &slow);
    for (n, id) in ids.iter().enumerate() {
        let done = wait_for(at_b, id, &["completed"]);
        assert_eq!(done["result"]["title"], format!("Page {n}"));
    }
    b.stop();
}

#[test]
fn redis_down_under_load_means_503s_then_service_resumes_with_nothing_lost() {
    // Every write on disk before Redis answers it: what got a 202 survives a kill.
    let dir = crate::util::TempDir::new("redis-aof");
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let mut redis =
        Redis::start_with(&["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", &dir_arg]);
    let (a, at_a) = instance(&redis, &[]);
    let (b, at_b) = instance(&redis, &[]);
    let stop_load = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop_load = std::sync::Arc::clone(&stop_load);
        std::thread::spawn(move || {
            let (mut accepted, mut refused, mut n) = (Vec::new(), 0, 0);
            while !stop_load.load(std::sync::atomic::Ordering::Acquire) {
                let addr = if n % 2 == 0 { at_a } else { at_b };
                let resp = call(addr, &post("/analyze/async", &page(n), ""));
                match resp.status {
                    202 => accepted.push((n, json_of(&resp)["task_id"].as_str().unwrap().to_string())),
                    503 => {
                        assert_eq!(resp.problem_code(), "store-unavailable", "{}", resp.text());
                        assert!(resp.header("retry-after").is_some());
                        refused += 1;
                    }
                    other => panic!("{other}: {}", resp.text()),
                }
                n += 1;
            }
            (accepted, refused)
        })
    };
    let wait_ready = |addr: SocketAddr, want: u16| {
        let started = Instant::now();
        while call(addr, &get("/readyz")).status != want {
            assert!(started.elapsed() < Duration::from_secs(15), "/readyz never became {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::sleep(Duration::from_millis(300)); // some load before the outage
    redis.kill();
    wait_ready(at_a, 503);
    wait_ready(at_b, 503);
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100)); // the outage lasts 5 s
    }
    redis.restart();
    wait_ready(at_a, 200);
    wait_ready(at_b, 200);
    std::thread::sleep(Duration::from_millis(300)); // some load after it
    stop_load.store(true, std::sync::atomic::Ordering::Release);
    let (accepted, refused) = load.join().unwrap();
    eprintln!("{} accepted, {refused} refused; outage began {:?} ago", accepted.len(), down.elapsed());
    assert!(refused > 0, "submissions during the outage were refused");
    assert!(accepted.len() > 2, "submissions before and after were taken: {}", accepted.len());
    for (n, id) in &accepted {
        let done = wait_for(at_a, id, &["completed"]);
        assert_eq!(done["result"]["title"], format!("Page {n}"));
    }
    eprintln!("all completed {:?} after the outage began", down.elapsed());
    a.stop();
    b.stop();
    eprintln!("stopped {:?} after the outage began", down.elapsed());
}

/// Flags that end a task `poison-task` after two starts, an abandoned one
/// taken over after a second.
const POISON_FLAGS: [&str; 4] = ["--reclaim-after", "1s", "--max-deliveries", "2"];

/// An origin whose page never comes: an instance running a task for it is
/// still fetching when it is killed.
struct NeverPage(Origin);

impl NeverPage {
    fn start() -> NeverPage {
        NeverPage(Origin::start(|_| Action::Hang))
    }

    /// Submits a task analysing the page at `at`; its id.
    fn submit(&self, at: SocketAddr) -> String {
        submit(at, json!({"url": self.0.url("/never")}))
    }

    /// Times the page was asked for.
    fn fetches(&self) -> usize {
        self.0.seen().iter().filter(|s| s.path == "/never").count()
    }

    /// Waits until the page has been asked for `n` times.
    fn wait_fetches(&self, n: usize) {
        let started = Instant::now();
        while self.fetches() < n {
            assert!(started.elapsed() < Duration::from_secs(15), "fetch {n} never came");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn a_task_whose_runs_keep_dying_ends_poison_task() {
    let redis = Redis::start();
    let page = NeverPage::start();
    let (mut current, mut at) = instance(&redis, &POISON_FLAGS);
    let id = page.submit(at);
    for run in 1..=2 {
        page.wait_fetches(run);
        // Dies mid-run, as a crash would; the next instance takes over.
        current.kill();
        (current, at) = instance(&redis, &POISON_FLAGS);
    }
    let ended = wait_for(at, &id, &["error"]);
    assert_eq!(ended["error"]["code"], "poison-task", "{ended}");
    metric(at, "pagelens_poison_tasks_total", |v| v == 1.0);
    metric(at, "pagelens_shared_tasks_reclaimed_total", |v| v == 1.0);
    assert_eq!(page.fetches(), 2, "not run a third time");
    current.stop();
}

#[test]
fn a_start_lost_with_its_holder_still_counts_toward_poison_task() {
    let redis = Redis::start();
    let page = NeverPage::start();
    let (first, at) = instance(&redis, &POISON_FLAGS);
    let id = page.submit(at);
    page.wait_fetches(1);
    first.kill();
    // Handed out again to a holder that died before its start was stored
    // (an instance killed within its first milliseconds): the queue counts
    // that delivery, the task's record never hears of it.
    let mut conn = redis_client::Client::open(redis.store()).unwrap().get_connection().unwrap();
    let (stream, group) = ("pagelens:queue:normal", "pagelens");
    let pending: Vec<(String, String, u64, u64)> =
        redis_client::cmd("XPENDING").arg(stream).arg(group).arg("-").arg("+").arg(10).query(&mut conn).unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let _: redis_client::Value =
        redis_client::cmd("XCLAIM").arg(stream).arg(group).arg("gone").arg(0).arg(&pending[0].0).query(&mut conn).unwrap();
    let (second, at) = instance(&redis, &POISON_FLAGS);
    let ended = wait_for(at, &id, &["error"]);
    assert_eq!(ended["error"]["code"], "poison-task", "{ended}");
    assert!(ended["error"]["detail"].as_str().unwrap().contains("started 2 times"), "{ended}");
    assert_eq!(page.fetches(), 1, "not run again");
    second.stop();
}

#[test]
fn rediss_speaks_tls_to_redis_checked_against_the_given_ca() {
    let dir = crate::util::TempDir::new("redis-tls");
    let issued = crate::origin::Issued::new(&["127.0.0.1", "localhost"]);
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_string()
    };
    let cert = write("redis.crt", issued.cert.pem());
    let key = write("redis.key", issued.key.serialize_pem());
    let ca = write("ca.crt", issued.ca.pem());
    // The TLS port only: nothing reaches Redis in the clear.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let _redis = Process(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", &port, "--tls-cert-file", &cert])
            .args(["--tls-key-file", &key, "--tls-ca-cert-file", &ca, "--tls-auth-clients", "no", "--save", ""])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "redis-server (TLS) did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let store = format!("rediss://127.0.0.1:{port}/0");
    let (server, addr) = spawn_binary(&["--listen", "127.0.0.1:0", "--store", &store, "--redis-ca", &ca], &[]);
    let server = Process(server);
    let id = crate::util::submit(addr, page(1));
    assert_eq!(wait_for(addr, &id, &["completed"])["result"]["title"], "Page 1");
    server.stop();

    // Without the CA, the certificate is not trusted: a clear error at start.
    let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &store])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--store") && stderr.to_lowercase().contains("certificate"), "{stderr}");
}

#[test]
fn the_queue_bound_holds_for_the_cluster() {
    let redis = Redis::start();
    // Two instances of 3 tasks each would take 6 alone; together they hold 3.
    let origin = Origin::start(|_| Action::Hang);
    let flags = ["--queue-capacity", "3", "--shutdown-timeout", "1s"];
    let (a, at_a) = instance(&redis, &flags);
    let (b, at_b) = instance(&redis, &flags);
    let slow = json!({"url": origin.url("/hang")});
    let codes: Vec<u16> =
        (0..6).map(|i| call(if i % 2 == 0 { at_a } else { at_b }, &post("/analyze/async", &slow, "")).status).collect();
    assert_eq!(codes.iter().filter(|c| **c == 202).count(), 3, "{codes:?}");
    let full = call(at_b, &post("/analyze/async", &slow, ""));
    assert_eq!((full.status, full.problem_code().as_str()), (503, "queue-full"), "{}", full.text());
    assert!(full.header("retry-after").is_some());
    a.stop();
    b.stop();
}
