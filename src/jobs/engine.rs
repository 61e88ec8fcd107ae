//! The task engine: admission, the life of a task on the pool, timeouts,
//! cancellation, batches, the sync-wait hand-over and the TTL sweep.
//!
//! It runs [`Work`] and does not care what the work is: the API gives it
//! page analyses, tests give it sleeps. A small timer thread enforces
//! deadlines (a task past its timeout is reported `timed_out` whatever its
//! job does; the job sees its cancel token at its next checkpoint), hands
//! slow sync requests over as `202`, and sweeps finished tasks.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde_json::value::RawValue;

use super::store::{TaskRecord, TaskStore};
use super::task::{ItemCounts, Progress, TaskError, TaskId, TaskState, TaskView};
use crate::metrics::tasks::TaskTimes;
use crate::pool::{Pool, PoolStats, Priority};

/// Request bodies waiting to be parsed; more and intake answers 503.
const MAX_INTAKE: usize = 1024;
/// How often finished tasks are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// CPU work: runs on a pool worker, reports progress and checks for
/// cancellation through the [`JobContext`], and returns its result as JSON.
pub type CpuWork = Box<dyn FnOnce(&JobContext) -> Result<Box<RawValue>, TaskError> + Send>;

/// Work that waits for I/O first: called on a worker with a [`Resume`], it
/// starts the I/O and returns at once, so no worker waits on a socket. The
/// I/O's completion hands the [`Resume`] the CPU work that follows, or an error.
pub type IoWork = Box<dyn FnOnce(Resume) + Send>;

/// What a task does.
pub enum Work {
    /// CPU work only.
    Cpu(CpuWork),
    /// I/O, then CPU work.
    Io(IoWork),
}

impl Work {
    /// CPU work from a closure.
    pub fn cpu(f: impl FnOnce(&JobContext) -> Result<Box<RawValue>, TaskError> + Send + 'static) -> Work {
        Work::Cpu(Box::new(f))
    }
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Work::Cpu(_) => "Work::Cpu",
            Work::Io(_) => "Work::Io",
        })
    }
}

/// Where a task's outcome goes: the task's record, or its batch.
type Finish = Box<dyn FnOnce(&Arc<Engine>, Result<Box<RawValue>, TaskError>) + Send>;

/// A task (or batch item) waiting on I/O, without a worker. Hand it the CPU
/// work that follows with [`then`](Resume::then), or end it with
/// [`fail`](Resume::fail); dropped unused, it ends the task with an error.
pub struct Resume {
    engine: Arc<Engine>,
    id: TaskId,
    cancel: Arc<AtomicBool>,
    deadline: Instant,
    priority: Priority,
    /// Whether progress is the task's own (not a batch item's).
    reports: bool,
    began: Instant,
    finish: Option<Finish>,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume").field("id", &self.id).field("deadline", &self.deadline).finish()
    }
}

impl Resume {
    /// The task's deadline: I/O should give up by then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The flag set when the task is cancelled or times out, for the I/O to watch.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// Records the time since the I/O began as stage `stage` (`fetching`).
    pub fn record_stage(&self, stage: &'static str) {
        self.engine.times.stage(stage, self.began.elapsed());
    }

    /// A handle that records progress from another thread (the I/O's).
    pub fn progress(&self) -> impl Fn(u8, String) + Send + 'static {
        let store = self.reports.then(|| Arc::clone(&self.engine.store));
        let id = self.id;
        move |percent, stage| {
            if let Some(store) = &store {
                set_progress(store.as_ref(), id, percent, stage);
            }
        }
    }

    /// Runs `work` on the pool, at the task's priority.
    pub fn then(mut self, work: CpuWork) {
        let Some(finish) = self.finish.take() else { return };
        let engine = Arc::clone(&self.engine);
        let (id, cancel, deadline, reports) = (self.id, Arc::clone(&self.cancel), self.deadline, self.reports);
        // Already admitted: counted as waiting, never refused.
        engine.waiting.fetch_add(1, Ordering::AcqRel);
        let pool_engine = Arc::clone(&engine);
        engine.pool.spawn(
            self.priority,
            Box::new(move || {
                let engine = pool_engine;
                engine.waiting.fetch_sub(1, Ordering::AcqRel);
                let store = reports.then(|| Arc::clone(&engine.store));
                let cx = JobContext::new(id, cancel, deadline, store, Arc::clone(&engine.times));
                let outcome = cx.check().and_then(|()| {
                    catch_unwind(AssertUnwindSafe(|| work(&cx)))
                        .unwrap_or_else(|_| Err(TaskError::new(500, "internal", "the task's job failed")))
                });
                cx.end_stage("done");
                finish(&engine, outcome);
            }),
        );
    }

    /// Ends the task with `error`.
    pub fn fail(mut self, error: TaskError) {
        if let Some(finish) = self.finish.take() {
            finish(&self.engine, Err(error));
        }
    }
}

