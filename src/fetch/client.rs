//! The fetcher's event loop: its own mio `Poll` on its own thread, its
//! connections, per-origin pools and queues, and every deadline.
//!
//! A fetch goes: check the URL, resolve the host (off the loop), check the
//! address, wait for a connection and a token from its origin, exchange,
//! then follow a redirect (a new hop, checked again), retry after a backoff,
//! or end. Callers hear of the end through a callback run on this thread.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::SegQueue;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;
use url::{Host, Url};

use super::connection::{Connection, Outcome, State};
use super::dns::{Addrs, Resolver};
use super::error::FetchError;
use super::guard::Guard;
use super::origin::Origin;
use super::request::{FetchConfig, FetchRequest, FetchResponse, OnDone, Redirect, RetryOn, Timings};
use crate::http::client::{encode_request, ResponseHead, ResponseReader};
use crate::metrics::durations::Durations;
use crate::reactor::timers::Timers;

const WAKER: Token = Token(0);
/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How often fetches are checked for cancellation.
pub const CANCEL_CHECK: Duration = Duration::from_millis(100);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// First retry delay; doubled each attempt, with jitter.
const RETRY_BASE: Duration = Duration::from_millis(250);

enum Command {
    Fetch(FetchRequest, OnDone),
    Resolved(u64, Result<Addrs, FetchError>),
}

/// Counters of the fetcher's work.
#[derive(Debug, Default)]
pub struct FetchStats {
    /// Fetches started.
    pub fetches: AtomicU64,
    /// Connections opened.
    pub connections_opened: AtomicU64,
    /// Exchanges that reused an idle connection.
    pub reused: AtomicU64,
    /// Fetches that ended in an error.
    pub failed: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
    /// Failed fetches by error code.
    pub errors: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Whole fetches, by outcome (`ok`, `error`).
    pub durations: Durations,
    /// Steps of successful fetches (`dns`, `connect`, `tls`, `first_byte`).
    pub steps: Durations,
}

struct Shared {
    commands: SegQueue<Command>,
    waker: Waker,
    stopping: AtomicBool,
    stats: FetchStats,
}

/// The handle to the fetcher's thread.
pub struct Fetcher {
    shared: Arc<Shared>,
    guard: Guard,
    max_response_bytes: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("guard", &self.guard).finish()
    }
}

