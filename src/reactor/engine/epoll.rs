//! The epoll engine (through mio): readiness, edge-triggered. A ready
//! connection is read into its own buffer and written from it in place,
//! in a loop, until the socket has nothing more or its read budget is
//! spent.

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{unacknowledged, Spare};
use crate::reactor::buffers::READ_BUFFER;
use crate::reactor::connection::Env;
use crate::reactor::event_loop::{Engine, Link, Reactor};
use crate::reactor::listener::Listening;
use crate::reactor::transport::Transport;
use crate::reactor::waker::Waker;

/// Token of the mailbox's waker.
const WAKER: Token = Token(usize::MAX - 1);
/// Token of the first listening socket; the next ones count down from it.
/// (Connection tokens carry a slab index, far below these, in their low bits.)
const FIRST_LISTENER: usize = usize::MAX - 2;
/// How long to stop accepting after an accept error we cannot shed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Bytes read from one connection per wake-up before others get a turn.
const READ_BUDGET: usize = 512 * 1024;

/// The epoll engine of one reactor.
pub struct Epoll {
    poll: Poll,
    events: Events,
    /// Empty once draining: nothing more is accepted.
    listeners: Vec<Listening>,
    spare: Spare,
    accept_paused_until: Option<Instant>,
    /// Connections that used up their read budget and have more to read.
    busy: Vec<Token>,
    /// The tokens of one turn's events (kept to reuse its allocation).
    ready: Vec<Token>,
    /// TLS records read from a socket before they are decrypted.
    ciphertext: Box<[u8]>,
}

/// What one read saw on the socket.
enum Got {
    /// This many bytes arrived; `drained` when they filled less than the
    /// free space, so the socket's receive queue is empty now.
    Data { n: usize, drained: bool },
    /// Nothing more for now, or no room to put it.
    Nothing,
    /// The peer closed its side.
    Eof,
}

impl Epoll {
    /// An engine serving `listeners`, woken through `waker`.
    pub fn new(mut listeners: Vec<Listening>, waker: &Waker) -> io::Result<Epoll> {
        let poll = Poll::new()?;
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(&mut listener.socket, Token(FIRST_LISTENER - i), Interest::READABLE)?;
        }
        poll.registry().register(&mut SourceFd(&waker.as_raw_fd()), WAKER, Interest::READABLE)?;
        Ok(Epoll {
            poll,
            events: Events::with_capacity(1024),
            listeners,
            spare: Spare::new(),
            accept_paused_until: None,
            busy: Vec::new(),
            ready: Vec::new(),
            ciphertext: vec![0; READ_BUFFER].into_boxed_slice(),
        })
    }

    /// The index of the listener behind `token`, if it is one.
    fn listener_of(&self, token: Token) -> Option<usize> {
        FIRST_LISTENER.checked_sub(token.0).filter(|i| *i < self.listeners.len())
    }

    /// Reads once from the socket into the connection (through TLS, if any).
    fn read(&mut self, link: &mut Link<TcpStream>, env: &mut Env<'_>) -> io::Result<Got> {
        let Link { conn, transport, io: stream } = link;
        let result = match transport {
            Transport::Plain => {
                let Some(space) = conn.read_space(env.pool, env.limits) else { return Ok(Got::Nothing) };
                let room = space.len();
                stream.read(space).map(|n| {
                    conn.on_filled(n, env);
                    (n, room)
                })
            }
            Transport::Tls(_) => stream.read(&mut self.ciphertext).map(|n| {
                transport.receive(&self.ciphertext[..n], conn, env);
                (n, self.ciphertext.len())
            }),
        };
        match result {
            Ok((0, _)) => Ok(Got::Eof),
            Ok((n, room)) => Ok(Got::Data { n, drained: n < room }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::Nothing),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Got::Data { n: 0, drained: false }),
            Err(e) => Err(e),
        }
    }

    fn accept(reactor: &mut Reactor<Self>, now: Instant) {
        for i in 0..reactor.engine.listeners.len() {
            Self::accept_from(reactor, i, now);
        }
    }

    /// Accepts from listener `i` until it is empty (or accepting pauses).
    fn accept_from(reactor: &mut Reactor<Self>, i: usize, now: Instant) {
        while reactor.engine.accept_paused_until.is_none() {
            let Some(listener) = reactor.engine.listeners.get(i) else {
                return;
            };
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    let tls = listener.tls.clone();
                    reactor.admit(stream, peer.ip(), tls.as_ref(), now, |engine, token, mut stream| {
                        // Edge-triggered: registering both once is cheaper than
                        // re-registering on every change of interest.
                        engine.poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                        Ok(stream)
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    reactor.server().count_refused();
                    let Epoll { spare, listeners, .. } = &mut reactor.engine;
                    if !listeners.get(i).is_some_and(|l| spare.shed_one(&l.socket)) {
                        reactor.engine.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    }
                }
                // ENOBUFS, ENOMEM and the like: back off rather than spin.
                Err(_) => reactor.engine.accept_paused_until = Some(now + ACCEPT_PAUSE),
            }
        }
    }
}

