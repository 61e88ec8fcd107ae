//! Connection buffers, lent from a per-reactor pool while a connection has
//! bytes in flight and given back when it goes idle.
//!
//! An idle keep-alive connection therefore holds no buffer at all, and a busy
//! one reuses buffers other connections gave back, so the steady state
//! allocates nothing.

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

    /// Free space after the received bytes, taking a pooled buffer if none
    /// is held, compacting, and growing the content up to `limit` bytes;
    /// `None` when the content is at the limit. Bytes put there count once
    /// reported with [`ReadBuf::filled_by`].
    pub fn space(&mut self, pool: &mut BufPool, limit: usize) -> Option<&mut [u8]> {
        if self.data.is_empty() {
            self.data = pool.take_read();
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.compact();
            } else if self.data.len() < limit {
                let grown = (self.data.len() * 2).min(limit.max(READ_BUFFER));
                self.data.resize(grown, 0);
            } else {
                return None;
            }
        }
        Some(&mut self.data[self.end..])
    }

    /// `n` bytes were put into [`ReadBuf::space`].
    pub fn filled_by(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Appends `bytes`, growing as far as they need (the caller bounds them).
    pub fn extend(&mut self, bytes: &[u8], pool: &mut BufPool) {
        if self.data.is_empty() {
            self.data = pool.take_read();
        }
        if self.data.len() - self.end < bytes.len() {
            self.compact();
            if self.data.len() - self.end < bytes.len() {
                self.data.resize((self.end + bytes.len()).max(self.data.len() * 2), 0);
            }
        }
        self.data[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Moves the unconsumed bytes to the front.
    fn compact(&mut self) {
        self.data.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
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
        let space = buf.space(&mut pool, 1 << 20).unwrap();
        space[..11].copy_from_slice(b"hello world");
        buf.filled_by(11);
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
        buf.extend(b"again", &mut pool);
        assert!(pool.reads.is_empty(), "the pooled buffer is reused");
        assert_eq!(buf.filled(), b"again");
    }

    #[test]
    fn grows_to_the_limit_then_has_no_space() {
        let mut pool = BufPool::default();
        let mut buf = ReadBuf::default();
        let limit = READ_BUFFER * 2;
        let mut total = 0;
        while let Some(space) = buf.space(&mut pool, limit) {
            let n = space.len().min(5_000);
            buf.filled_by(n);
            total += n;
        }
        assert_eq!(total, limit);
    }

    #[test]
    fn extend_takes_everything_past_any_limit() {
        let mut pool = BufPool::default();
        let mut buf = ReadBuf::default();
        let big: Vec<u8> = (0..READ_BUFFER * 3).map(|i| i as u8).collect();
        buf.extend(&big[..100], &mut pool);
        buf.consume(40);
        buf.extend(&big[100..], &mut pool);
        assert_eq!(buf.filled(), &big[40..]);
    }
}
