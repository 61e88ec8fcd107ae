//! A connection's encoded output not yet sent: owned bytes (heads, small
//! bodies) in one reused buffer, with large shared bodies spliced in by
//! reference, so a big result sent to many clients is never copied per
//! response, and goes out with vectored writes as the socket drains.
//!
//! An engine either writes from the wire in place ([`Wire::slices`], then
//! [`Wire::advance`]) or takes its bytes whole ([`Wire::take`]) to hand to
//! the kernel, which then owns them until the send completes: what the
//! wire encodes next goes into a new buffer, never into one in flight.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use super::buffers::BufPool;
use crate::http::response::Sink;

/// Shared bodies shorter than this are copied: a splice is not worth it.
const SPLICE_MIN: usize = 16 * 1024;
/// Most slices one vectored write takes from a wire.
pub const IOVECS: usize = 16;

/// Encoded bytes not yet sent.
#[derive(Debug)]
pub struct Wire {
    bytes: Outgoing,
    /// When the last write progressed (or output began waiting).
    pub write_since: Instant,
    /// A response said the connection ends after it: nothing more is encoded.
    pub close_after: bool,
}

/// Bytes to send, in order: `buf[pos..]` with shared buffers spliced in.
#[derive(Debug, Default)]
pub struct Outgoing {
    buf: Vec<u8>,
    pos: usize,
    /// Shared buffers, in order; each goes out after `buf[..at]`.
    splices: VecDeque<Splice>,
    /// Unsent bytes in `splices`.
    spliced: usize,
}

#[derive(Debug)]
struct Splice {
    at: usize,
    bytes: Arc<[u8]>,
    sent: usize,
}

impl Wire {
    /// An empty wire; `now` starts the write clock.
    pub fn new(now: Instant) -> Self {
        Wire { bytes: Outgoing::default(), write_since: now, close_after: false }
    }

    /// Bytes encoded but not yet sent.
    pub fn unwritten(&self) -> usize {
        self.bytes.unsent()
    }

    /// Whether any byte waits to be sent.
    pub fn has_unwritten(&self) -> bool {
        self.unwritten() > 0
    }

    /// Readies the wire for encoding: takes a buffer from the pool if none
    /// is held, and starts the write clock if the wire was empty.
    pub fn open(&mut self, pool: &mut BufPool, now: Instant) -> &mut Self {
        if !self.has_unwritten() {
            self.write_since = now;
        }
        if self.bytes.buf.capacity() == 0 {
            self.bytes.buf = pool.take_write();
        }
        self
    }

    /// The unsent bytes in order as slices; returns how many were filled.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.bytes.slices(out)
    }

    /// Marks `n` more bytes sent at `now`.
    pub fn advance(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.bytes.advance(n);
            self.write_since = now;
        }
        if !self.bytes.is_pending() {
            self.bytes.buf.clear();
            self.bytes.pos = 0;
        }
    }

    /// Takes every unsent byte out of the wire, leaving it empty.
    pub fn take(&mut self) -> Option<Outgoing> {
        self.has_unwritten().then(|| std::mem::take(&mut self.bytes))
    }

    /// Gives the buffer back to the pool while it holds nothing.
    pub fn release(&mut self, pool: &mut BufPool) {
        if !self.has_unwritten() && self.bytes.buf.capacity() > 0 {
            pool.give_write(std::mem::take(&mut self.bytes.buf));
            self.bytes.pos = 0;
        }
    }
}

impl Outgoing {
    /// Bytes not yet sent.
    pub fn unsent(&self) -> usize {
        self.buf.len() - self.pos + self.spliced
    }

    /// Whether any byte is still to be sent.
    pub fn is_pending(&self) -> bool {
        self.unsent() > 0
    }

    /// The unsent bytes in order as slices (at most `out.len()`); returns
    /// how many were filled. The common case, nothing spliced, is one slice.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut cursor = self.pos;
        for splice in &self.splices {
            if n + 2 > out.len() {
                return n;
            }
            if cursor < splice.at {
                out[n] = IoSlice::new(&self.buf[cursor..splice.at]);
                n += 1;
            }
            out[n] = IoSlice::new(&splice.bytes[splice.sent..]);
            n += 1;
            cursor = splice.at;
        }
        if cursor < self.buf.len() && n < out.len() {
            out[n] = IoSlice::new(&self.buf[cursor..]);
            n += 1;
        }
        n
    }

    /// Marks `n` more bytes sent.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.splices.front_mut() {
                Some(splice) if splice.at == self.pos => {
                    let take = n.min(splice.bytes.len() - splice.sent);
                    splice.sent += take;
                    self.spliced -= take;
                    n -= take;
                    if splice.sent == splice.bytes.len() {
                        self.splices.pop_front();
                    }
                }
                front => {
                    let boundary = front.map_or(self.buf.len(), |s| s.at);
                    let take = n.min(boundary - self.pos);
                    if take == 0 {
                        return; // more than was pending: nothing left to mark
                    }
                    self.pos += take;
                    n -= take;
                }
            }
        }
    }

    /// The owned buffer, for the pool once everything went out.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