impl Drop for Resume {
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish(&self.engine, Err(TaskError::new(500, "internal", "the task's I/O ended without an outcome")));
        }
    }
}

/// Called once when a task ends, with its final status.
pub type OnDone = Box<dyn FnOnce(TaskView) + Send>;

/// Receives a batch's result lines as items finish; returns false to stop.
pub type BatchSubscriber = Box<dyn FnMut(BatchEvent<'_>) -> bool + Send>;

/// What a batch subscriber is told.
#[derive(Debug)]
pub enum BatchEvent<'a> {
    /// One item's result, an NDJSON line.
    Line(&'a [u8]),
    /// The batch has ended.
    End,
}

/// A task as the engine queues it.
struct Spec {
    kind: &'static str,
    priority: Priority,
    timeout: Option<Duration>,
    idempotency_key: Option<String>,
    body: Body,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads.
    pub workers: usize,
    /// Most tasks (and batch items) waiting for a worker; more is refused.
    pub queue_capacity: usize,
    /// Timeout of a task that names none.
    pub default_timeout: Duration,
    /// Longest timeout a task may ask for.
    pub max_timeout: Duration,
    /// How long finished tasks are kept.
    pub result_ttl: Duration,
    /// Most finished tasks kept; the oldest go first.
    pub max_finished: usize,
}

/// A task to run.
pub struct TaskSpec {
    /// `analyze` or `bulk`.
    pub kind: &'static str,
    /// Its priority.
    pub priority: Priority,
    /// Its timeout; `None` for the default.
    pub timeout: Option<Duration>,
    /// The client's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The work.
    pub work: Work,
}

impl std::fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpec").field("kind", &self.kind).field("priority", &self.priority).finish()
    }
}

/// The outcome of submitting.
#[derive(Debug)]
pub enum Submitted {
    /// A new task.
    Created(TaskView),
    /// The task already stored under the same idempotency key.
    Existing(TaskView),
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is at `--queue-capacity`; retry after the given seconds.
    Full {
        /// Suggested wait in seconds.
        retry_after: u64,
    },
}

/// Why a cancellation did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelError {
    /// No such task.
    NotFound,
    /// The task had already ended, in this state.
    Finished(TaskState),
}

/// How a synchronous request ends.
#[derive(Debug)]
pub enum SyncOutcome {
    /// The task finished within the sync wait.
    Finished(TaskView),
    /// It did not: the client gets `202` and this task to follow.
    Accepted(TaskView),
}

/// Handed to running work.
#[derive(Debug)]
pub struct JobContext {
    id: TaskId,
    cancel: Arc<AtomicBool>,
    deadline: Instant,
    /// Where progress goes; `None` for a batch item, whose batch reports
    /// items done instead.
    store: Option<Arc<dyn TaskStore>>,
    times: Arc<TaskTimes>,
    /// The stage under way and when it began.
    current: Cell<(&'static str, Instant)>,
}

impl JobContext {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Records progress, and stops the work (with the error to return) if
    /// the task was cancelled or ran out of time. Call between stages.
    pub fn stage(&self, percent: u8, stage: &'static str) -> Result<(), TaskError> {
        self.end_stage(stage);
        self.check()?;
        if let Some(store) = &self.store {
            set_progress(store.as_ref(), self.id, percent, stage.to_string());
        }
        Ok(())
    }

