//! A connection's encoded output not yet sent: owned bytes (heads, small
//! bodies) in one reused buffer, with large shared bodies spliced in by
//! reference, so a big result sent to many clients is never copied per
//! response, and goes out with vectored writes as the socket drains.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::Instant;

use super::buffers::BufPool;
use crate::http::response::Sink;

/// Shared bodies shorter than this are copied: a splice is not worth it.
const SPLICE_MIN: usize = 16 * 1024;
/// Most slices handed to one vectored write.
const IOVECS: usize = 16;

/// Encoded bytes not yet sent.
#[derive(Debug)]
pub struct Wire {
    buf: Vec<u8>,
    pos: usize,
    /// Shared buffers, in order; each goes out after `buf[..at]`.
    splices: VecDeque<Splice>,
    /// Unsent bytes in `splices`.
    spliced: usize,
    /// When the last write progressed (or output began waiting).
    pub write_since: Instant,
    /// A response said the connection ends after it: nothing more is encoded.
    pub close_after: bool,
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
        Wire { buf: Vec::new(), pos: 0, splices: VecDeque::new(), spliced: 0, write_since: now, close_after: false }
    }

    /// Bytes encoded but not yet sent.
    pub fn unwritten(&self) -> usize {
        self.buf.len() - self.pos + self.spliced
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
        if self.buf.capacity() == 0 {
            self.buf = pool.take_write();
        }
        self
    }

    /// Writes until done or the socket is full; returns how many bytes went out.
    pub fn write_to(&mut self, out: &mut impl Write, now: Instant) -> io::Result<usize> {
        let mut written = 0;
        while self.has_unwritten() {
            let n = match self.write_once(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(n);
            written += n;
            self.write_since = now;
        }
        self.buf.clear();
        self.pos = 0;
        Ok(written)
    }

    /// Gives the buffer back to the pool while it holds nothing.
    pub fn release(&mut self, pool: &mut BufPool) {
        if !self.has_unwritten() && self.buf.capacity() > 0 {
            pool.give_write(std::mem::take(&mut self.buf));
            self.pos = 0;
        }
    }

    /// One write of the unsent bytes in order: a plain write when nothing
    /// is spliced (the common case), else one vectored write.
    fn write_once(&self, out: &mut impl Write) -> io::Result<usize> {
        if self.splices.is_empty() {
            return out.write(&self.buf[self.pos..]);
        }
        let mut slices = [IoSlice::new(&[]); IOVECS];
        let mut n = 0;
        let mut cursor = self.pos;
        for splice in &self.splices {
            if n + 2 > IOVECS {
                return out.write_vectored(&slices[..n]);
            }
            if cursor < splice.at {
                slices[n] = IoSlice::new(&self.buf[cursor..splice.at]);
                n += 1;
            }
            slices[n] = IoSlice::new(&splice.bytes[splice.sent..]);
            n += 1;
            cursor = splice.at;
        }
        if cursor < self.buf.len() && n < IOVECS {
            slices[n] = IoSlice::new(&self.buf[cursor..]);
            n += 1;
        }
        out.write_vectored(&slices[..n])
    }

    /// Marks `n` more bytes sent.
    fn advance(&mut self, mut n: usize) {
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
                    self.pos += take;
                    n -= take;
                }
            }
        }
    }
}

impl Sink for Wire {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn shared(&mut self, bytes: &Arc<[u8]>) {
        if bytes.len() < SPLICE_MIN {
            self.buf.extend_from_slice(bytes);
        } else {
            self.spliced += bytes.len();
            self.splices.push_back(Splice { at: self.buf.len(), bytes: Arc::clone(bytes), sent: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `step` bytes a write, and refuses
    /// (`WouldBlock`) every third call.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(b)])
        }

        fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut room = self.step;
            for s in slices {
                let take = room.min(s.len());
                self.got.extend_from_slice(&s[..take]);
                room -= take;
            }
            Ok(self.step - room)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn shared_bodies_go_out_in_order_by_reference() {
        let now = Instant::now();
        let mut pool = BufPool::default();
        let mut wire = Wire::new(now);
        let big: Arc<[u8]> = (0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        let small: Arc<[u8]> = Arc::from(&b"tiny"[..]);
        let mut expected = Vec::new();
        for round in 0..20 {
            let w = wire.open(&mut pool, now);
            let head = format!("head {round};");
            w.bytes(head.as_bytes());
            expected.extend_from_slice(head.as_bytes());
            w.shared(&big);
            expected.extend_from_slice(&big);
            w.shared(&small);
            expected.extend_from_slice(&small);
            w.bytes(b"}");
            expected.push(b'}');
        }
        assert_eq!(Arc::strong_count(&big), 21, "each response holds the body, none a copy");
        assert!(wire.buf.len() < 1000, "only heads are copied: {}", wire.buf.len());
        assert_eq!(wire.unwritten(), expected.len());
        let mut socket = Trickle { got: Vec::new(), step: 7_777, calls: 0 };
        while wire.has_unwritten() {
            wire.write_to(&mut socket, now).unwrap();
        }
        assert_eq!(socket.got, expected);
        assert_eq!(Arc::strong_count(&big), 1, "sent bodies are let go");
        wire.release(&mut pool);
        assert_eq!(wire.buf.capacity(), 0);
    }
}
