//! The task engine: accepts tasks (as data) into the store, runs them on
//! the pool through their kind's handler, and records every change through
//! the lifecycle.
//!
//! A task's path: admission (room in slots and bytes) → `accepted`, written
//! by the committer; the reply is sent only once the write is durable → a
//! worker takes its id, applies `started`, reads its input from the store
//! and runs the handler's work → the outcome is applied and written, then
//! whoever waits is told and the callback is delivered (an outbox in the
//! store). Tasks being run are also held in memory (`live`), where progress
//! goes without a write; status reads see it there first.
//!
//! Synchronous requests run the same way but are written to the store only
//! if they outlive the sync wait and are handed over as `202` tasks.

mod admission;
mod batch;
mod follow;
mod recent;
mod shared;
mod timer;
mod watch;
mod work;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

pub use admission::{Admission, SubmitError};
pub use batch::{BatchEvent, BatchSubscriber};
pub use shared::{SharedConfig, SharedFigures};
pub use watch::{Follow, TaskEvent, TaskFollower, TaskWatcher};
pub use work::{CpuWork, Handler, Handlers, IoWork, JobContext, Journal, Outcome, Resume, Work};

use super::commit::{CommitFigures, Committer};
use super::lifecycle::{apply, Event, TaskRecord};
use super::queue::{Claim, TaskQueue};
use super::spec::{TaskInput, TaskSpec};
use super::store::{CachedPage, Counts, HistoryQuery, Outcomes, Store, StoreError, StoreFigures, Write, Written};
use super::task::{status_body, TaskError, TaskId, TaskState, TaskView};
use crate::metrics::tasks::TaskTimes;
use crate::pool::{Pool, PoolStats, Priority};
use batch::Batch;
use timer::SyncWait;

/// Threads that read the store for API requests (statuses, lists, streams).
const READERS: usize = 2;
/// Bytes of queued tasks' inputs also kept in memory, so that a worker
/// need not read them back from the store; past it, inputs wait only in
/// the store.
const INPUTS_IN_MEMORY: usize = 32 << 20;
/// Bytes of recently ended tasks kept in memory for status reads.
const RECENT_IN_MEMORY: usize = 32 << 20;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads.
    pub workers: usize,
    /// Most tasks (and batch items) waiting for a worker; more is refused.
    pub queue_capacity: usize,
    /// Most bytes of input waiting for a worker; more is refused.
    pub max_queued_bytes: usize,
    /// Timeout of a task that names none.
    pub default_timeout: Duration,
    /// Longest timeout a task may ask for.
    pub max_timeout: Duration,
    /// How long finished tasks are kept.
    pub result_ttl: Duration,
}

/// A task that has ended, with its result.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The status document.
    pub view: TaskView,
    /// The result (JSON), if it completed.
    pub result: Option<Arc<[u8]>>,
    /// The record's version (see [`TaskEvent::version`]).
    pub version: u64,
}

impl Ended {
    fn of(record: &TaskRecord) -> Ended {
        Ended { view: record.view(), result: record.result.clone(), version: record.version }
    }

    /// The status document as JSON, the result spliced in.
    pub fn body(&self) -> Vec<u8> {
        status_body(&self.view, self.result.as_deref())
    }
}

/// Called once when a task ends (in this process), with its final status.
pub type OnDone = Box<dyn FnOnce(&Ended) + Send>;

/// Hears once an ended task's record is written (or failed to be).
type Committed = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Receives the outcome of a submission, once.
pub type Reply = Box<dyn FnOnce(Result<Submitted, SubmitError>) + Send>;

/// Delivers a task's callback: its id, the URL, the body; calls the last
/// argument once delivery is over (taken or given up), so the store stops
/// owing it.
pub type CallbackSender = Box<dyn Fn(TaskId, &str, Vec<u8>, Box<dyn FnOnce() + Send>) + Send + Sync>;

/// The outcome of submitting.
#[derive(Debug)]
pub enum Submitted {
    /// A new task, stored.
    Created(TaskView),
    /// The task already stored under the same idempotency key.
    Existing(TaskView),
}

/// Why a cancellation did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelError {
    /// No such task.
    NotFound,
    /// The task had already ended, in this state.
    Finished(TaskState),
    /// The store failed.
    Store(StoreError),
}

/// How a synchronous request ends.
#[derive(Debug)]
pub enum SyncOutcome {
    /// The task finished within the sync wait.
    Finished(Ended),
    /// It did not: it is stored, and the client gets `202` and this task to follow.
    Accepted(TaskView),
    /// It did not, and the store could not take it.
    Refused(SubmitError),
}

/// What start-up found in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Tasks found queued, queued again.
    pub queued: usize,
    /// Tasks found processing (their process stopped), run again.
    pub requeued: usize,
    /// Callbacks still owed, being delivered.
    pub callbacks: usize,
}

/// What a shutdown left in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Tasks still queued.
    pub queued: usize,
    /// Tasks still running at the deadline (they run again at the next start).
    pub running: usize,
}

