//! Metrics: per-thread recorders, one thread that merges them and renders
//! the Prometheus text exposition once a second, and collectors that read
//! the figures other parts already keep (connections, tasks, the process).
//!
//! A scrape returns the latest rendering: it never waits on a reactor and
//! never renders on one.

pub mod alerts;
pub mod collectors;
pub mod durations;
mod exposition;
mod process;
pub mod recorder;
pub mod tasks;

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::reactor::StreamSender;
use alerts::{AlertConfig, AlertState, Alerts, Inputs, Rule};

pub use exposition::{Exposition, Texts};
use recorder::{latency_histogram, Handoff, SeriesKey};

/// How often recorders flush and the exposition is rendered.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Upper bounds of the request-duration histogram buckets: microseconds,
/// and the `le` label in seconds.
const BUCKETS: [(u64, &str); 18] = [
    (100, "0.0001"),
    (250, "0.00025"),
    (500, "0.0005"),
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
    (30_000_000, "30"),
    (60_000_000, "60"),
];

/// The `_bucket`, `_sum` and `_count` samples of one histogram series
/// recorded in microseconds.
pub fn histogram_samples(
    out: &mut Exposition,
    name: &str,
    labels: &[(&str, &str)],
    histogram: &Histogram<u64>,
    sum_seconds: f64,
) {
    let bucket = format!("{name}_bucket");
    for ((_, le), count) in BUCKETS.iter().zip(bucket_counts(histogram)) {
        out.sample_le(&bucket, labels, le, count as f64);
    }
    let count = histogram.len() as f64;
    out.sample_le(&bucket, labels, "+Inf", count);
    out.sample(&format!("{name}_sum"), labels, sum_seconds);
    out.sample(&format!("{name}_count"), labels, count);
}

/// Cumulative counts per bucket in one pass over the recorded values
/// (`count_between` per bucket walks every HDR counter each time: 74 ms for
/// a 1,000-series scrape, measured).
fn bucket_counts(histogram: &Histogram<u64>) -> [u64; BUCKETS.len()] {
    let mut counts = [0u64; BUCKETS.len()];
    for value in histogram.iter_recorded() {
        // A value counts in the first bucket whose bound holds it (HDR
        // values stand for a small range; its top is what `le` compares).
        let top = histogram.highest_equivalent(value.value_iterated_to());
        if let Some(i) = BUCKETS.iter().position(|(le, _)| top <= *le) {
            counts[i] += value.count_since_last_iteration();
        }
    }
    let mut running = 0;
    for count in &mut counts {
        running += *count;
        *count = running;
    }
    counts
}

/// Quantiles published from the last interval's HDR data.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

/// Adds a part's figures to the exposition.
pub type Collector = Box<dyn Fn(&mut Exposition) + Send>;

/// Adds a named part to the live snapshot, e.g. `("queue", {...})`.
pub type SnapshotPart = Box<dyn Fn() -> (&'static str, serde_json::Value) + Send>;

/// Seconds of history a new watcher of the live stream is sent.
pub const HISTORY: usize = 120;

/// The live stream's past: the last [`HISTORY`] seconds in brief, and the
/// latest whole snapshot (JSON; empty before the first).
#[derive(Debug, Default)]
struct History {
    points: VecDeque<Point>,
    latest: String,
}

/// One second of the live stream in brief: what the dashboard charts.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Point {
    /// Milliseconds since the Unix epoch.
    t: i64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    waiting: u64,
}

impl Point {
    fn of(snapshot: &serde_json::Value) -> Point {
        let ms = |q: &str| snapshot["latency_seconds"][q].as_f64().unwrap_or(0.0) * 1e3;
        Point {
            t: snapshot["time"].as_i64().unwrap_or(0),
            rps: snapshot["requests_per_second"].as_f64().unwrap_or(0.0),
            p50_ms: ms("p50"),
            p99_ms: ms("p99"),
            waiting: snapshot["queue"]["waiting"].as_u64().unwrap_or(0),
        }
    }
}