    fn new(
        id: TaskId,
        cancel: Arc<AtomicBool>,
        deadline: Instant,
        store: Option<Arc<dyn TaskStore>>,
        times: Arc<TaskTimes>,
    ) -> Self {
        JobContext { id, cancel, deadline, store, times, current: Cell::new(("started", Instant::now())) }
    }

    /// Times the stage under way and starts `next`.
    fn end_stage(&self, next: &'static str) {
        let (stage, began) = self.current.replace((next, Instant::now()));
        self.times.stage(stage, began.elapsed());
    }

    /// Whether to stop now; cheap enough for inner loops.
    pub fn check(&self) -> Result<(), TaskError> {
        if self.cancel.load(Ordering::Acquire) {
            return Err(TaskError::new(499, "cancelled", "the task was cancelled"));
        }
        if Instant::now() >= self.deadline {
            return Err(timed_out());
        }
        Ok(())
    }
}

/// Records a running task's progress (99 % at most: 100 means done).
fn set_progress(store: &dyn TaskStore, id: TaskId, percent: u8, stage: String) {
    store.update(id, &mut |r| {
        if r.state == TaskState::Processing {
            r.progress = Progress { percent: percent.min(99), stage: stage.clone() };
        }
    });
}

fn timed_out() -> TaskError {
    TaskError::new(504, "timed-out", "the task ran past its timeout")
}

/// What a queued task will run.
enum Body {
    /// One piece of work.
    Work(Work),
    /// A batch: its lines, and the items to spread over the pool.
    Batch(Arc<Mutex<Batch>>, Vec<Work>),
}

impl Body {
    /// Queue slots it holds beyond the one its own job frees when it starts.
    fn extra_slots(&self) -> usize {
        match self {
            Body::Work(_) => 0,
            Body::Batch(_, items) => items.len().saturating_sub(1),
        }
    }
}

/// A queued or running task's controls.
struct Live {
    cancel: Arc<AtomicBool>,
    on_done: Option<OnDone>,
}

/// A batch's result lines and who is listening.
#[derive(Default)]
struct Batch {
    lines: Vec<u8>,
    done: usize,
    failed: usize,
    total: usize,
    ended: bool,
    subscribers: Vec<BatchSubscriber>,
}

/// Receives the outcome of a synchronous request, once.
type SyncReply = Box<dyn FnOnce(SyncOutcome) + Send>;

/// A synchronous request waiting: its hand-over time, its task, and the
/// reply slot that whichever comes first (the result or the hand-over) takes.
/// Ordered by hand-over time alone, so the timer pops only what is due
/// instead of scanning every request in flight each tick.
struct SyncWait {
    at: Instant,
    id: TaskId,
    slot: Arc<Mutex<Option<SyncReply>>>,
}

impl PartialEq for SyncWait {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.id) == (other.at, other.id)
    }
}

impl Eq for SyncWait {}

impl PartialOrd for SyncWait {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SyncWait {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.id).cmp(&(other.at, other.id))
    }
}

