//! Admission: how much waits for a worker, in tasks and in bytes of input,
//! and the answer when there is no room.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is at `--queue-capacity` or `--max-queued-bytes`; retry
    /// after the given seconds.
    Full {
        /// Suggested wait in seconds.
        retry_after: u64,
    },
    /// The store could not take the task: nothing was accepted.
    StoreUnavailable {
        /// What the store said.
        detail: String,
    },
    /// The server is shutting down and takes no new tasks.
    ShuttingDown,
}

/// Slots and bytes of tasks accepted and not yet started.
#[derive(Debug)]
pub struct Admission {
    slots: AtomicUsize,
    bytes: AtomicUsize,
    capacity: usize,
    max_bytes: usize,
    refused: AtomicU64,
}

/// What one admitted task holds until it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Queue slots (a batch holds one an item).
    pub slots: usize,
    /// Bytes of input.
    pub bytes: usize,
}

impl Admission {
    /// At most `capacity` slots and `max_bytes` bytes waiting.
    pub fn new(capacity: usize, max_bytes: usize) -> Admission {
        Admission {
            slots: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            capacity,
            max_bytes,
            refused: AtomicU64::new(0),
        }
    }

    /// Takes room for `held`, or refuses (and counts) with a suggested wait:
    /// the time `workers` take to run what waits, at `mean` a job.
    pub fn admit(&self, held: Held, mean: Duration, workers: usize) -> Result<(), SubmitError> {
        let slots = self.slots.fetch_add(held.slots, Ordering::AcqRel) + held.slots;
        let bytes = self.bytes.fetch_add(held.bytes, Ordering::AcqRel) + held.bytes;
        // One task alone may exceed the byte bound (a body is capped
        // elsewhere); it is refused only when others wait too.
        if slots > self.capacity || (bytes > self.max_bytes && bytes > held.bytes) {
            self.release(held);
            self.refused.fetch_add(1, Ordering::Relaxed);
            let ahead = self.waiting() / workers.max(1);
            let drain = mean * u32::try_from(ahead).unwrap_or(u32::MAX);
            return Err(SubmitError::Full { retry_after: drain.as_secs().clamp(1, 60) });
        }
        Ok(())
    }

    /// Takes room whatever is waiting (recovered tasks were accepted before).
    pub fn force(&self, held: Held) {
        self.slots.fetch_add(held.slots, Ordering::AcqRel);
        self.bytes.fetch_add(held.bytes, Ordering::AcqRel);
    }

    /// Gives back what `held` took.
    pub fn release(&self, held: Held) {
        self.slots.fetch_sub(held.slots, Ordering::AcqRel);
        self.bytes.fetch_sub(held.bytes, Ordering::AcqRel);
    }

    /// A cheap early check before any work on a request.
    pub fn has_room(&self) -> Result<(), SubmitError> {
        if self.waiting() < self.capacity {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(SubmitError::Full { retry_after: 1 })
    }

    /// Slots taken.
    pub fn waiting(&self) -> usize {
        self.slots.load(Ordering::Relaxed)
    }

    /// Bytes of input waiting.
    pub fn waiting_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Submissions refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a refusal made elsewhere (intake full).
    pub fn count_refusal(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_bytes_bound_what_waits() {
        let a = Admission::new(3, 1000);
        let mean = Duration::from_millis(10);
        let small = Held { slots: 1, bytes: 400 };
        a.admit(small, mean, 1).unwrap();
        a.admit(small, mean, 1).unwrap();
        assert!(matches!(a.admit(small, mean, 1), Err(SubmitError::Full { .. })), "bytes: 1200 > 1000");
        assert_eq!((a.waiting(), a.waiting_bytes(), a.refused()), (2, 800, 1));
        a.release(small);
        a.release(small);
        // Alone, a task larger than the byte bound is let in.
        a.admit(Held { slots: 1, bytes: 5000 }, mean, 1).unwrap();
        a.release(Held { slots: 1, bytes: 5000 });
        assert!(matches!(a.admit(Held { slots: 4, bytes: 1 }, mean, 1), Err(SubmitError::Full { .. })));
        assert_eq!((a.waiting(), a.waiting_bytes()), (0, 0));
    }
}
