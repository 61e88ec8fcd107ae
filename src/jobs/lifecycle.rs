//! A task's record and its lifecycle: [`apply`] is the one place a task
//! changes state. It takes the time as an argument, so the whole table of
//! transitions is tested without a clock.
//!
//! ```text
//!   (new) ──accepted──▶ queued ──started──▶ processing ──finished──▶ completed
//!                        │  ▲                 │  │ progress ↺
//!                        │  └────requeued─────┘  ├──failed────▶ error
//!                        ├──failed / cancelled / timed out ──▶ error | cancelled | timed_out
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use super::spec::TaskSpec;
use super::task::{rfc3339, ItemCounts, Progress, TaskError, TaskId, TaskState, TaskView};
use crate::pool::Priority;

/// Everything kept about one task but its input (the [`TaskSpec`] is
/// stored beside it).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// The handler that runs it.
    pub kind: String,
    /// Its priority.
    pub priority: Priority,
    /// Its state.
    pub state: TaskState,
    /// Bumped by every event: a store updates a record only if the version
    /// it holds is the one the change was made from (compare-and-set).
    pub version: u64,
    /// Its progress.
    pub progress: Progress,
    /// The result, JSON encoded.
    pub result: Option<Arc<[u8]>>,
    /// The error.
    pub error: Option<TaskError>,
    /// When accepted.
    pub created_at: SystemTime,
    /// When last started.
    pub started_at: Option<SystemTime>,
    /// When ended.
    pub completed_at: Option<SystemTime>,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// With a key: the digest of the request it was given for
    /// ([`TaskSpec::fingerprint`]), to tell a retry from a reuse.
    pub fingerprint: Option<[u8; 16]>,
    /// Item counts, for batches.
    pub items: Option<ItemCounts>,
    /// Times a worker has started it (more than one after a crash or restart).
    pub attempts: u32,
    /// The timeout it asked for, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Where the final status is posted, if anywhere.
    pub callback_url: Option<String>,
    /// The callback is owed: the task has ended and delivery has not finished.
    pub callback_pending: bool,
    /// The API key (its name) that submitted it, when keys are on.
    pub owner: Option<String>,
}

/// What happens to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The store took it.
    Accepted,
    /// A worker took it.
    Started,
    /// It got further (items for batches).
    Progress {
        /// 0-99: 100 means done.
        percent: u8,
        /// What it is doing.
        stage: String,
        /// A batch's items so far.
        items: Option<ItemCounts>,
    },
    /// It ended with this result (JSON).
    Finished(Arc<[u8]>),
    /// Its work failed.
    Failed(TaskError),
    /// A client cancelled it.
    Cancelled,
    /// It ran past its timeout.
    TimedOut,
    /// It was running when its process stopped: it runs again.
    Requeued,
}

impl Event {
    /// The event for an ended piece of work.
    pub fn outcome(outcome: Result<Arc<[u8]>, TaskError>) -> Event {
        match outcome {
            Ok(result) => Event::Finished(result),
            Err(e) => match e.state() {
                TaskState::Cancelled => Event::Cancelled,
                TaskState::TimedOut => Event::TimedOut,
                _ => Event::Failed(e),
            },
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Event::Accepted => "accepted",
            Event::Started => "started",
            Event::Progress { .. } => "progress",
            Event::Finished(_) => "finished",
            Event::Failed(_) => "failed",
            Event::Cancelled => "cancelled",
            Event::TimedOut => "timed out",
            Event::Requeued => "requeued",
        }
    }
}

/// An event that cannot happen in the task's state (a late result after a
/// cancel, a second start): refused, and the record left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Illegal {
    /// The state it was in (`None`: not yet accepted).
    pub from: Option<TaskState>,
    /// The event refused.
    pub event: &'static str,
}

impl fmt::Display for Illegal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(state) => write!(f, "a {} task cannot be {}", state.name(), self.event),
            None => write!(f, "a task not yet accepted cannot be {}", self.event),
        }
    }
}

impl std::error::Error for Illegal {}