/// A series' running totals.
struct Totals {
    /// All durations since start (for the cumulative buckets).
    all: Histogram<u64>,
    /// Durations of the last interval (for the quantiles).
    last: Histogram<u64>,
    sum_nanos: u64,
}

/// The metrics hub.
pub struct Metrics {
    sink: Sender<Handoff>,
    /// The latest rendering, in both formats.
    rendered: Mutex<Arc<Texts>>,
    collectors: Mutex<Vec<Collector>>,
    snapshot_parts: Mutex<Vec<SnapshotPart>>,
    /// Clients of the live stream; one snapshot a second goes to all of them.
    watchers: Mutex<Vec<StreamSender>>,
    /// What a new watcher is sent first, so that its page is full at once.
    /// Locked after `watchers`.
    history: Mutex<History>,
    /// Alert rules, once enabled.
    alerts: Arc<Mutex<Option<Alerts>>>,
    /// Told of every alert change (the webhook), on the metrics thread.
    alert_hook: Mutex<Option<AlertHook>>,
}

/// Told of each alert change, on the metrics thread: keep it short.
pub type AlertHook = Box<dyn Fn(&alerts::Change) + Send>;

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
            rendered: Mutex::new(Arc::new(Exposition::default().finish())),
            collectors: Mutex::new(vec![Box::new(process::collect)]),
            snapshot_parts: Mutex::new(vec![Box::new(process::snapshot)]),
            watchers: Mutex::new(Vec::new()),
            history: Mutex::new(History::default()),
            alerts: Arc::new(Mutex::new(None)),
            alert_hook: Mutex::new(None),
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

    /// Adds a part to the live snapshot.
    pub fn add_snapshot_part(&self, part: SnapshotPart) {
        lock(&self.snapshot_parts).push(part);
    }

    /// Sends `watcher` the last [`HISTORY`] seconds in brief (one
    /// `history` event), then the live snapshot once a second, as
    /// Server-Sent Events, until it is gone.
    pub fn watch(&self, watcher: StreamSender) {
        let mut watchers = lock(&self.watchers);
        // Under the watchers' lock, so that no second is sent twice or missed.
        let history = lock(&self.history);
        let mut opening = format!(
            ": pagelens live metrics, one event a second\n\nevent: history\ndata: {}\n\n",
            serde_json::to_string(&history.points).unwrap_or_else(|_| "[]".into())
        );
        if !history.latest.is_empty() {
            opening.push_str(&format!("data: {}\n\n", history.latest));
        }
        drop(history);
        watcher.send(opening.into_bytes());
        watchers.push(watcher);
    }

    /// The recent history as one JSON object, `{"points": [...], "latest":
    /// {...} | null}`, for a page to draw before its stream opens.
    pub fn history(&self) -> serde_json::Value {
        let history = lock(&self.history);
        let latest: serde_json::Value = serde_json::from_str(&history.latest).unwrap_or_default();
        serde_json::json!({ "points": history.points, "latest": latest })
    }

    /// Evaluates alert rules with `config` every second, from now on.
    pub fn enable_alerts(&self, config: AlertConfig) {
        *lock(&self.alerts) = Some(Alerts::new(config));
        let alerts = Arc::clone(&self.alerts);
        self.add_collector(Box::new(move |out| {
            if let Some(alerts) = lock(&alerts).as_ref() {
                out.family("pagelens_alerts_firing", "gauge", "1 while the alert fires, else 0.");
                for rule in alerts.rules() {
                    let firing = f64::from(u8::from(rule.state == AlertState::Firing));
                    out.sample("pagelens_alerts_firing", &[("alert", rule.name)], firing);
                }
            }
        }));
    }

    /// Calls `hook` on every alert change from now on.
    pub fn on_alert_change(&self, hook: AlertHook) {
        *lock(&self.alert_hook) = Some(hook);
    }

    /// The alert rules and their states (`None` when alerts are off).
    pub fn alerts(&self) -> Option<Vec<Rule>> {
        lock(&self.alerts).as_ref().map(|a| a.rules().to_vec())
    }

    /// The live snapshot's parts from the registered sources.
    fn snapshot_parts(&self, mut snapshot: serde_json::Value) -> serde_json::Value {
        for part in lock(&self.snapshot_parts).iter() {
            let (name, value) = part();
            snapshot[name] = value;
        }
        snapshot
    }

    /// Keeps the snapshot's brief in the history and sends the same
    /// snapshot bytes to every watcher; watchers whose connection is gone
    /// are dropped.
    fn broadcast(&self, mut snapshot: serde_json::Value) {
        let mut watchers = lock(&self.watchers);
        watchers.retain(|w| !w.is_gone());
        snapshot["time"] = crate::clock::to_millis(std::time::SystemTime::now()).into();
        snapshot["watchers"] = watchers.len().into();
        if let Some(alerts) = lock(&self.alerts).as_ref() {
            let firing: Vec<&str> =
                alerts.rules().iter().filter(|r| r.state == AlertState::Firing).map(|r| r.name).collect();
            snapshot["alerts_firing"] = firing.into();
        }
        let json = snapshot.to_string();
        let event = format!("data: {json}\n\n").into_bytes();
        for watcher in watchers.iter() {
            watcher.send(event.clone());
        }
        let mut history = lock(&self.history);
        if history.points.len() == HISTORY {
            history.points.pop_front();
        }
        history.points.push_back(Point::of(&snapshot));
        history.latest = json;
    }

    /// Evaluates the alert rules on this second's figures; logs each change.
    fn evaluate_alerts(&self, aggregate: &Aggregate, snapshot: &serde_json::Value, previous: &mut (u64, u64)) {
        let mut guard = lock(&self.alerts);
        let Some(alerts) = guard.as_mut() else { return };
        let number = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        let fill = |used: &serde_json::Value, max: &serde_json::Value| {
            let max = number(max);
            if max > 0.0 {
                number(used) / max
            } else {
                0.0
            }
        };
        // Task totals are cumulative; the rules want this second's share.
        let ended = snapshot["queue"]["tasks_ended_total"].as_u64().unwrap_or(0);
        let timed_out = snapshot["queue"]["tasks_timed_out_total"].as_u64().unwrap_or(0);
        let (last_ended, last_timed_out) = std::mem::replace(previous, (ended, timed_out));
        let (responses, errors) = aggregate.interval_counts();
        let inputs = Inputs {
            worst_p99: aggregate.worst_p99(),
            responses,
            errors,
            queue_fill: fill(&snapshot["queue"]["waiting"], &snapshot["queue"]["capacity"]),
            connection_fill: fill(&snapshot["connections"]["open"], &snapshot["connections"]["max"]),
            tasks_ended: ended.saturating_sub(last_ended),
            tasks_timed_out: timed_out.saturating_sub(last_timed_out),
        };
        let changes = alerts.evaluate(Instant::now(), &inputs);
        drop(guard);
        let hook = lock(&self.alert_hook);
        for change in changes {
            crate::warn!("{}", change.line());
            if let Some(hook) = hook.as_ref() {
                hook(&change);
            }
        }
    }

    /// The latest rendering, in both formats.
    pub fn rendered(&self) -> Arc<Texts> {
        Arc::clone(&lock(&self.rendered))
    }
}

