//! Where tasks live: the [`TaskStore`] trait and its backends side by side.
//!
//! The engine talks to a store only through the trait, and never from a
//! reactor thread: writes go in commit groups from one committer thread
//! ([`crate::jobs::commit`]), reads run on the engine's store readers and
//! workers. Every method can fail: a disk fills, a database goes away.

mod blob;
mod memory;
mod redis;
mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

pub use self::redis::RedisStore;
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
    /// Keeps a result-cache analysis under `key` (replacing one there),
    /// then forgets the least recently renewed past `max_bytes` of them.
    Cache {
        /// The cache key (URL and options).
        key: String,
        /// What is kept.
        page: CachedPage,
        /// Bytes of analyses the store keeps at most.
        max_bytes: usize,
    },
    /// Forgets tasks that ended before `ended_before`, and for bounded
    /// stores the oldest finished ones past their bound.
    Sweep {
        /// The cut-off: now minus the result TTL.
        ended_before: SystemTime,
    },
}

/// An analysis the result cache keeps (see `api::cache`), in memory and,
/// for a store that outlives the process, in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPage {
    /// The analysis (JSON) without its closing brace, so that an answer
    /// adds its cache fields after it and shares the rest.
    pub analysis: Arc<[u8]>,
    /// When it was made or last revalidated (wall clock: it outlives the process).
    pub fresh_at: SystemTime,
    /// The origin's `ETag`.
    pub etag: Option<String>,
    /// The origin's `Last-Modified`.
    pub last_modified: Option<String>,
}

impl CachedPage {
    /// Bytes it is counted as: its text and a fixed overhead.
    pub fn bytes(&self) -> usize {
        self.analysis.len()
            + self.etag.as_ref().map_or(0, String::len)
            + self.last_modified.as_ref().map_or(0, String::len)
            + 96
    }
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
    /// An insert refused: a store shared by several instances holds as
    /// many unfinished tasks, or bytes of their inputs, as it may.
    Full,
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

/// Which tasks a history read lists: the filters, and a page of them,
/// newest first (by creation time, then id).
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks of this kind (`analyze`, `bulk`).
    pub kind: Option<String>,
    /// Only tasks of this priority.
    pub priority: Option<Priority>,
    /// Only tasks this API key submitted.
    pub owner: Option<String>,
    /// Only tasks created at or after this.
    pub since: Option<SystemTime>,
    /// Only tasks created before this.
    pub until: Option<SystemTime>,
    /// Only tasks older than this one (the last of the previous page):
    /// its creation time in Unix milliseconds, and its id.
    pub before: Option<(i64, TaskId)>,
    /// Most tasks listed.
    pub limit: usize,
    /// Read their results too.
    pub with_results: bool,
}

impl HistoryQuery {
    /// Whether `record` passes the filters and the cursor (the memory
    /// store's check; SQLite's query says the same in SQL).
    pub fn matches(&self, record: &TaskRecord) -> bool {
        let created = crate::clock::to_millis(record.created_at);
        self.state.is_none_or(|s| record.state == s)
            && self.kind.as_ref().is_none_or(|k| record.kind == *k)
            && self.priority.is_none_or(|p| record.priority == p)
            && self.owner.as_ref().is_none_or(|o| record.owner.as_ref() == Some(o))
            && self.since.is_none_or(|t| created >= crate::clock::to_millis(t))
            && self.until.is_none_or(|t| created < crate::clock::to_millis(t))
            && self.before.is_none_or(|(ms, id)| (created, record.id.to_bytes()) < (ms, id.to_bytes()))
    }
}

/// Ended tasks in brief: how many ended in each state per time bucket,
/// and the most frequent error codes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// By bucket start (Unix milliseconds), tasks ended in each state.
    pub buckets: std::collections::BTreeMap<i64, HashMap<TaskState, u64>>,
    /// Error codes, most frequent first (at most [`TOP_ERRORS`]).
    pub errors: Vec<(String, u64)>,
}