/// The engine.
pub struct Engine {
    pool: Pool,
    /// One thread that parses request bodies, so that submitting never
    /// waits for a busy worker and a reactor never parses a large body.
    intake: Pool,
    intake_waiting: Arc<AtomicUsize>,
    store: Arc<dyn TaskStore>,
    config: EngineConfig,
    /// Tasks and batch items accepted but not yet taken by a worker.
    waiting: AtomicUsize,
    refused: AtomicU64,
    /// Mean job run time in microseconds (exponentially weighted).
    mean_job_micros: AtomicU64,
    live: Mutex<HashMap<TaskId, Live>>,
    deadlines: Mutex<BinaryHeap<Reverse<(Instant, TaskId)>>>,
    sync_waits: Mutex<BinaryHeap<Reverse<SyncWait>>>,
    batches: Mutex<HashMap<TaskId, Arc<Mutex<Batch>>>>,
    times: Arc<TaskTimes>,
    stopping: AtomicBool,
    /// The timer thread, woken when a deadline earlier than all it knows arrives.
    timer: OnceLock<std::thread::Thread>,
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
    /// Starts the pool and the timer thread.
    pub fn start(config: EngineConfig, store: Arc<dyn TaskStore>) -> std::io::Result<Arc<Engine>> {
        let engine = Arc::new(Engine {
            pool: Pool::new("pagelens-worker", config.workers)?,
            intake: Pool::new("pagelens-intake", 1)?,
            intake_waiting: Arc::new(AtomicUsize::new(0)),
            store,
            config,
            waiting: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            mean_job_micros: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            deadlines: Mutex::new(BinaryHeap::new()),
            sync_waits: Mutex::new(BinaryHeap::new()),
            batches: Mutex::new(HashMap::new()),
            times: Arc::new(TaskTimes::default()),
            stopping: AtomicBool::new(false),
            timer: OnceLock::new(),
        });
        let weak = Arc::downgrade(&engine);
        let handle = std::thread::Builder::new().name("pagelens-timer".into()).spawn(move || timer(weak))?;
        // Set once, here, before any task exists: `set` cannot find it taken.
        let _ = engine.timer.set(handle.thread().clone());
        Ok(engine)
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
        self.waiting.load(Ordering::Relaxed)
    }

    /// A cheap early check, before any work on a request: refused (and
    /// counted) when the queue is already full.
    pub fn has_room(&self) -> Result<(), SubmitError> {
        if self.waiting() < self.config.queue_capacity {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(SubmitError::Full { retry_after: 1 })
    }

    /// Submissions refused because the queue was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    /// Queue waits and stage durations.
    pub fn times(&self) -> &TaskTimes {
        &self.times
    }

    /// When a task submitted now would likely finish, from the queue depth
    /// and recent job durations.
    pub fn estimated_completion(&self) -> SystemTime {
        let mean = Duration::from_micros(self.mean_job_micros.load(Ordering::Relaxed).max(1_000));
        let rounds = self.waiting() / self.pool.workers() + 1;
        SystemTime::now() + mean * rounds as u32
    }

    /// Queues a task and returns at once (the library's `delay`).
    pub fn delay(self: &Arc<Self>, spec: TaskSpec) -> Result<Submitted, SubmitError> {
        self.enqueue(spec, None)
    }

    /// Queues a task; `on_done` is called once with its final status.
    pub fn delay_with_callback(self: &Arc<Self>, spec: TaskSpec, on_done: OnDone) -> Result<Submitted, SubmitError> {
        self.enqueue(spec, Some(on_done))
    }

    /// Runs a task and waits for its end (the library's `submit`; never
    /// call it from a reactor or pool thread).
    pub fn submit(self: &Arc<Self>, spec: TaskSpec) -> Result<TaskView, SubmitError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let on_done: OnDone = Box::new(move |view| {
            let _ = tx.send(view);
        });
        match self.enqueue(spec, Some(on_done))? {
            Submitted::Existing(view) => Ok(view),
            // on_done runs exactly once for a created task, so recv returns.
            Submitted::Created(view) => Ok(rx.recv().unwrap_or(view)),
        }
    }

    /// The status of a task (the library's `result`).
    pub fn result(&self, id: TaskId) -> Option<TaskView> {
        self.store.get(id)
    }

    /// Runs a task for a synchronous request: `reply` gets the finished
    /// task if it ends within `sync_wait`, else the task to follow (`202`).
    pub fn run_sync(
        self: &Arc<Self>,
        spec: TaskSpec,
        sync_wait: Duration,
        reply: SyncReply,
    ) -> Result<(), SubmitError> {
        let slot = Arc::new(Mutex::new(Some(reply)));
        let done_slot = Arc::clone(&slot);
        let store = Arc::clone(&self.store);
        let on_done: OnDone = Box::new(move |view| {
            if let Some(reply) = lock(&done_slot).take() {
                // Answered in time: the task was never announced, so it need not be kept.
                store.remove(view.task_id);
                reply(SyncOutcome::Finished(view));
            }
        });
        let id = match self.enqueue(spec, Some(on_done))? {
            Submitted::Created(view) | Submitted::Existing(view) => view.task_id,
        };
        let at = Instant::now() + sync_wait;
        let earliest = {
            let mut waits = lock(&self.sync_waits);
            waits.push(Reverse(SyncWait { at, id, slot }));
            waits.peek().is_some_and(|Reverse(w)| w.at == at)
        };
        if earliest {
            self.wake_timer();
        }
        Ok(())
    }

