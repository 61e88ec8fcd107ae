//! Following tasks through the store, for clients of work this process
//! does not hold: a task's changes (run by another instance) and a task's
//! stored lines (a batch's items written by another instance, a crawl's
//! journal), polled until the task ends. One thread, started with the
//! engine, asleep while nobody follows anything.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

use super::{lock, BatchEvent, BatchSubscriber, Engine, TaskEvent, TaskWatcher};
use crate::jobs::TaskId;

/// How often followed tasks are read again.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// Lines read (and handed on) at once: a long journal is never held whole.
const LINES_AT_ONCE: usize = 1024;
/// How long the thread sleeps with nothing to follow before it looks
/// whether its engine is gone.
const IDLE: Duration = Duration::from_secs(1);

/// What is followed, and the thread that follows it.
#[derive(Debug, Default)]
pub(super) struct Followers {
    watched: Mutex<Vec<Watched>>,
    lines: Mutex<Vec<Lines>>,
    thread: OnceLock<Thread>,
}

/// A task followed from the store: the version last told, and to whom.
struct Watched {
    id: TaskId,
    version: u64,
    watcher: TaskWatcher,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").field("id", &self.id).field("version", &self.version).finish()
    }
}

/// A task's lines followed from the store: those sent so far, and to whom.
struct Lines {
    id: TaskId,
    sent: usize,
    subscriber: BatchSubscriber,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines").field("id", &self.id).field("sent", &self.sent).finish()
    }
}

impl Followers {
    /// Tells `watcher` of task `id`'s changes past `version` as the store
    /// gets them, the last once it has ended.
    pub(super) fn task(&self, id: TaskId, version: u64, watcher: TaskWatcher) {
        lock(&self.watched).push(Watched { id, version, watcher });
        self.wake();
    }

    /// Sends `subscriber` task `id`'s stored lines past the first `sent` as
    /// the store gets them, then the task's end.
    pub(super) fn lines(&self, id: TaskId, sent: usize, subscriber: BatchSubscriber) {
        lock(&self.lines).push(Lines { id, sent, subscriber });
        self.wake();
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// Starts the following thread of `engine`.
pub(super) fn start(engine: &Arc<Engine>) -> std::io::Result<()> {
    let weak = Arc::downgrade(engine);
    let handle = std::thread::Builder::new().name("pagelens-followed".into()).spawn(move || follow(&weak))?;
    let _ = engine.from_store.thread.set(handle.thread().clone());
    Ok(())
}

/// Tells the watched tasks' changes and sends the followed lines, and ends.
fn follow(weak: &Weak<Engine>) {
    loop {
        let idle = {
            let Some(engine) = weak.upgrade() else { return };
            if engine.dropped.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            turn(&engine)
        };
        // The engine is not held while asleep, so that it can be dropped.
        if idle {
            std::thread::park_timeout(IDLE);
        } else {
            std::thread::sleep(FOLLOW_EVERY);
        }
    }
}

/// One read of everything followed; whether there was nothing to follow.
fn turn(engine: &Engine) -> bool {
    let followers = &engine.from_store;
    let watched = std::mem::take(&mut *lock(&followers.watched));
    let lines = std::mem::take(&mut *lock(&followers.lines));
    if watched.is_empty() && lines.is_empty() {
        return true;
    }
    // Every followed task's record in one read (one round trip to a shared
    // store); a failed read leaves them all for the next turn.
    let ids: Vec<TaskId> = watched.iter().map(|w| w.id).chain(lines.iter().map(|f| f.id)).collect();
    let Ok(records) = engine.store.records_of(&ids) else {
        lock(&followers.watched).extend(watched);
        lock(&followers.lines).extend(lines);
        return false;
    };
    let (of_watched, of_lines) = records.split_at(watched.len());
    let mut still = Vec::with_capacity(watched.len());
    for (mut w, record) in watched.into_iter().zip(of_watched) {
        match record {
            Some(record) if record.version > w.version => {
                let last = record.state.is_final();
                let view = record.view();
                if (w.watcher)(TaskEvent { view: &view, version: record.version, last }) && !last {
                    w.version = record.version;
                    still.push(w);
                }
            }
            // Gone (expired) between two reads: nothing more to tell.
            None => {}
            Some(_) => still.push(w),
        }
    }
    lock(&followers.watched).extend(still);
    let mut kept = Vec::with_capacity(lines.len());
    for (mut f, record) in lines.into_iter().zip(of_lines) {
        // The record was read first: a task that had ended then has all
        // its lines stored (the committer stores them before its end).
        let ended = record.as_ref().is_none_or(|r| r.state.is_final());
        match send_new_lines(engine, &mut f) {
            Some(true) if ended => drop((f.subscriber)(BatchEvent::End)),
            Some(true) => kept.push(f),
            // The subscriber has gone.
            Some(false) => {}
            // A failed read: again next turn.
            None => kept.push(f),
        }
    }
    lock(&followers.lines).extend(kept);
    false
}

/// Sends `f` its task's lines past those sent, a page at a time: whether
/// its subscriber still wants more, `None` if the store failed.
fn send_new_lines(engine: &Engine, f: &mut Lines) -> Option<bool> {
    loop {
        let docs = engine.store.items_from(f.id, f.sent, Some(LINES_AT_ONCE)).ok()?;
        if !docs.is_empty() && !(f.subscriber)(BatchEvent::Items(&docs)) {
            return Some(false);
        }
        f.sent += docs.len();
        if docs.len() < LINES_AT_ONCE {
            return Some(true);
        }
    }
}
