//! One reactor thread, whatever its I/O engine: its connections in a slab,
//! their deadlines, its mailbox, the drain.
//!
//! Each iteration lets the [`Engine`] wait for and handle what the kernel
//! reports (it calls back into [`Reactor::insert`] and
//! [`Reactor::with_conn`]), then fires due deadlines and flushes metrics.
//! Everything here is shared by the engines; what differs (readiness or
//! completions, who owns a buffer in flight) is behind the trait.

use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::Token;
use slab::Slab;

use super::access_log::AccessLog;
use super::buffers::BufPool;
use super::connection::{Connection, Env, Limits};
use super::mailbox::Mailbox;
use super::service::Service;
use super::state::ServerState;
use super::timers::Timers;
use super::transport::Transport;
use crate::http::date::DateCache;
use crate::metrics::recorder::Recorder;
use crate::metrics::INTERVAL as METRICS_INTERVAL;

/// Sent to a connection over `--max-connections` before closing it.
pub const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// How an engine moves bytes between the kernel and the connections.
pub trait Engine: Sized {
    /// The kernel side of one connection (its socket, operations in flight).
    type Io;

    /// Waits until the kernel reports something or `timeout` passes, and
    /// hands what it reports to the reactor.
    fn turn(reactor: &mut Reactor<Self>, timeout: Option<Duration>) -> io::Result<()>;