    /// Queues a batch: `items` run concurrently on the pool, each adding one
    /// NDJSON line to the batch's results; `on_done` hears of its end.
    pub fn submit_batch(
        self: &Arc<Self>,
        priority: Priority,
        timeout: Option<Duration>,
        idempotency_key: Option<String>,
        items: Vec<Work>,
        on_done: Option<OnDone>,
    ) -> Result<Submitted, SubmitError> {
        let total = items.len();
        let batch = Arc::new(Mutex::new(Batch { total, ..Batch::default() }));
        let spec =
            Spec { kind: "bulk", priority, timeout, idempotency_key, body: Body::Batch(Arc::clone(&batch), items) };
        let submitted = self.enqueue_body(spec, on_done)?;
        if let Submitted::Created(view) = &submitted {
            self.store.update(view.task_id, &mut |r| r.items = Some(ItemCounts { done: 0, failed: 0, total }));
            lock(&self.batches).insert(view.task_id, batch);
        }
        Ok(submitted)
    }

    /// Whether `id` is a batch the engine still holds results for.
    pub fn has_batch(&self, id: TaskId) -> bool {
        lock(&self.batches).contains_key(&id)
    }

    /// Feeds a batch's result lines to `subscriber`: those so far at once,
    /// the rest as items finish, then [`BatchEvent::End`]. Both happen under
    /// the batch's lock, so no line is missed or reordered. False for an
    /// unknown batch.
    pub fn batch_results(&self, id: TaskId, mut subscriber: BatchSubscriber) -> bool {
        let Some(batch) = lock(&self.batches).get(&id).cloned() else { return false };
        let mut batch = lock(&batch);
        let keep = batch.lines.is_empty() || subscriber(BatchEvent::Line(&batch.lines));
        if batch.ended {
            subscriber(BatchEvent::End);
        } else if keep {
            batch.subscribers.push(subscriber);
        }
        true
    }

