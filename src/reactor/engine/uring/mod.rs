//! The io_uring engine: completions instead of readiness.
//!
//! Each listener has a multishot accept armed, each connection a multishot
//! receive into the reactor's provided-buffer ring (so an idle connection
//! holds no receive buffer), and at most one send in flight. A turn pushes
//! what the connections want onto the submission queue and enters the
//! kernel once, to submit it all and wait for completions. The mailbox
//! wakes the ring through a read kept in flight on its eventfd.
//!
//! Bytes handed to the kernel are owned by the operation until its
//! completion: a send takes the connection's output out of it
//! ([`Connection::take_write`]) into a boxed [`Flight`] that neither moves
//! nor changes until the kernel is done with it, even if the connection
//! closes first (the flight then waits in `closing`).

mod buf_ring;

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use mio::Token;

use super::{unacknowledged, Spare};
use crate::reactor::connection::Env;
use crate::reactor::event_loop::{split_token, token_of, Engine, Link, Reactor};
use crate::reactor::listener::Listening;
use crate::reactor::transport::Transport;
use crate::reactor::waker::Waker;
use crate::reactor::wire::{Outgoing, IOVECS};
use buf_ring::BufRing;

/// Submission queue entries; completions get four times as many (see
/// [`Uring::ring`]), as multishot operations post several each.
const SQ_ENTRIES: u32 = 1024;
/// Receive buffers in the ring (a power of two) and the size of each. The
/// ring is shared by the reactor's connections: 8 MiB, touched as used.
/// 16 KiB, as epoll's read buffers: with 4 KiB a 60 KB JSON task cost 5.7 %
/// more server CPU than on epoll (fifteen completions for one body), with
/// 16 KiB 1.5 % (`loadtest/compare-intake.sh`).
const RECV_BUFFERS: u16 = 512;
const RECV_BUFFER_SIZE: usize = 16 * 1024;
/// How long to stop accepting after an accept error we cannot shed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What an operation was, in the low bits of its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Recv = 0,
    Send = 1,
    Accept = 2,
    Wake = 3,
    Cancel = 4,
}

const OP_BITS: u32 = 3;
/// Connection slab indexes must fit beside the op in the low 32 bits.
const MAX_INDEX: usize = (1 << (32 - OP_BITS)) - 1;

/// User data: the token's generation (high 32 bits), its slab index
/// (or a listener's), and the op. Keyed on the token, never on the fd:
/// completions for a closed fd can still arrive.
fn user_data(token: Token, op: Op) -> u64 {
    let (index, generation) = split_token(token);
    u64::from(generation) << 32 | (index as u64) << OP_BITS | op as u64
}

fn parse_user_data(data: u64) -> (Token, Op) {
    let op = match data & ((1 << OP_BITS) - 1) {
        0 => Op::Recv,
        1 => Op::Send,
        2 => Op::Accept,
        3 => Op::Wake,
        _ => Op::Cancel,
    };
    let index = (data & 0xffff_ffff) >> OP_BITS;
    (token_of(index as usize, (data >> 32) as u32), op)
}

/// Where a connection's multishot receive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    /// None armed.
    Idle,
    /// Armed: the kernel posts what arrives.
    Armed,
    /// A cancel is on its way (the connection wants no more for now);
    /// completions may still come until the last one.
    Cancelling,
}

/// Output the kernel is sending: the bytes, and for a vectored send the
/// message header and slices pointing into them. Boxed, so that these
/// addresses stay put while the connection's record moves.
struct Flight {
    out: Outgoing,
    iov: [libc::iovec; IOVECS],
    msg: libc::msghdr,
}

impl Flight {
    fn new(out: Outgoing) -> Box<Flight> {
        let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: msghdr is plain data (pointers and lengths); all zero is an
        // empty header, whose slices `submit_send` points at `iov`.
        Box::new(Flight { out, iov: [empty; IOVECS], msg: unsafe { std::mem::zeroed() } })
    }
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight").field("unsent", &self.out.unsent()).finish()
    }
}

/// The kernel side of one connection.
#[derive(Debug)]
pub struct UringIo {
    stream: TcpStream,
    recv: Recv,
    flight: Option<Box<Flight>>,
    /// Shut the write side once the flight is done (TLS: its close_notify).
    shut_pending: bool,
}

impl UringIo {
    fn idle(&self) -> bool {
        self.recv == Recv::Idle && self.flight.is_none()
    }
}

/// A listener and whether its multishot accept is armed.
struct Listener {
    listening: Listening,
    armed: bool,
}

