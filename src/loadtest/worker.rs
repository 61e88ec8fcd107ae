//! One load-generating thread: its own mio `Poll`, its share of the
//! connections and of the rate, its own stats.
//!
//! Closed loop: every connection keeps `--pipeline` requests in flight.
//! Open loop: the rate is spread evenly over the connections, each with its
//! own schedule of intended send times (as wrk2 does); a connection that is
//! still waiting sends its overdue requests as soon as it has room, each
//! with its own intended time. Latency counts from the intended time
//! (coordinated omission corrected) and, separately, from the actual send.
//! Nothing is queued, so an unreachable rate costs no memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConfig;

use super::plan::{Pick, Plan};
use super::stats::{ErrorKind, Stats};
use crate::fetch::origin::Bucket;
use crate::fetch::transport::Transport;
use crate::http::chunked::ChunkedDecoder;
use crate::http::client::{parse_head, Framing, HeadInfo, ParsedHead};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// First size of a connection's read buffer.
const READ_BUF: usize = 64 * 1024;
/// How often deadlines are checked.
const SWEEP: Duration = Duration::from_millis(20);
/// Wait before reconnecting after a failed connect.
const RECONNECT: Duration = Duration::from_millis(100);
/// Token of the schedule's timer.
const TIMER: Token = Token(usize::MAX);
/// Adaptive rate: at most one decrease per this long.
const DECREASE_EVERY: Duration = Duration::from_millis(250);
/// Status polls one connection may have in flight beyond its pipeline.
const POLLS_IN_FLIGHT: usize = 16;

/// Settings every thread shares.
#[derive(Debug)]
pub struct Shared {
    /// What to send.
    pub plan: Plan,
    /// TLS for https targets.
    pub tls: Option<Arc<ClientConfig>>,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// How long a request may wait for its response.
    pub timeout: Duration,
    /// Adaptive open-loop rate.
    pub adaptive: bool,
    /// Stop after this many measured requests (`-n`).
    pub limit: Option<u64>,
    /// Measured requests started (for `-n`).
    pub issued: AtomicU64,
    /// Responses and errors so far, for the progress line.
    pub done: AtomicU64,
    /// Errors so far, for the progress line.
    pub failed: AtomicU64,
    /// The worst thread's p99 of the last second, in microseconds.
    pub last_p99: AtomicU64,
    /// Connections that ever connected.
    pub connected: AtomicU64,
    /// Set to stop early (Ctrl-C).
    pub stop: Arc<AtomicBool>,
}

/// When the run's parts begin and end.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Load begins: the ramp (from zero to full), then the warm-up at full load.
    pub start: Instant,
    /// How long the ramp takes.
    pub ramp: Duration,
    /// Measurement begins (after ramp and warm-up).
    pub measure_from: Instant,
    /// Load ends; `None` with `-n` (ends when the count is reached).
    pub end: Option<Instant>,
}

/// One thread's share.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// Its number.
    pub index: usize,
    /// Its connections.
    pub connections: usize,
    /// Its open-loop rate; `None` for closed loop.
    pub rate: Option<f64>,
}

/// What a request in flight is.
#[derive(Debug, Clone)]
enum What {
    Request(usize),
    Submit { flow: usize },
    Poll { flow: usize, began: Instant, path: String },
}

#[derive(Debug, Clone)]
struct Sent {
    intended: Instant,
    sent: Instant,
    what: What,
}

/// Where the response at the front is.
#[derive(Debug)]
enum Body {
    /// A body nobody reads: dropped as it arrives, so a large one costs no memory.
    Skip {
        remaining: usize,
        total: usize,
    },
    Length(usize),
    Chunked {
        decoder: ChunkedDecoder,
        decoded: usize,
        raw: usize,
    },
    UntilClose,
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not yet active (ramping), or waiting to reconnect.
    Down { at: Instant },
    /// TCP connect (and TLS handshake) under way.
    Connecting,
    /// Ready for requests.
    Open,
}

