//! Where tasks live: the [`TaskStore`] trait and its backends side by side.
//!
//! The engine talks to a store only through the trait, and never from a
//! reactor thread: writes go in commit groups from one committer thread
//! ([`crate::jobs::commit`]), reads run on the engine's store readers and
//! workers. Every method can fail: a disk fills, a database goes away.

mod memory;
mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

pub use memory::MemoryStore;
pub use sqlite::{Durability, SqliteStore};

use super::lifecycle::TaskRecord;
use super::spec::TaskSpec;
use super::task::{TaskId, TaskState};
use crate::pool::Priority;

/// Tasks by state and priority.
pub type Counts = HashMap<TaskState, HashMap<Priority, usize>>;

/// A store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// One change in a commit group.
#[derive(Debug)]
pub enum Write {
    /// A new task with its input (shared: the engine may keep it in memory
    /// too); refused as [`Written::Existing`] when a task with the same
    /// idempotency key is stored.
    Insert(Box<TaskRecord>, Arc<TaskSpec>),
    /// A task's new record, stored only if the stored one is at version
    /// `expected` ([`Written::Conflict`] otherwise). A final record frees
    /// the task's input.
    Put {
        /// The record after the change.
        record: Box<TaskRecord>,
        /// The version it was changed from.
        expected: u64,
    },
    /// A batch item's outcome, a JSON document.
    Item {
        /// The batch.
        task: TaskId,
        /// The item's index.
        item: usize,
        /// Whether the item failed.
        failed: bool,
        /// The document.
        doc: Vec<u8>,
    },
    /// The task's callback was delivered (or given up on).
    CallbackDone(TaskId),
    /// Forgets tasks that ended before `ended_before`, and for bounded
    /// stores the oldest finished ones past their bound.
    Sweep {
        /// The cut-off: now minus the result TTL.
        ended_before: SystemTime,
    },
}

/// What one [`Write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Done.
    Done,
    /// An insert whose idempotency key belongs to this stored task.
    Existing(TaskId),
    /// A put whose expected version was not the stored one (or whose task
    /// is gone): nothing changed.
    Conflict,
    /// A sweep forgot this many tasks.
    Swept(usize),
}

/// Figures about a store for `/tasks/stats` and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreFigures {
    /// `memory` or `sqlite`.
    pub backend: &'static str,
    /// Where it keeps its data, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Bytes it occupies (on disk, or results in memory).
    pub bytes: u64,
}

/// A table of tasks, their inputs, results and batch lines.
pub trait TaskStore: Send + Sync + fmt::Debug {
    /// Applies a commit group: all of it, or (on error) none of it. One
    /// outcome a write, in order.
    fn commit(&self, group: &mut [Write]) -> Result<Vec<Written>, StoreError>;
    /// A task's record, its result included.
    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// A task's input; `None` once the task has ended or is gone.
    fn spec(&self, id: TaskId) -> Result<Option<TaskSpec>, StoreError>;
    /// A batch's item documents in the order they were stored, the first
    /// `limit` of them or all.
    fn items(&self, id: TaskId, limit: Option<usize>) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Which items of a batch have a stored document, and whether each failed.
    fn items_done(&self, id: TaskId) -> Result<Vec<(usize, bool)>, StoreError>;
    /// Queued and processing tasks, oldest first, at most `limit`, without results.
    fn active(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError>;
    /// Tasks by state and priority.
    fn counts(&self) -> Result<Counts, StoreError>;
    /// Tasks that have not ended (for recovery at start).
    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// Ended tasks whose callback is still owed, with their results.
    fn callbacks_owed(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// Size and location.
    fn figures(&self) -> StoreFigures;
}

/// A shared store.
pub type Store = Arc<dyn TaskStore>;
