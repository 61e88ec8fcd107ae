//! `pagelens loadtest`: a load generator in the reactor's image (a mio loop
//! per thread, edge-triggered, the shared client codec), closed or open
//! loop with coordinated-omission correction, adaptive rate, ramps,
//! scenarios with task flows, and the knee search.

pub mod plan;
pub mod report;
pub mod stats;
pub mod worker;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plan::Plan;
use report::Report;
use stats::Stats;
use worker::{Phases, Share, Shared};

/// A load test's settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// What to send.
    pub plan: Plan,
    /// CA certificates trusted for an https target beside the web PKI roots.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Resume TLS sessions on new connections (else every one is a full handshake).
    pub tls_resume: bool,
    /// Threads.
    pub threads: usize,
    /// Connections, spread over the threads.
    pub connections: usize,
    /// Measured duration (unless `requests`).
    pub duration: Duration,
    /// Measured request count instead of a duration (`-n`).
    pub requests: Option<u64>,
    /// Open-loop rate in requests per second; `None` for closed loop.
    pub rate: Option<f64>,
    /// Back off on 429, 503 and timeouts; recover gradually.
    pub adaptive: bool,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// How long a request may wait for its response.
    pub timeout: Duration,
    /// Unmeasured load at full rate before measuring.
    pub warmup: Duration,
    /// Linear rise from zero before the warm-up.
    pub ramp: Duration,
    /// Print a progress line each second (to a terminal).
    pub progress: bool,
    /// Set to end the run early (Ctrl-C); what was measured is reported.
    pub stop: Arc<AtomicBool>,
}

/// Runs one load test.
pub fn run(config: &LoadConfig) -> Result<Report, String> {
    let tls = match config.plan.target.tls_name {
        Some(_) => {
            let shared = crate::fetch::client::tls_config(&config.extra_roots).map_err(|e| format!("TLS: {e}"))?;
            let mut tls = (*shared).clone();
            if !config.tls_resume {
                tls.resumption = rustls::client::Resumption::disabled();
            }
            Some(Arc::new(tls))
        }
        None => None,
    };
    let shared = Shared {
        plan: config.plan.clone(),
        tls,
        pipeline: config.pipeline.max(1),
        timeout: config.timeout,
        adaptive: config.adaptive,
        limit: config.requests,
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_p99: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        stop: Arc::clone(&config.stop),
    };
    let threads = config.threads.clamp(1, config.connections.max(1));
    let start = Instant::now();
    let measure_from = start + config.ramp + config.warmup;
    let end = config.requests.is_none().then(|| measure_from + config.duration);
    let phases = Phases { start, ramp: config.ramp, measure_from, end };
    let results: Vec<Result<Stats, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let connections = config.connections / threads + usize::from(index < config.connections % threads);
                let share = Share { index, connections, rate: config.rate.map(|r| r / threads as f64) };
                let shared = &shared;
                std::thread::Builder::new()
                    .name(format!("pagelens-load-{index}"))
                    .spawn_scoped(scope, move || worker::run(shared, phases, share))
            })
            .collect();
        if config.progress {
            progress(&shared, &handles, start, measure_from);
        }
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err("a load thread panicked".into())),
                Err(e) => Err(format!("cannot start a load thread: {e}")),
            })
            .collect()
    });
    let finished = Instant::now();
    let mut stats = Stats::default();
    for result in results {
        stats.merge(&result?);
    }
    let elapsed = match end {
        Some(end) if !config.stop.load(Ordering::Relaxed) => end.saturating_duration_since(measure_from),
        _ => finished.saturating_duration_since(measure_from),
    };
    Ok(Report {
        url: config.plan.target.url.to_string(),
        threads,
        connections: config.connections,
        target_rate: config.rate,
        elapsed,
        stats,
        connected: shared.connected.load(Ordering::Relaxed) > 0,
    })
}

/// One line a second on stderr while the threads run.
fn progress<T>(
    shared: &Shared,
    handles: &[std::io::Result<std::thread::ScopedJoinHandle<'_, T>>],
    start: Instant,
    measure_from: Instant,
) {
    let mut last_done = 0;
    let mut last = Instant::now();
    let mut stderr = std::io::stderr();
    while handles.iter().any(|h| h.as_ref().is_ok_and(|h| !h.is_finished())) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let now = Instant::now();
        let done = shared.done.load(Ordering::Relaxed);
        let rate = (done - last_done) as f64 / (now - last).as_secs_f64();
        (last_done, last) = (done, now);
        let p99 = shared.last_p99.swap(0, Ordering::Relaxed) as f64 / 1000.0;
        let phase = if now < measure_from { " (warming up)" } else { "" };
        let _ = write!(
            stderr,
            "\r\x1b[K{:6.1}s  {:>10.0} req/s  p99 {:>8.2} ms  errors {}{phase}",
            (now - start).as_secs_f64(),
            rate,
            p99,
            shared.failed.load(Ordering::Relaxed)
        );
        let _ = stderr.flush();
    }
    let _ = write!(stderr, "\r\x1b[K");
}

/// One step of the knee search.
#[derive(Debug, Clone)]
pub struct Step {
    /// The rate asked for.
    pub rate: f64,
    /// What was measured.
    pub report: Report,
    /// Whether it met the SLO without errors.
    pub pass: bool,
}

/// Steps the open-loop rate up from `config.rate` until p99 breaks `slo`
/// or errors appear, then narrows the knee by bisection. Returns every step
/// and the highest rate that passed.
pub fn find_max(config: &LoadConfig, slo: Duration, max_steps: usize) -> Result<(Vec<Step>, Option<f64>), String> {
    let mut rate = config.rate.unwrap_or(1000.0);
    let (mut best, mut failed): (Option<f64>, Option<f64>) = (None, None);
    let mut steps = Vec::new();
    for _ in 0..max_steps {
        let report = run(&LoadConfig { rate: Some(rate), progress: false, ..config.clone() })?;
        if !report.connected {
            return Err(format!("the target {} is unreachable", report.url));
        }
        let s = &report.stats;
        let refused: u64 = s.statuses.iter().filter(|(k, _)| matches!(**k, 429 | 503)).map(|(_, v)| v).sum();
        let p99 = Duration::from_micros(s.corrected.value_at_quantile(0.99));
        let pass = s.errors.total() == 0 && refused == 0 && p99 <= slo && report.rate() >= rate * 0.95;
        eprintln!(
            "  step {:>10.0} req/s: achieved {:>10.0}, p99 {:>9.3} ms, errors {} -> {}",
            rate,
            report.rate(),
            p99.as_secs_f64() * 1000.0,
            s.errors.total() + refused,
            if pass { "ok" } else { "over" }
        );
        steps.push(Step { rate, report, pass });
        if pass {
            best = Some(best.map_or(rate, |b: f64| b.max(rate)));
        } else {
            failed = Some(failed.map_or(rate, |f: f64| f.min(rate)));
        }
        rate = match (best, failed) {
            (Some(b), None) => b * 1.5,
            (None, Some(f)) => f / 2.0,
            (Some(b), Some(f)) if f / b > 1.1 => (b + f) / 2.0,
            _ => break,
        };
        if rate < 1.0 {
            break;
        }
    }
    Ok((steps, best))
}