    /// Runs request intake (parsing and checking a body before a task
    /// exists) on the intake thread. Refused past `MAX_INTAKE` waiting.
    pub fn spawn_intake(&self, job: crate::pool::Job) -> Result<(), SubmitError> {
        if self.intake_waiting.fetch_add(1, Ordering::AcqRel) >= MAX_INTAKE {
            self.intake_waiting.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::Full { retry_after: 1 });
        }
        let waiting = Arc::clone(&self.intake_waiting);
        self.intake.spawn(
            Priority::Normal,
            Box::new(move || {
                waiting.fetch_sub(1, Ordering::AcqRel);
                job();
            }),
        );
        Ok(())
    }

    /// Cancels a queued or running task.
    pub fn cancel(&self, id: TaskId) -> Result<TaskView, CancelError> {
        let live = lock(&self.live).remove(&id);
        let Some(live) = live else {
            return match self.store.get(id) {
                Some(view) => Err(CancelError::Finished(view.status)),
                None => Err(CancelError::NotFound),
            };
        };
        live.cancel.store(true, Ordering::Release);
        self.store.update(id, &mut |r| {
            if !r.state.is_final() {
                r.state = TaskState::Cancelled;
                r.error = Some(TaskError::new(499, "cancelled", "the task was cancelled"));
            }
        });
        self.end_batch(id);
        let view = self.store.get(id).ok_or(CancelError::NotFound)?;
        if let Some(on_done) = live.on_done {
            on_done(view.clone());
        }
        Ok(view)
    }

    fn enqueue(self: &Arc<Self>, spec: TaskSpec, on_done: Option<OnDone>) -> Result<Submitted, SubmitError> {
        let TaskSpec { kind, priority, timeout, idempotency_key, work } = spec;
        self.enqueue_body(Spec { kind, priority, timeout, idempotency_key, body: Body::Work(work) }, on_done)
    }

    fn enqueue_body(self: &Arc<Self>, spec: Spec, on_done: Option<OnDone>) -> Result<Submitted, SubmitError> {
        // A batch's items wait in the queue too, so they count against its capacity.
        let slots = 1 + spec.body.extra_slots();
        if self.waiting.fetch_add(slots, Ordering::AcqRel) + slots > self.config.queue_capacity {
            self.waiting.fetch_sub(slots, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            let mean = Duration::from_micros(self.mean_job_micros.load(Ordering::Relaxed));
            let drain = mean * (self.config.queue_capacity / self.pool.workers()) as u32;
            return Err(SubmitError::Full { retry_after: drain.as_secs().clamp(1, 60) });
        }
        let id = TaskId::random();
        let record = TaskRecord::new(id, spec.kind, spec.priority, spec.idempotency_key);
        if let Err(existing) = self.store.insert(record) {
            self.waiting.fetch_sub(slots, Ordering::AcqRel);
            return match self.store.get(existing) {
                Some(view) => Ok(Submitted::Existing(view)),
                // Swept between the two calls: treat as new next time.
                None => Err(SubmitError::Full { retry_after: 1 }),
            };
        }
        let timeout = spec.timeout.unwrap_or(self.config.default_timeout).min(self.config.max_timeout);
        let deadline = Instant::now() + timeout;
        let cancel = Arc::new(AtomicBool::new(false));
        lock(&self.live).insert(id, Live { cancel: Arc::clone(&cancel), on_done });
        let earliest = {
            let mut deadlines = lock(&self.deadlines);
            deadlines.push(Reverse((deadline, id)));
            deadlines.peek().is_some_and(|Reverse((at, _))| *at == deadline)
        };
        if earliest {
            self.wake_timer();
        }
        let view = self.store.get(id).ok_or(SubmitError::Full { retry_after: 1 })?;
        let engine = Arc::clone(self);
        let (body, priority) = (spec.body, spec.priority);
        let queued_at = Instant::now();
        self.pool.spawn(
            priority,
            Box::new(move || {
                engine.waiting.fetch_sub(1, Ordering::AcqRel);
                engine.run(id, cancel, deadline, queued_at, priority, body);
            }),
        );
        Ok(Submitted::Created(view))
    }

    /// Runs one task on a worker.
    fn run(
        self: &Arc<Self>,
        id: TaskId,
        cancel: Arc<AtomicBool>,
        deadline: Instant,
        queued_at: Instant,
        priority: Priority,
        body: Body,
    ) {
        let started = self.store.update(id, &mut |r| {
            if r.state == TaskState::Queued {
                r.state = TaskState::Processing;
                r.started_at = Some(SystemTime::now());
                r.progress = Progress { percent: 1, stage: "started".into() };
            }
        });
        if started != Some(TaskState::Processing) {
            // Cancelled or timed out while queued: free the slots its items held.
            self.waiting.fetch_sub(body.extra_slots(), Ordering::AcqRel);
            return;
        }
        self.times.waited(queued_at.elapsed());
        let cx = JobContext::new(id, cancel, deadline, Some(Arc::clone(&self.store)), Arc::clone(&self.times));
        match body {
            Body::Work(Work::Io(start)) => {
                let resume =
                    self.resume(cx, priority, true, Box::new(move |engine, outcome| engine.finish(id, outcome)));
                // A panic drops the Resume, which ends the task with an error.
                let _ = catch_unwind(AssertUnwindSafe(|| start(resume)));
            }
            Body::Work(Work::Cpu(work)) => {
                let began = Instant::now();
                let outcome = catch_unwind(AssertUnwindSafe(|| work(&cx)))
                    .unwrap_or_else(|_| Err(TaskError::new(500, "internal", "the task's job failed")));
                cx.end_stage("done");
                self.record_duration(began.elapsed());
                self.finish(id, outcome);
            }
            // The batch ends when its last item does; see `item_done`.
            Body::Batch(batch, items) => self.run_batch(cx, batch, items),
        }
    }

    /// The hand-back for work waiting on I/O.
    fn resume(self: &Arc<Self>, cx: JobContext, priority: Priority, reports: bool, finish: Finish) -> Resume {
        let JobContext { id, cancel, deadline, .. } = cx;
        Resume {
            engine: Arc::clone(self),
            id,
            cancel,
            deadline,
            priority,
            reports,
            began: Instant::now(),
            finish: Some(finish),
        }
    }

    fn record_duration(&self, took: Duration) {
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        // EWMA with weight 1/8; a lost update under contention only delays the average.
        let old = self.mean_job_micros.load(Ordering::Relaxed);
        let new = if old == 0 { micros } else { old - old / 8 + micros / 8 };
        self.mean_job_micros.store(new, Ordering::Relaxed);
    }

    /// Records a task's end (unless something else ended it first) and
    /// tells whoever waits.
    fn finish(&self, id: TaskId, outcome: Result<Box<RawValue>, TaskError>) {
        let Some(live) = lock(&self.live).remove(&id) else { return };
        // Moved, not cloned, into the record: results can be large.
        let mut outcome = Some(outcome);
        self.store.update(id, &mut |r| {
            if r.state.is_final() {
                return;
            }
            match outcome.take() {
                Some(Ok(result)) => {
                    r.state = TaskState::Completed;
                    r.result = Some(result);
                    r.progress = Progress { percent: 100, stage: "done".into() };
                }
                Some(Err(e)) => {
                    r.state = match e.code.as_str() {
                        "cancelled" => TaskState::Cancelled,
                        "timed-out" => TaskState::TimedOut,
                        _ => TaskState::Error,
                    };
                    r.error = Some(e);
                }
                None => {}
            }
        });
        if let (Some(on_done), Some(view)) = (live.on_done, self.store.get(id)) {
            on_done(view);
        }
    }

    fn run_batch(self: &Arc<Self>, cx: JobContext, batch: Arc<Mutex<Batch>>, items: Vec<Work>) {
        let JobContext { id, cancel, deadline, .. } = cx;
        // The coordinator held one queue slot; each item but one holds another until it starts.
        let extra = items.len().saturating_sub(1);
        if items.is_empty() {
            self.finish(
                id,
                RawValue::from_string("{\"total\":0,\"completed\":0,\"failed\":0}".into())
                    .map_err(|e| TaskError::new(500, "internal", e.to_string())),
            );
            return;
        }
        for (index, work) in items.into_iter().enumerate() {
            let engine = Arc::clone(self);
            let batch = Arc::clone(&batch);
            let cancel = Arc::clone(&cancel);
            // The item goes to this worker's deque and idle workers steal it.
            self.pool.spawn_local(
                Priority::Normal,
                Box::new(move || {
                    if index < extra {
                        engine.waiting.fetch_sub(1, Ordering::AcqRel);
                    }
                    let item_cx = JobContext::new(id, cancel, deadline, None, Arc::clone(&engine.times));
                    let work = match (item_cx.check(), work) {
                        (Err(e), _) => return engine.item_done(id, &batch, index, Err(e)),
                        (Ok(()), Work::Io(start)) => {
                            let finish: Finish =
                                Box::new(move |engine, outcome| engine.item_done(id, &batch, index, outcome));
                            let resume = engine.resume(item_cx, Priority::Normal, false, finish);
                            // A panic drops the Resume, which ends the item with an error.
                            let _ = catch_unwind(AssertUnwindSafe(|| start(resume)));
                            return;
                        }
                        (Ok(()), Work::Cpu(work)) => work,
                    };
                    let outcome = catch_unwind(AssertUnwindSafe(|| work(&item_cx)))
                        .unwrap_or_else(|_| Err(TaskError::new(500, "internal", "the item's job failed")));
                    item_cx.end_stage("done");
                    engine.item_done(id, &batch, index, outcome);
                }),
            );
        }
    }

    fn item_done(&self, id: TaskId, batch: &Mutex<Batch>, index: usize, outcome: Result<Box<RawValue>, TaskError>) {
        let line = match &outcome {
            Ok(result) => format!("{{\"index\":{index},\"status\":\"completed\",\"result\":{}}}\n", result.get()),
            Err(e) => {
                let error = serde_json::to_string(e).unwrap_or_default();
                format!("{{\"index\":{index},\"status\":\"error\",\"error\":{error}}}\n")
            }
        };
        let (done, failed, total) = {
            let mut b = lock(batch);
            if b.ended {
                return; // cancelled or timed out: late items are dropped
            }
            b.lines.extend_from_slice(line.as_bytes());
            b.done += 1;
            b.failed += usize::from(outcome.is_err());
            b.subscribers.retain_mut(|s| s(BatchEvent::Line(line.as_bytes())));
            (b.done, b.failed, b.total)
        };
        let percent = (done * 100 / total.max(1)) as u8;
        self.store.update(id, &mut |r| {
            r.items = Some(ItemCounts { done, failed, total });
            if r.state == TaskState::Processing {
                r.progress = Progress { percent: percent.min(99), stage: format!("{done} of {total} items") };
            }
        });
        if done == total {
            let summary = format!("{{\"total\":{total},\"completed\":{},\"failed\":{failed}}}", total - failed);
            let result = RawValue::from_string(summary).map_err(|e| TaskError::new(500, "internal", e.to_string()));
            self.finish(id, result);
            self.end_batch(id);
        }
    }

    /// Tells a batch's subscribers it has ended.
    fn end_batch(&self, id: TaskId) {
        let Some(batch) = lock(&self.batches).get(&id).cloned() else { return };
        let mut b = lock(&batch);
        b.ended = true;
        for mut subscriber in b.subscribers.drain(..) {
            subscriber(BatchEvent::End);
        }
    }

    /// Wakes the timer thread to look at a new earliest deadline.
    fn wake_timer(&self) {
        if let Some(timer) = self.timer.get() {
            timer.unpark();
        }
    }

    /// The earliest task deadline or sync wait, if any.
    fn next_due(&self) -> Option<Instant> {
        let deadline = lock(&self.deadlines).peek().map(|Reverse((at, _))| *at);
        let wait = lock(&self.sync_waits).peek().map(|Reverse(w)| w.at);
        deadline.into_iter().chain(wait).min()
    }

    /// Ends what is due: deadlines and sync waits.
    fn tick(&self, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut deadlines = lock(&self.deadlines);
            while deadlines.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                if let Some(Reverse((_, id))) = deadlines.pop() {
                    expired.push(id);
                }
            }
        }
        for id in expired {
            if let Some(live) = lock(&self.live).get(&id) {
                live.cancel.store(true, Ordering::Release);
            }
            self.finish(id, Err(timed_out()));
            self.end_batch(id);
        }
        let mut due = Vec::new();
        {
            let mut waits = lock(&self.sync_waits);
            while waits.peek().is_some_and(|Reverse(w)| w.at <= now) {
                due.extend(waits.pop());
            }
        }
        for Reverse(SyncWait { id, slot, .. }) in due {
            if let Some(reply) = lock(&slot).take() {
                if let Some(view) = self.store.get(id) {
                    reply(SyncOutcome::Accepted(view));
                }
            }
        }
    }

    fn sweep(&self) {
        let c = &self.config;
        if self.store.sweep(SystemTime::now(), c.result_ttl, c.max_finished) > 0 {
            lock(&self.batches).retain(|id, _| self.store.get(*id).is_some());
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.wake_timer();
    }
}

/// Sleeps until the next deadline, sync wait or sweep (woken early when an
/// earlier deadline arrives), so an idle server's timer wakes once a second.
fn timer(engine: Weak<Engine>) {
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    loop {
        let wake_at = {
            let Some(engine) = engine.upgrade() else { return };
            if engine.stopping.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            engine.tick(now);
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                engine.sweep();
            }
            engine.next_due().map_or(next_sweep, |due| due.min(next_sweep))
        };
        // The engine is not held while parked, so it can be dropped meanwhile.
        std::thread::park_timeout(wake_at.saturating_duration_since(Instant::now()));
    }
}
