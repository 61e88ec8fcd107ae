//! Metrics: per-thread recorders, one thread that merges them and renders
//! the Prometheus text exposition once a second, and collectors that read
//! the figures other parts already keep (connections, tasks, the process).
//!
//! A scrape returns the latest rendering: it never waits on a reactor and
//! never renders on one.

pub mod collectors;
mod exposition;
mod process;
pub mod recorder;

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use exposition::Exposition;
use recorder::{latency_histogram, Handoff, SeriesKey};

/// How often recorders flush and the exposition is rendered.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: [f64; 18] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Quantiles published from the last interval's HDR data.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

/// Adds a part's figures to the exposition.
pub type Collector = Box<dyn Fn(&mut Exposition) + Send>;

/// The latest renderings in both formats.
#[derive(Debug, Default)]
struct Rendered {
    prometheus: Arc<String>,
    openmetrics: Arc<String>,
}

/// A series' running totals.
struct Totals {
    /// All durations since start (for the cumulative buckets).
    all: Histogram<u64>,
    /// Durations of the last interval (for the quantiles).
    last: Histogram<u64>,
    sum_micros: u64,
}

/// The metrics hub.
pub struct Metrics {
    sink: Sender<Handoff>,
    rendered: Mutex<Rendered>,
    collectors: Mutex<Vec<Collector>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// Starts the metrics thread.
    pub fn start() -> std::io::Result<Arc<Metrics>> {
        let (sink, source) = channel();
        let metrics = Arc::new(Metrics {
            sink,
            rendered: Mutex::new(Rendered::default()),
            collectors: Mutex::new(vec![Box::new(process::collect)]),
        });
        let weak = Arc::downgrade(&metrics);
        std::thread::Builder::new().name("pagelens-metrics".into()).spawn(move || run(&weak, &source))?;
        Ok(metrics)
    }

    /// Where a recorder sends its intervals.
    pub fn sink(&self) -> Sender<Handoff> {
        self.sink.clone()
    }

    /// Adds a collector, read at every rendering.
    pub fn add_collector(&self, collector: Collector) {
        lock(&self.collectors).push(collector);
    }

    /// The latest rendering, in OpenMetrics 1.0 (`true`) or Prometheus 0.0.4 text format.
    pub fn rendered(&self, openmetrics: bool) -> Arc<String> {
        let rendered = lock(&self.rendered);
        Arc::clone(if openmetrics { &rendered.openmetrics } else { &rendered.prometheus })
    }
}

fn run(metrics: &std::sync::Weak<Metrics>, source: &Receiver<Handoff>) {
    let mut totals: BTreeMap<SeriesKey, Totals> = BTreeMap::new();
    let mut next = Instant::now() + INTERVAL;
    loop {
        match source.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok((mut interval, back)) => {
                for (key, stats) in &interval.series {
                    let t = totals.entry(*key).or_insert_with(|| Totals {
                        all: latency_histogram(),
                        last: latency_histogram(),
                        sum_micros: 0,
                    });
                    // Same bounds on both sides, so adding cannot fail.
                    let _ = t.all.add(&stats.latency);
                    let _ = t.last.add(&stats.latency);
                    t.sum_micros = t.sum_micros.saturating_add(stats.sum_micros);
                }
                interval.reset();
                // The recorder may be gone (its reactor stopped); then the interval is dropped.
                let _ = back.send(interval);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
        }
        if Instant::now() < next {
            continue;
        }
        next += INTERVAL;
        let Some(metrics) = metrics.upgrade() else { return };
        let render = |openmetrics| {
            let mut out = Exposition::new(openmetrics);
            requests(&mut out, &totals);
            for collector in lock(&metrics.collectors).iter() {
                collector(&mut out);
            }
            Arc::new(out.finish())
        };
        let rendered = Rendered { prometheus: render(false), openmetrics: render(true) };
        *lock(&metrics.rendered) = rendered;
        for t in totals.values_mut() {
            t.last.reset();
        }
    }
}

fn requests(out: &mut Exposition, totals: &BTreeMap<SeriesKey, Totals>) {
    let class_label = |class: u8| format!("{class}xx");
    out.family(
        "pagelens_http_request_duration_seconds",
        "histogram",
        "Time from a complete request to its response being encoded.",
    );
    for (key, t) in totals {
        let class = class_label(key.class);
        let labels = [("route", key.route), ("method", key.method), ("status_class", class.as_str())];
        for le in BUCKETS {
            let count = t.all.count_between(0, (le * 1e6) as u64);
            out.sample_le("pagelens_http_request_duration_seconds_bucket", &labels, &le.to_string(), count as f64);
        }
        let count = t.all.len() as f64;
        out.sample_le("pagelens_http_request_duration_seconds_bucket", &labels, "+Inf", count);
        out.sample("pagelens_http_request_duration_seconds_sum", &labels, t.sum_micros as f64 / 1e6);
        out.sample("pagelens_http_request_duration_seconds_count", &labels, count);
    }
    out.family(
        "pagelens_http_request_latency_seconds",
        "summary",
        "Request duration quantiles over the last interval, from HDR histograms (3 significant figures).",
    );
    for (key, t) in totals {
        let class = class_label(key.class);
        let labels = [("route", key.route), ("method", key.method), ("status_class", class.as_str())];
        if !t.last.is_empty() {
            for (q, name) in QUANTILES {
                let mut with_q = labels.to_vec();
                with_q.push(("quantile", name));
                out.sample("pagelens_http_request_latency_seconds", &with_q, t.last.value_at_quantile(q) as f64 / 1e6);
            }
        }
        out.sample("pagelens_http_request_latency_seconds_sum", &labels, t.sum_micros as f64 / 1e6);
        out.sample("pagelens_http_request_latency_seconds_count", &labels, t.all.len() as f64);
    }
}
