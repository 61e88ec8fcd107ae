//! Tasks as clients see them: ids, states, progress, the status document.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::pool::Priority;

/// A random 128-bit task id, written as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u128);

impl TaskId {
    /// A fresh id from the kernel's random source (not guessable).
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
                return TaskId(nanos ^ u128::from_le_bytes(bytes));
            }
        }
        TaskId(u128::from_le_bytes(bytes))
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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

    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Queued | TaskState::Processing)
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

/// Why a task failed: an HTTP status, a stable code, words for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskError {
    /// The HTTP status a synchronous request would have got.
    pub status: u16,
    /// Stable identifier.
    pub code: String,
    /// For a person.
    pub detail: String,
}

impl TaskError {
    /// A new error.
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        TaskError { status, code: code.to_string(), detail: detail.into() }
    }
}

/// A task's status document (the body of `GET /analyze/status/{id}`).
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// The id.
    pub task_id: TaskId,
    /// `analyze` or `bulk`.
    pub kind: &'static str,
    /// The state.
    pub status: TaskState,
    /// The priority.
    pub priority: Priority,
    /// Progress.
    pub progress: Progress,
    /// The result, once completed (JSON encoded off the reactor).
    pub result: Option<Box<RawValue>>,
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
}

/// A batch's item counts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ItemCounts {
    /// Items finished (any outcome).
    pub done: usize,
    /// Items that failed.
    pub failed: usize,
    /// Items in the batch.
    pub total: usize,
}

/// `SystemTime` as RFC 3339 UTC with milliseconds.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_340_096)), "2026-11-22T09:34:56.000Z");
    }
}