/// Request figures merged from every recorder: all-time (for buckets,
/// sums and counts) and since the last rendering (for quantiles).
#[derive(Default)]
pub struct Aggregate {
    totals: BTreeMap<SeriesKey, Totals>,
    bytes_in: u64,
    bytes_out: u64,
    requests_started: u64,
    protocol_errors: BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate").field("series", &self.totals.len()).finish()
    }
}

impl Aggregate {
    /// Adds one recorder's interval.
    pub fn merge(&mut self, interval: &recorder::Interval) {
        for (key, stats) in &interval.series {
            let t = self.totals.entry(*key).or_insert_with(|| Totals {
                all: latency_histogram(),
                last: latency_histogram(),
                sum_nanos: 0,
            });
            // Same bounds on both sides, so adding cannot fail.
            let _ = t.all.add(&stats.latency);
            let _ = t.last.add(&stats.latency);
            t.sum_nanos = t.sum_nanos.saturating_add(stats.sum_nanos);
        }
        self.bytes_in += interval.bytes_in;
        self.bytes_out += interval.bytes_out;
        self.requests_started += interval.requests_started;
        for (code, n) in &interval.protocol_errors {
            *self.protocol_errors.entry(code).or_default() += n;
        }
    }

    /// Writes the request families, then whatever `collectors` add, in both formats.
    pub fn render(&self, collectors: &[Collector]) -> Texts {
        let mut out = Exposition::default();
        requests(&mut out, &self.totals);
        self.traffic(&mut out);
        for collector in collectors {
            collector(&mut out);
        }
        out.finish()
    }