/// The io_uring engine of one reactor.
pub struct Uring {
    // Declared first, so dropped before the buffers its operations used.
    ring: IoUring,
    bufs: BufRing,
    listeners: Vec<Option<Listener>>,
    accepting: bool,
    accept_paused_until: Option<Instant>,
    spare: Spare,
    waker: RawFd,
    wake_buf: Box<[u8; 8]>,
    /// Closed connections whose operations are still in flight.
    closing: HashMap<Token, UringIo>,
    /// Operations submitted and not finished (a multishot one until its
    /// last completion), to drain before the ring goes.
    in_flight: usize,
    /// One turn's completions, copied out of the ring (kept for its allocation).
    completions: Vec<(u64, i32, u32)>,
    /// Operations the submission queue had no room for.
    overflow: VecDeque<squeue::Entry>,
}

impl Uring {
    /// Whether this kernel lets the process use io_uring as the engine
    /// needs it (a ring, a provided-buffer ring, multishot receives).
    /// Tried on a thread of its own: the kernel's teardown of a ring posts
    /// work to the thread that made it, which interrupts that thread's next
    /// blocking call (seen as a spurious EINTR on the caller's socket read).
    pub fn probe() -> io::Result<()> {
        std::thread::Builder::new()
            .name("pagelens-io-uring-probe".into())
            .spawn(Self::probe_here)?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the io_uring probe panicked")))
    }

    fn probe_here() -> io::Result<()> {
        // Asked first: on an older kernel the ring's flags fail with a bare EINVAL.
        let release = kernel_release();
        if release < (6, 1) {
            let (major, minor) = release;
            return Err(io::Error::other(format!(
                "kernel {major}.{minor} is older than 6.1 (deferred task work, multishot receive)"
            )));
        }
        let ring = Self::ring(8)?;
        BufRing::new(&ring.submitter(), 2, 64, 0).map(drop)
    }

    /// A ring as the engine runs it. One thread submits and reaps (the one
    /// that makes it), so completions' task work waits for that thread's
    /// own io_uring_enter instead of interrupting it: measured, 1.6x the CPU
    /// a request of epoll without these flags, 0.97x with (6.1 and later).
    fn ring(entries: u32) -> io::Result<IoUring> {
        IoUring::builder().setup_cqsize(entries * 4).setup_single_issuer().setup_defer_taskrun().build(entries)
    }

    /// An engine serving `listeners`, woken through `waker`; on failure the
    /// listeners come back with the error, for another engine to serve.
    pub fn new(listeners: Vec<Listening>, waker: &Waker) -> Result<Uring, (io::Error, Vec<Listening>)> {
        let built = Self::ring(SQ_ENTRIES)
            .and_then(|ring| BufRing::new(&ring.submitter(), RECV_BUFFERS, RECV_BUFFER_SIZE, 0).map(|b| (ring, b)));
        let (ring, bufs) = match built {
            Ok(built) => built,
            Err(e) => return Err((e, listeners)),
        };
        let mut engine = Uring {
            ring,
            bufs,
            listeners: listeners.into_iter().map(|listening| Some(Listener { listening, armed: false })).collect(),
            accepting: true,
            accept_paused_until: None,
            spare: Spare::new(),
            waker: waker.as_raw_fd(),
            wake_buf: Box::new([0; 8]),
            closing: HashMap::new(),
            in_flight: 0,
            completions: Vec::new(),
            overflow: VecDeque::new(),
        };
        engine.arm_wake();
        engine.arm_accepts();
        Ok(engine)
    }

