//! A queue several pagelens instances share (the Redis store's streams):
//! a stored task is taken by one instance, held by it (claimed) until its
//! end is stored and the claim acknowledged, and taken over by another if
//! the holder stops answering. Without one, an instance runs what it
//! accepts (the embedded stores).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::store::StoreError;
use super::task::TaskId;
use crate::metrics::durations::Durations;
use crate::pool::Priority;

/// A task an instance holds from the shared queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The task.
    pub task: TaskId,
    /// The queue it came from.
    pub priority: Priority,
    /// Its entry in that queue.
    pub entry: String,
    /// Times the queue has handed the entry out, this one included. Counted
    /// by the queue as it hands it out, so a holder that died before its
    /// own record of the start was stored is still counted.
    pub delivered: u64,
}

/// The shared queue. Every call may block on the network: never on a reactor.
pub trait TaskQueue: Send + Sync + std::fmt::Debug {
    /// Takes up to `n` tasks, higher priorities first, waiting up to `wait`
    /// for one when none is there.
    fn take(&self, n: usize, wait: Duration) -> Result<Vec<Claim>, StoreError>;
    /// Takes over up to `n` tasks other instances have held for `idle`
    /// without a sign of life, with the times each has been handed out.
    fn reclaim(&self, idle: Duration, n: usize) -> Result<Vec<Claim>, StoreError>;
    /// A sign of life for claims still being worked on.
    fn touch(&self, claims: &[Claim]) -> Result<(), StoreError>;
    /// Lets go of claims whose tasks have ended (their ends are stored).
    fn ack(&self, claims: &[Claim]) -> Result<(), StoreError>;
    /// Tells every instance that task `id` was cancelled.
    fn announce_cancel(&self, id: TaskId) -> Result<(), StoreError>;
    /// Hears announced cancellations until `stop` is set (checked at least
    /// every second) or the connection fails.
    fn hear_cancels(&self, on: &mut dyn FnMut(TaskId), stop: &AtomicBool) -> Result<(), StoreError>;
    /// How long its calls have taken (round trips to the server).
    fn round_trips(&self) -> &Durations;
}
