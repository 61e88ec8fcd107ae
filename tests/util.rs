//! Shared helpers: an in-process server on an ephemeral port, a test
//! service with slow and echoing routes, and a minimal response reader.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use pagelens::api::input::InputLimits;
use pagelens::api::work::{handlers, Pages};
use pagelens::api::{ApiConfig, App};
use pagelens::fetch::{FetchConfig, Fetcher};
use pagelens::http::request::Request;
use pagelens::http::response::Response;
use pagelens::jobs::{Engine, EngineConfig, MemoryStore};
use pagelens::metrics::alerts::AlertConfig;
use pagelens::metrics::{collectors, Metrics};
use pagelens::reactor::{Context, Limits, Reply, Server, ServerConfig, Service};

/// How long any single read in a test may wait.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration for tests: loopback, ephemeral port, two reactors.
pub fn config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        reactors: 2,
        max_connections: 10_000,
        tls: None,
        access_log: None,
        shutdown_timeout: Duration::from_secs(5),
        io_engine: crate::IO_ENGINE.parse().unwrap(),
        limits: Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
        },
    }
}

/// The real API plus routes the tests need: `POST /echo` answers with the
/// body it got; `GET /delay/{ms}` answers from another thread after `ms`.
#[derive(Debug)]
pub struct TestService {
    app: App,
}

impl Service for TestService {
    fn call(&self, request: &Request<'_>, cx: &mut Context<'_>) -> Reply {
        let head = &request.head;
        if head.method == "POST" && head.path == "/echo" {
            return Reply::Now(Response::with_body(200, "application/octet-stream", request.body.to_vec()));
        }
        if let Some(ms) = head.path.strip_prefix("/delay/").and_then(|ms| ms.parse::<u64>().ok()) {
            let responder = cx.defer();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                responder.send(Response::with_body(200, "text/plain", format!("slept {ms}").into_bytes()));
            });
            return Reply::Later;
        }
        if let Some(n) = head.path.strip_prefix("/stream/").and_then(|n| n.parse::<usize>().ok()) {
            let stream = cx.defer().stream(Response::streaming(200, "application/x-ndjson"));
            std::thread::spawn(move || {
                for i in 0..n {
                    std::thread::sleep(Duration::from_millis(20));
                    stream.send(format!("{{\"line\":{i}}}\n").into_bytes());
                }
                stream.finish();
            });
            return Reply::Later;
        }
        if head.path == "/panic" {
            panic!("handler panics on purpose");
        }
        self.app.call(request, cx)
    }
}

/// Engine settings for tests: two workers, a roomy queue.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        workers: 2,
        queue_capacity: 1000,
        default_timeout: Duration::from_secs(30),
        max_timeout: Duration::from_secs(60),
        result_ttl: Duration::from_secs(3600),
        max_queued_bytes: 512 << 20,
    }
}

/// API settings for tests.
pub fn api_config() -> ApiConfig {
    ApiConfig {
        sync_wait: Duration::from_secs(5),
        limits: InputLimits { max_timeout: Duration::from_secs(60), max_bulk_items: 100 },
        callback_secret: None,
        rate_limits: Default::default(),
        keys: None,
    }
}

/// Starts the test service with `config` and default engine settings.
pub fn start(config: ServerConfig) -> Server {
    start_with(config, engine_config(), api_config())
}

/// Starts the test service with metrics recorded and served at `/metrics`.
pub fn start_with_metrics(config: ServerConfig) -> Server {
    start_with_metrics_and(config, FetchConfig::default(), None)
}

