//! Where tasks live: the [`TaskStore`] trait and its in-memory table.
//!
//! The engine talks to the store only through the trait, so a durable store
//! can replace [`MemoryStore`] without touching the engine or the API.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;

use super::task::{rfc3339, ItemCounts, Progress, TaskError, TaskId, TaskState, TaskView};
use crate::pool::Priority;

/// Everything kept about one task.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// `analyze` or `bulk`.
    pub kind: &'static str,
    /// Its priority.
    pub priority: Priority,
    /// Its state.
    pub state: TaskState,
    /// Its progress.
    pub progress: Progress,
    /// The result, JSON encoded.
    pub result: Option<Box<RawValue>>,
    /// The error.
    pub error: Option<TaskError>,
    /// When accepted.
    pub created_at: SystemTime,
    /// When started.
    pub started_at: Option<SystemTime>,
    /// When ended.
    pub completed_at: Option<SystemTime>,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// Item counts, for batches.
    pub items: Option<ItemCounts>,
}

impl TaskRecord {
    /// A queued task.
    pub fn new(id: TaskId, kind: &'static str, priority: Priority, idempotency_key: Option<String>) -> Self {
        TaskRecord {
            id,
            kind,
            priority,
            state: TaskState::Queued,
            progress: Progress { percent: 0, stage: "queued".into() },
            result: None,
            error: None,
            created_at: SystemTime::now(),
            started_at: None,
            completed_at: None,
            idempotency_key,
            items: None,
        }
    }

    /// The status document; `with_result` leaves the (possibly large) result out when false.
    pub fn view(&self, with_result: bool) -> TaskView {
        TaskView {
            task_id: self.id,
            kind: self.kind,
            status: self.state,
            priority: self.priority,
            progress: self.progress.clone(),
            result: if with_result { self.result.clone() } else { None },
            error: self.error.clone(),
            created_at: rfc3339(self.created_at),
            started_at: self.started_at.map(rfc3339),
            completed_at: self.completed_at.map(rfc3339),
            items: self.items,
        }
    }
}

/// Tasks by state and priority.
pub type Counts = HashMap<TaskState, HashMap<Priority, usize>>;

/// A table of tasks.
pub trait TaskStore: Send + Sync + Debug {
    /// Stores a new task. If one is already stored under the same
    /// idempotency key, stores nothing and returns that task's id.
    fn insert(&self, record: TaskRecord) -> Result<(), TaskId>;
    /// The status document of a task.
    fn get(&self, id: TaskId) -> Option<TaskView>;
    /// Applies `change` to a task; returns its state afterwards.
    fn update(&self, id: TaskId, change: &mut dyn FnMut(&mut TaskRecord)) -> Option<TaskState>;
    /// Forgets a task.
    fn remove(&self, id: TaskId);
    /// Queued and processing tasks, without results.
    fn active(&self) -> Vec<TaskView>;
    /// Tasks by state and priority.
    fn counts(&self) -> Counts;
    /// Forgets finished tasks older than `ttl`, and the oldest finished ones
    /// past `max_finished`. Returns how many went.
    fn sweep(&self, now: SystemTime, ttl: Duration, max_finished: usize) -> usize;
}

/// The in-memory task table.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<TaskId, TaskRecord>,
    keys: HashMap<String, TaskId>,
    /// Finished tasks in the order they finished, for the sweep.
    finished: VecDeque<(SystemTime, TaskId)>,
    counts: Counts,
}

impl Inner {
    fn count(&mut self, state: TaskState, priority: Priority, delta: isize) {
        let n = self.counts.entry(state).or_default().entry(priority).or_default();
        *n = n.saturating_add_signed(delta);
    }

