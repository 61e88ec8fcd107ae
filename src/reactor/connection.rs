//! One client connection: the HTTP/1.1 server state machine, sans I/O.
//!
//! The connection owns no socket. An engine hands it the bytes that arrived
//! ([`Connection::on_filled`], [`Connection::on_read`], [`Connection::on_eof`]),
//! lets it run ([`Connection::poll`], [`Connection::complete`],
//! [`Connection::expire`]), takes what it wants written
//! ([`Connection::pending_write`] or [`Connection::take_write`]) and reports
//! back what went out. Every change of [`State`] happens inside those calls,
//! and time is passed in through [`Env::now`], never read here (except to
//! time a response), so the whole protocol is testable without a socket.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Token;

use super::access_log::{AccessEntry, AccessLog};
use super::buffers::{BufPool, ReadBuf, READ_BUFFER};
use super::mailbox::{Mailbox, Part};
use super::service::{Context, Reply, Service};
use super::state::ServerState;
use super::websocket::WsCore;
use super::wire::{Outgoing, Wire};
use crate::http::chunked::ChunkedDecoder;
use crate::http::date::DateCache;
use crate::http::error::HttpError;
use crate::http::request::{header_slots, parse_head, Framing, Head, Parsed, Request, Version};
use crate::http::response::{Encoding, Response, Sink};
use crate::metrics::recorder::{method_label, Recorder};

/// Most requests one connection may have waiting for their responses;
/// past that, reading pauses until responses go out.
pub const MAX_PIPELINE: usize = 64;
/// Unsent response bytes past which reading pauses.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// A streamed response whose client has this much unread (in the kernel's
/// send queue and ours) has stalled: the connection is closed rather than
/// buffered without bound. For the live stream, about 10 s of snapshots
/// (a reader over a slow link has a few hundred bytes in flight).
const STREAM_BACKLOG: usize = 4 * 1024;
/// A WebSocket client with this much unread has stalled and is dropped
/// (a subscriber to all tasks under load gets a few hundred events a second).
const WS_BACKLOG: usize = 256 * 1024;
/// How long to keep reading after shutting the write side, so that the
/// client's unread data does not turn our close into a reset that destroys
/// the last response.
const LINGER: Duration = Duration::from_secs(2);

/// Limits and timeouts every connection obeys.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From the first byte of a request (or the connection's opening) to its full head.
    pub header_timeout: Duration,
    /// From a complete head to the end of its body.
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// How long a write may make no progress.
    pub write_timeout: Duration,
    /// Largest request head; larger is `431`.
    pub max_header_bytes: usize,
    /// Largest request body; larger is `413`.
    pub max_body_bytes: usize,
}

/// Where a connection is in its life.
#[derive(Debug)]
enum State {
    /// Waiting for a request head. `since` is when it began arriving (or
    /// when the connection opened); `None` while idle between requests.
    Head { since: Option<Instant> },
    /// The head at the front of the buffer is valid; its body is arriving.
    Body { head_len: usize, since: Instant, framing: BodyFraming },
    /// Upgraded to WebSocket: bytes go to the core, its frames go out once
    /// the responses before the `101` have.
    WebSocket(Box<WsCore>),
    /// No more requests will be read; owed responses are written, then the
    /// write side is shut.
    Closing,
    /// Write side shut; reading and discarding until the peer closes or `until`.
    Lingering { until: Instant },
    /// Finished; the reactor drops it.
    Closed,
}

#[derive(Debug)]
enum BodyFraming {
    Length(usize),
    /// The decoder, and how many decoded bytes lie after the head.
    Chunked(ChunkedDecoder, usize),
}

/// Which deadline a connection is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Head or body not received in time: `408`.
    Request,
    /// Idle keep-alive connection: close quietly.
    Idle,
    /// Client not reading our response: close.
    Write,
    /// Linger after shutdown is over: close.
    Linger,
}

/// What a connection borrows from its reactor while it runs.
pub struct Env<'a> {
    pub service: &'a dyn Service,
    pub limits: &'a Limits,
    pub date: &'a DateCache,
    pub pool: &'a mut BufPool,
    pub mailbox: &'a Arc<Mailbox>,
    pub server: &'a ServerState,
    pub now: Instant,
    /// Shutting down: listeners closed, every connection to end.
    pub draining: bool,
    /// Responses close their connection (the drain grace, or draining).
    pub closing: bool,
    pub recorder: &'a mut Recorder,
    /// The access log, if on.
    pub access_log: Option<&'a AccessLog>,
}

/// Per-request facts kept until the response is encoded.
#[derive(Debug, Clone, Copy)]
struct Meta {
    head_only: bool,
    keep_alive: bool,
    http10: bool,
    /// Metrics labels and the time the request was complete.
    route: &'static str,
    method: &'static str,
    /// The authenticated client's name (an API key's), or `""`.
    client: &'static str,
    started: Instant,
}

/// A response owed, in request order.
#[derive(Debug)]
struct Slot {
    seq: u64,
    meta: Meta,
    state: SlotState,
    extras: Extras,
}

