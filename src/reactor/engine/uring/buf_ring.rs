//! A provided-buffer ring: receive buffers the kernel picks from as data
//! arrives, so a connection holds none while it waits (an idle keep-alive
//! connection costs no receive buffer), and which go back to the ring as
//! soon as their bytes are copied into the connection.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// The ring's entries (a power of two) and their memory.
pub struct BufRing {
    /// The mmap'd ring of entries the kernel reads buffer addresses from.
    entries: NonNull<BufRingEntry>,
    entries_bytes: usize,
    count: u16,
    /// Our tail: entries before it are the kernel's to use.
    tail: u16,
    /// The buffers, `size` bytes each, `count` of them.
    memory: Box<[u8]>,
    size: usize,
    group: u16,
    /// The kernel may still use the memory: never unmap or free it.
    leaked: bool,
}

impl BufRing {
    /// Maps `count` entries of `size`-byte buffers, registers them as
    /// buffer group `group` of the ring behind `submitter`, and hands the
    /// kernel every buffer.
    pub fn new(submitter: &Submitter<'_>, count: u16, size: usize, group: u16) -> io::Result<BufRing> {
        assert!(count.is_power_of_two(), "a buffer ring's size is a power of two");
        let entries_bytes = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; no pointer is passed in. The
        // kernel wants the ring page-aligned, which mmap guarantees.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let Some(entries) = NonNull::new(addr.cast::<BufRingEntry>()) else {
            return Err(io::Error::other("mmap returned null"));
        };
        let mut ring = BufRing {
            entries,
            entries_bytes,
            count,
            tail: 0,
            memory: vec![0u8; usize::from(count) * size].into_boxed_slice(),
            size,
            group,
            leaked: false,
        };
        // SAFETY: the entries stay mapped, and the buffers allocated, until
        // this BufRing is dropped, which happens after the ring that uses
        // them is closed (the engine declares the ring first).
        unsafe { submitter.register_buf_ring_with_flags(addr as u64, count, group, 0)? };
        for id in 0..count {
            ring.recycle(id);
        }
        ring.publish();
        Ok(ring)
    }

    /// The buffer group's id, for receive operations.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes of buffer `id`, which the kernel filled.
    pub fn bytes(&self, id: u16, len: usize) -> &[u8] {
        let start = usize::from(id) * self.size;
        let end = start + len.min(self.size);
        self.memory.get(start..end).unwrap_or_default()
    }

    /// Gives buffer `id` back to the kernel (seen once [`BufRing::publish`]ed).
    pub fn recycle(&mut self, id: u16) {
        if id >= self.count {
            return;
        }
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` is below `count`, inside the mapping; the kernel only
        // reads entries before the published tail, and this one is after it.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        let addr = self.memory.as_ptr() as u64 + u64::from(id) * self.size as u64;
        entry.set_addr(addr);
        entry.set_len(u32::try_from(self.size).unwrap_or(u32::MAX));
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the recycled buffers visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail field lives in the first entry's reserved bytes
        // (the kernel's layout); it is written only here, as an atomic
        // release store, which orders the entries written before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl BufRing {
    /// Gives up the memory for good, for when the kernel may still write
    /// into it (operations outliving the ring's shutdown).
    pub fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.memory));
        self.leaked = true;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: unmaps exactly the mapping made in `new`; the ring that
        // read it is closed by now.
        unsafe { libc::munmap(self.entries.as_ptr().cast(), self.entries_bytes) };
    }
}