    fn forget(&mut self, id: TaskId) {
        if let Some(record) = self.tasks.remove(&id) {
            self.count(record.state, record.priority, -1);
            if let Some(key) = &record.idempotency_key {
                self.keys.remove(key);
            }
        }
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TaskStore for MemoryStore {
    fn insert(&self, record: TaskRecord) -> Result<(), TaskId> {
        let mut inner = self.lock();
        if let Some(key) = &record.idempotency_key {
            if let Some(&existing) = inner.keys.get(key) {
                return Err(existing);
            }
            inner.keys.insert(key.clone(), record.id);
        }
        inner.count(record.state, record.priority, 1);
        inner.tasks.insert(record.id, record);
        Ok(())
    }

    fn get(&self, id: TaskId) -> Option<TaskView> {
        self.lock().tasks.get(&id).map(|r| r.view(true))
    }

    fn update(&self, id: TaskId, change: &mut dyn FnMut(&mut TaskRecord)) -> Option<TaskState> {
        let mut inner = self.lock();
        let record = inner.tasks.get_mut(&id)?;
        let before = (record.state, record.priority);
        change(record);
        let after = (record.state, record.priority);
        let finished_at = (!before.0.is_final() && after.0.is_final())
            .then(|| *record.completed_at.get_or_insert_with(SystemTime::now));
        if before != after {
            inner.count(before.0, before.1, -1);
            inner.count(after.0, after.1, 1);
        }
        if let Some(at) = finished_at {
            inner.finished.push_back((at, id));
        }
        Some(after.0)
    }

    fn remove(&self, id: TaskId) {
        self.lock().forget(id);
    }

    fn active(&self) -> Vec<TaskView> {
        let inner = self.lock();
        let mut active: Vec<TaskView> =
            inner.tasks.values().filter(|r| !r.state.is_final()).map(|r| r.view(false)).collect();
        active.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        active
    }

    fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    fn sweep(&self, now: SystemTime, ttl: Duration, max_finished: usize) -> usize {
        let mut inner = self.lock();
        let mut swept = 0;
        while let Some(&(finished_at, id)) = inner.finished.front() {
            let expired = now.duration_since(finished_at).unwrap_or_default() >= ttl;
            if !expired && inner.finished.len() <= max_finished {
                break;
            }
            inner.finished.pop_front();
            inner.forget(id);
            swept += 1;
        }
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_update_count_and_sweep() {
        let store = MemoryStore::default();
        let a = TaskRecord::new(TaskId::random(), "analyze", Priority::High, Some("key-1".into()));
        let id = a.id;
        store.insert(a).unwrap();
        let dup = TaskRecord::new(TaskId::random(), "analyze", Priority::High, Some("key-1".into()));
        assert_eq!(store.insert(dup), Err(id));
        assert_eq!(store.counts()[&TaskState::Queued][&Priority::High], 1);
        assert_eq!(store.active().len(), 1);
        store.update(id, &mut |r| r.state = TaskState::Completed);
        assert_eq!(store.counts()[&TaskState::Completed][&Priority::High], 1);
        assert_eq!(store.counts()[&TaskState::Queued][&Priority::High], 0);
        assert!(store.active().is_empty());
        assert_eq!(store.sweep(SystemTime::now(), Duration::from_secs(60), 10), 0);
        assert_eq!(store.sweep(SystemTime::now() + Duration::from_secs(61), Duration::from_secs(60), 10), 1);
        assert!(store.get(id).is_none());
        // The key is free again once its task is gone.
        store.insert(TaskRecord::new(TaskId::random(), "analyze", Priority::Low, Some("key-1".into()))).unwrap();
    }

    #[test]
    fn finished_tasks_are_bounded_in_number() {
        let store = MemoryStore::default();
        for _ in 0..5 {
            let r = TaskRecord::new(TaskId::random(), "analyze", Priority::Normal, None);
            let id = r.id;
            store.insert(r).unwrap();
            store.update(id, &mut |r| r.state = TaskState::Error);
        }
        assert_eq!(store.sweep(SystemTime::now(), Duration::from_secs(3600), 3), 2);
        assert_eq!(store.counts()[&TaskState::Error][&Priority::Normal], 3);
    }
}