    /// Queues an operation: on the submission queue, submitting what is
    /// there first if it is full, or, if the kernel takes nothing now (its
    /// completion queue overflowing), behind it in `overflow` for the next
    /// turn. Never dropped: a lost send or receive would leave its
    /// connection waiting, and its record waiting in `closing` forever.
    ///
    /// # Safety
    /// Every buffer the entry points to must stay valid, and unmoved, until
    /// the operation's last completion.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        self.in_flight += 1;
        if self.overflow.is_empty() {
            // SAFETY: the caller's promise.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // SAFETY: as above.
            if self.ring.submit().is_ok() && unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
        }
        self.overflow.push_back(entry);
    }

    /// Moves what waits in `overflow` onto the submission queue, as far as it has room.
    fn refill(&mut self) {
        while let Some(entry) = self.overflow.front() {
            // SAFETY: each entry's buffers were promised valid until its completion when it was pushed.
            if unsafe { self.ring.submission().push(entry) }.is_err() {
                return;
            }
            self.overflow.pop_front();
        }
    }

    fn arm_wake(&mut self) {
        let read = opcode::Read::new(Fd(self.waker), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(user_data(Token(0), Op::Wake));
        // SAFETY: `wake_buf` is boxed in the engine, which outlives the ring's operations.
        unsafe { self.push(read) };
    }

    fn arm_accepts(&mut self) {
        if !self.accepting || self.accept_paused_until.is_some() {
            return;
        }
        for i in 0..self.listeners.len() {
            let Some(listener) = self.listeners[i].as_mut().filter(|l| !l.armed) else { continue };
            listener.armed = true;
            let fd = listener.listening.socket.as_raw_fd();
            let accept = opcode::AcceptMulti::new(Fd(fd))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
                .user_data(user_data(Token(i), Op::Accept));
            // SAFETY: a multishot accept points to no buffer.
            unsafe { self.push(accept) };
        }
    }

    fn arm_recv(&mut self, token: Token, io: &mut UringIo) {
        io.recv = Recv::Armed;
        let recv = opcode::RecvMulti::new(Fd(io.stream.as_raw_fd()), self.bufs.group())
            .build()
            .user_data(user_data(token, Op::Recv));
        // SAFETY: the receive writes only into the ring's own buffers, which live as long as the ring.
        unsafe { self.push(recv) };
    }

    fn cancel(&mut self, target: CancelBuilder) {
        let cancel = opcode::AsyncCancel2::new(target).build().user_data(user_data(Token(0), Op::Cancel));
        // SAFETY: a cancel points to no buffer.
        unsafe { self.push(cancel) };
    }

    /// Sends what the flight still holds.
    fn submit_send(&mut self, token: Token, io: &mut UringIo) {
        let fd = Fd(io.stream.as_raw_fd());
        let Some(flight) = io.flight.as_deref_mut() else { return };
        let mut slices = [IoSlice::new(&[]); IOVECS];
        let n = flight.out.slices(&mut slices);
        let entry = if n == 1 {
            let len = u32::try_from(slices[0].len()).unwrap_or(u32::MAX);
            opcode::Send::new(fd, slices[0].as_ptr(), len).flags(libc::MSG_NOSIGNAL).build()
        } else {
            for (iov, slice) in flight.iov.iter_mut().zip(&slices[..n]) {
                *iov = libc::iovec { iov_base: slice.as_ptr() as *mut libc::c_void, iov_len: slice.len() };
            }
            flight.msg.msg_iov = flight.iov.as_mut_ptr();
            flight.msg.msg_iovlen = n;
            opcode::SendMsg::new(fd, &flight.msg).flags(libc::MSG_NOSIGNAL as u32).build()
        };
        // SAFETY: the slices point into the flight's bytes (a buffer it owns,
        // shared bodies it holds), and the header and iovecs into the boxed
        // flight itself; the flight stays, unchanged, until this send completes.
        unsafe { self.push(entry.user_data(user_data(token, Op::Send))) };
    }

    /// Starts a send of what the connection has for the wire, if none is in flight.
    fn start_flight(&mut self, token: Token, link: &mut Link<UringIo>, env: &mut Env<'_>) {
        let Link { conn, transport, io } = link;
        if io.flight.is_some() {
            return;
        }
        let out = match transport {
            Transport::Plain => conn.take_write(),
            Transport::Tls(_) => {
                let mut records = env.pool.take_write();
                if transport.send(conn, env, &mut records).is_err() {
                    conn.abort();
                }
                if records.is_empty() {
                    env.pool.give_write(records);
                    None
                } else {
                    Some(Outgoing::from(records))
                }
            }
        };
        if let Some(out) = out {
            io.flight = Some(Flight::new(out));
            self.submit_send(token, io);
        }
    }

    fn accepted(reactor: &mut Reactor<Self>, i: usize, result: i32, more: bool, now: Instant) {
        if i >= reactor.engine.listeners.len() {
            return; // not user data of ours; the index below is one of our listeners'
        }
        if !more {
            if let Some(listener) = reactor.engine.listeners[i].as_mut() {
                listener.armed = false;
            }
            if !reactor.engine.accepting {
                // Drained: the listener closes once nothing of it is in flight.
                reactor.engine.listeners[i] = None;
            }
        }
        if result < 0 {
            match -result {
                libc::ECANCELED | libc::EINTR | libc::ECONNABORTED | libc::EAGAIN => {}
                libc::EMFILE | libc::ENFILE => {
                    reactor.server().count_refused();
                    let Uring { spare, listeners, .. } = &mut reactor.engine;
                    if !listeners[i].as_ref().is_some_and(|l| spare.shed_one(&l.listening.socket)) {
                        reactor.engine.pause_accepting(now);
                    }
                }
                // ENOBUFS, ENOMEM and the like: back off rather than spin.
                _ => reactor.engine.pause_accepting(now),
            }
        } else {
            // SAFETY: a successful accept returns a new descriptor that nothing else owns.
            let stream = unsafe { TcpStream::from_raw_fd(result) };
            Self::admit(reactor, i, stream, now);
        }
        reactor.engine.arm_accepts();
    }

    fn pause_accepting(&mut self, now: Instant) {
        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
        self.cancel_accepts();
    }

    /// Cancels the armed accepts; each listener's last completion disarms it.
    fn cancel_accepts(&mut self) {
        let fds: Vec<RawFd> =
            self.listeners.iter().flatten().filter(|l| l.armed).map(|l| l.listening.socket.as_raw_fd()).collect();
        for fd in fds {
            self.cancel(CancelBuilder::fd(Fd(fd)).all());
        }
    }

    fn admit(reactor: &mut Reactor<Self>, i: usize, stream: TcpStream, now: Instant) {
        // A multishot accept gives no address: ask the socket.
        let Ok(peer) = stream.peer_addr() else { return };
        let tls = reactor.engine.listeners[i].as_ref().and_then(|l| l.listening.tls.clone());
        reactor.admit(stream, peer.ip(), tls.as_ref(), now, |engine, token, stream| {
            if split_token(token).0 > MAX_INDEX {
                return Err(io::Error::other("too many connections for the ring's user data"));
            }
            let mut io = UringIo { stream, recv: Recv::Idle, flight: None, shut_pending: false };
            engine.arm_recv(token, &mut io);
            Ok(io)
        });
    }

    fn received(reactor: &mut Reactor<Self>, token: Token, result: i32, flags: u32, now: Instant) {
        let more = cqueue::more(flags);
        let buffer = cqueue::buffer_select(flags);
        let found = reactor.with_conn(token, now, |engine, link, env| {
            if !more {
                link.io.recv = Recv::Idle;
            }
            match result {
                n if n > 0 => {
                    if let Some(id) = buffer {
                        let bytes = engine.bufs.bytes(id, n as usize);
                        link.transport.receive(bytes, &mut link.conn, env);
                    }
                }
                0 => link.conn.on_eof(env.now),
                // Out of ring buffers, or paused: armed again when wanted.
                n if -n == libc::ENOBUFS || -n == libc::ECANCELED => {}
                _ => link.conn.abort(),
            }
            link.conn.poll(env);
        });
        if let Some(id) = buffer {
            reactor.engine.bufs.recycle(id);
        }
        if !found && !more {
            reactor.engine.finish_closing(token, |io| io.recv = Recv::Idle);
        }
    }

    fn sent(reactor: &mut Reactor<Self>, token: Token, result: i32, now: Instant) {
        let found = reactor.with_conn(token, now, |engine, link, env| {
            let Some(flight) = link.io.flight.as_deref_mut() else { return };
            if result <= 0 {
                link.conn.abort();
                return;
            }
            flight.out.advance(result as usize);
            if matches!(link.transport, Transport::Plain) {
                // The connection's own bytes (TLS counts its plaintext as it takes it).
                env.recorder.bytes(0, result as usize);
            }
            if flight.out.is_pending() {
                engine.submit_send(token, &mut link.io);
            } else if let Some(done) = link.io.flight.take() {
                env.pool.give_write(done.out.into_buffer());
            }
        });
        if !found {
            reactor.engine.finish_closing(token, |io| io.flight = None);
        }
    }

    /// A closed connection's operation finished; its socket closes with the last.
    fn finish_closing(&mut self, token: Token, done: impl FnOnce(&mut UringIo)) {
        if let Some(io) = self.closing.get_mut(&token) {
            done(io);
            if io.idle() {
                self.closing.remove(&token);
            }
        }
    }

    /// Submits what is queued and waits for a completion or `timeout`.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.bufs.publish();
        self.refill();
        let entered = match timeout {
            Some(timeout) => {
                let ts = Timespec::from(timeout);
                self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts))
            }
            None => self.ring.submit_and_wait(1),
        };
        match entered {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The running kernel's major and minor version.
fn kernel_release() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl Engine for Uring {
    type Io = UringIo;

    fn turn(reactor: &mut Reactor<Self>, timeout: Option<Duration>) -> io::Result<()> {
        reactor.engine.enter(timeout)?;
        let now = reactor.clock();
        let mut completions = std::mem::take(&mut reactor.engine.completions);
        completions.clear();
        completions.extend(reactor.engine.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for &(data, result, flags) in &completions {
            let (token, op) = parse_user_data(data);
            if !cqueue::more(flags) {
                reactor.engine.in_flight = reactor.engine.in_flight.saturating_sub(1);
            }
            match op {
                Op::Recv => Self::received(reactor, token, result, flags, now),
                Op::Send => Self::sent(reactor, token, result, now),
                Op::Accept => Self::accepted(reactor, token.0, result, cqueue::more(flags), now),
                Op::Wake => {
                    reactor.engine.arm_wake();
                    reactor.on_wake(now);
                }
                Op::Cancel => {}
            }
        }
        reactor.engine.completions = completions;
        if reactor.engine.accept_paused_until.is_some_and(|t| t <= now) {
            reactor.engine.accept_paused_until = None;
            reactor.engine.arm_accepts();
        }
        Ok(())
    }

    fn drive(&mut self, token: Token, link: &mut Link<UringIo>, env: &mut Env<'_>) {
        loop {
            if link.conn.take_shutdown() {
                link.transport.close_notify();
                link.io.shut_pending = true;
            }
            self.start_flight(token, link, env);
            let Link { conn, transport, io } = link;
            if io.shut_pending && io.flight.is_none() {
                io.shut_pending = false;
                if io.stream.shutdown(Shutdown::Write).is_err() {
                    conn.abort();
                }
            }
            let unsent = io.flight.as_ref().map_or(0, |f| f.out.unsent()) + usize::from(transport.wants_write());
            conn.below(unsent, env.now);
            // Less unsent may let the connection move on (close, read again).
            if conn.is_closed() || !conn.poll(env) {
                break;
            }
        }
        let Link { conn, io, .. } = link;
        let wants = !conn.is_closed() && conn.wants_read(env.limits);
        match io.recv {
            Recv::Idle if wants => self.arm_recv(token, io),
            Recv::Armed if !wants && !conn.is_closed() => {
                io.recv = Recv::Cancelling;
                self.cancel(CancelBuilder::user_data(user_data(token, Op::Recv)));
            }
            _ => {}
        }
    }

    fn backlog(&self, io: &UringIo) -> usize {
        unacknowledged(io.stream.as_raw_fd())
    }

    fn close(&mut self, token: Token, mut link: Link<UringIo>) {
        link.transport.last_gasp(&mut link.io.stream);
        if link.io.idle() {
            return; // dropping the stream closes the socket
        }
        // A multishot receive keeps the socket alive past close(2): cancel
        // everything on it, and close it with the last completion.
        self.cancel(CancelBuilder::fd(Fd(link.io.stream.as_raw_fd())).all());
        self.closing.insert(token, link.io);
    }

    fn stop_accepting(&mut self) {
        self.accepting = false;
        self.cancel_accepts();
        // An armed one closes with its accept's last completion; the rest now.
        for listener in &mut self.listeners {
            if !listener.as_ref().is_some_and(|l| l.armed) {
                *listener = None;
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        // Operations still waiting for room go in at the next enter, now.
        let overflowing = (!self.overflow.is_empty()).then(Instant::now);
        self.accept_paused_until.into_iter().chain(overflowing).min()
    }
}

impl Drop for Uring {
    /// Cancels every operation and waits for them to end, so that no
    /// receive writes into the buffer ring, and no send reads a flight,
    /// after they are freed.
    fn drop(&mut self) {
        self.cancel(CancelBuilder::any());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.in_flight > 0 && Instant::now() < deadline {
            if self.enter(Some(Duration::from_millis(100))).is_err() {
                break;
            }
            let ends = self.ring.completion().filter(|c| !cqueue::more(c.flags())).count();
            self.in_flight = self.in_flight.saturating_sub(ends);
        }
        if self.in_flight > 0 {
            // The kernel still holds operations: their buffers must never be
            // freed under them. Leaked, once, as the reactor ends.
            crate::warn!(
                "{} io_uring operations outlived the shutdown; their buffers are left allocated",
                self.in_flight
            );
            self.bufs.leak();
            std::mem::forget(std::mem::take(&mut self.closing));
        }
    }
}