/// What a request leaves for its response besides [`Meta`].
#[derive(Debug, Default)]
struct Extras {
    /// Headers the service added.
    headers: Vec<(&'static str, String)>,
    /// The access-log entry, when the log is on.
    access: Option<Box<AccessEntry>>,
}

/// How far a response owed has come.
#[derive(Debug)]
enum SlotState {
    /// Its completion has not arrived.
    Waiting,
    /// A whole response, ready to encode.
    Ready(Response),
    /// A streamed response: the head until encoded, pieces received but not
    /// yet encoded, whether the stream has ended, and whether the
    /// connection stays open after it (known once the head is encoded).
    Streaming { head: Option<Response>, chunks: VecDeque<Vec<u8>>, ended: bool, keep_alive: bool, _gone: GoneOnDrop },
}

/// Tells a stream's sender, when its slot is dropped (the stream ended, or
/// the connection closed under it), that nobody is listening any more.
#[derive(Debug)]
struct GoneOnDrop(Arc<AtomicBool>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The write half: responses owed in order, and the wire they go out on.
#[derive(Debug)]
struct Output {
    /// Responses that cannot be encoded yet because an earlier one is not ready.
    pending: VecDeque<Slot>,
    next_seq: u64,
    wire: Wire,
}

/// An accepted client connection.
#[derive(Debug)]
pub struct Connection {
    token: Token,
    peer: IpAddr,
    state: State,
    rbuf: ReadBuf,
    out: Output,
    last_activity: Instant,
    peer_closed: bool,
    /// The largest chunk a stream on this connection has sent: a stream
    /// that opens with a large catch-up (a batch's results so far) may have
    /// that much unread without having stalled.
    largest_chunk: usize,
    /// Output bytes the layers below still hold (see [`Connection::below`]).
    below: usize,
    /// The write side is to be shut (see [`Connection::take_shutdown`]).
    shutdown: bool,
    /// The reactor's timer bookkeeping: earliest live heap entry.
    pub armed: Option<Instant>,
}

impl Connection {
    /// A connection that has just been accepted at `now`.
    pub fn new(token: Token, peer: IpAddr, now: Instant) -> Self {
        Connection {
            token,
            peer,
            state: State::Head { since: Some(now) },
            rbuf: ReadBuf::default(),
            out: Output { pending: VecDeque::new(), next_seq: 0, wire: Wire::new(now) },
            last_activity: now,
            peer_closed: false,
            largest_chunk: 0,
            below: 0,
            shutdown: false,
            armed: None,
        }
    }

    /// Whether the connection takes more bytes now: it still reads
    /// requests (or frames), its responses are not backed up, and its
    /// buffer is under its limit.
    pub fn wants_read(&self, limits: &Limits) -> bool {
        self.rbuf.len() < self.read_limit(limits)
            && !self.peer_closed
            && matches!(
                self.state,
                State::Head { .. } | State::Body { .. } | State::WebSocket(_) | State::Lingering { .. }
            )
            && !self.backpressured()
    }

    /// Free space to receive into, for an engine that reads straight into
    /// the connection's buffer; `None` when the buffer is at its limit
    /// (the request in it must be consumed first). Report the bytes put
    /// there with [`Connection::on_filled`].
    pub fn read_space(&mut self, pool: &mut BufPool, limits: &Limits) -> Option<&mut [u8]> {
        let limit = self.read_limit(limits);
        self.rbuf.space(pool, limit)
    }

    /// `n` bytes were received into [`Connection::read_space`].
    pub fn on_filled(&mut self, n: usize, env: &mut Env<'_>) {
        self.rbuf.filled_by(n);
        env.recorder.bytes(n, 0);
        self.last_activity = env.now;
    }

    /// Bytes received somewhere else (a kernel-owned buffer, TLS
    /// plaintext), copied in. All are taken: the engine bounds how much
    /// arrives past [`Connection::wants_read`].
    pub fn on_read(&mut self, bytes: &[u8], env: &mut Env<'_>) {
        self.rbuf.extend(bytes, env.pool);
        env.recorder.bytes(bytes.len(), 0);
        self.last_activity = env.now;
    }

    /// The peer closed its side.
    pub fn on_eof(&mut self, now: Instant) {
        self.peer_closed = true;
        self.last_activity = now;
    }

    /// The layer below found the byte stream unusable as it stands (plain
    /// HTTP on a TLS port): the error is answered in order, then the
    /// connection closes.
    pub fn on_error(&mut self, error: HttpError, env: &mut Env<'_>) {
        self.fail(error, env);
        self.last_activity = env.now;
    }

    /// The socket failed: nothing more can be sent or received.
    pub fn abort(&mut self) {
        self.state = State::Closed;
    }

    /// Parses and dispatches what has arrived and moves between states as
    /// their conditions hold; true if anything changed. Every state change
    /// of the connection happens here or in the event methods above.
    pub fn poll(&mut self, env: &mut Env<'_>) -> bool {
        let mut changed = false;
        loop {
            let processed = self.process(env);
            let settled = self.settle(env);
            if !(processed || settled) {
                break;
            }
            changed = true;
        }
        if changed {
            self.last_activity = env.now;
        }
        changed
    }

    /// The unsent output in order, as slices into the connection's own
    /// buffers (for an engine that writes while it holds the connection);
    /// returns how many of `slices` were filled. Report what went out with
    /// [`Connection::on_written`].
    pub fn pending_write<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.out.wire.slices(slices)
    }

    /// `n` bytes of [`Connection::pending_write`] went out at `now`.
    pub fn on_written(&mut self, n: usize, env: &mut Env<'_>) {
        self.out.wire.advance(n, env.now);
        env.recorder.bytes(0, n);
    }

    /// Moves the unsent output out of the connection, for an engine that
    /// hands it to the kernel and must not see it moved while the kernel
    /// works on it. Tell the connection how much of it is still unsent
    /// with [`Connection::below`].
    pub fn take_write(&mut self) -> Option<Outgoing> {
        self.out.wire.take()
    }

    /// The layers below (TLS, bytes handed to the kernel) still hold
    /// `unsent` bytes of this connection's output; fewer than last time is
    /// progress at `now`. They count against the write timeout, the
    /// backpressure limit, a stream's stall limit, and the close. (The bytes
    /// metric counts the connection's own bytes, as [`Connection::on_written`]
    /// reports them; an engine that took them whole counts them as sent.)
    pub fn below(&mut self, unsent: usize, now: Instant) {
        if unsent < self.below {
            self.out.wire.write_since = now;
        }
        self.below = unsent;
    }

    /// Whether the write side is to be shut now (taken once): everything
    /// owed went out, and the connection lingers for the peer's close.
    pub fn take_shutdown(&mut self) -> bool {
        std::mem::take(&mut self.shutdown)
    }

    /// Whether the connection is finished and can be dropped.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Takes a response (or part of one) finished on another thread.
    /// `backlog` tells the bytes the kernel holds unacknowledged, asked
    /// only for pieces of a stream, to see whether its client reads.
    pub fn complete(&mut self, seq: u64, part: Part, env: &mut Env<'_>, backlog: impl FnOnce() -> usize) {
        let streamed = match &part {
            Part::Chunk(bytes) => {
                self.largest_chunk = self.largest_chunk.max(bytes.len());
                true
            }
            Part::Message(_) => matches!(self.state, State::WebSocket(_)),
            _ => false,
        };
        // Judged on what is still unread before this piece joins it.
        if streamed && self.stalled(backlog()) {
            env.server.count_timeout();
            self.state = State::Closed;
            return;
        }
        match part {
            Part::Message(text) => {
                // For a WebSocket that has closed since, nothing.
                if let State::WebSocket(core) = &mut self.state {
                    core.send(text);
                }
            }
            part => self.out.complete(seq, part, env),
        }
        self.poll(env);
    }

    /// Whether the client of a stream has stopped reading: the kernel holds
    /// bytes it has not taken (`backlog`), and with them, for a streamed
    /// response, more than two of its largest chunks, and at least
    /// [`STREAM_BACKLOG`], are still unread; for a WebSocket, [`WS_BACKLOG`]
    /// (its frames not yet on the wire included). Bytes merely waiting for
    /// the engine's next send, with nothing held in the kernel, are no
    /// stall: an engine that batches sends (io_uring) queues a burst of
    /// chunks behind the send in flight while the client reads every one.
    fn stalled(&self, backlog: usize) -> bool {
        let (queued, bound) = match &self.state {
            State::WebSocket(core) => (core.queued(), WS_BACKLOG),
            _ => (0, STREAM_BACKLOG.max(2 * self.largest_chunk)),
        };
        backlog > 0 && backlog + self.unsent() + queued > bound
    }

    /// Acts on a deadline that has passed at `env.now`.
    pub fn expire(&mut self, env: &mut Env<'_>) {
        let Some((at, expiry)) = self.deadline(env.limits) else {
            return;
        };
        if at > env.now {
            return;
        }
        match expiry {
            // Nothing of a request has come: close quietly, as for idle.
            Expiry::Request if matches!(self.state, State::Head { .. }) && self.rbuf.is_empty() => {
                self.state = State::Closed
            }
            Expiry::Request => self.fail(HttpError::Timeout, env),
            Expiry::Idle | Expiry::Linger => {
                // A quiet WebSocket is pinged first, closed if it stays quiet.
                let pinged = match &mut self.state {
                    State::WebSocket(core) => core.ping(),
                    _ => false,
                };
                if pinged {
                    self.last_activity = env.now;
                } else {
                    self.state = State::Closed;
                }
            }
            Expiry::Write => {
                env.server.count_timeout();
                self.state = State::Closed;
            }
        }
        self.poll(env);
    }

    /// When the connection next needs attention without any I/O.
    pub fn poll_deadline(&self, limits: &Limits) -> Option<Instant> {
        self.deadline(limits).map(|(at, _)| at)
    }

    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let write = (self.unsent() > 0).then(|| (self.out.wire.write_since + limits.write_timeout, Expiry::Write));
        let read = match self.state {
            State::Head { since: Some(t) } => Some((t + limits.header_timeout, Expiry::Request)),
            State::Head { since: None } if self.out.is_idle() => {
                Some((self.last_activity + limits.idle_timeout, Expiry::Idle))
            }
            State::Body { since, .. } => Some((since + limits.body_timeout, Expiry::Request)),
            State::WebSocket(_) => Some((self.last_activity + limits.idle_timeout, Expiry::Idle)),
            State::Lingering { until } => Some((until, Expiry::Linger)),
            _ => None,
        };
        match (read, write) {
            (Some(r), Some(w)) => Some(if w.0 < r.0 { w } else { r }),
            (r, w) => r.or(w),
        }
    }