/// The same, fetching with `fetch`, and posting alert changes to `webhook`.
pub fn start_with_metrics_and(config: ServerConfig, fetch: FetchConfig, webhook: Option<url::Url>) -> Server {
    let fetcher = fetcher(fetch);
    let pages = Pages::new(Arc::clone(&fetcher));
    let engine = start_engine(engine_config(), &pages, &api_config());
    let metrics = Metrics::start().expect("metrics start");
    // Alerts that trip easily: p99 over 100 ms, held for 1 s.
    metrics.enable_alerts(AlertConfig {
        p99: Duration::from_millis(100),
        error_rate: 0.01,
        queue_fill: 0.8,
        connection_fill: 0.9,
        timeout_rate: 0.05,
        hold: Duration::from_secs(1),
        window: Duration::from_secs(5),
        rules: Default::default(),
    });
    metrics.add_collector(collectors::engine(Arc::clone(&engine)));
    metrics.add_snapshot_part(collectors::engine_snapshot(Arc::clone(&engine)));
    metrics.add_collector(collectors::fetch(Arc::clone(&fetcher)));
    if let Some(url) = webhook {
        metrics.on_alert_change(pagelens::api::work::alert_webhook(&fetcher, url, None));
    }
    let app = App::new(engine, pages, api_config()).expect("intake starts").with_metrics(Arc::clone(&metrics));
    let server = on_the_engine_asked_for(
        Server::start_with_metrics(config, Arc::new(TestService { app }), Some(metrics.sink())).expect("server starts"),
    );
    metrics.add_collector(collectors::server(Arc::clone(server.state())));
    metrics.add_snapshot_part(collectors::server_snapshot(Arc::clone(server.state())));
    server
}

/// Starts the test service with every setting given (the fetcher's guard closed, as by default).
pub fn start_with(config: ServerConfig, engine: EngineConfig, api: ApiConfig) -> Server {
    start_full(config, engine, api, FetchConfig::default())
}

/// Starts the test service fetching with `fetch`.
pub fn start_full(config: ServerConfig, engine: EngineConfig, api: ApiConfig, fetch: FetchConfig) -> Server {
    let pages = Pages::new(fetcher(fetch));
    let engine = start_engine(engine, &pages, &api);
    let app = App::new(engine, pages, api).expect("intake starts");
    on_the_engine_asked_for(Server::start(config, Arc::new(TestService { app })).expect("server starts"))
}

/// `server`, after checking it runs on this suite's engine (io_uring
/// wherever the kernel allows it): a suite that quietly ran on epoll
/// would prove nothing of io_uring.
fn on_the_engine_asked_for(server: Server) -> Server {
    let expected = match crate::IO_ENGINE {
        "io_uring" if pagelens::reactor::io_uring_available().is_ok() => pagelens::reactor::Running::IoUring,
        _ => pagelens::reactor::Running::Epoll,
    };
    assert_eq!(server.engine().0, expected, "{}", server.engine().1);
    server
}

/// The API's engine on a memory store (the binary's tests use SQLite).
pub fn start_engine(config: EngineConfig, pages: &Pages, api: &ApiConfig) -> Arc<Engine> {
    let engine = Engine::start(config, Arc::new(MemoryStore::default()), handlers(pages)).expect("engine starts");
    engine.set_callbacks(pagelens::api::work::callback_sender(pages.fetcher(), api.callback_secret.clone()));
    engine
}

/// A fetcher.
pub fn fetcher(config: FetchConfig) -> Arc<Fetcher> {
    Arc::new(Fetcher::start(config).expect("fetcher starts"))
}

/// A client socket with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The problem document's `code`.
    pub fn problem_code(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let doc: serde_json::Value = serde_json::from_slice(&self.body).expect("problem+json body");
        assert_eq!(doc["status"], self.status, "{doc}");
        doc["code"].as_str().unwrap_or_default().to_string()
    }
}

/// Reads responses from one connection, keeping bytes that arrive early.
pub struct Reader {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Self {
        Reader { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// The next response; `head_only` for answers to HEAD.
    pub fn response(&mut self, head_only: bool) -> Resp {
        self.try_response(head_only).expect("read response").expect("a response before EOF")
    }

    /// The next response, or `None` if the server closed first.
    pub fn try_response(&mut self, head_only: bool) -> io::Result<Option<Resp>> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = parsed.parse(&self.buf).expect("valid response head") {
                let status = parsed.code.unwrap();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let length = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
                let chunked =
                    headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
                if chunked && !head_only {
                    self.buf.drain(..len);
                    let body = self.chunked_body()?;
                    return Ok(Some(Resp { status, headers, body }));
                }
                let length = if head_only || status < 200 { 0 } else { length };
                while self.buf.len() < len + length {
                    if !self.fill()? {
                        panic!("EOF inside a response body");
                    }
                }
                let body = self.buf[len..len + length].to_vec();
                self.buf.drain(..len + length);
                return Ok(Some(Resp { status, headers, body }));
            }
            if !self.fill()? {
                assert!(self.buf.is_empty(), "EOF inside a response head: {:?}", String::from_utf8_lossy(&self.buf));
                return Ok(None);
            }
        }
    }

