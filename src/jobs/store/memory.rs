//! The in-memory store (`--store memory`): nothing on disk, everything lost
//! with the process, results bounded in bytes (`--max-result-bytes`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::{
    CachedPage, Counts, HistoryQuery, Outcomes, StoreError, StoreFigures, TaskStore, Write, Written, TOP_ERRORS,
};
use crate::jobs::lifecycle::TaskRecord;
use crate::jobs::spec::TaskSpec;
use crate::jobs::task::TaskId;

/// Tasks in a hash table.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Most bytes of ended tasks (results, lines) kept; the oldest go first.
    max_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    record: TaskRecord,
    /// The input, until the task ends.
    /// With its size, counted once: it does not change while kept.
    spec: Option<(Arc<TaskSpec>, usize)>,
    /// A batch's item documents: item, failed, document.
    items: Vec<(usize, bool, Vec<u8>)>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.record.bytes()
            + self.spec.as_ref().map_or(0, |(_, bytes)| *bytes)
            + self.items.iter().map(|(_, _, d)| d.len() + 24).sum::<usize>()
    }
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<TaskId, Entry>,
    keys: HashMap<String, TaskId>,
    /// Ended tasks by end time, for the sweep. A task leaves this set
    /// whenever it leaves `tasks`, so the sweep counts only what is kept.
    ended: BTreeSet<(SystemTime, TaskId)>,
    /// Bytes held by all entries.
    bytes: usize,
}

impl Inner {
    fn forget(&mut self, id: TaskId) {
        if let Some(entry) = self.tasks.remove(&id) {
            self.bytes -= entry.bytes();
            if let Some(at) = entry.record.completed_at {
                self.ended.remove(&(at, id));
            }
            if let Some(key) = &entry.record.idempotency_key {
                self.keys.remove(key);
            }
        }
    }

    /// Runs `change` on a stored entry, keeping the byte count right.
    fn change(&mut self, id: TaskId, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.tasks.get_mut(&id) {
            self.bytes -= entry.bytes();
            change(entry);
            self.bytes += entry.bytes();
        }
    }

    fn write(&mut self, write: &mut Write, max_bytes: usize) -> Written {
        match write {
            Write::Insert(record, spec) => {
                if let Some(existing) = record.idempotency_key.as_ref().and_then(|k| self.keys.get(k)) {
                    return Written::Existing(*existing);
                }
                if let Some(key) = &record.idempotency_key {
                    self.keys.insert(key.clone(), record.id);
                }
                let spec = Some((Arc::clone(spec), spec.input_bytes()));
                let entry = Entry { record: (**record).clone(), spec, items: Vec::new() };
                if let Some(at) = entry.record.completed_at {
                    self.ended.insert((at, entry.record.id));
                }
                self.bytes += entry.bytes();
                self.tasks.insert(record.id, entry);
                Written::Done
            }
            Write::Put { record, expected } => {
                let Some(entry) = self.tasks.get(&record.id) else { return Written::Conflict };
                if entry.record.version != *expected {
                    return Written::Conflict;
                }
                let (id, ended) = (record.id, record.completed_at);
                let record = (**record).clone();
                self.change(id, |entry| {
                    if record.state.is_final() {
                        entry.spec = None;
                    }
                    entry.record = record;
                });
                if let Some(at) = ended {
                    self.ended.insert((at, id));
                }
                Written::Done
            }
            Write::Item { task, item, failed, doc } => {
                let (item, failed, doc) = (*item, *failed, std::mem::take(doc));
                self.change(*task, |entry| {
                    if !entry.items.iter().any(|(i, _, _)| *i == item) {
                        entry.items.push((item, failed, doc));
                    }
                });
                Written::Done
            }
            Write::CallbackDone(id) => {
                self.change(*id, |entry| entry.record.callback_pending = false);
                Written::Done
            }
            // The result cache keeps its analyses in memory already: this
            // store, gone with the process too, holds no second copy.
            Write::Cache { .. } => Written::Done,
            Write::Sweep { ended_before } => {
                let mut swept = 0;
                while let Some(&(at, id)) = self.ended.first() {
                    if at >= *ended_before && self.bytes <= max_bytes {
                        break;
                    }
                    self.forget(id);
                    swept += 1;
                }
                Written::Swept(swept)
            }
        }
    }
}

