//! Admission: how much waits for a worker, in tasks and in bytes of input,
//! and the answer when there is no room. A batch is one task: its items are
//! fed to the pool a few at a time once it runs, so a batch larger than the
//! queue is admitted like any other task.

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
    /// The idempotency key was given before for a different request, to this task.
    KeyReused {
        /// The task the key belongs to.
        task: crate::jobs::task::TaskId,
    },
}

/// Tasks, and bytes of their input, accepted and not yet started.
#[derive(Debug)]
pub struct Admission {
    tasks: AtomicUsize,
    bytes: AtomicUsize,
    capacity: usize,
    max_bytes: usize,
    refused: AtomicU64,
}

impl Admission {
    /// At most `capacity` tasks and `max_bytes` bytes waiting.
    pub fn new(capacity: usize, max_bytes: usize) -> Admission {
        Admission {
            tasks: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            capacity,
            max_bytes,
            refused: AtomicU64::new(0),
        }
    }

    /// Takes room for a task of `bytes` of input, or refuses (and counts)
    /// with a suggested wait: the time `workers` take to run what waits, at
    /// `mean` a job.
    pub fn admit(&self, bytes: usize, mean: Duration, workers: usize) -> Result<(), SubmitError> {
        let tasks = self.tasks.fetch_add(1, Ordering::AcqRel) + 1;
        let held = self.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        // One task alone may exceed the byte bound (a body is capped
        // elsewhere); it is refused only when others wait too.
        if tasks > self.capacity || (held > self.max_bytes && held > bytes) {
            self.release(bytes);
            self.refused.fetch_add(1, Ordering::Relaxed);
            let ahead = self.waiting() / workers.max(1);
            let drain = mean * u32::try_from(ahead).unwrap_or(u32::MAX);
            return Err(SubmitError::Full { retry_after: drain.as_secs().clamp(1, 60) });
        }
        Ok(())
    }

    /// Takes a task's room whatever is waiting: a recovered task was
    /// accepted before, and its input waits in the store (no bytes held).
    pub fn force(&self) {
        self.tasks.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives back a task's room.
    pub fn release(&self, bytes: usize) {
        self.tasks.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// A cheap early check before any work on a request.
    pub fn has_room(&self) -> Result<(), SubmitError> {
        if self.waiting() < self.capacity {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(SubmitError::Full { retry_after: 1 })
    }

    /// Tasks waiting.
    pub fn waiting(&self) -> usize {
        self.tasks.load(Ordering::Relaxed)
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
    fn tasks_and_bytes_bound_what_waits() {
        let a = Admission::new(3, 1000);
        let mean = Duration::from_millis(10);
        a.admit(400, mean, 1).unwrap();
        a.admit(400, mean, 1).unwrap();
        assert!(matches!(a.admit(400, mean, 1), Err(SubmitError::Full { .. })), "bytes: 1200 > 1000");
        assert_eq!((a.waiting(), a.waiting_bytes(), a.refused()), (2, 800, 1));
        a.admit(1, mean, 1).unwrap();
        assert!(matches!(a.admit(1, mean, 1), Err(SubmitError::Full { .. })), "tasks: 4 > 3");
        a.release(400);
        a.release(400);
        a.release(1);
        // Alone, a task larger than the byte bound is let in.
        a.admit(5000, mean, 1).unwrap();
        a.release(5000);
        assert_eq!((a.waiting(), a.waiting_bytes()), (0, 0));
    }
}