    /// Moves a connection on after it ran: sends what it has to send,
    /// shuts its write side when it asks, reads on if the engine reads
    /// on demand.
    fn drive(&mut self, token: Token, link: &mut Link<Self::Io>, env: &mut Env<'_>);

    /// Bytes the kernel holds for the peer, not yet acknowledged.
    fn backlog(&self, io: &Self::Io) -> usize;

    /// Lets go of a closed connection's kernel side.
    fn close(&mut self, token: Token, link: Link<Self::Io>);

    /// Stops accepting: the listeners close.
    fn stop_accepting(&mut self);

    /// When the engine needs a turn even if the kernel reports nothing.
    fn next_wake(&self) -> Option<Instant>;
}

/// A connection with what carries its bytes.
#[derive(Debug)]
pub struct Link<Io> {
    /// The protocol state machine.
    pub conn: Connection,
    /// Plain or TLS.
    pub transport: Transport,
    /// The engine's side.
    pub io: Io,
}

/// A connection and the generation that makes its token unique: slab slots
/// are reused at once, and a late event or completion for a closed
/// connection must not reach the one that took its slot.
#[derive(Debug)]
struct Entry<Io> {
    generation: u32,
    link: Link<Io>,
}

/// The token of a connection at slab `index` in its `generation`.
pub fn token_of(index: usize, generation: u32) -> Token {
    Token((generation as usize) << 32 | index)
}

/// A connection token's slab index and generation.
pub fn split_token(token: Token) -> (usize, u32) {
    (token.0 & 0xffff_ffff, (token.0 >> 32) as u32)
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

/// One reactor: an engine and everything the engines share.
pub struct Reactor<E: Engine> {
    /// The I/O engine.
    pub engine: E,
    conns: Slab<Entry<E::Io>>,
    timers: Timers,
    mailbox: Arc<Mailbox>,
    service: Arc<dyn Service>,
    config: LoopConfig,
    server: Arc<ServerState>,
    date: DateCache,
    pool: BufPool,
    next_generation: u32,
    drain_deadline: Option<Instant>,
    recorder: Recorder,
    next_flush: Instant,
}

impl<E: Engine> Reactor<E> {
    /// A reactor around `engine`.
    pub fn new(
        engine: E,
        mailbox: Arc<Mailbox>,
        service: Arc<dyn Service>,
        config: LoopConfig,
        server: Arc<ServerState>,
        recorder: Recorder,
    ) -> Self {
        Reactor {
            engine,
            conns: Slab::new(),
            timers: Timers::default(),
            mailbox,
            service,
            config,
            server,
            date: DateCache::new(),
            pool: BufPool::default(),
            next_generation: 0,
            drain_deadline: None,
            recorder,
            next_flush: Instant::now() + METRICS_INTERVAL,
        }
    }

    /// Runs until a shutdown has drained every connection or timed out.
    pub fn run(mut self) -> io::Result<()> {
        loop {
            let timeout = self.timeout(Instant::now());
            E::turn(&mut self, timeout)?;
            let now = Instant::now();
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
        let tokens: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for index in tokens {
            let entry = self.conns.remove(index);
            self.engine.close(token_of(index, entry.generation), entry.link);
            self.server.close();
        }
        self.recorder.flush();
        Ok(())
    }

    /// The clock for the events of one turn (and the Date header's).
    pub fn clock(&mut self) -> Instant {
        self.date.refresh(SystemTime::now());
        Instant::now()
    }

    /// Server-wide figures.
    pub fn server(&self) -> &ServerState {
        &self.server
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        [self.engine.next_wake(), self.timers.next(), self.drain_deadline, Some(self.next_flush)]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Takes in a new connection `stream` from `peer` (TLS with `tls`):
    /// claims its place under `--max-connections` (over it, the stream is
    /// answered `503` and dropped), turns off Nagle's delay, and lets `open`
    /// make its kernel side for the token it will have. `None`: refused or
    /// failed, and any place claimed is given back.
    pub fn admit<S: Write + AsFd>(
        &mut self,
        mut stream: S,
        peer: IpAddr,
        tls: Option<&Arc<rustls::ServerConfig>>,
        now: Instant,
        open: impl FnOnce(&mut E, Token, S) -> io::Result<E::Io>,
    ) -> Option<Token> {
        if !self.server.try_open() {
            // Best effort: a fresh socket's send buffer has room for this
            // (a TLS client sees only the close).
            let _ = stream.write(OVER_CAPACITY);
            return None;
        }
        // Responses go out in one write; no reason to let Nagle hold them.
        let _ = socket2::SockRef::from(&stream).set_tcp_nodelay(true);
        let transport = match tls.map(|config| rustls::ServerConnection::new(Arc::clone(config))) {
            None => Transport::Plain,
            Some(Ok(conn)) => Transport::tls(conn),
            // Only a configuration error fails here, and the configuration was built at start.
            Some(Err(_)) => {
                self.server.close();
                return None;
            }
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let slot = self.conns.vacant_entry();
        let token = token_of(slot.key(), generation);
        let Ok(io) = open(&mut self.engine, token, stream) else {
            self.server.close();
            return None;
        };
        let conn = Connection::new(token, peer, now);
        let entry = slot.insert(Entry { generation, link: Link { conn, transport, io } });
        if let Some(at) = entry.link.conn.poll_deadline(&self.config.limits) {
            self.timers.arm(token, at, &mut entry.link.conn.armed);
        }
        Some(token)
    }

    /// Runs `step` on the connection behind `token` (if it is still
    /// there), lets the engine drive it on, then files it by its state:
    /// dropped once closed, else its deadline re-armed. False: no such
    /// connection (any more).
    pub fn with_conn(
        &mut self,
        token: Token,
        now: Instant,
        step: impl FnOnce(&mut E, &mut Link<E::Io>, &mut Env<'_>),
    ) -> bool {
        let (index, generation) = split_token(token);
        let Some(entry) = self.conns.get_mut(index).filter(|e| e.generation == generation) else {
            return false;
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
        step(&mut self.engine, &mut entry.link, &mut env);
        self.engine.drive(token, &mut entry.link, &mut env);
        entry.link.conn.release(env.pool);
        if entry.link.conn.is_closed() {
            let entry = self.conns.remove(index);
            self.engine.close(token, entry.link);
            self.server.close();
        } else if let Some(at) = entry.link.conn.poll_deadline(&self.config.limits) {
            self.timers.arm(token, at, &mut entry.link.conn.armed);
        }
        true
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, token)) = self.timers.pop_due(now) {
            let (index, generation) = split_token(token);
            let Some(entry) = self.conns.get_mut(index).filter(|e| e.generation == generation) else {
                continue;
            };
            if entry.link.conn.armed != Some(at) {
                continue; // superseded by an earlier entry
            }
            entry.link.conn.armed = None;
            self.with_conn(token, now, |_, link, env| link.conn.expire(env));
        }
    }

    /// Takes what other threads posted: completed responses, a shutdown.
    pub fn on_wake(&mut self, now: Instant) {
        if self.mailbox.shutdown_requested() && self.drain_deadline.is_none() {
            self.begin_drain(now);
        }
        let mailbox = Arc::clone(&self.mailbox);
        mailbox.drain(|done, now| {
            self.with_conn(done.token, now, |engine, link, env| {
                let Link { conn, io, .. } = link;
                conn.complete(done.seq, done.part, env, || engine.backlog(io));
            });
        });
    }

    /// Stops accepting, closes idle connections, and lets the rest finish.
    fn begin_drain(&mut self, now: Instant) {
        self.drain_deadline = Some(now + self.config.shutdown_timeout);
        self.server.start_draining();
        self.engine.stop_accepting();
        let tokens: Vec<Token> = self.conns.iter().map(|(i, e)| token_of(i, e.generation)).collect();
        for token in tokens {
            self.with_conn(token, now, |_, link, env| {
                link.conn.poll(env);
            });
        }
    }
}