impl TaskRecord {
    /// The record of `spec` before it is accepted (version 0).
    pub fn new(id: TaskId, spec: &TaskSpec, now: SystemTime) -> TaskRecord {
        TaskRecord {
            id,
            kind: spec.kind.clone(),
            priority: spec.options.priority,
            state: TaskState::Queued,
            version: 0,
            progress: Progress { percent: 0, stage: "queued".into() },
            result: None,
            error: None,
            created_at: now,
            started_at: None,
            completed_at: None,
            idempotency_key: spec.options.idempotency_key.clone(),
            fingerprint: spec.options.idempotency_key.is_some().then(|| spec.fingerprint()),
            items: spec.batch_len().map(|total| ItemCounts { done: 0, failed: 0, total }),
            attempts: 0,
            timeout_ms: spec.options.timeout_ms,
            callback_url: spec.options.callback_url.clone(),
            callback_pending: false,
            owner: spec.options.owner.clone(),
        }
    }

    /// The status document, without the result.
    pub fn view(&self) -> TaskView {
        TaskView {
            task_id: self.id,
            kind: self.kind.clone(),
            status: self.state,
            priority: self.priority,
            progress: self.progress.clone(),
            error: self.error.clone(),
            created_at: rfc3339(self.created_at),
            started_at: self.started_at.map(rfc3339),
            completed_at: self.completed_at.map(rfc3339),
            items: self.items,
            owner: self.owner.clone(),
        }
    }

    /// Bytes this record holds in memory (its result dominates).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<TaskRecord>()
            + self.result.as_ref().map_or(0, |r| r.len())
            + self.kind.len()
            + self.progress.stage.len()
            + self.idempotency_key.as_ref().map_or(0, String::len)
            + self.callback_url.as_ref().map_or(0, String::len)
            + self.error.as_ref().map_or(0, |e| e.detail.len() + e.code.len())
    }
}

/// Applies `event` to `record` at `now`: the new state, or [`Illegal`] with
/// the record untouched. Every legal event bumps the version.
pub fn apply(record: &mut TaskRecord, event: Event, now: SystemTime) -> Result<TaskState, Illegal> {
    use TaskState::{Processing, Queued};
    let from = (record.version > 0).then_some(record.state);
    let illegal = Illegal { from, event: event.name() };
    match (from, event) {
        (None, Event::Accepted) => {
            record.created_at = now;
        }
        (None, _) | (Some(_), Event::Accepted) => return Err(illegal),
        (Some(Queued), Event::Started) => {
            record.state = Processing;
            record.started_at = Some(now);
            record.attempts += 1;
            record.progress = Progress { percent: 1, stage: "started".into() };
        }
        (Some(Processing), Event::Progress { percent, stage, items }) => {
            record.progress = Progress { percent: percent.min(99), stage };
            if items.is_some() {
                record.items = items;
            }
        }
        (Some(Processing), Event::Finished(result)) => {
            record.progress = Progress { percent: 100, stage: "done".into() };
            record.result = Some(result);
            end(record, TaskState::Completed, now);
        }
        (Some(Queued | Processing), Event::Failed(error)) => {
            record.error = Some(error);
            end(record, TaskState::Error, now);
        }
        (Some(Queued | Processing), Event::Cancelled) => {
            record.error = Some(TaskError::cancelled());
            end(record, TaskState::Cancelled, now);
        }
        (Some(Queued | Processing), Event::TimedOut) => {
            record.error = Some(TaskError::timed_out());
            end(record, TaskState::TimedOut, now);
        }
        (Some(Processing), Event::Requeued) => {
            record.state = Queued;
            record.started_at = None;
            record.progress = Progress { percent: 0, stage: "queued".into() };
        }
        (Some(_), _) => return Err(illegal),
    }
    record.version += 1;
    Ok(record.state)
}

