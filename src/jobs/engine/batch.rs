//! Batches: one task whose items run concurrently on the pool, each item's
//! outcome a JSON document stored as it finishes; subscribers get the
//! documents stored so far, then each new one as it is committed, then the
//! end. (How they are framed for a client, NDJSON, is the API's business.)

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::value::RawValue;

use super::work::{Finish, Handler, JobContext, Outcome};
use super::{lock, Engine};
use crate::jobs::spec::Payload;
use crate::jobs::store::{StoreError, Write};
use crate::jobs::task::{ItemCounts, TaskError, TaskId};
use crate::pool::Priority;

/// Receives a batch's item outcomes as items finish; returns false to stop.
pub type BatchSubscriber = Box<dyn FnMut(BatchEvent<'_>) -> bool + Send>;

/// What a batch subscriber is told.
#[derive(Debug)]
pub enum BatchEvent<'a> {
    /// Items' outcomes, each a JSON document `{"index","status","result"|"error"}`.
    Items(&'a [Vec<u8>]),
    /// The batch has ended.
    End,
}

/// A batch this process runs: counts, and who listens.
#[derive(Default)]
pub(super) struct Batch {
    total: usize,
    done: usize,
    failed: usize,
    /// Items with a stored outcome when the batch started (after a restart).
    done_items: HashSet<usize>,
    /// Item documents committed and pushed to subscribers, in commit order.
    committed: usize,
    /// No more outcomes are taken (the batch ended, or was cancelled).
    closed: bool,
    /// The items not yet started, while it runs.
    feed: Option<Feed>,
    subscribers: Vec<BatchSubscriber>,
}

/// What a running batch starts its next items with. Items go to the pool a
/// window at a time (two a worker), the next as each ends: a batch holds
/// one queue slot whatever its size, and a large one does not bury tasks
/// submitted after it.
struct Feed {
    pending: VecDeque<(usize, Payload)>,
    handler: Handler,
    cancel: Arc<AtomicBool>,
    deadline: Instant,
    priority: Priority,
}

/// An item to start, with what it runs under.
struct Start {
    index: usize,
    payload: Payload,
    handler: Handler,
    cancel: Arc<AtomicBool>,
    deadline: Instant,
    priority: Priority,
}

impl Feed {
    fn next(&mut self) -> Option<Start> {
        let (index, payload) = self.pending.pop_front()?;
        Some(Start {
            index,
            payload,
            handler: Arc::clone(&self.handler),
            cancel: Arc::clone(&self.cancel),
            deadline: self.deadline,
            priority: self.priority,
        })
    }
}

impl Engine {
    /// Holds a batch's counts for a task about to be queued; `done` lists
    /// items already stored (a recovered batch).
    pub(super) fn open_batch(&self, id: TaskId, total: usize, done: &[(usize, bool)]) {
        let batch = Batch {
            total,
            done: done.len(),
            failed: done.iter().filter(|(_, failed)| *failed).count(),
            done_items: done.iter().map(|(item, _)| *item).collect(),
            committed: done.len(),
            ..Batch::default()
        };
        lock(&self.batches).insert(id, Arc::new(Mutex::new(batch)));
    }

    /// Starts a batch: its items not yet done go to the pool a window at a time.
    pub(super) fn run_batch(
        self: &Arc<Self>,
        cx: JobContext,
        handler: Handler,
        items: Vec<Payload>,
        priority: Priority,
    ) {
        let (id, cancel, deadline) = cx.parts();
        let Some(batch) = lock(&self.batches).get(&id).cloned() else {
            return self.finish(id, Err(TaskError::new(500, "internal", "the batch was not opened")));
        };
        let window = self.pool.workers() * 2;
        let (first, counts) = {
            let mut b = lock(&batch);
            let pending: VecDeque<(usize, Payload)> =
                items.into_iter().enumerate().filter(|(i, _)| !b.done_items.contains(i)).collect();
            let mut feed = Feed { pending, handler, cancel, deadline, priority };
            let first: Vec<Start> = std::iter::from_fn(|| feed.next()).take(window).collect();
            b.feed = Some(feed);
            (first, ItemCounts { done: b.done, failed: b.failed, total: b.total })
        };
        self.progress(id, percent(counts), stage(counts), Some(counts));
        if counts.done == counts.total {
            return self.finish(id, summary(counts));
        }
        for start in first {
            self.start_item(id, &batch, start);
        }
    }

    /// Runs one item on the pool; its end starts the next.
    fn start_item(self: &Arc<Self>, id: TaskId, batch: &Arc<Mutex<Batch>>, start: Start) {
        let (engine, batch) = (Arc::clone(self), Arc::clone(batch));
        let Start { index, payload, handler, cancel, deadline, priority } = start;
        // From a worker, to its own deque, where idle workers steal it.
        self.pool.spawn_local(
            priority,
            Box::new(move || {
                let item_cx = JobContext::new(&engine, id, cancel, deadline, false);
                let finish: Finish = Box::new(move |engine, outcome| engine.item_done(id, &batch, index, outcome));
                item_cx.start(&engine, &handler, payload, priority, finish);
            }),
        );
    }

    /// Stores an item's outcome; ends the batch after its last item.
    fn item_done(self: &Arc<Self>, id: TaskId, batch: &Arc<Mutex<Batch>>, index: usize, outcome: Outcome) {
        let doc = match &outcome {
            Ok(result) => format!("{{\"index\":{index},\"status\":\"completed\",\"result\":{}}}", result.get()),
            Err(e) => {
                let error = serde_json::to_string(e).unwrap_or_default();
                format!("{{\"index\":{index},\"status\":\"error\",\"error\":{error}}}")
            }
        }
        .into_bytes();
        let (counts, next) = {
            let mut b = lock(batch);
            if b.closed {
                return; // cancelled or timed out: late items are dropped
            }
            b.done += 1;
            b.failed += usize::from(outcome.is_err());
            let next = b.feed.as_mut().and_then(Feed::next);
            (ItemCounts { done: b.done, failed: b.failed, total: b.total }, next)
        };
        if let Some(next) = next {
            self.start_item(id, batch, next);
        }
        self.progress(id, percent(counts), stage(counts), Some(counts));
        let pushed = Arc::clone(batch);
        let write = Write::Item { task: id, item: index, failed: outcome.is_err(), doc: doc.clone() };
        self.committer.send(
            write,
            Box::new(move |written| {
                if let Err(e) = written {
                    crate::error!("batch {id}: item {index}'s outcome was not stored: {e}");
                }
                let mut b = lock(&pushed);
                b.committed += 1;
                let docs = [doc];
                b.subscribers.retain_mut(|s| s(BatchEvent::Items(&docs)));
            }),
        );
        if counts.done == counts.total {
            self.finish(id, summary(counts));
        }
    }

    /// Takes no more outcomes for a batch (it has ended).
    pub(super) fn close_batch(&self, id: TaskId) {
        // Cloned out first: the map's lock is never held while taking a batch's.
        let batch = lock(&self.batches).get(&id).cloned();
        if let Some(batch) = batch {
            let mut b = lock(&batch);
            b.closed = true;
            b.feed = None;
        }
    }

    /// Tells a batch's subscribers it has ended, after its last write.
    pub(super) fn end_batch(&self, id: TaskId) {
        let batch = lock(&self.batches).remove(&id);
        let Some(batch) = batch else { return };
        // Closed already: `end` closed it before writing the batch's end.
        let mut b = lock(&batch);
        for mut subscriber in b.subscribers.drain(..) {
            subscriber(BatchEvent::End);
        }
    }

    /// Feeds a batch's item outcomes to `subscriber`: those stored so far
    /// (at once, even if none), the rest as they are committed, then
    /// [`BatchEvent::End`] (not on a reactor: it reads the store). False,
    /// with the subscriber never called, when `id` is not a batch.
    pub fn batch_results(&self, id: TaskId, mut subscriber: BatchSubscriber) -> Result<bool, StoreError> {
        let running = lock(&self.batches).get(&id).cloned();
        if let Some(batch) = running {
            // Under the batch's lock nothing is pushed, so the first
            // `committed` stored outcomes are exactly those pushed before.
            let mut b = lock(&batch);
            if lock(&self.batches).contains_key(&id) {
                let docs = self.store.items(id, Some(b.committed))?;
                if subscriber(BatchEvent::Items(&docs)) {
                    b.subscribers.push(subscriber);
                }
                return Ok(true);
            }
        }
        // Ended, or run by another instance: what there is is in the store.
        match self.store.get(id)? {
            Some(record) if record.items.is_some() => {
                let docs = self.store.items(id, None)?;
                if !subscriber(BatchEvent::Items(&docs)) {
                    return Ok(true);
                }
                match self.shared.get() {
                    // The rest as the store gets it, until the batch ends.
                    Some(_) if !record.state.is_final() => self.from_store.lines(id, docs.len(), subscriber),
                    _ => drop(subscriber(BatchEvent::End)),
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn percent(c: ItemCounts) -> u8 {
    (c.done * 100 / c.total.max(1)) as u8
}

fn stage(c: ItemCounts) -> String {
    format!("{} of {} items", c.done, c.total)
}

fn summary(c: ItemCounts) -> Outcome {
    let json = format!("{{\"total\":{},\"completed\":{},\"failed\":{}}}", c.total, c.done - c.failed, c.failed);
    RawValue::from_string(json).map_err(|e| TaskError::new(500, "internal", e.to_string()))
}