    /// Reads a chunked body (no trailers) from the buffer's start.
    fn chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                assert!(self.fill()?, "EOF inside a chunk size");
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16).expect("hex chunk size");
            while self.buf.len() < line_end + 2 + size + 2 {
                assert!(self.fill()?, "EOF inside a chunk");
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            assert_eq!(&self.buf[line_end + 2 + size..line_end + 4 + size], b"\r\n");
            self.buf.drain(..line_end + 4 + size);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            // EINTR is not an answer (seen once in CI): read again.
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Asserts the server closes the connection (EOF or reset) with nothing more to say.
    pub fn expect_closed(&mut self) {
        match self.try_response(false) {
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the server to close, got {other:?}"),
        }
    }
}

/// One request on a fresh connection; returns the response.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut reader = Reader::new(connect(addr));
    reader.send(raw);
    reader.response(raw.starts_with(b"HEAD"))
}

/// `GET path` with keep-alive.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// A JSON `POST` with `extra` header lines.
pub fn post(path: &str, body: &Value, extra: &str) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn call(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut client = Reader::new(connect(addr));
    client.send(raw);
    client.response(false)
}

pub fn json_of(resp: &Resp) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("{e}: {}", resp.text()))
}

/// Submits `body` to `POST /analyze/async`; returns the task id.
pub fn submit(addr: SocketAddr, body: Value) -> String {
    let resp = call(addr, &post("/analyze/async", &body, ""));
    assert_eq!(resp.status, 202, "{}", resp.text());
    json_of(&resp)["task_id"].as_str().unwrap().to_string()
}

pub fn status(addr: SocketAddr, id: &str) -> Value {
    let resp = call(addr, &get(&format!("/analyze/status/{id}")));
    assert_eq!(resp.status, 200, "{}", resp.text());
    json_of(&resp)
}

/// Polls until the task's status is one of `states`.
pub fn wait_for(addr: SocketAddr, id: &str, states: &[&str]) -> Value {
    let started = Instant::now();
    loop {
        let s = status(addr, id);
        if states.contains(&s["status"].as_str().unwrap()) {
            return s;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "task {id} never reached {states:?}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sample `name` (with its labels) on `addr`'s `/metrics` once `good`
/// holds for it (figures are gathered once a second).
pub fn metric(addr: SocketAddr, name: &str, good: impl Fn(f64) -> bool) -> f64 {
    let started = Instant::now();
    loop {
        let text = call(addr, &get("/metrics")).text();
        let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
        let value = line.and_then(|l| l.rsplit(' ').next()?.parse().ok());
        match value {
            Some(v) if good(v) => return v,
            _ if started.elapsed() > Duration::from_secs(5) => panic!("{name} is {value:?} on /metrics"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A temporary folder of this test, removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let unique = format!("pagelens-{name}-{}-{}", std::process::id(), pagelens::jobs::TaskId::random());
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Submits each body to `POST /analyze/async` on one connection, pipelined
/// 50 at a time; asserts every answer is `202` and returns the task ids.
pub fn submit_pipelined(addr: SocketAddr, bodies: impl IntoIterator<Item = Value>) -> Vec<String> {
    let bodies: Vec<Value> = bodies.into_iter().collect();
    let mut client = Reader::new(connect(addr));
    let mut ids = Vec::with_capacity(bodies.len());
    for burst in bodies.chunks(50) {
        let bytes: Vec<u8> = burst.iter().flat_map(|body| post("/analyze/async", body, "")).collect();
        client.send(&bytes);
        for _ in burst {
            let resp = client.response(false);
            assert_eq!(resp.status, 202, "{}", resp.text());
            ids.push(json_of(&resp)["task_id"].as_str().unwrap().to_string());
        }
    }
    ids
}

/// Opens `url` in headless Chromium until `wait` holds; the value of `state`
/// then (and a screenshot, if asked).
pub fn in_chromium(url: &str, wait: &str, state: &str, shot: Option<&std::path::Path>) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dashboard_cdp.py");
    let out = std::process::Command::new("python3")
        .args([script, url, wait, state, "20"])
        .args(shot.map(|s| s.as_os_str()))
        .output()
        .expect("python3 runs (.ci/install-test-tools installs it, and chromium)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap()
}