/// Most error codes an [`Outcomes`] lists.
pub const TOP_ERRORS: usize = 10;

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
    /// A batch's item documents past the first `skip` (`most` of them, or
    /// all), in the order stored.
    fn items_from(&self, id: TaskId, skip: usize, most: Option<usize>) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut all = self.items(id, None)?;
        let mut rest = all.split_off(skip.min(all.len()));
        rest.truncate(most.unwrap_or(usize::MAX));
        Ok(rest)
    }
    /// The records of `ids` (without results), in their order; `None` for
    /// those not stored (a shared store reads them in one round trip).
    fn records_of(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        ids.iter()
            .map(|id| {
                let record = self.get(*id)?;
                Ok(record.map(|r| TaskRecord { result: None, ..r }))
            })
            .collect()
    }
    /// Which items of a batch have a stored document, and whether each failed.
    fn items_done(&self, id: TaskId) -> Result<Vec<(usize, bool)>, StoreError>;
    /// Queued and processing tasks, oldest first, at most `limit`, without results.
    fn active(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError>;
    /// Tasks by state and priority.
    fn counts(&self) -> Result<Counts, StoreError>;
    /// Tasks ended at or after `since`, counted per `bucket_ms` of their end.
    fn outcomes(&self, since: SystemTime, bucket_ms: i64) -> Result<Outcomes, StoreError>;
    /// Tasks passing `query`'s filters, newest first, at most its limit.
    fn history(&self, query: &HistoryQuery) -> Result<Vec<TaskRecord>, StoreError>;
    /// Tasks that have not ended (for recovery at start).
    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// Ended tasks whose callback is still owed, with their results.
    fn callbacks_owed(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// The result cache's analysis under `key`, if the store keeps it.
    fn cached(&self, key: &str) -> Result<Option<CachedPage>, StoreError>;
    /// Tasks about to run here: each one's record (without its result)
    /// and input, in the order of `ids` (a shared store reads them all in
    /// one round trip).
    fn starting(&self, ids: &[TaskId]) -> Result<Vec<Starting>, StoreError> {
        ids.iter().map(|id| Ok((self.get(*id)?, self.spec(*id)?))).collect()
    }
    /// Size and location.
    fn figures(&self) -> StoreFigures;
}

/// A task about to start, as read: its record and its input, if found.
pub type Starting = (Option<TaskRecord>, Option<TaskSpec>);

/// A shared store.
pub type Store = Arc<dyn TaskStore>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::lifecycle::{apply, Event};
    use crate::jobs::spec::{TaskOptions, TaskSpec};
    use std::collections::HashSet;
    use std::time::{Duration, UNIX_EPOCH};

    /// 250 tasks, 4 a millisecond (ties broken by id), every third
    /// completed, priorities and kinds mixed: each page continues exactly
    /// where the last ended, and the filters agree with the records.
    fn pages_cover_the_history_without_duplicates_or_gaps(store: &dyn TaskStore) {
        let mut writes = Vec::new();
        let mut all = Vec::new();
        for i in 0..250u64 {
            let kind = if i % 5 == 0 { "bulk" } else { "analyze" };
            let options = TaskOptions { priority: Priority::ALL[(i % 3) as usize], ..TaskOptions::default() };
            let spec = TaskSpec::one(kind, serde_json::json!({}), b"<p>".to_vec(), options);
            let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + i / 4);
            let mut record = TaskRecord::new(TaskId::random(), &spec, at);
            apply(&mut record, Event::Accepted, at).unwrap();
            if i % 3 == 0 {
                apply(&mut record, Event::Started, at).unwrap();
                apply(&mut record, Event::Finished(Arc::from(&b"{\"n\":1}"[..])), at).unwrap();
            }
            all.push(record.clone());
            writes.push(Write::Insert(Box::new(record), Arc::new(spec)));
        }
        store.commit(&mut writes).unwrap();
        all.sort_by_key(|r| std::cmp::Reverse((crate::clock::to_millis(r.created_at), r.id.to_bytes())));

        let mut seen = Vec::new();
        let mut query = HistoryQuery { limit: 40, ..HistoryQuery::default() };
        loop {
            let page = store.history(&query).unwrap();
            assert!(page.iter().all(|r| r.result.is_none()), "results only when asked");
            let Some(last) = page.last() else { break };
            query.before = Some((crate::clock::to_millis(last.created_at), last.id));
            seen.extend(page.iter().map(|r| r.id));
        }
        assert_eq!(seen, all.iter().map(|r| r.id).collect::<Vec<_>>(), "every task once, newest first");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 250);

        let completed =
            HistoryQuery { state: Some(TaskState::Completed), with_results: true, limit: 1000, ..Default::default() };
        let done = store.history(&completed).unwrap();
        assert_eq!(done.len(), 84);
        assert!(done.iter().all(|r| r.state == TaskState::Completed && r.result.as_deref() == Some(&b"{\"n\":1}"[..])));
        let bulk_low = HistoryQuery {
            kind: Some("bulk".into()),
            priority: Some(Priority::Low),
            limit: 1000,
            ..Default::default()
        };
        let expected = all.iter().filter(|r| r.kind == "bulk" && r.priority == Priority::Low).count();
        assert_eq!(store.history(&bulk_low).unwrap().len(), expected);
        let window = HistoryQuery {
            since: Some(UNIX_EPOCH + Duration::from_millis(1_800_000_000_010)),
            until: Some(UNIX_EPOCH + Duration::from_millis(1_800_000_000_020)),
            limit: 1000,
            ..Default::default()
        };
        assert_eq!(store.history(&window).unwrap().len(), 40, "10 ms of 4 tasks each");
    }

    #[test]
    fn history_pages_in_memory() {
        pages_cover_the_history_without_duplicates_or_gaps(&MemoryStore::default());
    }

    #[test]
    fn history_pages_in_redis() {
        let redis = super::redis::TestRedis::start();
        let store = RedisStore::open(&redis.url(), None, "history:", None).unwrap();
        pages_cover_the_history_without_duplicates_or_gaps(&store);
    }

    #[test]
    fn history_pages_in_sqlite() {
        let dir = std::env::temp_dir().join(format!("pagelens-history-{}", TaskId::random()));
        let store = SqliteStore::open(&dir.join("tasks.db"), Durability::Process).unwrap();
        pages_cover_the_history_without_duplicates_or_gaps(&store);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
