//! The CPU-heavy load tests and the resident-memory tests: a test binary
//! of their own, which cargo runs apart from the integration tests, so that
//! they cannot disturb the timing-sensitive ones there; within it they take
//! turns ([`one_at_a_time`]).

use std::sync::{Mutex, MutexGuard};

/// The I/O engine the servers of this run use (the default's; a test
/// that compares engines names them itself).
pub const IO_ENGINE: &str = "auto";

// Helpers shared with the integration tests; not every one is used here.
#[allow(dead_code)]
mod binary;
#[allow(dead_code)]
mod origin;
#[allow(dead_code)]
mod util;

mod loadtest;
mod memory;

/// Held for a whole test: the next one starts when this one ends.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    // A test that failed while holding it poisons it; the next may still run.
    TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
