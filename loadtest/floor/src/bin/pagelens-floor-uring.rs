//! The io_uring floor: the least an io_uring server can do per request, as
//! `pagelens-floor` is for epoll. It parses nothing, keeps no timers and
//! records nothing: a multishot accept, a multishot receive per connection
//! into a provided-buffer ring, request ends counted, one send in flight per
//! connection with what queues behind it, one `io_uring_enter` per loop
//! turn, single issuer with deferred task work (as pagelens' engine). The
//! gap between it and `pagelens-floor` is what io_uring itself wins or loses
//! on this kernel, whatever a server does above it.
//!
//! Usage: pagelens-floor-uring [ADDR]   (default 127.0.0.1:18085)

use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: pagelens\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nok";
const REQUEST_END: &[u8] = b"\r\n\r\n";
const BUFFERS: u16 = 1024;
const BUFFER_SIZE: usize = 4096;
const ACCEPT: u64 = u64::MAX;
const SEND_BIT: u64 = 1 << 62;

struct Conn {
    fd: OwnedFd,
    /// How many bytes of `REQUEST_END` the input has matched so far.
    matched: usize,
    /// The bytes the kernel is sending, untouched until the send completes.
    flight: Vec<u8>,
    sent: usize,
    in_flight: bool,
    /// Responses queued while a send is in flight.
    queued: Vec<u8>,
    /// The multishot receive has ended (EOF or error): close once no send is in flight.
    ended: bool,
}

/// The provided-buffer ring: entries mapped for the kernel, and the buffers.
struct Buffers {
    entries: *mut BufRingEntry,
    tail: u16,
    memory: Vec<u8>,
}

impl Buffers {
    fn recycle(&mut self, id: u16) {
        // SAFETY: the slot is inside the mapping; the kernel reads only entries before the published tail.
        let entry = unsafe { &mut *self.entries.add(usize::from(self.tail & (BUFFERS - 1))) };
        entry.set_addr(self.memory.as_ptr() as u64 + u64::from(id) * BUFFER_SIZE as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is the first entry's reserved field, written only here, with release ordering.
        unsafe { (*(BufRingEntry::tail(self.entries) as *const AtomicU16)).store(self.tail, Ordering::Release) };
    }
}

/// Queues `entry`, submitting first if the queue is full.
///
/// # Safety
/// What the entry points to must stay valid until its last completion.
unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    // SAFETY: the caller's promise.
    while unsafe { ring.submission().push(entry) }.is_err() {
        ring.submit()?;
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18085".into());
    let listener = TcpListener::bind(&addr)?;
    let mut ring: IoUring =
        IoUring::builder().setup_cqsize(4096).setup_single_issuer().setup_defer_taskrun().build(1024)?;
    let bytes = usize::from(BUFFERS) * std::mem::size_of::<BufRingEntry>();
    // SAFETY: an anonymous private mapping, page-aligned as the kernel wants; kept for the process's life.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut bufs = Buffers { entries: map.cast(), tail: 0, memory: vec![0; usize::from(BUFFERS) * BUFFER_SIZE] };
    // SAFETY: the mapping and the buffers live until the process ends.
    unsafe { ring.submitter().register_buf_ring_with_flags(map as u64, BUFFERS, 0, 0)? };
    for id in 0..BUFFERS {
        bufs.recycle(id);
    }
    bufs.publish();
    let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd())).build().user_data(ACCEPT);
    // SAFETY: a multishot accept points to no buffer.
    unsafe { push(&mut ring, &accept)? };
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut done = Vec::new();
    loop {
        bufs.publish();
        match ring.submit_and_wait(1) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        };
        done.clear();
        done.extend(ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for &(data, result, flags) in &done {
            if data == ACCEPT {
                if result >= 0 {
                    // SAFETY: a new descriptor from accept, owned by nothing else.
                    let fd = unsafe { OwnedFd::from_raw_fd(result) };
                    let i = conns.iter().position(Option::is_none).unwrap_or(conns.len());
                    let recv = opcode::RecvMulti::new(Fd(fd.as_raw_fd()), 0).build().user_data(i as u64);
                    let conn = Conn {
                        fd,
                        matched: 0,
                        flight: Vec::new(),
                        sent: 0,
                        in_flight: false,
                        queued: Vec::new(),
                        ended: false,
                    };
                    if i == conns.len() {
                        conns.push(Some(conn));
                    } else {
                        conns[i] = Some(conn);
                    }
                    // SAFETY: the receive writes only into the ring's buffers, which live as long as the process.
                    unsafe { push(&mut ring, &recv)? };
                }
                continue;
            }
            let send = data & SEND_BIT != 0;
            let i = (data & !SEND_BIT) as usize;
            let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else { continue };
            if send {
                conn.in_flight = false;
                if result <= 0 {
                    conn.flight.clear();
                    conn.queued.clear();
                } else {
                    conn.sent += result as usize;
                    if conn.sent == conn.flight.len() {
                        conn.flight.clear();
                        conn.sent = 0;
                        std::mem::swap(&mut conn.flight, &mut conn.queued);
                    }
                }
            } else {
                let buffer = cqueue::buffer_select(flags);
                if let (true, Some(id)) = (result > 0, buffer) {
                    let start = usize::from(id) * BUFFER_SIZE;
                    for &b in &bufs.memory[start..start + result as usize] {
                        conn.matched =
                            if b == REQUEST_END[conn.matched] { conn.matched + 1 } else { usize::from(b == b'\r') };
                        if conn.matched == REQUEST_END.len() {
                            let out = if conn.in_flight { &mut conn.queued } else { &mut conn.flight };
                            out.extend_from_slice(RESPONSE);
                            conn.matched = 0;
                        }
                    }
                }
                if let Some(id) = buffer {
                    bufs.recycle(id);
                }
                conn.ended |= !cqueue::more(flags);
            }
            if !conn.in_flight && conn.sent < conn.flight.len() && !conn.ended {
                let rest = &conn.flight[conn.sent..];
                let op = opcode::Send::new(Fd(conn.fd.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(i as u64 | SEND_BIT);
                conn.in_flight = true;
                // SAFETY: `flight` is not touched until this send completes.
                unsafe { push(&mut ring, &op)? };
            }
            if conn.ended && !conn.in_flight {
                conns[i] = None; // nothing of it in flight any more: the socket closes
            }
        }
    }
}
