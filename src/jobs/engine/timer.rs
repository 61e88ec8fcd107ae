//! The timer thread: task deadlines, the hand-over of slow sync requests,
//! and the TTL sweep. It sleeps until the next of them (woken early when an
//! earlier deadline arrives), so an idle server's timer wakes once a second.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::{lock, Engine, SubmitError, SyncOutcome};
use crate::jobs::lifecycle::Event;
use crate::jobs::store::{Write, Written};
use crate::jobs::task::TaskId;

/// How often finished tasks are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Receives the outcome of a synchronous request, once.
pub(super) type SyncReply = Box<dyn FnOnce(SyncOutcome) + Send>;

/// A synchronous request waiting: its hand-over time, its task, and the
/// reply slot that whichever comes first (the result or the hand-over)
/// takes. Ordered by hand-over time alone, so the timer pops only what is
/// due instead of scanning every request in flight.
pub(super) struct SyncWait {
    pub at: Instant,
    pub id: TaskId,
    pub slot: Arc<Mutex<Option<SyncReply>>>,
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

impl Engine {
    pub(super) fn add_deadline(&self, at: Instant, id: TaskId) {
        let earliest = {
            let mut deadlines = lock(&self.deadlines);
            deadlines.push(Reverse((at, id)));
            deadlines.peek().is_some_and(|Reverse((first, _))| *first == at)
        };
        if earliest {
            self.wake_timer();
        }
    }

    pub(super) fn add_sync_wait(&self, wait: SyncWait) {
        let at = wait.at;
        let earliest = {
            let mut waits = lock(&self.sync_waits);
            waits.push(Reverse(wait));
            waits.peek().is_some_and(|Reverse(w)| w.at == at)
        };
        if earliest {
            self.wake_timer();
        }
    }

    /// Wakes the timer thread to look at a new earliest deadline.
    pub(super) fn wake_timer(&self) {
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

    /// Ends what is due: deadlines (lazily cancelled: a task already ended
    /// is skipped) and sync waits.
    fn tick(self: &Arc<Self>, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut deadlines = lock(&self.deadlines);
            while deadlines.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                expired.extend(deadlines.pop().map(|Reverse((_, id))| id));
            }
        }
        for id in expired {
            self.end(id, Event::TimedOut, None);
        }
        let mut due = Vec::new();
        {
            let mut waits = lock(&self.sync_waits);
            while waits.peek().is_some_and(|Reverse(w)| w.at <= now) {
                due.extend(waits.pop().map(|Reverse(w)| w));
            }
        }
        for wait in due {
            self.hand_over(wait);
        }
    }

    /// A sync request outlived its wait: its task is stored, then the
    /// client is told to follow it. Under the live lock, so that either the
    /// task's end or this hand-over takes the reply, never neither.
    fn hand_over(self: &Arc<Self>, wait: SyncWait) {
        let mut live = lock(&self.live);
        // Ended already: its end takes (or took) the reply.
        let Some(entry) = live.get_mut(&wait.id) else { return };
        let Some(reply) = lock(&wait.slot).take() else { return };
        let Some(spec) = entry.spec.clone() else { return };
        entry.stored_version = Some(entry.record.version);
        let view = entry.record.view();
        let insert = Write::Insert(Box::new(entry.record.clone()), spec);
        let (engine, id) = (Arc::clone(self), wait.id);
        self.committer.send(
            insert,
            Box::new(move |written| match written {
                Ok(Written::Done) => reply(SyncOutcome::Accepted(view)),
                other => {
                    if let Some(live) = lock(&engine.live).get_mut(&id) {
                        live.stored_version = None;
                    }
                    let detail = match other {
                        Err(e) => e.0,
                        Ok(w) => format!("unexpected store answer {w:?}"),
                    };
                    reply(SyncOutcome::Refused(SubmitError::StoreUnavailable { detail }));
                }
            }),
        );
    }

    fn sweep(&self) {
        let ended_before = SystemTime::now().checked_sub(self.config.result_ttl).unwrap_or(SystemTime::UNIX_EPOCH);
        self.committer.send_only(Write::Sweep { ended_before });
    }
}

/// The timer thread's loop; ends when the engine is dropped.
pub(super) fn run(engine: &Weak<Engine>) {
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    loop {
        let wake_at = {
            let Some(engine) = engine.upgrade() else { return };
            if engine.dropped.load(Ordering::Acquire) {
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
