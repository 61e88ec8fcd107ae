//! One reactor thread: a mio `Poll`, its listener, its connections in a
//! slab, its deadlines, and its mailbox.
//!
//! Each iteration reads the clock once, handles every event, gives busy
//! connections another turn, fires due deadlines, then sleeps in `poll`
//! until the next event or deadline.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::access_log::AccessLog;
use super::buffers::BufPool;
use super::connection::{Connection, Env, Limits, Status};
use super::mailbox::Mailbox;
use super::service::Service;
use super::socket::Socket;
use super::state::ServerState;
use super::timers::Timers;
use crate::http::date::DateCache;
use crate::metrics::recorder::Recorder;
use crate::metrics::INTERVAL as METRICS_INTERVAL;

/// Token of the mailbox's waker.
pub const WAKER: Token = Token(usize::MAX - 1);
/// Token of the first listening socket; the next ones count down from it.
/// (Connection tokens carry a slab index, far below these, in their low bits.)
const FIRST_LISTENER: usize = usize::MAX - 2;
/// How long to stop accepting after an accept error we cannot shed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Sent to a connection over `--max-connections` before closing it.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A connection and the generation that makes its token unique: slab slots
/// are reused at once, and a late event or completion for a closed
/// connection must not reach the one that took its slot.
#[derive(Debug)]
struct Entry {
    generation: u32,
    conn: Connection,
}

fn token_of(index: usize, generation: u32) -> Token {
    Token((generation as usize) << 32 | index)
}

fn split_token(token: Token) -> (usize, u32) {
    (token.0 & 0xffff_ffff, (token.0 >> 32) as u32)
}

/// A listening socket and, for a TLS port, the configuration its
/// connections' handshakes use.
#[derive(Debug)]
pub struct Listening {
    /// The socket.
    pub socket: TcpListener,
    /// TLS, or `None` for plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The reactor's settings, shared by all reactors.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Per-connection limits and timeouts.
    pub limits: Limits,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// The access log, if on.
    pub access_log: Option<Arc<AccessLog>>,
}

/// One reactor.
pub struct EventLoop {
    poll: Poll,
    /// Empty once draining: nothing more is accepted.
    listeners: Vec<Listening>,
    conns: Slab<Entry>,
    timers: Timers,
    mailbox: Arc<Mailbox>,
    service: Arc<dyn Service>,
    config: LoopConfig,
    server: Arc<ServerState>,
    date: DateCache,
    pool: BufPool,
    next_generation: u32,
    /// Held so that one descriptor can be freed to shed a connection when
    /// the process runs out (EMFILE), instead of spinning on a full backlog.
    spare_fd: Option<File>,
    accept_paused_until: Option<Instant>,
    /// Connections that used up their read budget and have more to read.
    busy: Vec<Token>,
    drain_deadline: Option<Instant>,
    recorder: Recorder,
    next_flush: Instant,
}

