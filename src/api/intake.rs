//! Intake: one thread that parses and checks request bodies before a task
//! exists, so that a reactor never parses a large body and submitting never
//! waits for a busy worker. Bounded in bodies and in bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::pool::{Job, Pool, Priority};

/// Request bodies waiting to be parsed; more and intake refuses.
const MAX_BODIES: usize = 1024;
/// Bytes of request bodies waiting to be parsed; more (unless none waits:
/// one body alone always fits) and intake refuses.
const MAX_BYTES: usize = 64 << 20;

/// The intake thread and what waits for it.
#[derive(Debug)]
pub struct Intake {
    pool: Pool,
    bodies: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

/// Intake is full: the client retries shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Intake {
    /// Starts the thread.
    pub fn start() -> std::io::Result<Intake> {
        Ok(Intake { pool: Pool::new("pagelens-intake", 1)?, bodies: Arc::default(), bytes: Arc::default() })
    }

    /// Runs `job`, the intake of a body of `bytes`, on the thread.
    pub fn spawn(&self, bytes: usize, job: Job) -> Result<(), Full> {
        let waiting = self.bodies.fetch_add(1, Ordering::AcqRel);
        let held = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if waiting >= MAX_BODIES || (waiting > 0 && held + bytes > MAX_BYTES) {
            self.bodies.fetch_sub(1, Ordering::AcqRel);
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Full);
        }
        let (bodies, held) = (Arc::clone(&self.bodies), Arc::clone(&self.bytes));
        self.pool.spawn(
            Priority::Normal,
            Box::new(move || {
                bodies.fetch_sub(1, Ordering::AcqRel);
                held.fetch_sub(bytes, Ordering::AcqRel);
                job();
            }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn bodies_are_bounded_in_bytes_but_one_alone_always_fits() {
        let intake = Intake::start().unwrap();
        // Hold the thread so that what follows waits.
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel();
        intake
            .spawn(
                1,
                Box::new(move || {
                    started.send(()).unwrap();
                    let _ = held.recv();
                }),
            )
            .unwrap();
        running.recv().unwrap();
        assert_eq!(intake.spawn(MAX_BYTES + 1, Box::new(|| {})), Ok(()), "alone in the queue");
        assert_eq!(intake.spawn(1, Box::new(|| {})), Err(Full), "over the bytes with one waiting");
        release.send(()).unwrap();
    }
}