/// A task flow waiting to poll its task's status.
#[derive(Debug)]
struct PendingPoll {
    /// When the poll is due.
    at: Instant,
    flow: usize,
    /// When the flow's submission was intended.
    began: Instant,
    /// The status path.
    path: String,
}

#[derive(Debug)]
struct Conn {
    state: State,
    transport: Option<Transport>,
    out: Vec<u8>,
    written: usize,
    inflight: VecDeque<Sent>,
    buf: Vec<u8>,
    filled: usize,
    head: Option<(HeadInfo, Body)>,
    /// Task flows waiting to poll, soonest first.
    polls: Vec<PendingPoll>,
    /// Open loop: the intended time of its next request.
    next_intended: Option<Instant>,
    /// The peer said `Connection: close`: reconnect once the front is answered.
    closing: bool,
}

impl Conn {
    fn new(at: Instant) -> Conn {
        Conn {
            state: State::Down { at },
            transport: None,
            out: Vec::new(),
            written: 0,
            inflight: VecDeque::new(),
            buf: vec![0; READ_BUF],
            filled: 0,
            head: None,
            polls: Vec::new(),
            next_intended: None,
            closing: false,
        }
    }

    /// Room for the next request. Open loop: polls take none, so that the
    /// tool's own polling never delays what the schedule sends. Closed loop:
    /// a task flow holds its connection until it ends, so that the
    /// connections are the flows in progress (else every connection would
    /// submit without bound and the queue, not the flows, would be measured).
    fn has_room(&self, pipeline: usize, open_loop: bool) -> bool {
        let scheduled = self.scheduled_in_flight();
        let flows_done = open_loop || (self.polls.is_empty() && scheduled == self.inflight.len());
        self.state == State::Open && !self.closing && flows_done && scheduled < pipeline
    }

    /// Requests in flight that the schedule sent (polls aside).
    fn scheduled_in_flight(&self) -> usize {
        self.inflight.iter().filter(|s| !matches!(s.what, What::Poll { .. })).count()
    }

    /// Queues a poll for `flow`, due at `at`.
    fn poll_later(&mut self, poll: PendingPoll) {
        let at = self.polls.partition_point(|p| p.at <= poll.at);
        self.polls.insert(at, poll);
    }
}

/// A thread's run.
struct Worker<'a> {
    shared: &'a Shared,
    phases: Phases,
    share: Share,
    poll: Poll,
    conns: Vec<Conn>,
    stats: Stats,
    bucket: Option<Bucket>,
    last_decrease: Option<Instant>,
    rng: u64,
    done_batch: u64,
    failed_batch: u64,
    second: usize,
    /// Responses by status (index), folded into the stats at the end.
    statuses: Vec<u64>,
    /// Responses by template, then by flow, folded into the stats at the end.
    names: Vec<u64>,
    /// Open loop: a timerfd for the next due time; epoll's own timeout is
    /// whole milliseconds, which would send requests up to 1 ms late.
    timer: Option<std::os::fd::OwnedFd>,
}

/// A non-blocking monotonic timerfd.
fn timerfd() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: timerfd_create returns a new descriptor (or -1), owned from here on.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    // SAFETY: fd is a valid descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Arms `timer` to fire once after `after` (at least 1 ns: zero disarms).
fn arm_timer(timer: &std::os::fd::OwnedFd, after: Duration) {
    use std::os::fd::AsRawFd;
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: the descriptor is a timerfd; spec is a valid itimerspec; the old value is not asked for.
    unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
}

fn drain_timer(timer: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    let mut expirations = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a buffer of 8; non-blocking.
    unsafe { libc::read(timer.as_raw_fd(), expirations.as_mut_ptr().cast(), expirations.len()) };
}