impl Fetcher {
    /// Starts the fetcher's event loop and resolver threads.
    pub fn start(config: FetchConfig) -> std::io::Result<Fetcher> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            commands: SegQueue::new(),
            waker,
            stopping: AtomicBool::new(false),
            stats: FetchStats::default(),
        });
        let tls = tls_config(&config.extra_roots)?;
        let resolver = Resolver::start(2, config.dns_ttl)?;
        let guard = config.guard.clone();
        let max_response_bytes = config.max_response_bytes;
        let mut event_loop = Loop {
            poll,
            shared: Arc::clone(&shared),
            config,
            tls,
            resolver,
            slots: HashMap::new(),
            fetches: HashMap::new(),
            origins: HashMap::new(),
            conn_timers: Timers::default(),
            fetch_timers: BinaryHeap::new(),
            origin_timers: BinaryHeap::new(),
            next_id: 1,
            idle: 0,
            seed: SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1,
            cancel_checked: Instant::now(),
        };
        let thread = std::thread::Builder::new().name("pagelens-fetch".into()).spawn(move || event_loop.run())?;
        Ok(Fetcher { shared, guard, max_response_bytes, thread: Some(thread) })
    }

    /// The guard in force, to check URLs before accepting work.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The response size cap (decoded bodies are held to it too).
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Counters.
    pub fn stats(&self) -> &FetchStats {
        &self.shared.stats
    }

    /// Fetches and waits for the outcome: for threads that may wait (the
    /// command line, a crawler), never a reactor or a worker.
    pub fn fetch_and_wait(&self, request: FetchRequest) -> Result<FetchResponse, FetchError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.fetch(request, Box::new(move |result| drop(tx.send(result))));
        rx.recv().unwrap_or_else(|_| Err(shutting_down()))
    }

    /// Starts a fetch; `on_done` hears how it ended.
    pub fn fetch(&self, request: FetchRequest, on_done: OnDone) {
        if self.shared.stopping.load(Ordering::Acquire) {
            on_done(Err(shutting_down()));
            return;
        }
        self.shared.commands.push(Command::Fetch(request, on_done));
        let _ = self.shared.waker.wake();
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        let _ = self.shared.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn shutting_down() -> FetchError {
    FetchError::new(503, "shutting-down", "the fetcher is stopping", false)
}

/// A client TLS configuration: the web PKI roots plus `extra`.
pub fn tls_config(extra: &[CertificateDer<'static>]) -> std::io::Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Where a fetch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Resolving { since: Instant },
    Queued,
    Exchanging { conn: u64 },
    Backoff { until: Instant },
}

struct Fetch {
    request: FetchRequest,
    on_done: Option<OnDone>,
    url: Url,
    origin: String,
    addr: Option<SocketAddr>,
    step: Step,
    started: Instant,
    deadline: Instant,
    attempt: u32,
    redirects: Vec<Redirect>,
    /// A reused connection failed before answering; the fetch moved to a fresh one once.
    stale_retry: bool,
    timings: Timings,
}

/// A connection and what the loop knows of it.
struct Slot {
    conn: Connection,
    origin: String,
    fetch: Option<u64>,
    /// The step the connection is in, and since when: its deadline's base.
    phase: (State, bool, Instant),
    deadline: Instant,
    armed: Option<Instant>,
}

struct Loop {
    poll: Poll,
    shared: Arc<Shared>,
    config: FetchConfig,
    tls: Arc<ClientConfig>,
    resolver: Resolver,
    slots: HashMap<u64, Slot>,
    fetches: HashMap<u64, Fetch>,
    origins: HashMap<String, Origin>,
    conn_timers: Timers,
    fetch_timers: BinaryHeap<Reverse<(Instant, u64)>>,
    origin_timers: BinaryHeap<Reverse<(Instant, String)>>,
    next_id: u64,
    idle: usize,
    seed: u64,
    /// When fetches were last checked for cancellation.
    cancel_checked: Instant,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let timeout = self.next_deadline().map(|at| at.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    crate::error!("fetcher poll failed: {e}");
                    return;
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                if event.token() != WAKER {
                    self.drive(event.token().0 as u64, now);
                }
            }
            while let Some(command) = self.shared.commands.pop() {
                match command {
                    Command::Fetch(request, on_done) => self.begin(request, on_done, now),
                    Command::Resolved(id, result) => self.resolved(id, result, now),
                }
            }
            self.fire_timers(now);
            if now >= self.cancel_checked + CANCEL_CHECK {
                self.cancel_checked = now;
                self.end_cancelled(now);
            }
            if self.shared.stopping.load(Ordering::Acquire) {
                let ids: Vec<u64> = self.fetches.keys().copied().collect();
                for id in ids {
                    self.finish(id, Err(shutting_down()), now);
                }
                while let Some(Command::Fetch(_, on_done)) = self.shared.commands.pop() {
                    on_done(Err(shutting_down()));
                }
                return;
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn next_deadline(&self) -> Option<Instant> {
        let cancel_check = (!self.fetches.is_empty()).then_some(self.cancel_checked + CANCEL_CHECK);
        [
            cancel_check,
            self.conn_timers.next(),
            self.fetch_timers.peek().map(|Reverse((at, _))| *at),
            self.origin_timers.peek().map(|Reverse((at, _))| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Ends the fetches whose callers gave up.
    fn end_cancelled(&mut self, now: Instant) {
        let cancelled: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.request.cancel.as_ref().is_some_and(|c| c.load(Ordering::Acquire)))
            .map(|(id, _)| *id)
            .collect();
        for id in cancelled {
            self.finish(id, Err(FetchError::new(499, "cancelled", "the fetch was cancelled", false)), now);
        }
    }

    fn begin(&mut self, request: FetchRequest, on_done: OnDone, now: Instant) {
        self.shared.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let total = now + self.config.total_timeout;
        let deadline = request.deadline.map_or(total, |d| d.min(total));
        let id = self.next_id();
        let fetch = Fetch {
            url: request.url.clone(),
            request,
            on_done: Some(on_done),
            origin: String::new(),
            addr: None,
            step: Step::Queued,
            started: now,
            deadline,
            attempt: 1,
            redirects: Vec::new(),
            stale_retry: false,
            timings: Timings::default(),
        };
        self.fetches.insert(id, fetch);
        self.fetch_timers.push(Reverse((deadline, id)));
        self.hop(id, now);
    }

    /// Starts (or restarts) a fetch at its current URL.
    fn hop(&mut self, id: u64, now: Instant) {
        let Some(fetch) = self.fetches.get_mut(&id) else { return };
        if let Err(e) = self.config.guard.check_url(&fetch.url) {
            return self.fail(id, e, now);
        }
        let port = fetch.url.port_or_known_default().unwrap_or(80);
        fetch.origin = format!("{}://{}:{port}", fetch.url.scheme(), fetch.url.host_str().unwrap_or_default());
        fetch.timings.dns_ms = 0.0;
        let host = match fetch.url.host() {
            Some(Host::Ipv4(ip)) => return self.dispatch(id, [IpAddr::V4(ip)].into(), now),
            Some(Host::Ipv6(ip)) => return self.dispatch(id, [IpAddr::V6(ip)].into(), now),
            Some(Host::Domain(name)) => name.to_string(),
            None => return self.fail(id, FetchError::new(422, "bad-url", "the URL has no host", false), now),
        };
        if let Some(addrs) = self.resolver.cached(&host) {
            return self.dispatch(id, addrs, now);
        }
        fetch.step = Step::Resolving { since: now };
        let shared = Arc::clone(&self.shared);
        self.resolver.resolve(
            host,
            Box::new(move |result| {
                shared.commands.push(Command::Resolved(id, result));
                let _ = shared.waker.wake();
            }),
        );
    }

    fn resolved(&mut self, id: u64, result: Result<Addrs, FetchError>, now: Instant) {
        let Some(fetch) = self.fetches.get_mut(&id) else { return };
        let Step::Resolving { since } = fetch.step else { return };
        fetch.timings.dns_ms = ms(now - since);
        match result {
            Ok(addrs) => self.dispatch(id, addrs, now),
            Err(e) => self.fail(id, e, now),
        }
    }

    /// Picks the first address the guard allows and queues the fetch at its origin.
    fn dispatch(&mut self, id: u64, addrs: Addrs, now: Instant) {
        let Some(fetch) = self.fetches.get_mut(&id) else { return };
        let port = fetch.url.port_or_known_default().unwrap_or(80);
        let mut refusal = None;
        let allowed = addrs.iter().find(|ip| match self.config.guard.check_addr(**ip) {
            Ok(()) => true,
            Err(e) => {
                refusal.get_or_insert(e);
                false
            }
        });
        let Some(ip) = allowed else {
            let e = refusal.unwrap_or_else(|| FetchError::new(502, "dns-failed", "no addresses", false));
            return self.fail(id, e, now);
        };
        fetch.addr = Some(SocketAddr::new(*ip, port));
        fetch.step = Step::Queued;
        let key = fetch.origin.clone();
        let rate = self.config.per_origin_rate;
        self.origins.entry(key.clone()).or_insert_with(|| Origin::new(rate, now)).queue.push_back(id);
        self.pump(&key, now);
    }

    /// Gives waiting fetches of an origin connections, as its caps and bucket allow.
    fn pump(&mut self, key: &str, now: Instant) {
        loop {
            let Some(origin) = self.origins.get_mut(key) else { return };
            let Some(&id) = origin.queue.front() else {
                if origin.open == 0 {
                    // Nothing open or waiting: forget the origin, keeping memory bounded.
                    if origin.bucket.rate() >= self.config.per_origin_rate {
                        self.origins.remove(key);
                    }
                }
                return;
            };
            if !self.fetches.get(&id).is_some_and(|f| f.step == Step::Queued) {
                origin.queue.pop_front();
                continue;
            }
            let idle = origin.idle.pop();
            if idle.is_none() && origin.open >= self.config.per_origin_connections {
                return; // a connection will be released
            }
            if let Err(at) = origin.bucket.take(now) {
                if let Some(conn) = idle {
                    origin.idle.push(conn);
                }
                if origin.wake_at.is_none_or(|w| w > at) {
                    origin.wake_at = Some(at);
                    self.origin_timers.push(Reverse((at, key.to_string())));
                }
                return;
            }
            origin.queue.pop_front();
            match idle {
                Some((conn, _)) => {
                    self.idle -= 1;
                    self.shared.stats.reused.fetch_add(1, Ordering::Relaxed);
                    self.exchange(id, conn, now);
                }
                None => self.open(id, key, now),
            }
        }
    }

    fn open(&mut self, id: u64, key: &str, now: Instant) {
        let Some(fetch) = self.fetches.get(&id) else { return };
        let Some(addr) = fetch.addr else { return };
        let host = fetch.url.host_str().unwrap_or_default().to_string();
        let tls = (fetch.url.scheme() == "https").then_some((&self.tls, host.as_str()));
        let mut conn = match Connection::connect(addr, tls) {
            Ok(conn) => conn,
            Err(e) => return self.fail(id, e, now),
        };
        let conn_id = self.next_id();
        if let Err(e) = self.poll.registry().register(
            conn.socket(),
            Token(conn_id as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.fail(id, FetchError::io(&e), now);
        }
        self.shared.stats.connections_opened.fetch_add(1, Ordering::Relaxed);
        if let Some(origin) = self.origins.get_mut(key) {
            origin.open += 1;
        }
        let phase = (State::Connecting, false, now);
        let slot = Slot { conn, origin: key.to_string(), fetch: None, phase, deadline: now, armed: None };
        self.slots.insert(conn_id, slot);
        self.exchange(id, conn_id, now);
    }

    /// Sends fetch `id`'s request on connection `conn`.
    fn exchange(&mut self, id: u64, conn: u64, now: Instant) {
        let (Some(fetch), Some(slot)) = (self.fetches.get_mut(&id), self.slots.get_mut(&conn)) else { return };
        let url = &fetch.url;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut headers: Vec<(&str, &str)> = vec![
            ("User-Agent", &self.config.user_agent),
            ("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"),
            ("Accept-Encoding", "gzip, deflate"),
        ];
        if !self.config.keep_alive {
            headers.push(("Connection", "close"));
        }
        headers.extend(fetch.request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let body = if fetch.request.method == "POST" { fetch.request.body.as_slice() } else { &[] };
        let request = encode_request(fetch.request.method, target, &host, &headers, body);
        let max = self.config.max_response_bytes;
        let reader = ResponseReader::new(MAX_HEAD, max, fetch.request.method == "HEAD");
        slot.conn.start(request, reader, MAX_HEAD + max + 64 * 1024);
        slot.fetch = Some(id);
        fetch.step = Step::Exchanging { conn };
        self.drive(conn, now);
    }

    /// Advances connection `conn` and acts on what it came to.
    fn drive(&mut self, conn: u64, now: Instant) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        match slot.conn.advance() {
            Outcome::Pending => self.arm(conn, now),
            Outcome::Closed => self.close(conn, now),
            Outcome::Response { head, body, reusable } => {
                let fetch = slot.fetch.take();
                let marks = slot.conn.marks();
                let reused = slot.conn.served > 0;
                self.release(conn, reusable, now);
                if let Some(id) = fetch {
                    if let Some(f) = self.fetches.get_mut(&id) {
                        f.timings.connect_ms = ms(marks.connect);
                        f.timings.tls_ms = ms(marks.tls);
                        f.timings.first_byte_ms = ms(marks.first_byte);
                    }
                    self.respond(id, head, body, reused, now);
                }
            }
            Outcome::Failed { error, started } => {
                let fetch = slot.fetch.take();
                let stale = slot.conn.served > 0 && !started;
                self.close(conn, now);
                let Some(id) = fetch else { return };
                match self.fetches.get_mut(&id) {
                    // An idle connection the origin had closed: once, on a fresh one, not an attempt.
                    Some(f) if stale && !f.stale_retry => {
                        f.stale_retry = true;
                        self.hop(id, now);
                    }
                    _ => self.fail(id, error, now),
                }
            }
        }
    }

    /// The deadline of connection `conn` in its current state.
    fn arm(&mut self, conn: u64, now: Instant) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        let fetch_deadline = slot.fetch.and_then(|id| self.fetches.get(&id)).map(|f| f.deadline);
        let c = &self.config;
        let (state, started) = (slot.conn.state(), slot.conn.response_started());
        if (slot.phase.0, slot.phase.1) != (state, started) {
            slot.phase = (state, started, now);
        }
        let since = slot.phase.2;
        let phase = match state {
            State::Connecting | State::Handshaking => since + c.connect_timeout,
            State::Sending | State::Receiving if !started => since + c.first_byte_timeout,
            State::Sending | State::Receiving => fetch_deadline.unwrap_or(since + c.total_timeout),
            State::Idle => since + c.idle_timeout,
        };
        slot.deadline = fetch_deadline.map_or(phase, |d| d.min(phase));
        self.conn_timers.arm(Token(conn as usize), slot.deadline, &mut slot.armed);
    }

    /// A connection's exchange ended: back to the pool, or closed.
    fn release(&mut self, conn: u64, reusable: bool, now: Instant) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        let key = slot.origin.clone();
        let origin_idle = self.origins.get(&key).map_or(0, |o| o.idle.len());
        if !(reusable && self.config.keep_alive)
            || self.idle >= self.config.max_idle
            || origin_idle >= self.config.per_origin_connections
        {
            return self.close(conn, now);
        }
        self.idle += 1;
        if let Some(origin) = self.origins.get_mut(&key) {
            origin.idle.push((conn, now));
        }
        self.arm(conn, now);
        self.pump(&key, now);
    }

    fn close(&mut self, conn: u64, now: Instant) {
        let Some(mut slot) = self.slots.remove(&conn) else { return };
        let _ = self.poll.registry().deregister(slot.conn.socket());
        if let Some(origin) = self.origins.get_mut(&slot.origin) {
            origin.open = origin.open.saturating_sub(1);
            if let Some(i) = origin.idle.iter().position(|(c, _)| *c == conn) {
                origin.idle.swap_remove(i);
                self.idle -= 1;
            }
        }
        self.pump(&slot.origin, now);
    }

    /// A response arrived: redirect, back off, retry or end.
    fn respond(&mut self, id: u64, head: ResponseHead, body: Vec<u8>, reused: bool, now: Instant) {
        let Some(fetch) = self.fetches.get_mut(&id) else { return };
        let status = head.status;
        if fetch.request.follow_redirects && matches!(status, 301 | 302 | 303 | 307 | 308) {
            if let Some(location) = head.header("location") {
                if fetch.redirects.len() >= self.config.max_redirects as usize {
                    let detail = format!("more than {} redirects", self.config.max_redirects);
                    return self.finish(id, Err(FetchError::new(502, "too-many-redirects", detail, false)), now);
                }
                let next = match fetch.url.join(location) {
                    Ok(next) => next,
                    Err(e) => return self.finish(id, Err(FetchError::malformed(format!("bad Location: {e}"))), now),
                };
                fetch.redirects.push(Redirect { url: fetch.url.to_string(), status });
                fetch.url = next;
                if status == 303 || (fetch.request.method == "POST" && status != 307 && status != 308) {
                    fetch.request.method = "GET";
                }
                return self.hop(id, now);
            }
        }
        let retry_after = head.header("retry-after").and_then(parse_retry_after);
        if matches!(status, 429 | 503) {
            if let Some(origin) = self.origins.get_mut(&fetch.origin) {
                origin.bucket.back_off(now, retry_after);
            }
        }
        let transient = matches!(status, 429 | 502 | 503 | 504);
        let unwanted = fetch.request.retry_on == RetryOn::NotSuccess && !(200..300).contains(&status);
        if transient || unwanted {
            let error = FetchError::new(502, "upstream-status", format!("the upstream answered {status}"), true);
            if self.retry(id, retry_after, now) {
                return;
            }
            if unwanted {
                return self.finish(id, Err(error), now);
            }
        }
        let Some(fetch) = self.fetches.get(&id) else { return };
        let response = FetchResponse {
            status,
            final_url: fetch.url.clone(),
            head,
            body,
            timings: fetch.timings,
            attempts: fetch.attempt,
            redirects: fetch.redirects.clone(),
            reused_connection: reused,
        };
        self.finish(id, Ok(response), now);
    }

    /// A failure: retried if transient and time allows, else the end.
    fn fail(&mut self, id: u64, error: FetchError, now: Instant) {
        if error.transient && self.retry(id, None, now) {
            return;
        }
        self.finish(id, Err(error), now);
    }

    /// Schedules another attempt after a backoff; false when out of attempts or time.
    fn retry(&mut self, id: u64, hint: Option<Duration>, now: Instant) -> bool {
        let jitter = self.jitter();
        let Some(fetch) = self.fetches.get_mut(&id) else { return false };
        let retries = fetch.request.retries.unwrap_or(self.config.retries);
        if fetch.attempt > retries {
            return false;
        }
        let backoff = RETRY_BASE * 2u32.saturating_pow(fetch.attempt - 1);
        // Retry-After is a floor; jitter only spreads retries after it.
        let delay = match hint {
            Some(after) => after.max(backoff).mul_f64(1.0 + jitter / 4.0),
            None => backoff.mul_f64(0.5 + jitter),
        };
        let until = now + delay;
        if until >= fetch.deadline {
            return false;
        }
        fetch.attempt += 1;
        fetch.stale_retry = false;
        fetch.step = Step::Backoff { until };
        self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        if let Some(on_attempt) = &fetch.request.on_attempt {
            on_attempt(fetch.attempt);
        }
        self.fetch_timers.push(Reverse((until, id)));
        true
    }

    /// A number in [0, 1) from xorshift: jitter needs no better randomness.
    fn jitter(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn finish(&mut self, id: u64, result: Result<FetchResponse, FetchError>, now: Instant) {
        let Some(mut fetch) = self.fetches.remove(&id) else { return };
        if let Step::Exchanging { conn } = fetch.step {
            // Ended mid-exchange (timed out): the connection's state is unknown, so it goes.
            if self.slots.get(&conn).is_some_and(|s| s.fetch == Some(id)) {
                self.close(conn, now);
            }
        }
        // A fresh clock: `now` is the loop's, taken before this turn's work.
        let took = fetch.started.elapsed();
        let stats = &self.shared.stats;
        let result = result.map(|mut r| {
            r.timings.total_ms = ms(took);
            let t = &r.timings;
            for (step, millis) in
                [("dns", t.dns_ms), ("connect", t.connect_ms), ("tls", t.tls_ms), ("first_byte", t.first_byte_ms)]
            {
                stats.steps.record(step, Duration::from_secs_f64(millis / 1000.0));
            }
            r
        });
        stats.durations.record(if result.is_ok() { "ok" } else { "error" }, took);
        if let Err(e) = &result {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            let mut by_code = stats.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *by_code.entry(e.code).or_default() += 1;
        }
        if let Some(on_done) = fetch.on_done.take() {
            on_done(result);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((at, token)) = self.conn_timers.pop_due(now) {
            let conn = token.0 as u64;
            let Some(slot) = self.slots.get_mut(&conn) else { continue };
            if slot.armed == Some(at) {
                slot.armed = None;
            }
            if slot.deadline > now {
                // The deadline moved later since this entry was set.
                self.conn_timers.arm(token, slot.deadline, &mut slot.armed);
                continue;
            }
            let state = slot.conn.state();
            let started = slot.conn.response_started();
            match (state, slot.fetch) {
                (State::Idle, _) => self.close(conn, now),
                (_, Some(id)) => {
                    slot.fetch = None;
                    self.close(conn, now);
                    let past_deadline = self.fetches.get(&id).is_none_or(|f| now >= f.deadline);
                    let error = match state {
                        _ if past_deadline => total_timeout(),
                        State::Connecting => FetchError::new(504, "connect-timeout", "connecting took too long", true),
                        State::Handshaking => {
                            FetchError::new(504, "tls-timeout", "the TLS handshake took too long", true)
                        }
                        _ if !started => FetchError::new(504, "first-byte-timeout", "no response in time", true),
                        _ => total_timeout(),
                    };
                    if let Some(f) = self.fetches.get_mut(&id) {
                        f.step = Step::Queued;
                    }
                    self.fail(id, error, now);
                }
                (_, None) => self.close(conn, now),
            }
        }
        while self.fetch_timers.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, id))) = self.fetch_timers.pop() else { break };
            let Some(fetch) = self.fetches.get(&id) else { continue };
            if now >= fetch.deadline {
                self.finish(id, Err(total_timeout()), now);
            } else if let Step::Backoff { until } = fetch.step {
                if until <= now {
                    self.hop(id, now);
                }
            }
        }
        while self.origin_timers.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, key))) = self.origin_timers.pop() else { break };
            if let Some(origin) = self.origins.get_mut(&key) {
                origin.wake_at = None;
            }
            self.pump(&key, now);
        }
    }
}

fn total_timeout() -> FetchError {
    FetchError::new(504, "fetch-timeout", "the fetch ran past its deadline", false)
}

/// `Retry-After` in seconds (the HTTP-date form is read too).
/// Capped at an hour: the value comes from the network, and time
/// arithmetic on an enormous one would overflow.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let after = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(SystemTime::now()).unwrap_or_default(),
    };
    Some(after.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_and_capped() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("18446744073709551615"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