    fn traffic(&self, out: &mut Exposition) {
        out.single(
            "pagelens_http_received_bytes_total",
            "counter",
            "Request bytes read from clients.",
            self.bytes_in as f64,
        );
        out.single(
            "pagelens_http_sent_bytes_total",
            "counter",
            "Response bytes written to clients.",
            self.bytes_out as f64,
        );
        // Codec rejections (route "-") never reached the service.
        let answered: u64 = self.totals.iter().filter(|(k, _)| k.route != "-").map(|(_, t)| t.all.len()).sum();
        out.single(
            "pagelens_http_requests_in_flight",
            "gauge",
            "Requests handed to the service and not yet answered (as of the last interval).",
            self.requests_started.saturating_sub(answered) as f64,
        );
        out.family(
            "pagelens_http_protocol_errors_total",
            "counter",
            "Requests rejected by the HTTP codec, by problem code.",
        );
        for (code, n) in &self.protocol_errors {
            out.sample("pagelens_http_protocol_errors_total", &[("code", code)], *n as f64);
        }
    }

    /// The last interval in brief: requests per second, 5xx responses, and
    /// latency quantiles over every series.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut all = latency_histogram();
        let mut errors = 0;
        for (key, t) in &self.totals {
            // Same bounds on both sides, so adding cannot fail.
            let _ = all.add(&t.last);
            if key.class == 5 {
                errors += t.last.len();
            }
        }
        let seconds = |q: f64| if all.is_empty() { 0.0 } else { all.value_at_quantile(q) as f64 / 1e6 };
        serde_json::json!({
            "requests_per_second": all.len() as f64 / INTERVAL.as_secs_f64(),
            "errors_5xx": errors,
            "latency_seconds": { "p50": seconds(0.5), "p99": seconds(0.99), "p999": seconds(0.999) },
        })
    }

    /// Responses in the last interval, and how many were 5xx.
    pub fn interval_counts(&self) -> (u64, u64) {
        let responses = self.totals.values().map(|t| t.last.len()).sum();
        let errors = self.totals.iter().filter(|(k, _)| k.class == 5).map(|(_, t)| t.last.len()).sum();
        (responses, errors)
    }

    /// The route with the highest p99 over the last interval, and that p99 in seconds.
    pub fn worst_p99(&self) -> Option<(String, f64)> {
        self.totals
            .iter()
            .filter(|(_, t)| !t.last.is_empty())
            .map(|(k, t)| (k.route, t.last.value_at_quantile(0.99) as f64 / 1e6))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(route, p99)| (route.to_string(), p99))
    }

    /// Starts a new quantile interval.
    pub fn next_interval(&mut self) {
        for t in self.totals.values_mut() {
            t.last.reset();
        }
    }
}

