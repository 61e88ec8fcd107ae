//! Connection buffers, lent from a per-reactor pool while a connection has
//! bytes in flight and given back when it goes idle.
//!
//! An idle keep-alive connection therefore holds no buffer at all, and a busy
//! one reuses buffers other connections gave back, so the steady state
//! allocates nothing.

use std::io::{self, Read};

/// Size of a read buffer taken from the pool.
pub const READ_BUFFER: usize = 16 * 1024;
/// Write buffers that grew past this are freed rather than pooled.
const POOLED_WRITE_MAX: usize = 64 * 1024;
/// Buffers of each kind kept for reuse.
const POOL_DEPTH: usize = 256;

/// A pool of read and write buffers owned by one reactor thread.
#[derive(Debug, Default)]
pub struct BufPool {
    reads: Vec<Vec<u8>>,
    writes: Vec<Vec<u8>>,
}

impl BufPool {
    fn take_read(&mut self) -> Vec<u8> {
        self.reads.pop().unwrap_or_else(|| vec![0; READ_BUFFER])
    }

    fn give_read(&mut self, buf: Vec<u8>) {
        if buf.len() == READ_BUFFER && self.reads.len() < POOL_DEPTH {
            self.reads.push(buf);
        }
    }

    /// An empty write buffer.
    pub fn take_write(&mut self) -> Vec<u8> {
        self.writes.pop().unwrap_or_else(|| Vec::with_capacity(READ_BUFFER))
    }

    /// Returns a write buffer; large or surplus ones are freed.
    pub fn give_write(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && buf.capacity() <= POOLED_WRITE_MAX && self.writes.len() < POOL_DEPTH {
            buf.clear();
            self.writes.push(buf);
        }
    }
}

/// A read buffer: `data[start..end]` holds received bytes not yet consumed.
/// `data` is always fully initialised, so reads go straight into it.
#[derive(Debug, Default)]
pub struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

/// What one `fill` call saw on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// This many bytes arrived; `drained` when they filled less than the
    /// free space, so the socket's receive queue is empty now.
    Data { n: usize, drained: bool },
    /// The socket has nothing more for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// The buffer is at its limit; consume before reading more.
    Full,
}

impl ReadBuf {
    /// The received, unconsumed bytes.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The received bytes, mutable (for in-place chunk decoding).
    pub fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Number of unconsumed bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether no unconsumed bytes remain.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Removes `filled()[from..to]`, moving the bytes after it down.
    pub fn remove(&mut self, from: usize, to: usize) {
        let (from, to) = (self.start + from, self.start + to);
        self.data.copy_within(to..self.end, from);
        self.end -= to - from;
    }

    /// Reads once from `source` into free space, taking a pooled buffer if
    /// none is held and growing up to `limit` bytes of content.
    pub fn fill(&mut self, source: &mut impl Read, pool: &mut BufPool, limit: usize) -> io::Result<Fill> {
        if self.data.is_empty() {
            self.data = pool.take_read();
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < limit {
                let grown = (self.data.len() * 2).min(limit.max(READ_BUFFER));
                self.data.resize(grown, 0);
            } else {
                return Ok(Fill::Full);
            }
        }
        let space = self.data.len() - self.end;
        match source.read(&mut self.data[self.end..]) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                self.end += n;
                Ok(Fill::Data { n, drained: n < space })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Fill::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Fill::Data { n: 0, drained: false }),
            Err(e) => Err(e),
        }
    }

    /// Gives the buffer back to the pool if it holds nothing.
    pub fn release_if_empty(&mut self, pool: &mut BufPool) {
        if self.is_empty() && !self.data.is_empty() {
            pool.give_read(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_consumes_and_returns_to_pool() {
        let mut pool = BufPool::default();
        let mut buf = ReadBuf::default();
        let mut src: &[u8] = b"hello world";
        assert_eq!(buf.fill(&mut src, &mut pool, 1 << 20).unwrap(), Fill::Data { n: 11, drained: true });
        assert_eq!(buf.filled(), b"hello world");
        buf.remove(5, 6);
        assert_eq!(buf.filled(), b"helloworld");
        buf.consume(5);
        assert_eq!(buf.filled(), b"world");
        buf.release_if_empty(&mut pool);
        assert!(pool.reads.is_empty(), "a buffer with data is kept");
        buf.consume(5);
        buf.release_if_empty(&mut pool);
        assert_eq!(pool.reads.len(), 1);
        assert_eq!(buf.fill(&mut src, &mut pool, 1 << 20).unwrap(), Fill::Eof);
        assert!(pool.reads.is_empty(), "the pooled buffer is reused");
    }

    #[test]
    fn grows_to_the_limit_then_reports_full() {
        let mut pool = BufPool::default();
        let mut buf = ReadBuf::default();
        let big = vec![7u8; READ_BUFFER * 3];
        let mut src: &[u8] = &big;
        let limit = READ_BUFFER * 2;
        let mut total = 0;
        loop {
            match buf.fill(&mut src, &mut pool, limit).unwrap() {
                Fill::Data { n, .. } => total += n,
                Fill::Full => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(total, limit);
    }
}
