//! What a load-test thread measured; threads' stats are merged at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency recorded, in microseconds (an hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant figures.
pub fn latency() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).unwrap_or_else(|_| unreachable!("constant bounds are valid"))
}

fn coarse() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).unwrap_or_else(|_| unreachable!("constant bounds are valid"))
}

/// Records `took` into `h`.
pub fn record(h: &mut Histogram<u64>, took: Duration) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(MAX_MICROS);
    h.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// Failed requests by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Errors {
    /// Could not connect.
    pub connect: u64,
    /// No complete response within `--timeout`.
    pub timeout: u64,
    /// The connection was reset or closed mid-response.
    pub reset: u64,
    /// The response was not valid HTTP/1.1.
    pub parse: u64,
}

impl Errors {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.reset + self.parse
    }

    fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.reset += other.reset;
        self.parse += other.parse;
    }
}

/// The kinds of [`Errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// See [`Errors::connect`].
    Connect,
    /// See [`Errors::timeout`].
    Timeout,
    /// See [`Errors::reset`].
    Reset,
    /// See [`Errors::parse`].
    Parse,
}

/// One second of the measured run.
#[derive(Debug, Clone)]
pub struct Second {
    /// Responses.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Latencies (corrected), 2 significant figures.
    pub latency: Histogram<u64>,
}

/// Task flows' outcomes and end-to-end latency.
#[derive(Debug, Clone)]
pub struct TaskStats {
    /// From the intended submit time to the poll that saw the end.
    pub latency: Histogram<u64>,
    /// Final states (`completed`, `error`, ...) and refusals (`refused-503`).
    pub outcomes: BTreeMap<String, u64>,
}

impl Default for TaskStats {
    fn default() -> Self {
        TaskStats { latency: latency(), outcomes: BTreeMap::new() }
    }
}

/// Status polls of task flows: the tool's own traffic, kept apart from
/// the requests the schedule sent.
#[derive(Debug, Clone)]
pub struct PollStats {
    /// Polls answered.
    pub count: u64,
    /// From sending a poll to its answer.
    pub latency: Histogram<u64>,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
}

impl Default for PollStats {
    fn default() -> Self {
        PollStats { count: 0, latency: latency(), statuses: BTreeMap::new() }
    }
}

impl PollStats {
    /// One answered poll.
    pub fn response(&mut self, status: u16, took: Duration) {
        self.count += 1;
        record(&mut self.latency, took);
        *self.statuses.entry(status).or_default() += 1;
    }
}

/// A thread's measurements.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency from the intended send time (coordinated omission corrected).
    pub corrected: Histogram<u64>,
    /// Latency from the actual send time.
    pub uncorrected: Histogram<u64>,
    /// Responses received.
    pub requests: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Responses by request name.
    pub by_name: BTreeMap<String, u64>,
    /// Failed requests.
    pub errors: Errors,
    /// Per second of the measured run.
    pub seconds: Vec<Second>,
    /// Task flows.
    pub tasks: TaskStats,
    /// Task flows' status polls.
    pub polls: PollStats,
    /// Requests the schedule called for (open loop).
    pub scheduled: u64,
    /// CPU time the thread used.
    pub cpu: Duration,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            corrected: latency(),
            uncorrected: latency(),
            requests: 0,
            bytes: 0,
            statuses: BTreeMap::new(),
            by_name: BTreeMap::new(),
            errors: Errors::default(),
            seconds: Vec::new(),
            tasks: TaskStats::default(),
            polls: PollStats::default(),
            scheduled: 0,
            cpu: Duration::ZERO,
        }
    }
}

impl Stats {
    fn second(&mut self, index: usize) -> &mut Second {
        while self.seconds.len() <= index {
            self.seconds.push(Second { requests: 0, errors: 0, latency: coarse() });
        }
        &mut self.seconds[index]
    }

    /// A response, in second `second` of the run (its status is counted by the caller).
    pub fn response(&mut self, second: usize, bytes: usize, corrected: Duration, uncorrected: Duration) {
        self.requests += 1;
        self.bytes += bytes as u64;
        record(&mut self.corrected, corrected);
        record(&mut self.uncorrected, uncorrected);
        let s = self.second(second);
        s.requests += 1;
        record(&mut s.latency, corrected);
    }

    /// A failed request.
    pub fn error(&mut self, second: usize, kind: ErrorKind) {
        match kind {
            ErrorKind::Connect => self.errors.connect += 1,
            ErrorKind::Timeout => self.errors.timeout += 1,
            ErrorKind::Reset => self.errors.reset += 1,
            ErrorKind::Parse => self.errors.parse += 1,
        }
        self.second(second).errors += 1;
    }

    /// Adds `other` into this.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        let _ = self.tasks.latency.add(&other.tasks.latency);
        self.requests += other.requests;
        self.bytes += other.bytes;
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.by_name {
            *self.by_name.entry(k.clone()).or_default() += v;
        }
        self.polls.count += other.polls.count;
        let _ = self.polls.latency.add(&other.polls.latency);
        for (k, v) in &other.polls.statuses {
            *self.polls.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.tasks.outcomes {
            *self.tasks.outcomes.entry(k.clone()).or_default() += v;
        }
        self.errors.add(&other.errors);
        for (i, s) in other.seconds.iter().enumerate() {
            let mine = self.second(i);
            mine.requests += s.requests;
            mine.errors += s.errors;
            let _ = mine.latency.add(&s.latency);
        }
        self.scheduled += other.scheduled;
        self.cpu += other.cpu;
    }
}
