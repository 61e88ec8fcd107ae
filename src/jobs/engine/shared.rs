//! Running tasks from a queue other instances share (see
//! [`crate::jobs::queue`]): a dispatcher thread takes as many tasks as this
//! instance has room for, runs each as a live task here, and lets go of its
//! claim once the task's end is stored; it takes over the claims of
//! instances that stopped answering, and ends with `poison-task` a task
//! whose runs keep dying. A listener thread hears cancellations made on
//! other instances and stops the work here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::{lock, Engine};
use crate::jobs::lifecycle::TaskRecord;
use crate::jobs::lifecycle::{apply, Event};
use crate::jobs::queue::{Claim, TaskQueue};
use crate::jobs::store::{StoreError, Write, Written};
use crate::jobs::{TaskError, TaskId, TaskSpec, TaskState};

/// How long a take waits on an empty queue: also how soon acks, touches and
/// a stop are seen.
const TAKE_WAIT: Duration = Duration::from_millis(100);
/// Tasks held a worker, at least and at most (see [`Engine::room`]).
const PREFETCH: usize = 4;
const MOST_HELD: usize = 256;
/// About how much work an instance holds ahead (see [`Engine::room`]).
const HOLD: Duration = Duration::from_millis(50);
/// How often other instances' abandoned claims are looked for.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// Settings of a shared queue.
#[derive(Debug, Clone, Copy)]
pub struct SharedConfig {
    /// A claim held this long without a sign of life is taken over.
    pub reclaim_after: Duration,
    /// A task started this many times without ending ends `poison-task`.
    pub max_deliveries: u32,
}

/// The shared queue and what this instance owes it.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) queue: Arc<dyn TaskQueue>,
    config: SharedConfig,
    /// Claims whose tasks' ends are stored, to let go of on the next turn.
    acks: Mutex<Vec<Claim>>,
    /// Claims whose tasks could not be read, or whose ends could not be
    /// stored: run again here once the store answers (not left for a
    /// takeover after `reclaim_after`).
    retries: Mutex<Vec<Claim>>,
    /// Set when the engine stops taking: the threads end.
    stop: Arc<AtomicBool>,
    /// The queue failed its last call: said once, and until it answers
    /// again the instance is not ready.
    down: AtomicBool,
    /// Tasks taken from the queue, and of those taken over from others.
    taken: AtomicU64,
    reclaimed: AtomicU64,
    /// The dispatcher, woken when a task ends and makes room.
    dispatcher: std::sync::OnceLock<std::thread::Thread>,
}

/// What this instance did with the shared queue.
#[derive(Debug, Clone, Copy)]
pub struct SharedFigures {
    /// Tasks taken (takeovers included).
    pub taken: u64,
    /// Tasks taken over from instances that stopped answering.
    pub reclaimed: u64,
    /// Whether the queue failed its last call.
    pub down: bool,
}

impl Shared {
    pub(super) fn new(queue: Arc<dyn TaskQueue>, config: SharedConfig) -> Shared {
        let stop = Arc::new(AtomicBool::new(false));
        let (acks, retries) = (Mutex::default(), Mutex::default());
        let (down, taken, reclaimed) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
        let dispatcher = std::sync::OnceLock::new();
        Shared { queue, config, acks, retries, stop, down, taken, reclaimed, dispatcher }
    }

    /// Notes a failed call: logged when the queue was answering before.
    fn failed(&self, what: &str, e: &StoreError) {
        if !self.down.swap(true, Ordering::AcqRel) {
            crate::error!("shared queue: cannot {what}: {e}; retrying, not ready until it answers");
        }
    }