/// Runs one thread's share of the load; returns what it measured.
pub fn run(shared: &Shared, phases: Phases, share: Share) -> Result<Stats, String> {
    let poll = Poll::new().map_err(|e| format!("cannot create a poller: {e}"))?;
    let ramp = phases.ramp;
    let conns = (0..share.connections)
        .map(|i| {
            // Closed loop ramps the connections in; open loop ramps the rate.
            let delay = match share.rate {
                None => ramp.mul_f64((i + 1) as f64 / share.connections as f64),
                Some(_) => Duration::ZERO,
            };
            Conn::new(phases.start + delay)
        })
        .collect();
    let bucket = share.rate.filter(|_| shared.adaptive).map(|r| Bucket::new(r, phases.start));
    let mut worker = Worker {
        shared,
        phases,
        share,
        poll,
        conns,
        stats: Stats::default(),
        bucket,
        last_decrease: None,
        rng: 0x9E37_79B9_7F4A_7C15 ^ (share.index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        done_batch: 0,
        failed_batch: 0,
        second: 0,
        statuses: vec![0; 1000],
        names: vec![0; shared.plan.templates.len() + shared.plan.flows.len()],
        timer: None,
    };
    if let Some(base) = share.rate {
        // Each connection's schedule starts a fraction of the interval apart.
        let interval = Duration::from_secs_f64(share.connections.max(1) as f64 / base);
        let n = worker.conns.len().max(1);
        for (i, conn) in worker.conns.iter_mut().enumerate() {
            conn.next_intended = Some(phases.start + interval.mul_f64(i as f64 / n as f64));
        }
        use std::os::fd::AsRawFd;
        let timer = timerfd().ok_or("cannot create a timerfd")?;
        worker
            .poll
            .registry()
            .register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)
            .map_err(|e| format!("cannot register the timer: {e}"))?;
        worker.timer = Some(timer);
    }
    worker.run();
    let mut stats = std::mem::take(&mut worker.stats);
    stats.cpu = thread_cpu();
    for (status, n) in worker.statuses.iter().enumerate().filter(|(_, n)| **n > 0) {
        stats.statuses.insert(status as u16, *n);
    }
    let plan = &shared.plan;
    let names = plan.templates.iter().map(|t| &t.name).chain(plan.flows.iter().map(|f| &f.name));
    for (name, n) in names.zip(&worker.names).filter(|(_, n)| **n > 0) {
        *stats.by_name.entry(name.clone()).or_default() += n;
    }
    Ok(stats)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid pointer given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Worker<'_> {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let now = Instant::now();
            if self.finished(now) {
                break;
            }
            self.start_connections(now);
            self.dispatch(now);
            self.publish(now);
            let mut wake = next_sweep;
            let pipeline = self.shared.pipeline;
            let open_loop = self.share.rate.is_some();
            let due =
                self.conns.iter().filter(|c| c.has_room(pipeline, open_loop)).filter_map(|c| c.next_intended).min();
            if let (Some(due), Some(timer)) = (due, &self.timer) {
                arm_timer(timer, due.saturating_duration_since(now));
            }
            if let Some(end) = self.phases.end {
                wake = wake.min(end);
            }
            for c in &self.conns {
                match (c.state, c.polls.first()) {
                    (State::Down { at }, _) => wake = wake.min(at),
                    (_, Some(poll)) => wake = wake.min(poll.at),
                    _ => {}
                }
            }
            let timeout = wake.saturating_duration_since(now);
            if self.poll.poll(&mut events, Some(timeout)).is_err() {
                continue; // EINTR; anything else recurs and ends with the run
            }
            let now = Instant::now();
            for event in events.iter() {
                let i = event.token().0;
                if i < self.conns.len() {
                    self.ready(i, now);
                } else if event.token() == TIMER {
                    if let Some(timer) = &self.timer {
                        drain_timer(timer);
                    }
                }
            }
            if now >= next_sweep {
                next_sweep = now + SWEEP;
                self.sweep(now);
            }
        }
        self.publish(Instant::now());
        self.count_missed(Instant::now());
    }

    /// Open loop: requests whose intended time passed while their
    /// connection was busy, never sent; counted as scheduled.
    fn count_missed(&mut self, now: Instant) {
        let Some(base) = self.share.rate else { return };
        let until = self.phases.end.map_or(now, |end| end.min(now));
        for i in 0..self.conns.len() {
            let Some(next) = self.conns[i].next_intended else { continue };
            if next >= until {
                continue;
            }
            let from = next.max(self.phases.measure_from);
            let interval = self.interval_at(from, base).as_secs_f64().max(1e-9);
            self.stats.scheduled += (until.saturating_duration_since(from).as_secs_f64() / interval) as u64;
        }
    }

    /// Whether the run is over for this thread.
    fn finished(&self, now: Instant) -> bool {
        if self.shared.stop.load(Ordering::Relaxed) {
            return true;
        }
        match self.phases.end {
            Some(end) => now >= end,
            // -n: over when every measured request has been issued and answered.
            None => {
                let limit = self.shared.limit.unwrap_or(0);
                self.shared.issued.load(Ordering::Relaxed) >= limit
                    && self.conns.iter().all(|c| c.inflight.is_empty() && c.polls.is_empty())
            }
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn measured(&self, intended: Instant) -> bool {
        intended >= self.phases.measure_from
    }

    fn second_of(&self, intended: Instant) -> usize {
        intended.saturating_duration_since(self.phases.measure_from).as_secs() as usize
    }

    /// Takes a slot under `-n`; false when the count is reached.
    fn take_slot(&self, intended: Instant) -> bool {
        match self.shared.limit {
            Some(limit) if self.measured(intended) => self.shared.issued.fetch_add(1, Ordering::Relaxed) < limit,
            _ => true,
        }
    }

    /// Open loop: the time between one connection's requests from `at`:
    /// along the linear ramp (so that the count grows as the integral of the
    /// rate, t^2 / 2), then at the full rate, adapted when `--adaptive`.
    fn interval_at(&mut self, at: Instant, base: f64) -> Duration {
        let rate = match &mut self.bucket {
            Some(bucket) => bucket.rate_at(at),
            None => base,
        }
        .max(0.01);
        let share = self.share.connections.max(1) as f64;
        let ramp = self.phases.ramp.as_secs_f64();
        let t = at.saturating_duration_since(self.phases.start).as_secs_f64();
        if ramp > 0.0 && t < ramp {
            // Solve count(next) - count(t) = one request, count(t) = rate t^2 / (2 ramp share).
            let next = (t * t + 2.0 * ramp * share / rate).sqrt();
            if next <= ramp {
                return Duration::from_secs_f64(next - t);
            }
        }
        Duration::from_secs_f64(share / rate)
    }

    /// Fills every connection with what it has room for, and sends it.
    fn dispatch(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            self.refill(i, now);
        }
    }

    /// Queues the next request of the mix on connection `i`.
    fn send_next(&mut self, i: usize, intended: Instant, now: Instant) {
        let r = self.random();
        let plan = &self.shared.plan;
        let (bytes, what) = match plan.pick(r) {
            Pick::Request(t) => (&plan.templates[t].bytes, What::Request(t)),
            Pick::Flow(f) => (&plan.flows[f].submit.bytes, What::Submit { flow: f }),
        };
        let conn = &mut self.conns[i];
        conn.out.extend_from_slice(bytes);
        conn.inflight.push_back(Sent { intended, sent: now, what });
    }

    /// Sends the status polls that are due on connection `i`, pipelined
    /// behind what is in flight (at most [`POLLS_IN_FLIGHT`] at once).
    fn poll_flows(&mut self, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        if conn.state != State::Open || conn.closing {
            return;
        }
        let mut in_flight = conn.inflight.iter().filter(|s| matches!(s.what, What::Poll { .. })).count();
        while in_flight < POLLS_IN_FLIGHT && conn.polls.first().is_some_and(|p| p.at <= now) {
            let PendingPoll { at, flow, began, path } = conn.polls.remove(0);
            conn.out.extend_from_slice(&self.shared.plan.poll(&path));
            conn.inflight.push_back(Sent { intended: at, sent: now, what: What::Poll { flow, began, path } });
            in_flight += 1;
        }
    }

    /// Connects the connections whose time has come.
    fn start_connections(&mut self, now: Instant) {
        if self.phases.end.is_some_and(|end| now >= end) {
            return;
        }
        for i in 0..self.conns.len() {
            let State::Down { at } = self.conns[i].state else { continue };
            if at > now {
                continue;
            }
            match self.connect(i) {
                Ok(()) => self.conns[i].state = State::Connecting,
                Err(()) => {
                    self.conns[i].state = State::Down { at: now + RECONNECT };
                    self.stats.error(self.second_of(now), ErrorKind::Connect);
                    self.failed_batch += 1;
                }
            }
        }
    }

    fn connect(&mut self, i: usize) -> Result<(), ()> {
        let target = &self.shared.plan.target;
        let stream = TcpStream::connect(target.addr).map_err(|_| ())?;
        let _ = stream.set_nodelay(true);
        let tls = match (&self.shared.tls, &target.tls_name) {
            (Some(config), Some(name)) => Some((config, name.as_str())),
            _ => None,
        };
        let mut transport = Transport::new(stream, tls).map_err(|_| ())?;
        self.poll
            .registry()
            .register(transport.socket(), Token(i), Interest::READABLE | Interest::WRITABLE)
            .map_err(|_| ())?;
        let conn = &mut self.conns[i];
        conn.transport = Some(transport);
        conn.filled = 0;
        conn.head = None;
        conn.closing = false;
        Ok(())
    }

    /// A readiness event on connection `i`.
    fn ready(&mut self, i: usize, now: Instant) {
        if self.conns[i].state == State::Connecting {
            let Some(t) = self.conns[i].transport.as_mut() else { return };
            let socket = t.socket();
            match socket.take_error() {
                Ok(None) => {}
                _ => return self.broken(i, now, ErrorKind::Connect),
            }
            match socket.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                Err(_) => return self.broken(i, now, ErrorKind::Connect),
            }
            if t.flush().is_err() {
                return self.broken(i, now, ErrorKind::Connect);
            }
            if t.handshaking() {
                if t.handshake().is_err() {
                    return self.broken(i, now, ErrorKind::Connect);
                }
                if t.handshaking() {
                    return;
                }
            }
            self.conns[i].state = State::Open;
            self.shared.connected.fetch_add(1, Ordering::Relaxed);
        }
        if self.conns[i].state != State::Open {
            return;
        }
        self.flush(i, now);
        self.read(i, now);
        // Answers free room: refill this connection at once, not after the next poll.
        self.refill(i, now);
    }

    /// Gives connection `i` what it has room for (closed loop), or what is
    /// due on its schedule (open loop), and sends it.
    fn refill(&mut self, i: usize, now: Instant) {
        let pipeline = self.shared.pipeline;
        // Closed loop tops a pipeline up once half of it has room, so that
        // one write carries several requests: a server that answers each
        // request in its own segment would otherwise cost a write per request.
        let free = pipeline.saturating_sub(self.conns[i].scheduled_in_flight());
        let batched = self.share.rate.is_some() || free >= pipeline.div_ceil(2);
        while batched && self.conns[i].has_room(pipeline, self.share.rate.is_some()) {
            let intended = match (self.share.rate, self.conns[i].next_intended) {
                (Some(_), Some(due)) if due <= now && self.phases.end.is_none_or(|end| due < end) => due,
                (Some(_), _) => break,
                (None, _) if self.phases.end.is_some_and(|end| now >= end) => break,
                (None, _) => now,
            };
            if !self.take_slot(intended) {
                self.conns[i].next_intended = None;
                break;
            }
            if let Some(base) = self.share.rate {
                let next = intended + self.interval_at(intended, base);
                self.conns[i].next_intended = Some(next);
                if self.measured(intended) {
                    self.stats.scheduled += 1;
                }
            }
            self.send_next(i, intended, now);
        }
        self.poll_flows(i, now);
        if !self.conns[i].out.is_empty() {
            self.flush(i, now);
        }
    }

    fn flush(&mut self, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        if conn.state != State::Open {
            return;
        }
        let Some(t) = conn.transport.as_mut() else { return };
        while conn.written < conn.out.len() {
            match t.write(&conn.out[conn.written..]) {
                Ok(0) => return,
                Ok(n) => conn.written += n,
                Err(_) => return self.broken(i, now, ErrorKind::Reset),
            }
        }
        conn.out.clear();
        conn.written = 0;
    }

    fn read(&mut self, i: usize, now: Instant) {
        loop {
            let conn = &mut self.conns[i];
            let Some(t) = conn.transport.as_mut() else { return };
            if conn.filled == conn.buf.len() {
                let grown = conn.buf.len() * 2;
                conn.buf.resize(grown, 0);
            }
            let got = match t.read_into(&mut conn.buf[conn.filled..]) {
                Ok(got) => got,
                Err(e) => {
                    let kind = if e.code == "tls-failed" { ErrorKind::Parse } else { ErrorKind::Reset };
                    return self.broken(i, now, kind);
                }
            };
            conn.filled += got.bytes;
            if let Err(kind) = self.responses(i, now, got.eof) {
                return self.broken(i, now, kind);
            }
            if got.eof {
                let conn = &self.conns[i];
                if conn.inflight.is_empty() && conn.polls.is_empty() {
                    return self.reconnect(i, now);
                }
                return self.broken(i, now, ErrorKind::Reset);
            }
            if self.conns[i].closing && self.conns[i].inflight.is_empty() {
                return self.reconnect(i, now);
            }
            if got.drained {
                return;
            }
        }
    }

    /// Takes every complete response out of connection `i`'s buffer.
    fn responses(&mut self, i: usize, now: Instant, eof: bool) -> Result<(), ErrorKind> {
        loop {
            let conn = &mut self.conns[i];
            if conn.head.is_none() {
                if conn.filled == 0 {
                    return Ok(());
                }
                let head_request = conn.inflight.front().is_some_and(|s| match s.what {
                    What::Request(t) => self.shared.plan.templates[t].head,
                    _ => false,
                });
                // Only task-flow answers are read; other bodies are counted and dropped.
                let keep = conn.inflight.front().is_some_and(|s| !matches!(s.what, What::Request(_)));
                match parse_head(&conn.buf[..conn.filled], MAX_HEAD, MAX_BODY, head_request, |_, _| {}) {
                    Ok(ParsedHead::Partial) => return Ok(()),
                    Ok(ParsedHead::Interim(n)) => {
                        consume(conn, n);
                        continue;
                    }
                    Ok(ParsedHead::Complete(info)) => {
                        let body = match info.framing {
                            // Skipped only when it has not all arrived: else one consume takes it whole.
                            Framing::Length(n) if !keep && conn.filled < info.len + n as usize => {
                                consume(conn, info.len);
                                Body::Skip { remaining: n as usize, total: info.len + n as usize }
                            }
                            Framing::Length(n) => Body::Length(n as usize),
                            Framing::Chunked => {
                                Body::Chunked { decoder: ChunkedDecoder::new(MAX_BODY), decoded: 0, raw: 0 }
                            }
                            Framing::UntilClose => Body::UntilClose,
                        };
                        conn.head = Some((info, body));
                    }
                    Err(_) => return Err(ErrorKind::Parse),
                }
            }
            let Some((info, body)) = conn.head.as_mut() else { return Ok(()) };
            let start = info.len;
            // Skipped body bytes go at once; the rest once the response is complete:
            // (body end, bytes still to consume, response bytes).
            let (complete, skipped) = match body {
                Body::Skip { remaining, total } => {
                    let take = (*remaining).min(conn.filled);
                    *remaining -= take;
                    ((*remaining == 0).then_some((0, 0, *total)), take)
                }
                Body::Length(n) => ((conn.filled >= start + *n).then_some((start + *n, start + *n, start + *n)), 0),
                Body::Chunked { decoder, decoded, raw } => {
                    let p = decoder.decode(&mut conn.buf[start..conn.filled], *raw).map_err(|_| ErrorKind::Parse)?;
                    (*decoded, *raw) = (p.decoded, p.raw);
                    (p.done.then_some((start + p.decoded, start + p.raw, start + p.raw)), 0)
                }
                Body::UntilClose => (eof.then_some((conn.filled, conn.filled, conn.filled)), 0),
            };
            let info = *info;
            consume(conn, skipped);
            let Some((body_end, consumed, bytes)) = complete else { return Ok(()) };
            let Some(sent) = conn.inflight.pop_front() else { return Err(ErrorKind::Parse) };
            if !info.keep_alive {
                conn.closing = true;
            }
            let flow_body = matches!(sent.what, What::Submit { .. } | What::Poll { .. })
                .then(|| conn.buf.get(start..body_end).map(<[u8]>::to_vec))
                .flatten();
            consume(conn, consumed);
            conn.head = None;
            self.answered(i, sent, info.status, bytes, flow_body, now);
        }
    }

    /// A response arrived for `sent`.
    fn answered(&mut self, i: usize, sent: Sent, status: u16, bytes: usize, body: Option<Vec<u8>>, now: Instant) {
        self.done_batch += 1;
        if let What::Poll { .. } = sent.what {
            // The tool's own traffic: kept apart from what the schedule sent.
            if self.measured(sent.intended) {
                self.stats.polls.response(status, now - sent.sent);
            }
        } else if self.measured(sent.intended) {
            let second = self.second_of(sent.intended);
            self.stats.response(second, bytes, now - sent.intended, now - sent.sent);
            // parse_head only returns three-digit statuses.
            if let Some(n) = self.statuses.get_mut(usize::from(status)) {
                *n += 1;
            }
            let name = match &sent.what {
                What::Request(t) => *t,
                What::Submit { flow } | What::Poll { flow, .. } => self.shared.plan.templates.len() + flow,
            };
            if let Some(n) = self.names.get_mut(name) {
                *n += 1;
            }
        }
        if status == 429 || status == 503 {
            self.decrease(now);
        }
        match sent.what {
            What::Request(_) => {}
            What::Submit { flow } => self.submitted(i, flow, sent.intended, status, body.as_deref(), now),
            What::Poll { flow, began, path } => self.polled(i, (flow, began, path), status, body.as_deref(), now),
        }
    }

    fn submitted(&mut self, i: usize, flow: usize, began: Instant, status: u16, body: Option<&[u8]>, now: Instant) {
        let url = body
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["check_status_url"].as_str().map(str::to_string));
        match (status, url) {
            (200 | 202, Some(url)) => {
                let path = match self.shared.plan.target.url.join(&url) {
                    Ok(u) => u[url::Position::BeforePath..url::Position::AfterQuery].to_string(),
                    Err(_) => url,
                };
                let interval = self.shared.plan.flows[flow].poll_interval;
                self.conns[i].poll_later(PendingPoll { at: now + interval, flow, began, path });
            }
            (status, _) => self.flow_ended(began, &format!("refused-{status}"), now),
        }
    }

    /// A status poll of flow `(flow, began, path)` was answered.
    fn polled(&mut self, i: usize, poll: (usize, Instant, String), status: u16, body: Option<&[u8]>, now: Instant) {
        let (flow, began, path) = poll;
        let state = body
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["status"].as_str().map(str::to_string));
        match (status, state.as_deref()) {
            (200, Some("queued" | "processing")) => {
                let interval = self.shared.plan.flows[flow].poll_interval;
                self.conns[i].poll_later(PendingPoll { at: now + interval, flow, began, path });
            }
            (200, Some(state)) => self.flow_ended(began, state, now),
            (status, _) => self.flow_ended(began, &format!("poll-{status}"), now),
        }
    }

    fn flow_ended(&mut self, began: Instant, outcome: &str, now: Instant) {
        if !self.measured(began) {
            return;
        }
        super::stats::record(&mut self.stats.tasks.latency, now - began);
        *self.stats.tasks.outcomes.entry(outcome.to_string()).or_default() += 1;
    }

    /// Adaptive rate: 429, 503 or a timeout halves it (at most every 250 ms).
    fn decrease(&mut self, now: Instant) {
        let Some(bucket) = &mut self.bucket else { return };
        if self.last_decrease.is_some_and(|t| now - t < DECREASE_EVERY) {
            return;
        }
        self.last_decrease = Some(now);
        bucket.back_off(now, Some(Duration::ZERO));
    }

    /// Ends requests waiting past `--timeout`.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.shared.timeout;
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            let overdue = match c.state {
                State::Connecting => {
                    c.transport.is_some() && c.inflight.front().is_some_and(|s| now - s.sent > timeout)
                }
                State::Open => c.inflight.front().is_some_and(|s| now - s.sent > timeout),
                State::Down { .. } => false,
            };
            if overdue {
                self.decrease(now);
                self.broken(i, now, ErrorKind::Timeout);
            }
        }
    }

    /// Connection `i` failed: its requests in flight fail with `kind`; it reconnects.
    fn broken(&mut self, i: usize, now: Instant, kind: ErrorKind) {
        let conn = &mut self.conns[i];
        let lost: Vec<Sent> = conn.inflight.drain(..).collect();
        let waiting = std::mem::take(&mut conn.polls);
        let connect_failed = conn.state == State::Connecting && lost.is_empty();
        for sent in &lost {
            self.failed_batch += 1;
            self.done_batch += 1;
            if self.measured(sent.intended) {
                self.stats.error(self.second_of(sent.intended), kind);
            }
            if let What::Submit { .. } | What::Poll { .. } = sent.what {
                let began = match &sent.what {
                    What::Poll { began, .. } => *began,
                    _ => sent.intended,
                };
                self.flow_ended(began, "failed", now);
            }
        }
        for poll in waiting {
            self.flow_ended(poll.began, "failed", now);
        }
        if connect_failed {
            self.failed_batch += 1;
            self.stats.error(self.second_of(now), ErrorKind::Connect);
        }
        self.close(i);
        let wait = if kind == ErrorKind::Connect { RECONNECT } else { Duration::ZERO };
        self.conns[i].state = State::Down { at: now + wait };
    }

    /// Connection `i` ended cleanly (the server closed between responses).
    fn reconnect(&mut self, i: usize, now: Instant) {
        self.close(i);
        self.conns[i].state = State::Down { at: now };
    }

    fn close(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        if let Some(mut t) = conn.transport.take() {
            let _ = self.poll.registry().deregister(t.socket());
        }
        conn.out.clear();
        conn.written = 0;
        conn.filled = 0;
        conn.head = None;
        conn.closing = false;
        // What was in flight has been counted by the caller.
        conn.inflight.clear();
    }

    /// Publishes progress figures, and opens a new second.
    fn publish(&mut self, now: Instant) {
        if self.done_batch > 0 {
            self.shared.done.fetch_add(self.done_batch, Ordering::Relaxed);
            self.shared.failed.fetch_add(self.failed_batch, Ordering::Relaxed);
            self.done_batch = 0;
            self.failed_batch = 0;
        }
        let second = self.second_of(now);
        if second > self.second && now > self.phases.measure_from {
            if let Some(s) = self.stats.seconds.get(self.second) {
                self.shared.last_p99.fetch_max(s.latency.value_at_quantile(0.99), Ordering::Relaxed);
            }
            self.second = second;
        }
    }
}

/// Drops the first `n` bytes of a connection's buffer.
fn consume(conn: &mut Conn, n: usize) {
    conn.buf.copy_within(n..conn.filled, 0);
    conn.filled -= n;
}
