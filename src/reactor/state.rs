//! Server-wide figures shared by the reactors and read by handlers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counters and flags every reactor updates; cheap relaxed atomics.
#[derive(Debug)]
pub struct ServerState {
    started: Instant,
    reactors: usize,
    max_connections: usize,
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    draining: AtomicBool,
}

impl ServerState {
    pub(crate) fn new(reactors: usize, max_connections: usize) -> Self {
        ServerState {
            started: Instant::now(),
            reactors,
            max_connections,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        }
    }

    /// Claims a connection slot; false when `--max-connections` are open.
    pub(crate) fn try_open(&self) -> bool {
        let claimed = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_connections).then_some(n + 1))
            .is_ok();
        if claimed {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        claimed
    }

    pub(crate) fn close(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_timeout(&self) {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Number of reactor threads.
    pub fn reactors(&self) -> usize {
        self.reactors
    }

    /// The `--max-connections` limit.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused (over the limit, or out of file descriptors).
    pub fn connections_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed because a client was too slow.
    pub fn connections_timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// Whether a graceful shutdown is under way.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