impl From<Vec<u8>> for Outgoing {
    fn from(buf: Vec<u8>) -> Self {
        Outgoing { buf, ..Outgoing::default() }
    }
}

impl Sink for Wire {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.bytes.buf
    }

    fn shared(&mut self, bytes: &Arc<[u8]>) {
        if bytes.len() < SPLICE_MIN {
            self.bytes.buf.extend_from_slice(bytes);
        } else {
            self.bytes.spliced += bytes.len();
            self.bytes.splices.push_back(Splice { at: self.bytes.buf.len(), bytes: Arc::clone(bytes), sent: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a socket taking at most `step` bytes a write would receive of
    /// `bytes`, sent slice by slice.
    fn trickle(bytes: &mut Outgoing, step: usize, got: &mut Vec<u8>) {
        while bytes.is_pending() {
            let mut slices = [IoSlice::new(&[]); IOVECS];
            let n = bytes.slices(&mut slices);
            let mut room = step;
            for s in &slices[..n] {
                let take = room.min(s.len());
                got.extend_from_slice(&s[..take]);
                room -= take;
            }
            bytes.advance(step - room);
        }
    }

    /// Twenty responses, each a head, a large shared body, a small one and a tail.
    fn encode_responses(wire: &mut Wire, pool: &mut BufPool, big: &Arc<[u8]>, now: Instant) -> Vec<u8> {
        let small: Arc<[u8]> = Arc::from(&b"tiny"[..]);
        let mut expected = Vec::new();
        for round in 0..20 {
            let w = wire.open(pool, now);
            let head = format!("head {round};");
            w.bytes(head.as_bytes());
            expected.extend_from_slice(head.as_bytes());
            w.shared(big);
            expected.extend_from_slice(big);
            w.shared(&small);
            expected.extend_from_slice(&small);
            w.bytes(b"}");
            expected.push(b'}');
        }
        expected
    }

    #[test]
    fn shared_bodies_go_out_in_order_by_reference() {
        let now = Instant::now();
        let mut pool = BufPool::default();
        let mut wire = Wire::new(now);
        let big: Arc<[u8]> = (0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        let expected = encode_responses(&mut wire, &mut pool, &big, now);
        assert_eq!(Arc::strong_count(&big), 21, "each response holds the body, none a copy");
        assert!(wire.bytes.buf.len() < 1000, "only heads are copied: {}", wire.bytes.buf.len());
        assert_eq!(wire.unwritten(), expected.len());
        let mut got = Vec::new();
        trickle(&mut wire.bytes, 7_777, &mut got);
        assert_eq!(got, expected);
        assert_eq!(Arc::strong_count(&big), 1, "sent bodies are let go");
        wire.advance(0, now);
        wire.release(&mut pool);
        assert_eq!(wire.bytes.buf.capacity(), 0);
    }

    /// Bytes taken for the kernel stay where they are while the wire
    /// encodes more: the next response goes into a buffer of its own.
    #[test]
    fn taken_bytes_are_never_moved_by_later_encoding() {
        let now = Instant::now();
        let mut pool = BufPool::default();
        let mut wire = Wire::new(now);
        let big: Arc<[u8]> = vec![9u8; 50_000].into();
        let first = encode_responses(&mut wire, &mut pool, &big, now);
        let mut taken = wire.take().expect("bytes to take");
        assert!(!wire.has_unwritten() && wire.take().is_none());
        let mut slices = [IoSlice::new(&[]); IOVECS];
        let before = taken.slices(&mut slices);
        let addresses: Vec<*const u8> = slices[..before].iter().map(|s| s.as_ptr()).collect();
        let second = encode_responses(&mut wire, &mut pool, &big, now);
        let mut slices = [IoSlice::new(&[]); IOVECS];
        let after = taken.slices(&mut slices);
        let still: Vec<*const u8> = slices[..after].iter().map(|s| s.as_ptr()).collect();
        assert_eq!(addresses, still, "the taken bytes did not move");
        let mut got = Vec::new();
        trickle(&mut taken, 4_096, &mut got);
        assert_eq!(got, first);
        let mut got = Vec::new();
        trickle(&mut wire.bytes, 65_536, &mut got);
        assert_eq!(got, second);
    }
}
