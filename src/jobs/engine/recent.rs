//! Tasks that ended lately, kept in memory (bounded in bytes) beside the
//! store: a client polling a task reads its result from here, not back from
//! the disk, in the seconds after it ends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use crate::jobs::lifecycle::TaskRecord;
use crate::jobs::task::TaskId;

/// Ended records, the oldest forgotten first past the byte bound.
#[derive(Debug)]
pub(super) struct Recent {
    records: HashMap<TaskId, Arc<TaskRecord>>,
    order: VecDeque<TaskId>,
    bytes: usize,
    max_bytes: usize,
}

impl Recent {
    pub(super) fn new(max_bytes: usize) -> Recent {
        Recent { records: HashMap::new(), order: VecDeque::new(), bytes: 0, max_bytes }
    }

    /// Keeps `record` (an ended task's, as stored).
    pub(super) fn add(&mut self, record: TaskRecord) {
        let bytes = record.bytes();
        if bytes > self.max_bytes {
            return;
        }
        let id = record.id;
        if let Some(old) = self.records.insert(id, Arc::new(record)) {
            self.bytes -= old.bytes();
        } else {
            self.order.push_back(id);
        }
        self.bytes += bytes;
        while self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(gone) = self.records.remove(&oldest) {
                self.bytes -= gone.bytes();
            }
        }
    }

    /// The record of `id` if kept and it ended after `ended_after` (within
    /// its TTL: the store would have forgotten it otherwise).
    pub(super) fn get(&self, id: TaskId, ended_after: SystemTime) -> Option<Arc<TaskRecord>> {
        let record = self.records.get(&id)?;
        record.completed_at.is_some_and(|at| at >= ended_after).then(|| Arc::clone(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::lifecycle::{apply, Event};
    use crate::jobs::spec::{TaskOptions, TaskSpec};
    use std::time::Duration;

    fn ended(result: usize, at: SystemTime) -> TaskRecord {
        let spec = TaskSpec::one("a", serde_json::Value::Null, Vec::new(), TaskOptions::default());
        let mut r = TaskRecord::new(TaskId::random(), &spec, at);
        apply(&mut r, Event::Accepted, at).unwrap();
        apply(&mut r, Event::Started, at).unwrap();
        apply(&mut r, Event::Finished(vec![b' '; result].into()), at).unwrap();
        r
    }

    #[test]
    fn bounded_in_bytes_oldest_first_and_within_the_ttl() {
        let now = SystemTime::now();
        let mut recent = Recent::new(3000);
        let (a, b, c) = (ended(1000, now), ended(1000, now), ended(1000, now));
        let ids = (a.id, b.id, c.id);
        recent.add(a);
        recent.add(b);
        recent.add(c);
        assert!(recent.get(ids.0, now).is_none(), "the oldest went past 3000 bytes");
        assert!(recent.get(ids.1, now).is_some() && recent.get(ids.2, now).is_some());
        assert!(recent.get(ids.2, now + Duration::from_secs(1)).is_none(), "past its TTL");
        recent.add(ended(5000, now));
        assert!(recent.get(ids.2, now).is_some(), "a record larger than the bound is not kept");
    }
}
