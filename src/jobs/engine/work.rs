//! What runs: handlers turn a task's data into [`Work`]; the work runs on a
//! pool worker with a [`JobContext`], or waits for I/O first and comes back
//! through a [`Resume`] without holding a worker.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;

use super::Engine;
use crate::jobs::spec::Payload;
use crate::jobs::task::{TaskError, TaskId};
use crate::pool::Priority;

/// A result as work returns it: JSON.
pub type Outcome = Result<Box<RawValue>, TaskError>;

/// CPU work: runs on a pool worker, reports progress and checks for
/// cancellation through the [`JobContext`], and returns its result as JSON.
pub type CpuWork = Box<dyn FnOnce(&JobContext) -> Outcome + Send>;

/// Work that waits for I/O first: called on a worker with a [`Resume`], it
/// starts the I/O and returns at once, so no worker waits on a socket. The
/// I/O's completion hands the [`Resume`] the CPU work that follows, or an error.
pub type IoWork = Box<dyn FnOnce(Resume) + Send>;

/// What a task does, built from its data by its kind's handler.
pub enum Work {
    /// CPU work only.
    Cpu(CpuWork),
    /// I/O, then CPU work.
    Io(IoWork),
}

impl Work {
    /// CPU work from a closure.
    pub fn cpu(f: impl FnOnce(&JobContext) -> Outcome + Send + 'static) -> Work {
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

/// Turns one payload of a task into work; an error ends the task (or batch
/// item) at once.
pub type Handler = Arc<dyn Fn(Payload) -> Result<Work, TaskError> + Send + Sync>;

/// Handlers by task kind. A task whose kind has none ends `error`
/// (`unknown-kind`): a process cannot run what it does not know.
#[derive(Clone, Default)]
pub struct Handlers(HashMap<String, Handler>);

impl Handlers {
    /// Adds the handler of `kind`.
    pub fn with(
        mut self,
        kind: &str,
        handler: impl Fn(Payload) -> Result<Work, TaskError> + Send + Sync + 'static,
    ) -> Self {
        self.0.insert(kind.to_string(), Arc::new(handler));
        self
    }

    pub(super) fn get(&self, kind: &str) -> Result<&Handler, TaskError> {
        self.0
            .get(kind)
            .ok_or_else(|| TaskError::new(500, "unknown-kind", format!("no handler for tasks of kind {kind:?}")))
    }
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Where a piece of work's outcome goes: its task, or its batch's item.
pub(super) type Finish = Box<dyn FnOnce(&Arc<Engine>, Outcome) + Send>;

/// Handed to running work.
pub struct JobContext {
    id: TaskId,
    cancel: Arc<AtomicBool>,
    deadline: Instant,
    /// Where progress goes; `None` for a batch item, whose batch reports
    /// items done instead.
    reports: Option<Arc<Engine>>,
    times: Arc<crate::metrics::tasks::TaskTimes>,
    /// The stage under way and when it began.
    current: Cell<(&'static str, Instant)>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").field("id", &self.id).field("deadline", &self.deadline).finish()
    }
}

impl JobContext {
    pub(super) fn new(
        engine: &Arc<Engine>,
        id: TaskId,
        cancel: Arc<AtomicBool>,
        deadline: Instant,
        reports: bool,
    ) -> Self {
        JobContext {
            id,
            cancel,
            deadline,
            reports: reports.then(|| Arc::clone(engine)),
            times: Arc::clone(&engine.times),
            current: Cell::new(("started", Instant::now())),
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Id, cancel flag and deadline, for the items of a batch.
    pub(super) fn parts(&self) -> (TaskId, Arc<AtomicBool>, Instant) {
        (self.id, Arc::clone(&self.cancel), self.deadline)
    }

    /// Records progress, and stops the work (with the error to return) if
    /// the task was cancelled or ran out of time. Call between stages.
    pub fn stage(&self, percent: u8, stage: &'static str) -> Result<(), TaskError> {
        self.end_stage(stage);
        self.check()?;
        if let Some(engine) = &self.reports {
            engine.progress(self.id, percent, stage.to_string(), None);
        }
        Ok(())
    }

    /// Times the stage under way and starts `next`.
    pub(super) fn end_stage(&self, next: &'static str) {
        let (stage, began) = self.current.replace((next, Instant::now()));
        self.times.stage(stage, began.elapsed());
    }

    /// Whether to stop now; cheap enough for inner loops.
    pub fn check(&self) -> Result<(), TaskError> {
        if self.cancel.load(Ordering::Acquire) {
            return Err(TaskError::cancelled());
        }
        if Instant::now() >= self.deadline {
            return Err(TaskError::timed_out());
        }
        Ok(())
    }

    /// Turns `payload` into work with `handler` and runs it under this
    /// context: CPU work here, I/O work started with a [`Resume`] at
    /// `priority`. A task already stopped, a handler's error and a panic
    /// each end it with an error; `finish` gets the outcome.
    pub(super) fn start(
        self,
        engine: &Arc<Engine>,
        handler: &Handler,
        payload: Payload,
        priority: Priority,
        finish: Finish,
    ) {
        if let Err(e) = self.check() {
            return finish(engine, Err(e));
        }
        match catch_unwind(AssertUnwindSafe(|| handler(payload))) {
            Ok(Ok(Work::Cpu(work))) => self.run(engine, work, finish),
            Ok(Ok(Work::Io(start))) => {
                let resume = self.resume(engine, priority, finish);
                // A panic drops the Resume, which ends the task with an error.
                let _ = catch_unwind(AssertUnwindSafe(|| start(resume)));
            }
            Ok(Err(e)) => finish(engine, Err(e)),
            Err(_) => {
                // A batch item's context reports no progress of its own.
                let whose = if self.reports.is_some() { "task" } else { "item" };
                finish(engine, Err(TaskError::new(500, "internal", format!("the {whose}'s handler failed"))))
            }
        }
    }

    /// Runs CPU work under this context (a panic is the task's error), then `finish`.
    fn run(self, engine: &Arc<Engine>, work: CpuWork, finish: Finish) {
        let outcome = self.check().and_then(|()| {
            catch_unwind(AssertUnwindSafe(|| work(&self)))
                .unwrap_or_else(|_| Err(TaskError::new(500, "internal", "the task's job failed")))
        });
        self.end_stage("done");
        finish(engine, outcome);
    }

    /// Turns this context into the hand-back of work that waits on I/O.
    fn resume(self, engine: &Arc<Engine>, priority: Priority, finish: Finish) -> Resume {
        Resume {
            engine: Arc::clone(engine),
            id: self.id,
            cancel: self.cancel,
            deadline: self.deadline,
            priority,
            reports: self.reports.is_some(),
            began: Instant::now(),
            finish: Some(finish),
        }
    }
}

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
        let engine = self.reports.then(|| Arc::clone(&self.engine));
        let id = self.id;
        move |percent, stage| {
            if let Some(engine) = &engine {
                engine.progress(id, percent, stage, None);
            }
        }
    }

    /// The task's journal (see [`Journal`]).
    pub fn journal(&self) -> Journal {
        Journal { engine: Arc::clone(&self.engine), id: self.id }
    }

    /// Runs `work` on the pool, at the task's priority.
    pub fn then(mut self, work: CpuWork) {
        let Some(finish) = self.finish.take() else { return };
        let engine = Arc::clone(&self.engine);
        let (id, cancel, deadline, reports) = (self.id, Arc::clone(&self.cancel), self.deadline, self.reports);
        // Already admitted: never refused.
        let pool_engine = Arc::clone(&engine);
        engine.pool.spawn(
            self.priority,
            Box::new(move || {
                let cx = JobContext::new(&pool_engine, id, cancel, deadline, reports);
                cx.run(&pool_engine, work, finish);
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

/// A running task's journal: numbered lines it keeps in the store as it
/// goes (a crawl's pages), read back when it runs again after a restart,
/// so that it resumes where it was. Kept with the task, gone when it is.
#[derive(Clone)]
pub struct Journal {
    engine: Arc<Engine>,
    id: TaskId,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("id", &self.id).finish()
    }
}

impl Journal {
    /// Up to `most` of the lines kept so far, past the first `skip`, in
    /// order (call it on the task's own thread: it reads the store).
    pub fn read(&self, skip: usize, most: usize) -> Result<Vec<Vec<u8>>, crate::jobs::store::StoreError> {
        self.engine.store.items_from(self.id, skip, Some(most))
    }

    /// Whether the store outlives the process (with `--store memory` a
    /// journal could never be read back, and would only hold memory).
    pub fn kept(&self) -> bool {
        self.engine.store.figures().backend != "memory"
    }

    /// Keeps line `n` (the first write of a number wins), through the
    /// committer, without waiting for it.
    pub fn write(&self, n: usize, line: Vec<u8>) {
        let write = crate::jobs::store::Write::Item { task: self.id, item: n, failed: false, doc: line };
        self.engine.committer.send_only(write);
    }
}

/// A duration as whole microseconds for an average.
pub(super) fn micros(took: std::time::Duration) -> u64 {
    took.as_micros().min(u128::from(u64::MAX)) as u64
}