/// A task being run or waiting in this process.
struct Live {
    /// The record as it is now (progress included, which is not written).
    record: TaskRecord,
    /// The version the store holds; `None` while not stored (a sync request).
    stored_version: Option<u64>,
    cancel: Arc<AtomicBool>,
    deadline: Instant,
    on_done: Option<OnDone>,
    /// The input, if kept in memory: always for a sync request (not
    /// stored until handed over), within `INPUTS_IN_MEMORY` for others.
    spec: Option<Arc<TaskSpec>>,
    /// Bytes of `INPUTS_IN_MEMORY` the kept input holds.
    spec_bytes: usize,
    /// Who follows its changes.
    watchers: Vec<TaskWatcher>,
    /// Its hold on the shared queue, if it came from one.
    claim: Option<Claim>,
}

/// Monotonic counts of tasks ended in this process, by final state and priority.
#[derive(Debug, Default)]
pub struct EndedCounts([[AtomicU64; 3]; 6]);

impl EndedCounts {
    fn count(&self, state: TaskState, priority: Priority) {
        self.0[usize::from(state.code())][priority.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Tasks of `priority` that ended in `state`.
    pub fn of(&self, state: TaskState, priority: Priority) -> u64 {
        self.0[usize::from(state.code())][priority.index()].load(Ordering::Relaxed)
    }

    /// Tasks that ended in `state`.
    pub fn get(&self, state: TaskState) -> u64 {
        Priority::ALL.iter().map(|p| self.of(state, *p)).sum()
    }
}

/// The engine.
pub struct Engine {
    pool: Pool,
    /// Threads that read the store for API requests, never a reactor.
    readers: Pool,
    store: Store,
    committer: Committer,
    handlers: Handlers,
    config: EngineConfig,
    admission: Admission,
    /// Mean job run time in microseconds (exponentially weighted).
    mean_job_micros: AtomicU64,
    live: Mutex<HashMap<TaskId, Live>>,
    /// Watchers of tasks whose end is being stored (locked after `live`).
    ending: Mutex<HashMap<TaskId, Vec<TaskWatcher>>>,
    /// Who hears of every stored task going live (locked after `live`);
    /// `following` counts them, so that none costs no lock.
    followers: Mutex<Vec<TaskFollower>>,
    following: AtomicUsize,
    deadlines: Mutex<BinaryHeap<Reverse<(Instant, TaskId)>>>,
    sync_waits: Mutex<BinaryHeap<Reverse<SyncWait>>>,
    batches: Mutex<HashMap<TaskId, Arc<Mutex<Batch>>>>,
    /// Bytes of inputs kept in memory beside the store.
    inputs_in_memory: AtomicUsize,
    recent: Mutex<recent::Recent>,
    times: Arc<TaskTimes>,
    ended: EndedCounts,
    recovered: Mutex<Recovered>,
    callbacks: OnceLock<CallbackSender>,
    /// Set at shutdown: stored tasks not yet started stay queued.
    stopping: AtomicBool,
    /// Set when the engine is dropped: the timer thread ends.
    dropped: AtomicBool,
    /// The timer thread, woken when a deadline earlier than all it knows arrives.
    timer: OnceLock<std::thread::Thread>,
    /// The queue shared with other instances, if any ([`Engine::share`]).
    shared: OnceLock<shared::Shared>,
    /// Tasks ended `poison-task` here.
    poisoned: AtomicU64,
    /// Tasks and task lines followed through the store ([`follow`]).
    from_store: follow::Followers,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("pool", &self.pool).field("config", &self.config).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks stays consistent between statements; a
    // panic elsewhere must not take the engine down with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Engine {
    /// Starts the pool, the committer and the timer thread. Call
    /// [`recover`](Engine::recover) next to run what the store holds.
    pub fn start(config: EngineConfig, store: Store, handlers: Handlers) -> std::io::Result<Arc<Engine>> {
        let times = Arc::new(TaskTimes::default());
        let engine = Arc::new(Engine {
            pool: Pool::new("pagelens-worker", config.workers)?,
            readers: Pool::new("pagelens-store-read", READERS)?,
            committer: Committer::start(Arc::clone(&store), Arc::clone(&times))?,
            store,
            handlers,
            admission: Admission::new(config.queue_capacity, config.max_queued_bytes),
            config,
            mean_job_micros: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            ending: Mutex::new(HashMap::new()),
            followers: Mutex::new(Vec::new()),
            following: AtomicUsize::new(0),
            deadlines: Mutex::new(BinaryHeap::new()),
            sync_waits: Mutex::new(BinaryHeap::new()),
            batches: Mutex::new(HashMap::new()),
            inputs_in_memory: AtomicUsize::new(0),
            recent: Mutex::new(recent::Recent::new(RECENT_IN_MEMORY)),
            times,
            ended: EndedCounts::default(),
            recovered: Mutex::default(),
            callbacks: OnceLock::new(),
            stopping: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            timer: OnceLock::new(),
            shared: OnceLock::new(),
            poisoned: AtomicU64::new(0),
            from_store: follow::Followers::default(),
        });
        let weak = Arc::downgrade(&engine);
        let handle = std::thread::Builder::new().name("pagelens-timer".into()).spawn(move || timer::run(&weak))?;
        // Set once, here, before any task exists: `set` cannot find it taken.
        let _ = engine.timer.set(handle.thread().clone());
        follow::start(&engine)?;
        Ok(engine)
    }

    /// Sets how callbacks are delivered (once, before [`recover`](Engine::recover)).
    pub fn set_callbacks(&self, sender: CallbackSender) {
        let _ = self.callbacks.set(sender);
    }

    /// Takes tasks from `queue`, shared with other instances, instead of
    /// running what this one accepts (once, before [`recover`](Engine::recover)).
    pub fn share(self: &Arc<Self>, queue: Arc<dyn TaskQueue>, config: SharedConfig) -> std::io::Result<()> {
        if self.shared.set(shared::Shared::new(queue, config)).is_ok() {
            shared::start(self)?;
        }
        Ok(())
    }

    /// Whether tasks come from a queue shared with other instances.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    /// Whether the shared queue failed its last call (the instance is then
    /// not ready: it can neither take nor store tasks).
    pub fn queue_down(&self) -> bool {
        self.shared.get().is_some_and(shared::Shared::is_down)
    }

    /// What this instance did with the shared queue, if it has one.
    pub fn shared_figures(&self) -> Option<SharedFigures> {
        self.shared.get().map(shared::Shared::figures)
    }

    /// The shared queue's round trips, if there is one.
    pub fn queue_round_trips(&self) -> Option<&crate::metrics::durations::Durations> {
        self.shared.get().map(|s| s.queue.round_trips())
    }

    /// Tasks ended `poison-task` here.
    pub fn poisoned(&self) -> u64 {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// Queues again what the store holds unfinished (a task found running
    /// runs again: delivery is at least once) and delivers the callbacks
    /// still owed. With a shared queue the queue holds what is unfinished,
    /// and other instances may be running it: only the callbacks.
    pub fn recover(self: &Arc<Self>) -> Result<Recovered, StoreError> {
        let mut recovered = Recovered::default();
        let unfinished = if self.is_shared() { Vec::new() } else { self.store.unfinished()? };
        for mut record in unfinished {
            let expected = record.version;
            if record.state == TaskState::Processing && apply(&mut record, Event::Requeued, SystemTime::now()).is_ok() {
                self.committer.send_only(Write::Put { record: Box::new(record.clone()), expected });
                recovered.requeued += 1;
            } else {
                recovered.queued += 1;
            }
            self.admission.force();
            if let Some(items) = record.items {
                self.open_batch(record.id, items.total, &self.store.items_done(record.id)?);
            }
            let timeout = record.timeout_ms.map(Duration::from_millis);
            let (id, priority) = (record.id, record.priority);
            let version = record.version;
            self.go_live(record, Some(version), timeout, None, None, || {});
            self.spawn_run(id, priority, 0);
        }
        for owed in self.store.callbacks_owed()? {
            recovered.callbacks += 1;
            self.deliver_callback(&owed);
        }
        *lock(&self.recovered) = recovered;
        Ok(recovered)
    }

    /// What [`recover`](Engine::recover) found.
    pub fn recovered(&self) -> Recovered {
        *lock(&self.recovered)
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Pool figures.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Tasks and items waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.admission.waiting()
    }

    /// Bytes of input waiting for a worker.
    pub fn waiting_bytes(&self) -> usize {
        self.admission.waiting_bytes()
    }

    /// A cheap early check, before any work on a request: refused (and
    /// counted) when the queue is already full.
    pub fn has_room(&self) -> Result<(), SubmitError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        self.admission.has_room()
    }

    /// Submissions refused because the queue was full.
    pub fn refused(&self) -> u64 {
        self.admission.refused()
    }

    /// Tasks ended in this process, by state.
    pub fn ended(&self) -> &EndedCounts {
        &self.ended
    }

    /// Queue waits, stage durations and commits.
    pub fn times(&self) -> &TaskTimes {
        &self.times
    }

    /// The store's size and place.
    pub fn store_figures(&self) -> StoreFigures {
        self.store.figures()
    }

    /// The committer's counters.
    pub fn commit_figures(&self) -> &CommitFigures {
        self.committer.figures()
    }

    /// Tasks by state and priority, from the store (not on a reactor).
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.store.counts()
    }

    /// When a task will likely end: a queued one after the queue ahead of
    /// it and its own run, a running one a run after it started, at the
    /// mean time tasks took from start to end here (fetches included). None
    /// for a task that has ended, or before any task has ended to measure.
    pub fn estimated_completion(&self, view: &TaskView) -> Option<SystemTime> {
        let mean = Duration::from_micros(self.mean_job_micros.load(Ordering::Relaxed));
        if mean.is_zero() {
            return None;
        }
        match view.status {
            TaskState::Queued => {
                let rounds = self.waiting() / self.pool.workers() + 1;
                Some(SystemTime::now() + mean * u32::try_from(rounds).unwrap_or(u32::MAX))
            }
            TaskState::Processing => {
                let started = view.started_at.as_deref().and_then(super::task::parse_rfc3339)?;
                Some((started + mean).max(SystemTime::now()))
            }
            _ => None,
        }
    }

    /// Queues a task and waits until it is stored (the library's `delay`;
    /// never call it from a reactor).
    pub fn delay(self: &Arc<Self>, spec: TaskSpec) -> Result<Submitted, SubmitError> {
        self.enqueue_and_wait(spec, None)
    }

    /// Queues a task; `on_done` is called once with its final status.
    pub fn delay_with_callback(self: &Arc<Self>, spec: TaskSpec, on_done: OnDone) -> Result<Submitted, SubmitError> {
        self.enqueue_and_wait(spec, Some(on_done))
    }

    fn enqueue_and_wait(self: &Arc<Self>, spec: TaskSpec, on_done: Option<OnDone>) -> Result<Submitted, SubmitError> {
        let (tx, rx) = mpsc::channel();
        self.enqueue(spec, on_done, Box::new(move |r| drop(tx.send(r))));
        rx.recv().unwrap_or(Err(SubmitError::ShuttingDown))
    }

    /// Runs a task and waits for its end (the library's `submit`).
    pub fn submit(self: &Arc<Self>, spec: TaskSpec) -> Result<Ended, SubmitError> {
        let (tx, rx) = mpsc::channel();
        let on_done: OnDone = Box::new(move |ended| drop(tx.send(ended.clone())));
        match self.delay_with_callback(spec, on_done)? {
            // on_done runs once for a created task, so recv returns.
            Submitted::Created(view) => Ok(rx.recv().unwrap_or(Ended { view, result: None, version: 0 })),
            Submitted::Existing(view) => {
                Ok(self.status(view.task_id).ok().flatten().unwrap_or(Ended { view, result: None, version: 0 }))
            }
        }
    }

    /// Sends `subscriber` the journal lines task `id` keeps (see
    /// [`Journal`](work::Journal)) as the store gets them, then the task's end.
    pub fn follow_journal(&self, id: TaskId, subscriber: BatchSubscriber) {
        self.from_store.lines(id, 0, subscriber);
    }

    /// Whether task `id` has kept a journal line yet (reads one).
    pub fn has_journal(&self, id: TaskId) -> Result<bool, StoreError> {
        Ok(!self.store.items(id, Some(1))?.is_empty())
    }

    /// A task's status and result: from memory while this process runs
    /// it, else from the store (the library's `result`; not on a reactor).
    pub fn status(&self, id: TaskId) -> Result<Option<Ended>, StoreError> {
        if let Some(live) = lock(&self.live).get(&id) {
            return Ok(Some(Ended::of(&live.record)));
        }
        let ended_after = SystemTime::now().checked_sub(self.config.result_ttl).unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(record) = lock(&self.recent).get(id, ended_after) {
            return Ok(Some(Ended::of(&record)));
        }
        let Some(record) = self.store.get(id)? else { return Ok(None) };
        let ended = Ended::of(&record);
        if record.completed_at.is_some() {
            // Clients poll: the next read (and concurrent ones) share this
            // result instead of each reading a copy from the store.
            lock(&self.recent).add(record);
        }
        Ok(Some(ended))
    }

    /// Follows task `id` (not on a reactor): `watcher` hears its state now
    /// and every change after, the last once its end is stored. Returns
    /// `false` for a task that does not exist.
    pub fn watch(&self, id: TaskId, mut watcher: TaskWatcher) -> Result<bool, StoreError> {
        {
            let mut live = lock(&self.live);
            if let Some(l) = live.get_mut(&id) {
                let view = l.record.view();
                if watcher(TaskEvent { view: &view, version: l.record.version, last: false }) {
                    l.watchers.push(watcher);
                }
                return Ok(true);
            }
            if let Some(waiting) = lock(&self.ending).get_mut(&id) {
                waiting.push(watcher);
                return Ok(true);
            }
        }
        let Some(ended) = self.status(id)? else { return Ok(false) };
        let version = ended.version;
        let last = ended.view.status.is_final();
        match self.shared.get() {
            // Run by another instance: followed from the store until it ends.
            Some(_) if !last => {
                if watcher(TaskEvent { view: &ended.view, version, last: false }) {
                    self.from_store.task(id, version, watcher);
                }
            }
            _ => drop(watcher(TaskEvent { view: &ended.view, version, last: true })),
        }
        Ok(true)
    }

    /// The result cache's analysis under `key`, if the store keeps one
    /// (not on a reactor).
    pub fn cached(&self, key: &str) -> Result<Option<CachedPage>, StoreError> {
        self.store.cached(key)
    }

    /// Keeps a result-cache analysis in the store (with the next commit
    /// group), at most `max_bytes` of them there.
    pub fn keep_cached(&self, key: String, page: CachedPage, max_bytes: usize) {
        self.committer.send_only(Write::Cache { key, page, max_bytes });
    }

    /// Offers `follower` every stored task live now and each one that goes
    /// live from now on, until it stops.
    pub fn follow(&self, mut follower: TaskFollower) {
        let mut live = lock(&self.live);
        for l in live.values_mut().filter(|l| l.stored_version.is_some()) {
            if !watch::offer(&mut follower, &l.record, &mut l.watchers) {
                return;
            }
        }
        let mut followers = lock(&self.followers);
        followers.push(follower);
        self.following.store(followers.len(), Ordering::Release);
    }

    /// Stored tasks ended since `since`, per bucket of `bucket_ms`, and the
    /// most frequent error codes (not on a reactor).
    pub fn outcomes(&self, since: SystemTime, bucket_ms: i64) -> Result<Outcomes, StoreError> {
        self.store.outcomes(since, bucket_ms)
    }

    /// Stored tasks by `query`, newest first (not on a reactor); those
    /// running here with their progress as it is now.
    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<Ended>, StoreError> {
        let records = self.store.history(query)?;
        let live = lock(&self.live);
        Ok(records
            .iter()
            .map(|r| match live.get(&r.id) {
                Some(l) => Ended::of(&l.record),
                None => Ended::of(r),
            })
            .collect())
    }

    /// Queued and processing tasks, oldest first (not on a reactor).
    pub fn active(&self, limit: usize) -> Result<Vec<TaskView>, StoreError> {
        let mut active: Vec<TaskView> = {
            let live = lock(&self.live);
            let mut records: Vec<&TaskRecord> = live.values().map(|l| &l.record).collect();
            records.sort_by_key(|r| r.created_at);
            records.into_iter().take(limit).map(TaskRecord::view).collect()
        };
        if active.len() < limit {
            // Tasks of the store that this process does not hold (none, unless
            // another process shares the store).
            let mine: std::collections::HashSet<TaskId> = active.iter().map(|v| v.task_id).collect();
            let more = self.store.active(limit)?.into_iter().filter(|r| !mine.contains(&r.id));
            active.extend(more.take(limit - active.len()).map(|r| r.view()));
        }
        Ok(active)
    }

    /// Queues a task; `reply` hears once it is stored (or refused), on the
    /// committer thread, so it must only hand the answer on.
    pub fn enqueue(self: &Arc<Self>, spec: TaskSpec, on_done: Option<OnDone>, reply: Reply) {
        if self.stopping.load(Ordering::Acquire) {
            return reply(Err(SubmitError::ShuttingDown));
        }
        let held = spec.input_bytes();
        if let Err(e) = self.admission.admit(held, self.mean_job(), self.pool.workers()) {
            return reply(Err(e));
        }
        let mut record = TaskRecord::new(TaskId::random(), &spec, SystemTime::now());
        // A new record accepts `accepted`.
        let _ = apply(&mut record, Event::Accepted, SystemTime::now());
        let (id, priority, version, fingerprint) = (record.id, record.priority, record.version, record.fingerprint);
        let timeout = spec.options.timeout();
        let view = record.view();
        let batch_len = spec.batch_len();
        let spec = Arc::new(spec);
        if self.is_shared() {
            // Queued for whichever instance takes it (this one included):
            // nothing is held here, a batch's counts neither.
            let engine = Arc::clone(self);
            let then: super::commit::Then = Box::new(move |written| {
                engine.admission.release(held);
                reply(engine.submitted(written, view, fingerprint));
            });
            return self.committer.send(Write::Insert(Box::new(record), spec), then);
        }
        if let Some(total) = batch_len {
            self.open_batch(id, total, &[]);
        }
        let kept = self.keep_input(held).then(|| Arc::clone(&spec));
        let insert = Write::Insert(Box::new(record.clone()), spec);
        let engine = Arc::clone(self);
        let then: super::commit::Then = Box::new(move |written| match written {
            Ok(Written::Done) => {
                engine.spawn_run(id, priority, held);
                reply(Ok(Submitted::Created(view)));
            }
            other => {
                lock(&engine.live).remove(&id);
                lock(&engine.batches).remove(&id);
                engine.admission.release(held);
                reply(engine.submitted(other, view, fingerprint));
            }
        });
        // Held before the insert is sent, so that a fast status read finds
        // it (the id is known to nobody until the reply), and the insert
        // sent under the live lock: a timeout that fires at once must not
        // write the task's end before the task (measured: a 10 ms timeout
        // under load left a task queued in the store for good).
        self.go_live(record, Some(version), timeout, on_done, kept.map(|s| (s, held)), || {
            self.committer.send(insert, then);
        });
    }

    /// What a submission's insert came to.
    fn submitted(
        &self,
        written: Result<Written, StoreError>,
        view: TaskView,
        fingerprint: Option<[u8; 16]>,
    ) -> Result<Submitted, SubmitError> {
        match written {
            Ok(Written::Done) => Ok(Submitted::Created(view)),
            Ok(Written::Full) => Err(SubmitError::Full { retry_after: 1 }),
            Ok(Written::Existing(existing)) => match self.store.get(existing) {
                // The same key for another request is a client's mistake, not a retry.
                Ok(Some(record)) if record.fingerprint != fingerprint => Err(SubmitError::KeyReused { task: existing }),
                Ok(Some(record)) => Ok(Submitted::Existing(record.view())),
                Ok(None) => Err(SubmitError::Full { retry_after: 1 }),
                Err(e) => Err(SubmitError::StoreUnavailable { detail: e.0 }),
            },
            Err(e) => Err(SubmitError::StoreUnavailable { detail: e.0 }),
            Ok(_) => Err(SubmitError::StoreUnavailable { detail: "unexpected store answer".into() }),
        }
    }

    /// Runs a task for a synchronous request: `reply` gets the finished
    /// task if it ends within `sync_wait`, else (once stored) the task to
    /// follow (`202`), or the refusal.
    pub fn run_sync(self: &Arc<Self>, spec: TaskSpec, sync_wait: Duration, reply: Box<dyn FnOnce(SyncOutcome) + Send>) {
        let held = spec.input_bytes();
        if let Err(e) = self.admission.admit(held, self.mean_job(), self.pool.workers()) {
            return reply(SyncOutcome::Refused(e));
        }
        let slot = Arc::new(Mutex::new(Some(reply)));
        let done_slot = Arc::clone(&slot);
        let on_done: OnDone = Box::new(move |ended| {
            if let Some(reply) = lock(&done_slot).take() {
                reply(SyncOutcome::Finished(ended.clone()));
            }
        });
        let mut record = TaskRecord::new(TaskId::random(), &spec, SystemTime::now());
        let _ = apply(&mut record, Event::Accepted, SystemTime::now());
        let (id, priority) = (record.id, record.priority);
        let timeout = spec.options.timeout();
        // A sync request's input is always in memory: it is stored only if handed over.
        self.go_live(record, None, timeout, Some(on_done), Some((Arc::new(spec), 0)), || {});
        self.add_sync_wait(SyncWait { at: Instant::now() + sync_wait, id, slot });
        self.spawn_run(id, priority, held);
    }

    /// Cancels a queued or running task (not on a reactor: it waits for the store).
    pub fn cancel(self: &Arc<Self>, id: TaskId) -> Result<Ended, CancelError> {
        let (tx, rx) = mpsc::channel();
        if let Some(record) = self.end(id, Event::Cancelled, Some(Box::new(move |r| drop(tx.send(r))))) {
            rx.recv().unwrap_or(Ok(())).map_err(CancelError::Store)?;
            return Ok(Ended::of(&record));
        }
        // Not run here: change it in the store, compare-and-set, so that a
        // result stored meanwhile is never overwritten.
        for _ in 0..3 {
            let Some(mut record) = self.store.get(id).map_err(CancelError::Store)? else {
                return Err(CancelError::NotFound);
            };
            let expected = record.version;
            if apply(&mut record, Event::Cancelled, SystemTime::now()).is_err() {
                return Err(CancelError::Finished(record.state));
            }
            let (tx, rx) = mpsc::channel();
            let put = Write::Put { record: Box::new(record.clone()), expected };
            self.committer.send(put, Box::new(move |r| drop(tx.send(r))));
            match rx.recv().unwrap_or(Ok(Written::Conflict)).map_err(CancelError::Store)? {
                Written::Conflict => continue,
                _ => {
                    // Running on another instance: it stops there.
                    if let Some(shared) = self.shared.get() {
                        if let Err(e) = shared.queue.announce_cancel(id) {
                            crate::warn!("task {id}: cancelled, but its instance was not told: {e}");
                        }
                    }
                    self.ended.count(record.state, record.priority);
                    if record.callback_pending {
                        self.deliver_callback(&record);
                    }
                    return Ok(Ended::of(&record));
                }
            }
        }
        Err(CancelError::Store(StoreError("the task kept changing while being cancelled".into())))
    }

    /// Stops starting stored tasks: those not yet started stay queued in
    /// the store for the next start. Refuses new submissions.
    pub fn stop_taking(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(shared) = self.shared.get() {
            shared.stop();
        }
    }

    /// Stops taking tasks, waits up to `timeout` for running ones to end,
    /// and makes sure every write is committed. Says what was left.
    pub fn shutdown(&self, timeout: Duration) -> Stopped {
        self.stop_taking();
        let until = Instant::now() + timeout;
        let left = loop {
            let left = {
                let live = lock(&self.live);
                let running = live.values().filter(|l| l.record.state == TaskState::Processing).count();
                Stopped { queued: live.len() - running, running }
            };
            if left.running == 0 || Instant::now() >= until {
                break left;
            }
            // Shutdown only: polled, since tasks end on many threads.
            std::thread::sleep(Duration::from_millis(10));
        };
        self.committer.flush();
        left
    }

    /// Counts a submission refused before it reached the engine (intake full).
    pub fn count_refusal(&self) {
        self.admission.count_refusal();
    }

    /// Runs `job` (a store read for an API request) on a store reader thread.
    pub fn spawn_read(&self, job: crate::pool::Job) {
        self.readers.spawn(Priority::Normal, job);
    }

    fn mean_job(&self) -> Duration {
        Duration::from_micros(self.mean_job_micros.load(Ordering::Relaxed))
    }

    fn record_duration(&self, took: Duration) {
        let micros = work::micros(took);
        // EWMA with weight 1/8; a lost update under contention only delays the average.
        let old = self.mean_job_micros.load(Ordering::Relaxed);
        let new = if old == 0 { micros } else { old - old / 8 + micros / 8 };
        self.mean_job_micros.store(new, Ordering::Relaxed);
    }

    /// Takes `bytes` of the in-memory input budget, if there is room.
    fn keep_input(&self, bytes: usize) -> bool {
        let before = self.inputs_in_memory.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > INPUTS_IN_MEMORY {
            self.inputs_in_memory.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Holds a task in memory with its deadline, and its input with the
    /// bytes of the budget it takes. `register` runs under the live lock
    /// once the task is held: a write sent there (the task's insert) is
    /// ahead of any its end can send, however soon that comes.
    fn go_live(
        &self,
        record: TaskRecord,
        stored_version: Option<u64>,
        timeout: Option<Duration>,
        on_done: Option<OnDone>,
        spec: Option<(Arc<TaskSpec>, usize)>,
        register: impl FnOnce(),
    ) {
        let timeout = timeout.unwrap_or(self.config.default_timeout).min(self.config.max_timeout);
        let deadline = Instant::now() + timeout;
        let id = record.id;
        let cancel = Arc::new(AtomicBool::new(false));
        let (spec, spec_bytes) = spec.map_or((None, 0), |(s, b)| (Some(s), b));
        {
            let mut live = lock(&self.live);
            let mut watchers = Vec::new();
            let claim = None;
            if stored_version.is_some() && self.following.load(Ordering::Acquire) > 0 {
                let mut followers = lock(&self.followers);
                followers.retain_mut(|f| watch::offer(f, &record, &mut watchers));
                self.following.store(followers.len(), Ordering::Release);
            }
            let entry = Live { record, stored_version, cancel, deadline, on_done, spec, spec_bytes, watchers, claim };
            live.insert(id, entry);
            register();
        }
        self.add_deadline(deadline, id);
    }

    /// Queues a task's start on the pool; `held` is the bytes of input it
    /// holds of admission until then.
    fn spawn_run(self: &Arc<Self>, id: TaskId, priority: Priority, held: usize) {
        let engine = Arc::clone(self);
        let queued_at = Instant::now();
        self.pool.spawn(priority, Box::new(move || engine.run(id, priority, held, queued_at)));
    }

    /// Starts a task on a worker: `started`, its input, its handler's work.
    fn run(self: &Arc<Self>, id: TaskId, priority: Priority, held: usize, queued_at: Instant) {
        let started = {
            let mut live = lock(&self.live);
            let stopping = self.stopping.load(Ordering::Acquire);
            match live.get_mut(&id) {
                // Stored and shutting down: it stays queued for the next start.
                Some(l) if stopping && l.stored_version.is_some() => None,
                Some(l) => match apply(&mut l.record, Event::Started, SystemTime::now()) {
                    Ok(_) => {
                        watch::notify(&mut l.watchers, &l.record, false);
                        // A stored task's kept input is no longer needed in
                        // memory once taken; a sync request keeps its own
                        // for a hand-over.
                        let spec = match l.stored_version {
                            Some(expected) => {
                                let record = Box::new(l.record.clone());
                                self.committer.send_only(Write::Put { record, expected });
                                l.stored_version = Some(l.record.version);
                                self.inputs_in_memory.fetch_sub(std::mem::take(&mut l.spec_bytes), Ordering::AcqRel);
                                l.spec.take()
                            }
                            None => l.spec.clone(),
                        };
                        Some((Arc::clone(&l.cancel), l.deadline, spec))
                    }
                    Err(_) => None,
                },
                // Ended while queued.
                None => None,
            }
        };
        // Started or not, it waits no more.
        self.admission.release(held);
        let Some((cancel, deadline, spec)) = started else { return };
        self.times.waited(queued_at.elapsed());
        let spec = match spec {
            // Unshared once its write is done, so taken without a copy.
            Some(spec) => Ok(Some(Arc::try_unwrap(spec).unwrap_or_else(|shared| TaskSpec::clone(&shared)))),
            None => self.store.spec(id),
        };
        let spec = match spec {
            Ok(Some(spec)) => spec,
            Ok(None) => return self.finish(id, Err(TaskError::new(500, "input-lost", "the task's input is gone"))),
            Err(e) => return self.finish(id, Err(TaskError::new(503, "store-unavailable", e.0))),
        };
        let handler = match self.handlers.get(&spec.kind) {
            Ok(handler) => Arc::clone(handler),
            Err(e) => return self.finish(id, Err(e)),
        };
        let cx = JobContext::new(self, id, cancel, deadline, true);
        match spec.input {
            TaskInput::One(payload) => {
                let finish: work::Finish = Box::new(move |engine, outcome| engine.finish(id, outcome));
                cx.start(self, &handler, payload, priority, finish);
            }
            TaskInput::Batch(items) => self.run_batch(cx, handler, items, priority),
        }
    }

    /// Records progress of a running task (in memory: not written).
    fn progress(&self, id: TaskId, percent: u8, stage: String, items: Option<super::task::ItemCounts>) {
        if let Some(live) = lock(&self.live).get_mut(&id) {
            if apply(&mut live.record, Event::Progress { percent, stage, items }, SystemTime::now()).is_ok() {
                watch::notify(&mut live.watchers, &live.record, false);
            }
        }
    }

    /// Ends a task with the outcome of its work.
    fn finish(self: &Arc<Self>, id: TaskId, outcome: Outcome) {
        let outcome = outcome.map(|json| Arc::<[u8]>::from(json.get().as_bytes()));
        self.end(id, Event::outcome(outcome), None);
    }

    /// Ends a live task with `event` (unless it has ended already): writes
    /// it, then tells whoever waits and delivers its callback. `committed`
    /// hears when the write is done. Returns the final record.
    fn end(self: &Arc<Self>, id: TaskId, event: Event, committed: Option<Committed>) -> Option<TaskRecord> {
        let mut live = lock(&self.live);
        let mut entry = live.remove(&id)?;
        if apply(&mut entry.record, event, SystemTime::now()).is_err() {
            // Only a `finished` for a task not started could be refused; keep it.
            live.insert(id, entry);
            return None;
        }
        // Stops the work at its next check and any I/O it waits on.
        entry.cancel.store(true, Ordering::Release);
        self.close_batch(id);
        self.inputs_in_memory.fetch_sub(entry.spec_bytes, Ordering::AcqRel);
        let Live { record, stored_version, on_done, mut watchers, claim, .. } = entry;
        // How long tasks take from start to end (fetches included), for
        // estimates and Retry-After; a batch is many tasks' work, left out.
        if let (Some(started), Some(ended), None) = (record.started_at, record.completed_at, record.items) {
            self.record_duration(ended.duration_since(started).unwrap_or_default());
        }
        self.ended.count(record.state, record.priority);
        if let Some(ended) = record.completed_at {
            self.times.ended(ended.duration_since(record.created_at).unwrap_or_default());
        }
        match stored_version {
            Some(expected) => {
                // Told once the end is stored; meanwhile new watchers join them.
                lock(&self.ending).insert(id, std::mem::take(&mut watchers));
                let engine = Arc::clone(self);
                let final_record = record.clone();
                let put = Write::Put { record: Box::new(record.clone()), expected };
                // Sent under the live lock: a hand-over's insert is never overtaken.
                self.committer.send(
                    put,
                    Box::new(move |written| {
                        match &written {
                            Ok(Written::Conflict) => {
                                crate::warn!("task {id}: its end was not stored (changed elsewhere)")
                            }
                            Err(e) => crate::error!("task {id}: its end was not stored: {e}"),
                            Ok(_) => {}
                        }
                        let stored = matches!(written, Ok(Written::Done));
                        if stored {
                            lock(&engine.recent).add(final_record.clone());
                        }
                        // Its end is stored (or another's is): the claim goes.
                        // Not stored: the task runs again once the store answers.
                        if let (Some(claim), Some(shared)) = (claim, engine.shared.get()) {
                            match written {
                                Ok(Written::Done | Written::Conflict) => shared.done(claim),
                                _ => shared.retry(claim),
                            }
                        }
                        if let Some(mut watchers) = lock(&engine.ending).remove(&id) {
                            watch::notify(&mut watchers, &final_record, true);
                        }
                        engine.after_end(&final_record, on_done, stored);
                        // After the batch's last line: those were sent first.
                        engine.end_batch(id);
                        if let Some(committed) = committed {
                            committed(written.map(drop));
                        }
                    }),
                );
                drop(live);
            }
            None => {
                drop(live);
                watch::notify(&mut watchers, &record, true);
                self.after_end(&record, on_done, false);
                self.end_batch(id);
                if let Some(committed) = committed {
                    committed(Ok(()));
                }
            }
        }
        Some(record)
    }

    /// Tells whoever waits on an ended task, and delivers its callback if
    /// it was stored (so the outbox can be cleared).
    fn after_end(&self, record: &TaskRecord, on_done: Option<OnDone>, stored: bool) {
        if let Some(on_done) = on_done {
            on_done(&Ended::of(record));
        }
        if stored && record.callback_pending {
            self.deliver_callback(record);
        }
    }

    fn deliver_callback(&self, record: &TaskRecord) {
        let (Some(sender), Some(url)) = (self.callbacks.get(), &record.callback_url) else { return };
        let committer = self.committer.clone();
        let id = record.id;
        sender(id, url, Ended::of(record).body(), Box::new(move || committer.send_only(Write::CallbackDone(id))));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Release);
        self.wake_timer();
    }
}
