//! Tasks as clients see them: ids, states, progress, the status document.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::clock::{from_millis, parse_rfc3339, rfc3339, to_millis};

use serde::{Deserialize, Serialize};

use crate::pool::Priority;

/// A 128-bit task id, written as 32 hex digits: the milliseconds since the
/// epoch in its top 48 bits, 80 random bits below (as a UUIDv7 lays them
/// out), so that ids are unguessable yet arrive in order, and a store's
/// index of them grows at its end instead of at a random page each task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u128);

impl TaskId {
    /// A fresh id: the time now, then 80 bits from the kernel's random
    /// source (not guessable).
    pub fn random() -> TaskId {
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `bytes`.
            let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0) };
            if n > 0 {
                filled += n as usize;
            } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                // getrandom(2) cannot fail on Linux ≥ 3.17 once the pool is
                // initialised; the clock is a last resort, never seen in use.
                let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                bytes = (nanos ^ u128::from_le_bytes(bytes)).to_le_bytes();
                break;
            }
        }
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()) & ((1 << 48) - 1);
        TaskId(millis << 80 | u128::from_le_bytes(bytes) & ((1 << 80) - 1))
    }
}

impl TaskId {
    /// The id as 16 bytes, for a store's key.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id stored as `bytes`; `None` unless there are exactly 16.
    pub fn from_bytes(bytes: &[u8]) -> Option<TaskId> {
        bytes.try_into().ok().map(|b| TaskId(u128::from_be_bytes(b)))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for TaskId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        u128::from_str_radix(s, 16).map(TaskId).map_err(|_| ())
    }
}

impl Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// A worker is running it.
    Processing,
    /// Finished with a result.
    Completed,
    /// Finished with an error.
    Error,
    /// Cancelled by a client.
    Cancelled,
    /// Ran past its timeout.
    TimedOut,
}

impl TaskState {
    /// All states.
    pub const ALL: [TaskState; 6] = [
        TaskState::Queued,
        TaskState::Processing,
        TaskState::Completed,
        TaskState::Error,
        TaskState::Cancelled,
        TaskState::TimedOut,
    ];

    /// The states a task ends in (those [`TaskState::is_final`] holds for).
    pub const ENDED: [TaskState; 4] =
        [TaskState::Completed, TaskState::Error, TaskState::Cancelled, TaskState::TimedOut];

    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Queued | TaskState::Processing)
    }

    /// The state's number in a store (stable: stored data depends on it).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The state stored as `code`.
    pub fn from_code(code: u8) -> Option<TaskState> {
        TaskState::ALL.get(usize::from(code)).copied()
    }

    /// The name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Processing => "processing",
            TaskState::Completed => "completed",
            TaskState::Error => "error",
            TaskState::Cancelled => "cancelled",
            TaskState::TimedOut => "timed_out",
        }
    }
}

/// How far a running task has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// 0-100.
    pub percent: u8,
    /// What it is doing, e.g. `parsing`.
    pub stage: String,
}

/// What kind of end an error is: it decides the state a task ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The work failed (bad input, upstream, internal): state `error`.
    #[default]
    Failed,
    /// A client cancelled it: state `cancelled`.
    Cancelled,
    /// It ran past its timeout: state `timed_out`.
    TimedOut,
}

/// Why a task failed: its kind, an HTTP status, a stable code, words for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    /// Which kind of end this is.
    #[serde(skip_serializing, default)]
    pub kind: ErrorKind,
    /// The HTTP status a synchronous request would have got.
    pub status: u16,
    /// Stable identifier.
    pub code: String,
    /// For a person.
    pub detail: String,
}