    /// Output not yet sent, here and below.
    fn unsent(&self) -> usize {
        self.out.wire.unwritten() + self.below
    }

    fn backpressured(&self) -> bool {
        self.out.pending.len() >= MAX_PIPELINE || self.unsent() >= WRITE_HIGH_WATER
    }

    fn read_limit(&self, limits: &Limits) -> usize {
        match self.state {
            State::Body { head_len, .. } => head_len + limits.max_body_bytes + READ_BUFFER,
            _ => limits.max_header_bytes + READ_BUFFER,
        }
    }

    /// Parses and dispatches every complete request in the read buffer.
    fn process(&mut self, env: &mut Env<'_>) -> bool {
        let mut did = false;
        loop {
            if self.backpressured() {
                return did;
            }
            match &mut self.state {
                State::Lingering { .. } => {
                    did |= !self.rbuf.is_empty();
                    self.rbuf.consume(self.rbuf.len());
                    return did;
                }
                State::Closing | State::Closed => return did,
                State::WebSocket(core) => {
                    if env.draining && !core.is_done() {
                        core.close(tungstenite::protocol::frame::coding::CloseCode::Away, "server shutting down");
                    }
                    let used = core.receive(self.rbuf.filled(), self.peer_closed);
                    // Once done, what else comes is discarded.
                    let used = if core.is_done() { self.rbuf.len() } else { used };
                    did |= used > 0;
                    self.rbuf.consume(used);
                    if self.out.pending.is_empty() && !core.outbox().is_empty() {
                        self.out.wire.open(env.pool, env.now).bytes(core.outbox());
                        core.outbox().clear();
                        did = true;
                    }
                    if core.is_done() && core.outbox().is_empty() {
                        self.state = State::Closing;
                        did = true;
                    }
                    return did;
                }
                State::Head { since } => {
                    if self.rbuf.is_empty() {
                        return did;
                    }
                    since.get_or_insert(env.now);
                    let mut headers = header_slots();
                    let limits = env.limits;
                    let head = match parse_head(
                        self.rbuf.filled(),
                        &mut headers,
                        limits.max_header_bytes,
                        limits.max_body_bytes,
                    ) {
                        Ok(Parsed::Partial) => return did,
                        Ok(Parsed::Complete(head)) => head,
                        Err(e) => {
                            self.fail(e, env);
                            return true;
                        }
                    };
                    did = true;
                    let head_len = head.len;
                    let framing = match head.framing {
                        Framing::Empty => {
                            let next = self.out.dispatch(Request { head, body: &[] }, self.token, self.peer, env);
                            self.rbuf.consume(head_len);
                            self.state = next;
                            continue;
                        }
                        Framing::Length(n) => BodyFraming::Length(n),
                        Framing::Chunked => BodyFraming::Chunked(ChunkedDecoder::new(limits.max_body_bytes), 0),
                    };
                    // RFC 9110 §10.1.1: ask for the body only when nothing of it
                    // came yet, and only if no earlier response is still owed.
                    if head.expect_continue && self.rbuf.len() == head_len && self.out.is_idle() {
                        self.out.wire.open(env.pool, env.now).bytes(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    self.state = State::Body { head_len, since: env.now, framing };
                }
                State::Body { head_len, framing, .. } => {
                    let head_len = *head_len;
                    // (decoded body length, raw bytes it took) once complete.
                    let complete = match framing {
                        BodyFraming::Length(n) => (self.rbuf.len() >= head_len + *n).then_some((*n, *n)),
                        BodyFraming::Chunked(decoder, decoded) => {
                            match decoder.decode(&mut self.rbuf.filled_mut()[head_len..], *decoded) {
                                Err(e) => {
                                    self.fail(e, env);
                                    return true;
                                }
                                Ok(p) if p.done => Some((p.decoded, p.raw)),
                                Ok(p) => {
                                    // Drop the chunk framing already decoded, so the
                                    // buffer holds body plus the undecoded tail only.
                                    self.rbuf.remove(head_len + p.decoded, head_len + p.raw);
                                    did |= p.raw > *decoded;
                                    *decoded = p.decoded;
                                    None
                                }
                            }
                        }
                    };
                    let Some((body_len, raw_len)) = complete else {
                        return did;
                    };
                    did = true;
                    // The head was validated when it arrived and is unchanged.
                    let mut headers = header_slots();
                    let filled = self.rbuf.filled();
                    let head = match parse_head(&filled[..head_len], &mut headers, usize::MAX, usize::MAX) {
                        Ok(Parsed::Complete(head)) => head,
                        _ => {
                            self.fail(HttpError::Malformed(httparse::Error::Token), env);
                            return true;
                        }
                    };
                    let body = &filled[head_len..head_len + body_len];
                    let next = self.out.dispatch(Request { head, body }, self.token, self.peer, env);
                    self.rbuf.consume(head_len + raw_len);
                    self.state = next;
                }
            }
        }
    }

    /// Answers a protocol error in order, then closes.
    fn fail(&mut self, error: HttpError, env: &mut Env<'_>) {
        if error == HttpError::Timeout {
            env.server.count_timeout();
        }
        env.recorder.protocol_error(error.code());
        let meta = Meta {
            head_only: false,
            keep_alive: false,
            http10: false,
            route: "-",
            method: "OTHER",
            client: "",
            started: env.now,
        };
        let response = Response::from_http_error(error);
        let access = env.access_log.map(|_| Box::new(AccessEntry::unparsed(self.peer)));
        self.out.push(meta, Some(response), Extras { headers: Vec::new(), access }, env);
        self.state = State::Closing;
    }

    /// Moves between the closing states once their conditions hold.
    fn settle(&mut self, env: &mut Env<'_>) -> bool {
        let before = std::mem::discriminant(&self.state);
        let reading_requests = matches!(self.state, State::Head { .. } | State::Body { .. });
        if reading_requests && (self.out.wire.close_after || self.peer_closed) {
            // The peer will send nothing more (or we will read nothing more);
            // a partial request is abandoned, owed responses still go out.
            self.state = State::Closing;
        }
        // Idle between requests: closed once responses close connections.
        // A fresh one is served during the drain grace (new clients may
        // still come), closed once draining (nothing more is accepted).
        let idle = match self.state {
            State::Head { since: None } => env.closing,
            State::Head { since: Some(_) } => env.draining,
            _ => false,
        };
        if idle && self.rbuf.is_empty() && self.out.is_idle() {
            self.state = State::Closed;
        }
        if matches!(self.state, State::Closing) && self.out.is_idle() && self.below == 0 {
            // The engine shuts the write side (TLS: close_notify first) and
            // aborts the connection if that fails.
            self.shutdown = !self.peer_closed;
            self.state = if self.peer_closed { State::Closed } else { State::Lingering { until: env.now + LINGER } };
        }
        if matches!(self.state, State::Lingering { .. }) && self.peer_closed {
            self.state = State::Closed;
        }
        std::mem::discriminant(&self.state) != before
    }

    /// Gives buffers back to the reactor's pool while they hold nothing.
    pub fn release(&mut self, pool: &mut BufPool) {
        self.rbuf.release_if_empty(pool);
        self.out.wire.release(pool);
        if self.out.pending.is_empty() && self.out.pending.capacity() > 0 {
            self.out.pending = VecDeque::new();
        }
    }
}

impl Output {
    /// Nothing owed and nothing left to send.
    fn is_idle(&self) -> bool {
        self.pending.is_empty() && !self.wire.has_unwritten()
    }

    /// Calls the service for one request and queues or encodes its answer.
    /// Returns the connection's next state: reading the next request,
    /// closing, or speaking WebSocket after a `101`.
    fn dispatch(&mut self, request: Request<'_>, token: Token, peer: IpAddr, env: &mut Env<'_>) -> State {
        env.recorder.request_started();
        let mut cx = Context::new(env.mailbox, token, self.next_seq, env.server, peer, env.now);
        let service = env.service;
        let reply = catch_unwind(AssertUnwindSafe(|| service.call(&request, &mut cx)));
        let head: &Head<'_> = &request.head;
        let meta = Meta {
            head_only: head.method == "HEAD",
            keep_alive: head.keep_alive && !env.closing,
            http10: head.version == Version::Http10,
            route: cx.route(),
            method: method_label(head.method),
            client: cx.client().unwrap_or(""),
            started: env.now,
        };
        let response = match reply {
            Ok(Reply::Now(response)) => Some(response),
            Ok(Reply::Later) if cx.was_deferred() => None,
            Ok(Reply::Later) => {
                Some(Response::problem(500, "internal", "the handler promised an answer it cannot give"))
            }
            Err(_) => Some(Response::problem(500, "internal", "the request's handler failed")),
        };
        let upgrade = cx.take_upgrade().filter(|_| response.as_ref().is_some_and(|r| r.status == 101));
        let access = env.access_log.map(|_| Box::new(AccessEntry::of(peer, head)));
        self.push(meta, response, Extras { headers: cx.take_headers(), access }, env);
        match upgrade {
            Some(core) => State::WebSocket(core),
            None if meta.keep_alive => State::Head { since: None },
            None => State::Closing,
        }
    }

    /// Queues the next response slot; encodes whatever is ready in order.
    fn push(&mut self, meta: Meta, response: Option<Response>, mut extras: Extras, env: &mut Env<'_>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let response = response.map(|r| with_headers(r, &mut extras.headers));
        match response {
            // The common case: nothing ahead, so encode at once without a slot.
            Some(response) if self.pending.is_empty() && !response.is_streamed() => {
                encode(&mut self.wire, &response, meta, extras.access.as_deref(), env);
            }
            response => {
                let state = response.map_or(SlotState::Waiting, SlotState::Ready);
                self.pending.push_back(Slot { seq, meta, state, extras });
                self.encode_ready(env);
            }
        }
    }

    fn complete(&mut self, seq: u64, part: Part, env: &mut Env<'_>) {
        // Parts for a slot already answered (or dropped by a close) are ignored.
        let Some(slot) = self.pending.iter_mut().find(|s| s.seq == seq) else { return };
        match (&mut slot.state, part) {
            (SlotState::Waiting, Part::Whole(response)) => {
                slot.state = SlotState::Ready(with_headers(response, &mut slot.extras.headers))
            }
            (SlotState::Waiting, Part::Head(head, gone)) => {
                slot.state = SlotState::Streaming {
                    head: Some(with_headers(head, &mut slot.extras.headers)),
                    chunks: VecDeque::new(),
                    ended: false,
                    keep_alive: true,
                    _gone: GoneOnDrop(gone),
                };
            }

            (SlotState::Streaming { chunks, .. }, Part::Chunk(bytes)) => chunks.push_back(bytes),
            (SlotState::Streaming { ended, .. }, Part::End) => *ended = true,
            _ => return,
        }
        self.encode_ready(env);
    }

    /// Encodes the ready prefix of the slots; a stream at the front is
    /// encoded as far as it has come and holds back the slots behind it.
    fn encode_ready(&mut self, env: &mut Env<'_>) {
        let Output { pending, wire, .. } = self;
        while let Some(front) = pending.front_mut() {
            let meta = front.meta;
            let access = front.extras.access.as_deref();
            let keep_alive = match &mut front.state {
                SlotState::Waiting => return,
                SlotState::Ready(response) => encode(wire, response, meta, access, env),
                SlotState::Streaming { head, chunks, ended, keep_alive, .. } => {
                    if let Some(head) = head.take() {
                        *keep_alive = encode(wire, &head, meta, access, env) && !meta.http10;
                    }
                    for chunk in chunks.drain(..) {
                        encode_chunk(wire, &chunk, meta, env);
                    }
                    if !*ended {
                        return;
                    }
                    end_stream(wire, meta, env);
                    *keep_alive
                }
            };
            pending.pop_front();
            if !keep_alive {
                // Requests after this one will not be answered.
                wire.close_after = true;
                pending.clear();
            }
        }
    }
}

/// `response` with the headers a service added through its context.
fn with_headers(mut response: Response, headers: &mut Vec<(&'static str, String)>) -> Response {
    for (name, value) in headers.drain(..) {
        response = response.header(name, value);
    }
    response
}

/// Encodes a response head (and body, unless streamed) onto the wire;
/// returns whether the connection stays open after it. (The wire itself
/// knows nothing of HTTP.)
fn encode(wire: &mut Wire, response: &Response, meta: Meta, access: Option<&AccessEntry>, env: &mut Env<'_>) -> bool {
    if wire.close_after {
        return false;
    }
    // HTTP/1.0 has no chunked coding: a streamed body ends with the connection.
    let streamed_to_http10 = response.is_streamed() && meta.http10;
    let keep_alive = meta.keep_alive && !response.closes() && !env.closing && !streamed_to_http10;
    let how = Encoding { head_only: meta.head_only, keep_alive, http10: meta.http10, date: env.date.get() };
    response.encode(how, wire.open(env.pool, env.now));
    // A clock read of its own: the loop's `now` is when the request was
    // read, so in the same turn every response would take 0.
    let took = Instant::now().saturating_duration_since(meta.started);
    let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    env.recorder.record(meta.route, meta.method, response.status, meta.client, nanos);
    if let (Some(log), Some(entry)) = (env.access_log, access) {
        let bytes = (!response.is_streamed()).then(|| response.body_len());
        log.record(entry, meta.client, response.status, bytes, took);
    }
    if !keep_alive && !response.is_streamed() {
        wire.close_after = true;
    }
    keep_alive
}

/// One piece of a streamed body, chunk-framed for HTTP/1.1.
fn encode_chunk(wire: &mut Wire, bytes: &[u8], meta: Meta, env: &mut Env<'_>) {
    if wire.close_after || meta.head_only {
        return;
    }
    let out = wire.open(env.pool, env.now).buf();
    if meta.http10 {
        out.extend_from_slice(bytes);
    } else {
        out.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
}

/// The end of a streamed body.
fn end_stream(wire: &mut Wire, meta: Meta, env: &mut Env<'_>) {
    if !wire.close_after && !meta.head_only && !meta.http10 {
        wire.open(env.pool, env.now).bytes(b"0\r\n\r\n");
    }
}

#[cfg(test)]
mod tests {
    //! The protocol without a socket: bytes in, bytes out, time passed in.

    use std::sync::Mutex;

    use super::*;
    use crate::reactor::mailbox::Responder;
    use crate::reactor::waker::Waker;

    /// `GET /later` is answered by the test through a responder; anything
    /// else at once with its path as the body.
    #[derive(Default)]
    struct Echo {
        later: Mutex<Vec<Responder>>,
    }

    impl Service for Echo {
        fn call(&self, request: &Request<'_>, cx: &mut Context<'_>) -> Reply {
            if request.head.path == "/later" {
                self.later.lock().unwrap().push(cx.defer());
                return Reply::Later;
            }
            Reply::Now(Response::with_body(200, "text/plain", request.head.path.as_bytes().to_vec()))
        }
    }

    /// What a reactor lends a connection.
    struct Rig {
        service: Echo,
        limits: Limits,
        date: DateCache,
        pool: BufPool,
        mailbox: Arc<Mailbox>,
        server: ServerState,
        recorder: Recorder,
        now: Instant,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                service: Echo::default(),
                limits: Limits {
                    header_timeout: Duration::from_secs(10),
                    body_timeout: Duration::from_secs(10),
                    idle_timeout: Duration::from_secs(60),
                    write_timeout: Duration::from_secs(5),
                    max_header_bytes: 8 * 1024,
                    max_body_bytes: 64 * 1024,
                },
                date: DateCache::new(),
                pool: BufPool::default(),
                mailbox: Arc::new(Mailbox::new(Waker::new().unwrap())),
                server: ServerState::new(1, 10),
                recorder: Recorder::new(None),
                now: Instant::now(),
            }
        }

        /// A connection accepted now from loopback.
        fn open(&self) -> Connection {
            Connection::new(Token(1), IpAddr::from([127, 0, 0, 1]), self.now)
        }

        fn env(&mut self) -> Env<'_> {
            Env {
                service: &self.service,
                limits: &self.limits,
                date: &self.date,
                pool: &mut self.pool,
                mailbox: &self.mailbox,
                server: &self.server,
                now: self.now,
                draining: false,
                closing: false,
                recorder: &mut self.recorder,
                access_log: None,
            }
        }

        /// Hands `bytes` to the connection as received, and lets it run.
        fn receive(&mut self, conn: &mut Connection, bytes: &[u8]) {
            let mut env = self.env();
            conn.on_read(bytes, &mut env);
            conn.poll(&mut env);
        }

        /// Everything the connection has to send, as if the socket took it all.
        fn sent(&mut self, conn: &mut Connection) -> String {
            let mut out = Vec::new();
            loop {
                let n = {
                    let mut slices = [IoSlice::new(&[]); 16];
                    let n = conn.pending_write(&mut slices);
                    slices[..n].iter().for_each(|s| out.extend_from_slice(s));
                    slices[..n].iter().map(|s| s.len()).sum::<usize>()
                };
                if n == 0 {
                    break;
                }
                let mut env = self.env();
                conn.on_written(n, &mut env);
                conn.poll(&mut env);
            }
            String::from_utf8(out).unwrap()
        }

        /// Hands the connection what the mailbox holds, as the reactor would,
        /// with the kernel reporting `backlog` bytes unacknowledged.
        fn deliver(&mut self, conn: &mut Connection, backlog: usize) {
            let mut done = Vec::new();
            self.mailbox.drain(|c, _| done.push(c));
            for c in done {
                let mut env = self.env();
                conn.complete(c.seq, c.part, &mut env, || backlog);
            }
        }

        /// Answers the deferred requests in the order given, through the mailbox.
        fn answer_later(&mut self, conn: &mut Connection, order: &[usize], bodies: &[&str]) {
            let mut responders: Vec<Option<Responder>> =
                self.service.later.lock().unwrap().drain(..).map(Some).collect();
            for (&i, body) in order.iter().zip(bodies) {
                let responder = responders[i].take().unwrap();
                responder.send(Response::with_body(200, "text/plain", body.as_bytes().to_vec()));
            }
            self.deliver(conn, 0);
        }
    }

    fn bodies(sent: &str) -> Vec<&str> {
        sent.split("HTTP/1.1 ").skip(1).map(|r| r.split("\r\n\r\n").nth(1).unwrap_or("")).collect()
    }

    #[test]
    fn a_request_in_pieces_is_answered_once_whole_and_the_connection_goes_idle() {
        let mut rig = Rig::new();
        let mut conn = rig.open();
        rig.receive(&mut conn, b"GET /a HTTP/1.1\r\nHo");
        assert_eq!(rig.sent(&mut conn), "", "nothing before the head is whole");
        assert_eq!(conn.poll_deadline(&rig.limits), Some(rig.now + rig.limits.header_timeout));
        rig.receive(&mut conn, b"st: x\r\n\r\n");
        let sent = rig.sent(&mut conn);
        assert!(sent.starts_with("HTTP/1.1 200 OK\r\n") && sent.ends_with("\r\n\r\n/a"), "{sent}");
        assert!(conn.wants_read(&rig.limits) && !conn.is_closed());
        assert_eq!(conn.poll_deadline(&rig.limits), Some(rig.now + rig.limits.idle_timeout), "idle keep-alive");
    }

    #[test]
    fn pipelined_answers_keep_request_order_whoever_finishes_first() {
        let mut rig = Rig::new();
        let mut conn = rig.open();
        rig.receive(&mut conn, b"GET /later HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /later HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(rig.sent(&mut conn), "", "the first answer holds back the rest");
        rig.answer_later(&mut conn, &[1, 0], &["third", "first"]);
        assert_eq!(bodies(&rig.sent(&mut conn)), ["first", "/b", "third"]);
    }

    #[test]
    fn a_malformed_request_is_answered_then_the_write_side_shut() {
        let mut rig = Rig::new();
        let mut conn = rig.open();
        rig.receive(&mut conn, b"GET /a HTTP/1.1\r\nBad Header\r\n\r\n");
        let sent = rig.sent(&mut conn);
        assert!(sent.starts_with("HTTP/1.1 400 ") && sent.contains("Connection: close"), "{sent}");
        assert!(conn.take_shutdown(), "the engine is asked to shut the write side");
        assert!(!conn.take_shutdown(), "once");
        // Lingering: what the client still sends is read and dropped, then
        // its close ends the connection.
        rig.receive(&mut conn, b"more junk");
        assert_eq!(rig.sent(&mut conn), "");
        conn.on_eof(rig.now);
        conn.poll(&mut rig.env());
        assert!(conn.is_closed());
    }

    #[test]
    fn a_head_that_never_completes_gets_408_at_its_deadline() {
        let mut rig = Rig::new();
        let mut conn = rig.open();
        rig.receive(&mut conn, b"GET /slow HTTP/1.1\r\n");
        let deadline = conn.poll_deadline(&rig.limits).unwrap();
        rig.now = deadline - Duration::from_millis(1);
        conn.expire(&mut rig.env());
        assert_eq!(rig.sent(&mut conn), "", "not before its time");
        rig.now = deadline;
        conn.expire(&mut rig.env());
        assert!(rig.sent(&mut conn).starts_with("HTTP/1.1 408 "));
        assert!(conn.take_shutdown());
    }

    #[test]
    fn output_taken_by_the_kernel_still_counts_until_reported_sent() {
        let mut rig = Rig::new();
        rig.limits.write_timeout = Duration::from_secs(5);
        let mut conn = rig.open();
        rig.receive(&mut conn, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        let taken = conn.take_write().expect("a response to send");
        assert!(conn.take_write().is_none(), "taken whole");
        let unsent = taken.unsent();
        conn.below(unsent, rig.now);
        assert_eq!(conn.poll_deadline(&rig.limits), Some(rig.now + rig.limits.write_timeout), "a write pending");
        // A client that stops reading: far more below than the high water
        // mark pauses reading, and the write deadline closes it.
        conn.below(WRITE_HIGH_WATER, rig.now);
        assert!(!conn.wants_read(&rig.limits), "backpressure");
        rig.now += rig.limits.write_timeout;
        conn.expire(&mut rig.env());
        assert!(conn.is_closed(), "no progress within the write timeout");
    }

    #[test]
    fn progress_below_moves_the_write_deadline_and_an_end_reopens_reading() {
        let mut rig = Rig::new();
        let start = rig.now;
        let mut conn = rig.open();
        rig.receive(&mut conn, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        let taken = conn.take_write().unwrap();
        conn.below(WRITE_HIGH_WATER + taken.unsent(), rig.now);
        assert!(!conn.wants_read(&rig.limits));
        rig.now += Duration::from_secs(3);
        conn.below(10, rig.now);
        assert_eq!(conn.poll_deadline(&rig.limits), Some(rig.now + rig.limits.write_timeout), "progress at now");
        conn.below(0, rig.now);
        assert!(conn.wants_read(&rig.limits));
        // Idle counts from the last request, not from the end of its answer.
        assert_eq!(conn.poll_deadline(&rig.limits), Some(start + rig.limits.idle_timeout));
    }

    #[test]
    fn a_peer_that_closes_mid_request_ends_the_connection_without_an_answer() {
        let mut rig = Rig::new();
        let mut conn = rig.open();
        rig.receive(&mut conn, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
        conn.on_eof(rig.now);
        conn.poll(&mut rig.env());
        assert_eq!(rig.sent(&mut conn), "");
        assert!(conn.is_closed());
    }

    /// A burst of chunks queued behind a send not yet made is no stall; the
    /// same bytes with the kernel holding what the client has not taken are.
    #[test]
    fn a_stream_is_cut_only_when_the_kernel_holds_what_its_client_left_unread() {
        let mut rig = Rig::new();
        let mut conn = rig.open();
        rig.receive(&mut conn, b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
        let responder = rig.service.later.lock().unwrap().pop().unwrap();
        let stream = responder.stream(Response::streaming(200, "text/plain"));
        for _ in 0..10 {
            stream.send(vec![b'x'; 1000]);
        }
        rig.deliver(&mut conn, 0);
        assert!(!conn.is_closed(), "ten chunks waiting for our own send, the kernel empty");
        let sent = rig.sent(&mut conn);
        assert_eq!(sent.matches(&"x".repeat(1000)).count(), 10, "all of them go out");
        for _ in 0..10 {
            stream.send(vec![b'y'; 1000]);
        }
        rig.deliver(&mut conn, 64 * 1024);
        assert!(conn.is_closed(), "the client stopped reading: the kernel holds 64 KiB it has not taken");
        drop(conn); // as the reactor drops a closed connection
        assert!(stream.is_gone(), "the producer is told");
    }

    #[test]
    fn a_full_buffer_stops_reading_until_consumed() {
        let mut rig = Rig::new();
        let mut conn = rig.open();
        let mut space = conn.read_space(&mut rig.pool, &rig.limits).unwrap().len();
        // Fill with the start of an endless header line, as a socket would.
        while conn.wants_read(&rig.limits) {
            let Some(room) = conn.read_space(&mut rig.pool, &rig.limits) else { break };
            room.fill(b'a');
            space = room.len();
            conn.on_filled(space, &mut rig.env());
        }
        assert!(space > 0);
        assert!(!conn.wants_read(&rig.limits), "at the head limit plus a buffer, reading stops");
        conn.poll(&mut rig.env());
        assert!(rig.sent(&mut conn).starts_with("HTTP/1.1 431 "), "an oversized head is refused");
    }
}
