//! Task timings: how long tasks wait in the queue, and how long each stage
//! of their work takes. Recorded by pool workers (not the reactors' hot
//! path), under a short lock.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::recorder::{latency_histogram, MAX_MICROS};
use super::{histogram_samples, Exposition};

#[derive(Debug)]
struct Timing {
    histogram: Histogram<u64>,
    sum_micros: u64,
}

impl Timing {
    fn new() -> Self {
        Timing { histogram: latency_histogram(), sum_micros: 0 }
    }

    fn record(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(MAX_MICROS);
        self.histogram.saturating_record(micros.clamp(1, MAX_MICROS));
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }
}

#[derive(Debug)]
struct Inner {
    wait: Timing,
    stages: BTreeMap<&'static str, Timing>,
}

/// Queue waits and stage durations of tasks.
#[derive(Debug)]
pub struct TaskTimes {
    inner: Mutex<Inner>,
}

impl Default for TaskTimes {
    fn default() -> Self {
        TaskTimes { inner: Mutex::new(Inner { wait: Timing::new(), stages: BTreeMap::new() }) }
    }
}

impl TaskTimes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A task waited `took` between being accepted and a worker taking it.
    pub fn waited(&self, took: Duration) {
        self.lock().wait.record(took);
    }

    /// A task spent `took` in `stage`.
    pub fn stage(&self, stage: &'static str, took: Duration) {
        self.lock().stages.entry(stage).or_insert_with(Timing::new).record(took);
    }

    /// Writes `pagelens_task_wait_seconds` and `pagelens_job_duration_seconds{stage}`.
    pub fn write(&self, out: &mut Exposition) {
        let inner = self.lock();
        out.family("pagelens_task_wait_seconds", "histogram", "Time tasks waited in the queue for a worker.");
        histogram_samples(out, "pagelens_task_wait_seconds", &[], &inner.wait.histogram, inner.wait.sum_micros);
        out.family("pagelens_job_duration_seconds", "histogram", "Time task work spent in each stage.");
        for (stage, timing) in &inner.stages {
            histogram_samples(
                out,
                "pagelens_job_duration_seconds",
                &[("stage", stage)],
                &timing.histogram,
                timing.sum_micros,
            );
        }
    }
}
