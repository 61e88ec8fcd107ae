//! Task timings: how long tasks wait in the queue, and how long each stage
//! of their work takes. Recorded by pool workers (not the reactors' hot
//! path), under a short lock.

use std::time::Duration;

use super::durations::Durations;
use super::Exposition;

/// Queue waits, stage durations and store commits of tasks.
#[derive(Debug, Default)]
pub struct TaskTimes {
    wait: Durations,
    stages: Durations,
    commits: Durations,
    whole: Durations,
}

impl TaskTimes {
    /// A task waited `took` between being accepted and a worker taking it.
    pub fn waited(&self, took: Duration) {
        self.wait.record("", took);
    }

    /// A task spent `took` in `stage`.
    pub fn stage(&self, stage: &'static str, took: Duration) {
        self.stages.record(stage, took);
    }

    /// A task ended `took` after it was accepted.
    pub fn ended(&self, took: Duration) {
        self.whole.record("", took);
    }

    /// A commit group of the task store took `took`.
    pub fn committed(&self, took: Duration) {
        self.commits.record("", took);
    }

    /// Queue waits and stage durations since this process started: count,
    /// p50 and p99 in milliseconds.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "queue_wait": unlabelled(&self.wait),
            "stages": self.stages.summary(),
        })
    }

    /// Commit groups' durations since this process started: count, p50 and
    /// p99 in milliseconds (from the HDR histogram, not its buckets).
    pub fn commit_summary(&self) -> serde_json::Value {
        unlabelled(&self.commits)
    }

    /// Writes `pagelens_task_wait_seconds` and `pagelens_job_duration_seconds{stage}`.
    pub fn write(&self, out: &mut Exposition) {
        self.wait.write(out, "pagelens_task_wait_seconds", "", "Time tasks waited in the queue for a worker.");
        self.stages.write(out, "pagelens_job_duration_seconds", "stage", "Time task work spent in each stage.");
        self.commits.write(out, "pagelens_store_commit_seconds", "", "Time each commit group of the task store took.");
        self.whole.write(out, "pagelens_task_duration_seconds", "", "Time from a task's acceptance to its end.");
    }
}

/// The summary of durations recorded without a label.
fn unlabelled(durations: &Durations) -> serde_json::Value {
    durations.summary().get("").cloned().unwrap_or(serde_json::Value::Null)
}
