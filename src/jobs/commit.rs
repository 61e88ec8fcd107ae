//! The committer: one thread that writes to the store in groups (group
//! commit). Whoever wants a write sends it with what to do once it is
//! durable, and goes on; the thread takes every write waiting, commits them
//! in one transaction (one fsync under `--durability power`), then runs
//! each one's continuation. Under load many writes share a commit (groups
//! at most one `GROUP_WINDOW` apart); alone, a write waits for nothing but
//! its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::{Store, StoreError, Write, Written};
use crate::metrics::tasks::TaskTimes;

/// Most writes in one commit group: bounds a transaction's length.
const MAX_GROUP: usize = 1024;

/// A commit group begins no sooner than this after the one before it. Each
/// group rewrites its tables' and indexes' leaf pages whole (about 8 pages
/// of 4 KiB, however few tasks it holds), so under load fewer, larger
/// groups write less: 2 ms took a task's writes from 55 to 32 KB and the
/// SQLite store from 2,869 to 3,205 tasks/s (`loadtest/compare-stores.sh`).
/// A write after a quiet spell is committed at once; none waits longer.
const GROUP_WINDOW: Duration = Duration::from_millis(2);

/// What runs once a write is committed (or has failed); on the committer
/// thread, so it must be short: hand work on, never wait.
pub type Then = Box<dyn FnOnce(Result<Written, StoreError>) + Send>;

struct Op {
    /// `None`: a barrier, told once everything before it is committed.
    write: Option<Write>,
    then: Option<Then>,
}

/// Counters of the committer.
#[derive(Debug, Default)]
pub struct CommitFigures {
    /// Commit groups written.
    pub groups: AtomicU64,
    /// Writes committed.
    pub writes: AtomicU64,
    /// Commit groups that failed (each of their writes was told).
    pub failed: AtomicU64,
}

/// The sending side; the thread ends when the last one is dropped.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: Sender<Op>,
    figures: Arc<CommitFigures>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write.fmt(f)
    }
}

impl Committer {
    /// Starts the committer thread on `store`; commit latencies go to `times`.
    pub fn start(store: Store, times: Arc<TaskTimes>) -> std::io::Result<Committer> {
        let (tx, rx) = mpsc::channel();
        let figures = Arc::new(CommitFigures::default());
        let thread_figures = Arc::clone(&figures);
        std::thread::Builder::new()
            .name("pagelens-commit".into())
            .spawn(move || run(&store, &rx, &times, &thread_figures))?;
        Ok(Committer { tx, figures })
    }

    /// Queues `write`; `then` runs once it is committed or has failed.
    pub fn send(&self, write: Write, then: Then) {
        self.push(Op { write: Some(write), then: Some(then) });
    }

    /// Queues `write` with nothing to do after it (a failure is logged).
    pub fn send_only(&self, write: Write) {
        self.push(Op { write: Some(write), then: None });
    }

    fn push(&self, op: Op) {
        // The thread holds the receiver for as long as any sender lives.
        if let Err(mpsc::SendError(op)) = self.tx.send(op) {
            if let Some(then) = op.then {
                then(Err(StoreError("the store's committer has stopped".into())));
            }
        }
    }

    /// Waits until everything sent before this call is committed.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        self.push(Op {
            write: None,
            then: Some(Box::new(move |_| {
                let _ = tx.send(());
            })),
        });
        let _ = rx.recv();
    }

    /// Its counters.
    pub fn figures(&self) -> &CommitFigures {
        &self.figures
    }
}

fn run(store: &Store, rx: &Receiver<Op>, times: &TaskTimes, figures: &CommitFigures) {
    // Commits failed in a row: an outage is logged at its start and its
    // end, not once a commit (hundreds a second under load).
    let mut failing = 0u64;
    let mut last_began: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        // Under load, the writes of the window gather into this group.
        if let Some(wait) = last_began.map(|t| (t + GROUP_WINDOW).saturating_duration_since(Instant::now())) {
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        last_began = Some(Instant::now());
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut writes = Vec::with_capacity(ops.len());
        let mut thens = Vec::with_capacity(ops.len());
        for op in ops {
            // A barrier's continuation goes with the group and is told `Done`.
            thens.push((op.write.is_some(), op.then));
            writes.extend(op.write);
        }
        let outcome = if writes.is_empty() {
            Ok(Vec::new())
        } else {
            let began = Instant::now();
            let outcome = store.commit(&mut writes);
            times.committed(began.elapsed());
            // Before the continuations: a task they start finds its input
            // no longer shared with the write.
            writes.clear();
            figures.groups.fetch_add(1, Ordering::Relaxed);
            outcome
        };
        match outcome {
            Ok(written) => {
                if failing > 0 {
                    crate::info!("store: commits succeed again, after {failing} failed");
                    failing = 0;
                }
                figures.writes.fetch_add(written.len() as u64, Ordering::Relaxed);
                let mut written = written.into_iter();
                for (is_write, then) in thens {
                    let result = if is_write { written.next().unwrap_or(Written::Done) } else { Written::Done };
                    if let Some(then) = then {
                        then(Ok(result));
                    }
                }
            }
            Err(e) => {
                figures.failed.fetch_add(1, Ordering::Relaxed);
                if failing == 0 {
                    crate::error!(
                        "store: a commit of {} writes failed: {e} (further failures are counted)",
                        thens.len()
                    );
                }
                failing += 1;
                for (_, then) in thens {
                    if let Some(then) = then {
                        then(Err(e.clone()));
                    }
                }
            }
        }
    }
}