fn run(metrics: &std::sync::Weak<Metrics>, source: &Receiver<Handoff>) {
    let mut aggregate = Aggregate::default();
    let mut task_totals = (0, 0);
    let mut next = Instant::now() + INTERVAL;
    loop {
        match source.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok((mut interval, back)) => {
                aggregate.merge(&interval);
                interval.reset();
                // The recorder may be gone (its reactor stopped); then the interval is dropped.
                let _ = back.send(interval);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        if Instant::now() < next {
            continue;
        }
        next += INTERVAL;
        let Some(metrics) = metrics.upgrade() else { return };
        let snapshot = metrics.snapshot_parts(aggregate.snapshot());
        metrics.evaluate_alerts(&aggregate, &snapshot, &mut task_totals);
        let rendered = Arc::new(aggregate.render(&lock(&metrics.collectors)));
        *lock(&metrics.rendered) = rendered;
        metrics.broadcast(snapshot);
        aggregate.next_interval();
    }
}

/// A request series' labels: `key` only when API keys named one.
fn series_labels<'a>(key: &'a SeriesKey, class: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("route", key.route), ("method", key.method), ("status_class", class)];
    if !key.key.is_empty() {
        labels.push(("key", key.key));
    }
    labels
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
        let labels = series_labels(key, &class);
        histogram_samples(out, "pagelens_http_request_duration_seconds", &labels, &t.all, t.sum_nanos as f64 / 1e9);
    }
    out.family(
        "pagelens_http_request_latency_seconds",
        "summary",
        "Request duration quantiles over the last interval, from HDR histograms (3 significant figures).",
    );
    for (key, t) in totals {
        let class = class_label(key.class);
        let labels = series_labels(key, &class);
        if !t.last.is_empty() {
            for (q, name) in QUANTILES {
                let mut with_q = labels.to_vec();
                with_q.push(("quantile", name));
                out.sample("pagelens_http_request_latency_seconds", &with_q, t.last.value_at_quantile(q) as f64 / 1e6);
            }
        }
        out.sample("pagelens_http_request_latency_seconds_sum", &labels, t.sum_nanos as f64 / 1e9);
        out.sample("pagelens_http_request_latency_seconds_count", &labels, t.all.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_match_count_between() {
        let mut h = latency_histogram();
        for v in [50, 100, 101, 240, 999, 1_000, 7_000, 2_000_000, 90_000_000] {
            h.record(v).unwrap();
        }
        let counts = bucket_counts(&h);
        for ((le, _), count) in BUCKETS.iter().zip(counts) {
            let by_scan = h
                .iter_recorded()
                .filter(|v| h.highest_equivalent(v.value_iterated_to()) <= *le)
                .map(|v| v.count_since_last_iteration())
                .sum::<u64>();
            assert_eq!(count, by_scan, "le {le}");
        }
        assert_eq!(counts[0], 2); // 50 and 100
        assert_eq!(counts[BUCKETS.len() - 1], 8); // all but 90 s
    }

    #[test]
    fn quantiles_are_within_hdr_precision_of_a_known_distribution() {
        // 1..=100,000 us, uniformly: the q-quantile is q * 100,000 us.
        let mut interval = recorder::Interval::default();
        let key = SeriesKey { route: "/x", method: "GET", class: 2, key: "" };
        for micros in 1..=100_000 {
            interval.record(key, micros * 1000);
        }
        let mut aggregate = Aggregate::default();
        aggregate.merge(&interval);
        let text = aggregate.render(&[]).prometheus;
        for (q, name) in QUANTILES {
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with("pagelens_http_request_latency_seconds{")
                        && l.contains(&format!("quantile=\"{name}\""))
                })
                .unwrap_or_else(|| panic!("no quantile {name}:\n{text}"));
            let value: f64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
            let want = q * 0.1;
            // 3 significant figures: within 0.1 % (plus a microsecond of rounding).
            assert!((value - want).abs() <= want * 0.001 + 1e-6, "q{name}: {value} vs {want}");
        }
        assert!(text.contains(
            "pagelens_http_request_latency_seconds_count{route=\"/x\",method=\"GET\",status_class=\"2xx\"} 100000"
        ));
        // The quantiles describe the last interval only.
        aggregate.next_interval();
        assert!(!aggregate.render(&[]).prometheus.contains("quantile="));
    }
}