    /// Notes an answered call: logged when the queue was failing before.
    fn answered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            crate::info!("shared queue: answering again");
        }
    }

    /// Whether the queue failed its last call.
    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub(super) fn figures(&self) -> SharedFigures {
        SharedFigures {
            taken: self.taken.load(Ordering::Relaxed),
            reclaimed: self.reclaimed.load(Ordering::Relaxed),
            down: self.is_down(),
        }
    }

    /// Lets go of `claim` on the dispatcher's next turn (now: its task has
    /// ended, so there is room for another).
    pub(super) fn done(&self, claim: Claim) {
        lock(&self.acks).push(claim);
        self.wake();
    }

    /// Runs `claim`'s task again once the store answers.
    pub(super) fn retry(&self, claim: Claim) {
        lock(&self.retries).push(claim);
        self.wake();
    }

    fn wake(&self) {
        if let Some(dispatcher) = self.dispatcher.get() {
            dispatcher.unpark();
        }
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts the dispatcher and the cancellation listener of `engine`.
pub(super) fn start(engine: &Arc<Engine>) -> std::io::Result<()> {
    let weak = Arc::downgrade(engine);
    let handle = std::thread::Builder::new().name("pagelens-dispatch".into()).spawn(move || dispatch(&weak))?;
    if let Some(shared) = engine.shared.get() {
        let _ = shared.dispatcher.set(handle.thread().clone());
    }
    let weak = Arc::downgrade(engine);
    std::thread::Builder::new().name("pagelens-cancels".into()).spawn(move || listen(&weak))?;
    Ok(())
}

/// The dispatcher's loop: acks, signs of life, takeovers, then new tasks.
fn dispatch(weak: &Weak<Engine>) {
    let mut last_reclaim = Instant::now();
    let mut last_touch = Instant::now();
    loop {
        let Some(engine) = weak.upgrade() else { return };
        let Some(shared) = engine.shared.get() else { return };
        let acks = std::mem::take(&mut *lock(&shared.acks));
        if let Err(e) = shared.queue.ack(&acks) {
            shared.failed("let go of finished tasks", &e);
            lock(&shared.acks).extend(acks);
        }
        if shared.stop.load(Ordering::Acquire) || engine.dropped.load(Ordering::Acquire) {
            return;
        }
        if last_touch.elapsed() >= shared.config.reclaim_after / 3 {
            last_touch = Instant::now();
            if let Err(e) = shared.queue.touch(&engine.claims()) {
                shared.failed("renew this instance's claims", &e);
            }
        }
        let room = engine.room();
        // Those that failed for the store's sake first, once it answers.
        let mut claims = if shared.is_down() { Vec::new() } else { std::mem::take(&mut *lock(&shared.retries)) };
        if room > 0 && last_reclaim.elapsed() >= RECLAIM_EVERY {
            last_reclaim = Instant::now();
            match shared.queue.reclaim(shared.config.reclaim_after, room) {
                Ok(taken) => {
                    shared.reclaimed.fetch_add(taken.len() as u64, Ordering::Relaxed);
                    claims.extend(taken);
                }
                Err(e) => shared.failed("look for abandoned tasks", &e),
            }
        }
        let wanted = room.saturating_sub(claims.len());
        let taken = if wanted > 0 {
            shared.queue.take(wanted, TAKE_WAIT)
        } else if claims.is_empty() {
            // Full: until a task ends (it wakes this thread) or a turn passes.
            drop(engine);
            std::thread::park_timeout(TAKE_WAIT);
            continue;
        } else {
            Ok(Vec::new())
        };
        match taken {
            Ok(taken) => {
                shared.answered();
                shared.taken.fetch_add(taken.len() as u64, Ordering::Relaxed);
                claims.extend(taken);
            }
            Err(e) => {
                shared.failed("take tasks", &e);
                std::thread::sleep(TAKE_WAIT);
            }
        }
        engine.run_claimed(claims);
    }
}

/// Hears cancellations made elsewhere; reconnects after a failure, sooner
/// the longer it had worked (said once an outage).
fn listen(weak: &Weak<Engine>) {
    let mut retries = 0u32;
    loop {
        let Some(engine) = weak.upgrade() else { return };
        let Some(shared) = engine.shared.get() else { return };
        let queue = Arc::clone(&shared.queue);
        let stop = Arc::clone(&shared.stop);
        let target = Arc::downgrade(&engine);
        drop(engine);
        let mut on = |id: TaskId| {
            if let Some(engine) = target.upgrade() {
                engine.abandon(id);
            }
        };
        let began = Instant::now();
        let heard = queue.hear_cancels(&mut on, &stop);
        if stop.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = heard {
            if began.elapsed() > Duration::from_secs(5) {
                retries = 0;
            }
            if retries == 0 {
                crate::warn!("shared queue: cancellations unheard, reconnecting: {e}");
            }
            std::thread::sleep(Duration::from_millis(100 << retries.min(5)));
            retries += 1;
        }
    }
}

impl Engine {
    /// Tasks this instance may still take: what its workers finish in
    /// about [`HOLD`] at the mean run time measured here, at least four a
    /// worker (Celery's default prefetch) and at most [`MOST_HELD`] a
    /// worker. A worker finds the next task here while the queue is asked,
    /// tasks that wait on a fetch hold no worker, status reads of held tasks
    /// are answered from memory, and no task waits here much longer than
    /// `HOLD` while other instances idle.
    fn room(&self) -> usize {
        let held = lock(&self.live).values().filter(|l| l.claim.is_some()).count();
        let mean = self.mean_job().max(Duration::from_micros(1));
        let per_worker = (HOLD.as_micros() / mean.as_micros()).clamp(PREFETCH as u128, MOST_HELD as u128) as usize;
        (per_worker * self.pool.workers()).saturating_sub(held)
    }

    /// The claims of the tasks held here.
    fn claims(&self) -> Vec<Claim> {
        lock(&self.live).values().filter_map(|l| l.claim.clone()).collect()
    }

    /// Runs the tasks taken from the shared queue (their records and
    /// inputs read in one go).
    fn run_claimed(self: &Arc<Self>, claims: Vec<Claim>) {
        let Some(shared) = self.shared.get() else { return };
        if claims.is_empty() {
            return;
        }
        let ids: Vec<TaskId> = claims.iter().map(|c| c.task).collect();
        match self.store.starting(&ids) {
            Ok(read) => {
                for (claim, (record, spec)) in claims.into_iter().zip(read) {
                    self.run_one_claimed(shared, claim, record, spec);
                }
            }
            Err(e) => {
                shared.failed("read tasks", &e);
                claims.into_iter().for_each(|claim| shared.retry(claim));
            }
        }
    }

    /// Runs a task taken from the shared queue, unless it has ended (it is
    /// let go of) or has been started too often (it ends `poison-task`).
    fn run_one_claimed(
        self: &Arc<Self>,
        shared: &Shared,
        claim: Claim,
        record: Option<TaskRecord>,
        spec: Option<TaskSpec>,
    ) {
        if lock(&self.live).contains_key(&claim.task) {
            // Ours already (taken back after a slow renewal): it runs.
            return;
        }
        let Some(mut record) = record else { return shared.done(claim) };
        if record.state.is_final() {
            return shared.done(claim);
        }
        if record.state == TaskState::Processing {
            // Taken over from an instance that stopped while running it:
            // queued again first, as a restart would.
            let expected = record.version;
            if apply(&mut record, Event::Requeued, SystemTime::now()).is_ok() {
                self.committer.send_only(Write::Put { record: Box::new(record.clone()), expected });
            }
        }
        // Starts before this one: as its record counts them, or as the queue
        // does (a holder can die before its start is stored).
        let starts = u64::from(record.attempts).max(claim.delivered.saturating_sub(1));
        if starts >= u64::from(shared.config.max_deliveries) {
            let expected = record.version;
            let detail = format!("the task was started {starts} times and never ended; it is not run again");
            let error = TaskError::new(500, "poison-task", detail);
            if apply(&mut record, Event::Failed(error), SystemTime::now()).is_ok() {
                crate::warn!("task {}: poison-task after {starts} starts", record.id);
                self.poisoned.fetch_add(1, Ordering::Relaxed);
                let shared_done = Arc::clone(self);
                let put = Write::Put { record: Box::new(record), expected };
                self.committer.send(
                    put,
                    Box::new(move |written| {
                        if matches!(written, Ok(Written::Done | Written::Conflict)) {
                            if let Some(shared) = shared_done.shared.get() {
                                shared.done(claim);
                            }
                        }
                    }),
                );
            }
            return;
        }
        if let Some(items) = record.items {
            match self.store.items_done(record.id) {
                Ok(done) => self.open_batch(record.id, items.total, &done),
                Err(e) => return crate::warn!("shared queue: batch {} unreadable, left for later: {e}", record.id),
            }
        }
        let (id, priority, version) = (record.id, record.priority, record.version);
        let timeout = record.timeout_ms.map(Duration::from_millis);
        // The input read with the record, kept for the worker within the
        // engine's budget (else the worker reads it again).
        let kept = spec.map(|spec| (spec.input_bytes(), spec)).filter(|(bytes, _)| self.keep_input(*bytes));
        self.go_live(record, Some(version), timeout, None, kept.map(|(bytes, spec)| (Arc::new(spec), bytes)), || {});
        if let Some(live) = lock(&self.live).get_mut(&id) {
            live.claim = Some(claim);
        }
        // Waiting here now: counted until a worker takes it.
        self.admission.force();
        self.spawn_run(id, priority, 0);
    }

    /// Stops a task cancelled on another instance, which stored its end:
    /// nothing is written here; its followers hear the cancel.
    fn abandon(&self, id: TaskId) {
        let Some(mut entry) = lock(&self.live).remove(&id) else { return };
        entry.cancel.store(true, Ordering::Release);
        self.close_batch(id);
        self.inputs_in_memory.fetch_sub(entry.spec_bytes, Ordering::AcqRel);
        if apply(&mut entry.record, Event::Cancelled, SystemTime::now()).is_ok() {
            super::watch::notify(&mut entry.watchers, &entry.record, true);
        }
        if let (Some(claim), Some(shared)) = (entry.claim, self.shared.get()) {
            shared.done(claim);
        }
        self.end_batch(id);
    }
}