impl Engine for Epoll {
    type Io = TcpStream;

    fn turn(reactor: &mut Reactor<Self>, timeout: Option<Duration>) -> io::Result<()> {
        let engine = &mut reactor.engine;
        let timeout = if engine.busy.is_empty() { timeout } else { Some(Duration::ZERO) };
        match engine.poll.poll(&mut engine.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let now = reactor.clock();
        // The events are copied out: handling one needs the whole reactor.
        let mut ready = std::mem::take(&mut reactor.engine.ready);
        ready.clear();
        ready.extend(reactor.engine.events.iter().map(|e| e.token()));
        for &token in &ready {
            match token {
                WAKER => reactor.on_wake(now),
                token if reactor.engine.listener_of(token).is_some() => Self::accept(reactor, now),
                token => {
                    reactor.with_conn(token, now, |_, _, _| {});
                }
            }
        }
        for token in std::mem::take(&mut reactor.engine.busy) {
            reactor.with_conn(token, now, |_, _, _| {});
        }
        if reactor.engine.accept_paused_until.is_some_and(|t| t <= now) {
            reactor.engine.accept_paused_until = None;
            Self::accept(reactor, now);
        }
        reactor.engine.ready = ready;
        Ok(())
    }

    fn drive(&mut self, token: Token, link: &mut Link<TcpStream>, env: &mut Env<'_>) {
        let mut budget = READ_BUDGET;
        // A short read means the receive queue is empty: skip the read that
        // would only say WouldBlock. Data arriving later raises a new edge.
        let mut drained = false;
        loop {
            let mut progressed = false;
            if !drained && link.conn.wants_read(env.limits) {
                match self.read(link, env) {
                    Ok(Got::Data { n, drained: empty }) => {
                        progressed = true;
                        drained = empty;
                        budget = budget.saturating_sub(n);
                    }
                    Ok(Got::Eof) => {
                        link.conn.on_eof(env.now);
                        progressed = true;
                    }
                    Ok(Got::Nothing) => {}
                    Err(_) => link.conn.abort(),
                }
            }
            let Link { conn, transport, io: stream } = link;
            progressed |= conn.poll(env);
            if transport.send(conn, env, stream).is_err() {
                conn.abort();
            }
            conn.below(usize::from(transport.wants_write()), env.now);
            progressed |= conn.poll(env);
            if conn.take_shutdown() {
                transport.close_notify();
                if transport.send(conn, env, stream).is_err() || stream.shutdown(Shutdown::Write).is_err() {
                    conn.abort();
                }
            }
            if conn.is_closed() || !progressed {
                return;
            }
            if budget == 0 {
                self.busy.push(token);
                return;
            }
        }
    }

    fn backlog(&self, stream: &TcpStream) -> usize {
        unacknowledged(stream.as_raw_fd())
    }

    fn close(&mut self, _token: Token, mut link: Link<TcpStream>) {
        link.transport.last_gasp(&mut link.io);
        // Closing the socket removes it from epoll too; deregistering
        // first keeps mio's bookkeeping exact.
        let _ = self.poll.registry().deregister(&mut link.io);
    }

    fn stop_accepting(&mut self) {
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        self.accept_paused_until
    }
}