fn end(record: &mut TaskRecord, state: TaskState, now: SystemTime) {
    record.state = state;
    record.completed_at = Some(now);
    record.callback_pending = record.callback_url.is_some();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::spec::TaskOptions;
    use std::time::Duration;
    use TaskState::*;

    fn events() -> Vec<Event> {
        vec![
            Event::Accepted,
            Event::Started,
            Event::Progress { percent: 150, stage: "parsing".into(), items: None },
            Event::Finished(Arc::from(&b"{}"[..])),
            Event::Failed(TaskError::new(422, "bad", "no")),
            Event::Cancelled,
            Event::TimedOut,
            Event::Requeued,
        ]
    }

    fn record_in(state: Option<TaskState>) -> TaskRecord {
        let spec = TaskSpec::one("analyze", serde_json::Value::Null, Vec::new(), TaskOptions::default());
        let mut r = TaskRecord::new(TaskId::random(), &spec, SystemTime::UNIX_EPOCH);
        if let Some(state) = state {
            r.state = state;
            r.version = 1;
        }
        r
    }

    /// Every (state, event) pair: the table the engine lives by.
    #[test]
    fn the_transition_table() {
        let expected: &[(Option<TaskState>, [Option<TaskState>; 8])] = &[
            // accepted, started, progress, finished, failed, cancelled, timed out, requeued
            (None, [Some(Queued), None, None, None, None, None, None, None]),
            (Some(Queued), [None, Some(Processing), None, None, Some(Error), Some(Cancelled), Some(TimedOut), None]),
            (
                Some(Processing),
                [
                    None,
                    None,
                    Some(Processing),
                    Some(Completed),
                    Some(Error),
                    Some(Cancelled),
                    Some(TimedOut),
                    Some(Queued),
                ],
            ),
            (Some(Completed), [None; 8]),
            (Some(Error), [None; 8]),
            (Some(Cancelled), [None; 8]),
            (Some(TimedOut), [None; 8]),
        ];
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for (from, row) in expected {
            for (event, want) in events().into_iter().zip(row) {
                let mut record = record_in(*from);
                let before = record.clone();
                let got = apply(&mut record, event.clone(), now);
                match want {
                    Some(state) => {
                        assert_eq!(got, Ok(*state), "{from:?} + {event:?}");
                        assert_eq!(record.state, *state);
                        assert_eq!(record.version, before.version + 1);
                        assert_eq!(record.completed_at.is_some(), state.is_final());
                    }
                    None => {
                        assert!(got.is_err(), "{from:?} + {event:?} should be refused, got {got:?}");
                        assert_eq!(record, before, "a refused event changes nothing");
                    }
                }
            }
        }
    }

    #[test]
    fn what_each_event_records() {
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut r = record_in(None);
        r.callback_url = Some("https://example.com/cb".into());
        apply(&mut r, Event::Accepted, t(1)).unwrap();
        assert_eq!(r.created_at, t(1));
        apply(&mut r, Event::Started, t(2)).unwrap();
        assert_eq!((r.started_at, r.attempts), (Some(t(2)), 1));
        apply(&mut r, Event::Progress { percent: 150, stage: "x".into(), items: None }, t(3)).unwrap();
        assert_eq!(r.progress.percent, 99, "100 is kept for done");
        apply(&mut r, Event::Requeued, t(4)).unwrap();
        assert_eq!((r.state, r.started_at), (Queued, None));
        apply(&mut r, Event::Started, t(5)).unwrap();
        assert_eq!(r.attempts, 2);
        apply(&mut r, Event::Finished(Arc::from(&b"[1]"[..])), t(6)).unwrap();
        assert_eq!((r.completed_at, r.progress.percent, r.callback_pending), (Some(t(6)), 100, true));
        assert_eq!(r.result.as_deref(), Some(&b"[1]"[..]));
        // A late failure after the result is refused: the result is not lost.
        let err = apply(&mut r, Event::Failed(TaskError::new(500, "late", "late")), t(7)).unwrap_err();
        assert_eq!(err.to_string(), "a completed task cannot be failed");
        assert!(r.error.is_none());
    }

    #[test]
    fn outcomes_map_to_events_by_error_kind() {
        assert_eq!(Event::outcome(Err(TaskError::cancelled())), Event::Cancelled);
        assert_eq!(Event::outcome(Err(TaskError::timed_out())), Event::TimedOut);
        // The kind decides, not the code.
        let e = TaskError::new(504, "timed-out", "an upstream timed out");
        assert_eq!(Event::outcome(Err(e.clone())), Event::Failed(e));
    }
}