impl TaskError {
    /// A failure of the work.
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        TaskError { kind: ErrorKind::Failed, status, code: code.to_string(), detail: detail.into() }
    }

    /// The task was cancelled.
    pub fn cancelled() -> Self {
        TaskError { kind: ErrorKind::Cancelled, ..TaskError::new(499, "cancelled", "the task was cancelled") }
    }

    /// The task ran past its timeout.
    pub fn timed_out() -> Self {
        TaskError { kind: ErrorKind::TimedOut, ..TaskError::new(504, "timed-out", "the task ran past its timeout") }
    }

    /// The final state a task ending with this error is in.
    pub fn state(&self) -> TaskState {
        match self.kind {
            ErrorKind::Failed => TaskState::Error,
            ErrorKind::Cancelled => TaskState::Cancelled,
            ErrorKind::TimedOut => TaskState::TimedOut,
        }
    }
}

/// A task's status document (the body of `GET /analyze/status/{id}`)
/// without its result, which [`status_body`] splices in as stored.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// The id.
    pub task_id: TaskId,
    /// The handler that runs it (`analyze`, `bulk`).
    pub kind: String,
    /// The state.
    pub status: TaskState,
    /// The priority.
    pub priority: Priority,
    /// Progress.
    pub progress: Progress,
    /// The error, once failed.
    pub error: Option<TaskError>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When a worker took it.
    pub started_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
    /// For batches: items finished and in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemCounts>,
    /// The API key (its name) that submitted it, when keys are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The status document as JSON: `view` with `"result":` and the stored
/// result's bytes added, without parsing or re-encoding them.
pub fn status_body(view: &TaskView, result: Option<&[u8]>) -> Vec<u8> {
    let mut body = status_prefix(view, result.is_some());
    if let Some(result) = result {
        body.reserve(result.len() + 1);
        body.extend_from_slice(result);
        body.extend_from_slice(STATUS_SUFFIX);
    }
    body
}

/// What closes a status document after its result.
pub const STATUS_SUFFIX: &[u8] = b"}";

/// The status document up to its result: `view` and, `with_result`,
/// `,"result":` (the result and [`STATUS_SUFFIX`] follow); else the whole
/// document.
pub fn status_prefix(view: &TaskView, with_result: bool) -> Vec<u8> {
    // A TaskView always serialises (plain fields, string map keys).
    let mut body = serde_json::to_vec(view).unwrap_or_else(|_| b"{}".to_vec());
    if with_result {
        body.pop(); // the closing brace
        body.extend_from_slice(b",\"result\":");
    }
    body
}

/// A batch's item counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ItemCounts {
    /// Items finished (any outcome).
    pub done: usize,
    /// Items that failed.
    pub failed: usize,
    /// Items in the batch.
    pub total: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids carry their millisecond in the top 48 bits, so a later one sorts
    /// after an earlier one; within a millisecond 80 random bits keep them
    /// apart and unguessable.
    #[test]
    fn ids_are_ordered_by_their_millisecond_and_random_below_it() {
        let millis = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
        let before = millis();
        let burst: Vec<TaskId> = (0..1000).map(|_| TaskId::random()).collect();
        let mut distinct = burst.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), burst.len(), "no two ids alike");
        let first = burst[0];
        assert!((first.0 >> 80) >= before && (first.0 >> 80) <= millis(), "the top 48 bits are the millisecond");
        // Wait (on the clock, not a sleep) for the next millisecond.
        let now = millis();
        while millis() == now {
            std::hint::spin_loop();
        }
        let later = TaskId::random();
        assert!(burst.iter().all(|id| *id < later), "an id of a later millisecond sorts after");
        let low_bits: std::collections::HashSet<u128> = burst.iter().map(|id| id.0 & 0xffff).collect();
        assert!(low_bits.len() > 900, "the low bits are random: {} distinct of 1000", low_bits.len());
    }

    #[test]
    fn the_ended_states_are_the_final_ones() {
        let finals: Vec<TaskState> = TaskState::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, TaskState::ENDED);
    }

    #[test]
    fn ids_are_random_hex_and_round_trip() {
        let a = TaskId::random();
        let b = TaskId::random();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<TaskId>(), Ok(a));
        assert!("xyz".parse::<TaskId>().is_err());
        assert!("0".repeat(33).parse::<TaskId>().is_err());
        assert!("+".repeat(32).parse::<TaskId>().is_err());
    }
}