impl MemoryStore {
    /// A store that keeps at most `max_bytes` of ended tasks' results and
    /// lines, sweeping the oldest first.
    pub fn new(max_bytes: usize) -> MemoryStore {
        MemoryStore { inner: Mutex::new(Inner::default()), max_bytes }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every write leaves the table consistent before it can panic.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    /// Bounded at 1 GiB.
    fn default() -> Self {
        MemoryStore::new(1 << 30)
    }
}

impl TaskStore for MemoryStore {
    fn commit(&self, group: &mut [Write]) -> Result<Vec<Written>, StoreError> {
        let mut inner = self.lock();
        Ok(group.iter_mut().map(|w| inner.write(w, self.max_bytes)).collect())
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.lock().tasks.get(&id).map(|e| e.record.clone()))
    }

    fn cached(&self, _key: &str) -> Result<Option<CachedPage>, StoreError> {
        // See `Write::Cache` above: the cache's memory is the only copy.
        Ok(None)
    }

    fn spec(&self, id: TaskId) -> Result<Option<TaskSpec>, StoreError> {
        Ok(self.lock().tasks.get(&id).and_then(|e| e.spec.as_ref().map(|(spec, _)| TaskSpec::clone(spec))))
    }

    fn items(&self, id: TaskId, limit: Option<usize>) -> Result<Vec<Vec<u8>>, StoreError> {
        let inner = self.lock();
        let items = inner.tasks.get(&id).map_or(&[][..], |e| &e.items[..]);
        Ok(items.iter().take(limit.unwrap_or(usize::MAX)).map(|(_, _, doc)| doc.clone()).collect())
    }

    fn items_done(&self, id: TaskId) -> Result<Vec<(usize, bool)>, StoreError> {
        Ok(self.lock().tasks.get(&id).map_or_else(Vec::new, |e| e.items.iter().map(|(i, f, _)| (*i, *f)).collect()))
    }

    fn active(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let inner = self.lock();
        let mut active: Vec<TaskRecord> =
            inner.tasks.values().filter(|e| !e.record.state.is_final()).map(|e| e.record.clone()).collect();
        active.sort_by_key(|r| r.created_at);
        active.truncate(limit);
        Ok(active)
    }

    fn outcomes(&self, since: SystemTime, bucket_ms: i64) -> Result<Outcomes, StoreError> {
        let inner = self.lock();
        let mut outcomes = Outcomes::default();
        let mut errors: HashMap<&str, u64> = HashMap::new();
        let since = crate::clock::to_millis(since);
        for record in inner.tasks.values().map(|e| &e.record) {
            let Some(ended) = record.completed_at.map(crate::clock::to_millis).filter(|t| *t >= since) else {
                continue;
            };
            let bucket = ended.div_euclid(bucket_ms.max(1)) * bucket_ms.max(1);
            *outcomes.buckets.entry(bucket).or_default().entry(record.state).or_default() += 1;
            if let Some(e) = &record.error {
                *errors.entry(&e.code).or_default() += 1;
            }
        }
        let mut errors: Vec<(String, u64)> = errors.into_iter().map(|(c, n)| (c.to_string(), n)).collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        errors.truncate(TOP_ERRORS);
        outcomes.errors = errors;
        Ok(outcomes)
    }