impl EventLoop {
    /// A reactor around `poll`, serving `listeners`.
    pub fn new(
        poll: Poll,
        mut listeners: Vec<Listening>,
        mailbox: Arc<Mailbox>,
        service: Arc<dyn Service>,
        config: LoopConfig,
        server: Arc<ServerState>,
        recorder: Recorder,
    ) -> io::Result<Self> {
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(&mut listener.socket, Token(FIRST_LISTENER - i), Interest::READABLE)?;
        }
        Ok(EventLoop {
            poll,
            listeners,
            conns: Slab::new(),
            timers: Timers::default(),
            mailbox,
            service,
            config,
            server,
            date: DateCache::new(),
            pool: BufPool::default(),
            next_generation: 0,
            spare_fd: File::open("/dev/null").ok(),
            accept_paused_until: None,
            busy: Vec::new(),
            drain_deadline: None,
            recorder,
            next_flush: Instant::now() + METRICS_INTERVAL,
        })
    }

    /// Runs until a shutdown has drained every connection or timed out.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            self.date.refresh(SystemTime::now());
            for event in events.iter() {
                match event.token() {
                    WAKER => self.on_wake(now),
                    token if self.listener_of(token).is_some() => self.accept(now),
                    token => self.with_conn(token, now, |conn, env| conn.drive(env)),
                }
            }
            for token in std::mem::take(&mut self.busy) {
                self.with_conn(token, now, |conn, env| conn.drive(env));
            }
            if self.accept_paused_until.is_some_and(|t| t <= now) {
                self.accept_paused_until = None;
                self.accept(now);
            }
            self.expire(now);
            if now >= self.next_flush {
                self.next_flush = now + METRICS_INTERVAL;
                self.recorder.flush();
            }
            if let Some(deadline) = self.drain_deadline {
                if self.conns.is_empty() || now >= deadline {
                    break;
                }
            }
        }
        for _ in self.conns.drain() {
            self.server.close();
        }
        self.recorder.flush();
        Ok(())
    }

    /// The index of the listener behind `token`, if it is one.
    fn listener_of(&self, token: Token) -> Option<usize> {
        FIRST_LISTENER.checked_sub(token.0).filter(|i| *i < self.listeners.len())
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.busy.is_empty() {
            return Some(Duration::ZERO);
        }
        [self.timers.next(), self.accept_paused_until, self.drain_deadline, Some(self.next_flush)]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Runs `step` on the connection behind `token`, then files it by the
    /// status it returns: dropped, queued for another turn, or re-armed.
    fn with_conn(&mut self, token: Token, now: Instant, step: impl FnOnce(&mut Connection, &mut Env<'_>) -> Status) {
        let (index, generation) = split_token(token);
        let Some(entry) = self.conns.get_mut(index).filter(|e| e.generation == generation) else {
            return;
        };
        let mut env = Env {
            service: &*self.service,
            limits: &self.config.limits,
            date: &self.date,
            pool: &mut self.pool,
            mailbox: &self.mailbox,
            server: &self.server,
            now,
            draining: self.drain_deadline.is_some(),
            closing: self.drain_deadline.is_some() || self.server.is_draining(),
            recorder: &mut self.recorder,
            access_log: self.config.access_log.as_deref(),
        };
        match step(&mut entry.conn, &mut env) {
            Status::Closed => {
                let mut entry = self.conns.remove(index);
                // Closing the socket removes it from epoll too; deregistering
                // first keeps mio's bookkeeping exact.
                let _ = self.poll.registry().deregister(entry.conn.stream_mut());
                self.server.close();
            }
            status => {
                if status == Status::Busy {
                    self.busy.push(token);
                }
                if let Some(at) = entry.conn.next_deadline(&self.config.limits) {
                    self.timers.arm(token, at, &mut entry.conn.armed);
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, token)) = self.timers.pop_due(now) {
            let (index, generation) = split_token(token);
            let Some(entry) = self.conns.get_mut(index).filter(|e| e.generation == generation) else {
                continue;
            };
            if entry.conn.armed != Some(at) {
                continue; // superseded by an earlier entry
            }
            entry.conn.armed = None;
            self.with_conn(token, now, |conn, env| conn.expire(env));
        }
    }

    fn on_wake(&mut self, now: Instant) {
        if self.mailbox.shutdown_requested() && self.drain_deadline.is_none() {
            self.begin_drain(now);
        }
        let mailbox = Arc::clone(&self.mailbox);
        mailbox.drain(|done, now| {
            self.with_conn(done.token, now, |conn, env| conn.complete(done.seq, done.part, env));
        });
    }

    /// Stops accepting, closes idle connections, and lets the rest finish.
    fn begin_drain(&mut self, now: Instant) {
        self.drain_deadline = Some(now + self.config.shutdown_timeout);
        self.server.start_draining();
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        let tokens: Vec<Token> = self.conns.iter().map(|(i, e)| token_of(i, e.generation)).collect();
        for token in tokens {
            self.with_conn(token, now, |conn, env| conn.drive(env));
        }
    }

    /// Accepts from every listener until each is empty (or accepting pauses).
    fn accept(&mut self, now: Instant) {
        for i in 0..self.listeners.len() {
            self.accept_from(i, now);
        }
    }

    fn accept_from(&mut self, i: usize, now: Instant) {
        while self.accept_paused_until.is_none() {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    let tls = listener.tls.clone();
                    self.admit(stream, peer.ip(), tls, now)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.server.count_refused();
                    if !self.shed_one(i) {
                        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    }
                }
                // ENOBUFS, ENOMEM and the like: back off rather than spin.
                Err(_) => self.accept_paused_until = Some(now + ACCEPT_PAUSE),
            }
        }
    }

    /// Out of descriptors: free the spare, accept one pending connection,
    /// answer it `503` and close it so it is not left hanging, then take
    /// the spare back.
    /// (On a TLS port the `503` is not readable: the client sees the
    /// connection close, which is still an answer rather than a hang.)
    fn shed_one(&mut self, i: usize) -> bool {
        let Some(listener) = self.listeners.get(i) else {
            return false;
        };
        if self.spare_fd.take().is_none() {
            return false;
        }
        let shed = match listener.socket.accept() {
            Ok((mut stream, _)) => {
                // What it sent is read first: closing with unread bytes
                // would reset the connection and could destroy the answer.
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write(OVER_CAPACITY);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                true
            }
            Err(_) => false,
        };
        self.spare_fd = File::open("/dev/null").ok();
        shed && self.spare_fd.is_some()
    }

    fn admit(&mut self, mut stream: TcpStream, peer: IpAddr, tls: Option<Arc<rustls::ServerConfig>>, now: Instant) {
        if !self.server.try_open() {
            // Best effort: a fresh socket's send buffer has room for this
            // (a TLS client sees only the close).
            let _ = stream.write(OVER_CAPACITY);
            return;
        }
        // Responses go out in one write; no reason to let Nagle hold them.
        let _ = stream.set_nodelay(true);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let slot = self.conns.vacant_entry();
        let token = token_of(slot.key(), generation);
        // Edge-triggered: registering both once is cheaper than
        // re-registering on every change of interest.
        if self.poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE).is_err() {
            self.server.close();
            return;
        }
        let socket = match tls.map(rustls::ServerConnection::new) {
            None => Socket::plain(stream),
            Some(Ok(conn)) => Socket::tls(stream, conn),
            // Only a configuration error fails here, and the configuration was built at start.
            Some(Err(_)) => {
                let _ = self.poll.registry().deregister(&mut stream);
                self.server.close();
                return;
            }
        };
        let entry = slot.insert(Entry { generation, conn: Connection::new(socket, token, peer, now) });
        if let Some(at) = entry.conn.next_deadline(&self.config.limits) {
            self.timers.arm(token, at, &mut entry.conn.armed);
        }
    }
}