    fn history(&self, query: &HistoryQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<&TaskRecord> =
            inner.tasks.values().map(|e| &e.record).filter(|r| query.matches(r)).collect();
        found.sort_by_key(|r| std::cmp::Reverse((crate::clock::to_millis(r.created_at), r.id.to_bytes())));
        Ok(found
            .into_iter()
            .take(query.limit)
            .map(|r| {
                let mut r = r.clone();
                if !query.with_results {
                    r.result = None;
                }
                r
            })
            .collect())
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let mut counts = Counts::new();
        for entry in self.lock().tasks.values() {
            *counts.entry(entry.record.state).or_default().entry(entry.record.priority).or_default() += 1;
        }
        Ok(counts)
    }

    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.active(usize::MAX)
    }

    fn callbacks_owed(&self) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(self.lock().tasks.values().filter(|e| e.record.callback_pending).map(|e| e.record.clone()).collect())
    }

    fn figures(&self) -> StoreFigures {
        StoreFigures { backend: "memory", path: None, bytes: self.lock().bytes as u64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::lifecycle::{apply, Event};
    use crate::jobs::spec::TaskOptions;
    use crate::jobs::task::TaskState;
    use std::time::Duration;

    fn task(key: Option<&str>) -> (TaskRecord, TaskSpec) {
        let options = TaskOptions { idempotency_key: key.map(str::to_string), ..TaskOptions::default() };
        let spec = TaskSpec::one("analyze", serde_json::Value::Null, b"<p>".to_vec(), options);
        let mut record = TaskRecord::new(TaskId::random(), &spec, SystemTime::now());
        apply(&mut record, Event::Accepted, SystemTime::now()).unwrap();
        (record, spec)
    }

    fn insert(store: &MemoryStore, (record, spec): (TaskRecord, TaskSpec)) -> Written {
        store.commit(&mut [Write::Insert(Box::new(record), Arc::new(spec))]).unwrap().remove(0)
    }

    fn finish(store: &MemoryStore, id: TaskId, result: &[u8], at: SystemTime) {
        let mut record = store.get(id).unwrap().unwrap();
        let expected = record.version;
        apply(&mut record, Event::Started, at).unwrap();
        apply(&mut record, Event::Finished(Arc::from(result)), at).unwrap();
        let put = Write::Put { record: Box::new(record), expected };
        assert_eq!(store.commit(&mut [put]).unwrap(), vec![Written::Done]);
    }

    #[test]
    fn keys_versions_and_counts() {
        let store = MemoryStore::default();
        let a = task(Some("key-1"));
        let id = a.0.id;
        assert_eq!(insert(&store, a), Written::Done);
        assert_eq!(insert(&store, task(Some("key-1"))), Written::Existing(id));
        assert_eq!(store.counts().unwrap()[&TaskState::Queued].values().sum::<usize>(), 1);
        assert_eq!(store.spec(id).unwrap().unwrap().payloads()[0].body, b"<p>");
        // A put from a stale version changes nothing.
        let mut stale = store.get(id).unwrap().unwrap();
        apply(&mut stale, Event::Cancelled, SystemTime::now()).unwrap();
        let put = Write::Put { record: Box::new(stale), expected: 99 };
        assert_eq!(store.commit(&mut [put]).unwrap(), vec![Written::Conflict]);
        finish(&store, id, b"{}", SystemTime::now());
        assert_eq!(store.get(id).unwrap().unwrap().state, TaskState::Completed);
        assert!(store.spec(id).unwrap().is_none(), "an ended task's input is freed");
        assert!(store.active(10).unwrap().is_empty());
    }

    #[test]
    fn the_sweep_forgets_by_age_and_by_bytes_and_counts_only_what_is_kept() {
        let store = MemoryStore::new(20_000);
        let now = SystemTime::now();
        let mut ids = Vec::new();
        for i in 0..3 {
            let t = task(None);
            ids.push(t.0.id);
            insert(&store, t);
            finish(&store, ids[i], &[b' '; 5000], now + Duration::from_secs(i as u64));
        }
        // Under the byte bound and the TTL: nothing goes.
        assert_eq!(store.commit(&mut [Write::Sweep { ended_before: now }]).unwrap(), vec![Written::Swept(0)]);
        // A task forgotten some other way is not counted by the sweep (the F2 bug).
        store.lock().forget(ids[1]);
        let sweep = Write::Sweep { ended_before: now + Duration::from_millis(1500) };
        assert_eq!(store.commit(&mut [sweep]).unwrap(), vec![Written::Swept(1)]);
        assert!(store.get(ids[0]).unwrap().is_none());
        assert!(store.get(ids[2]).unwrap().is_some());
        // Past the byte bound the oldest ended go first, whatever their age.
        for _ in 0..4 {
            let t = task(None);
            let id = t.0.id;
            insert(&store, t);
            finish(&store, id, &[b' '; 5000], now + Duration::from_secs(10));
        }
        store.commit(&mut [Write::Sweep { ended_before: now }]).unwrap();
        assert!(store.figures().bytes <= 20_000, "{}", store.figures().bytes);
        assert!(store.get(ids[2]).unwrap().is_none(), "the oldest went first");
    }
}
