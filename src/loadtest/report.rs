//! The final report: text for people, JSON for scripts, and the HDR
//! percentile distribution (`.hgrm`) that HdrHistogram's plotter reads.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::stats::Stats;

/// A finished run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target URL.
    pub url: String,
    /// Threads and connections.
    pub threads: usize,
    /// Connections.
    pub connections: usize,
    /// The open-loop rate asked for; `None` for closed loop.
    pub target_rate: Option<f64>,
    /// The measured part's length.
    pub elapsed: Duration,
    /// What was measured.
    pub stats: Stats,
    /// Whether any connection ever connected.
    pub connected: bool,
}

const QUANTILES: [(&str, f64); 7] =
    [("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999), ("max", 1.0)];

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn quantiles(h: &Histogram<u64>) -> Value {
    let mut out = serde_json::Map::new();
    for (name, q) in QUANTILES {
        out.insert(format!("{name}_ms"), json!(ms(h.value_at_quantile(q))));
    }
    out.insert("mean_ms".into(), json!(h.mean() / 1000.0));
    out.insert("stdev_ms".into(), json!(h.stdev() / 1000.0));
    out.insert("count".into(), json!(h.len()));
    Value::Object(out)
}

impl Report {
    /// Responses per second over the measured part.
    pub fn rate(&self) -> f64 {
        self.stats.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether the harness, not the target, was the limit: an open-loop
    /// rate it fell short of while its threads were busy.
    pub fn harness_bound(&self) -> bool {
        let Some(target) = self.target_rate else { return false };
        let busy = self.stats.cpu.as_secs_f64() / (self.elapsed.as_secs_f64() * self.threads as f64).max(1e-9);
        self.rate() < target * 0.95 && busy > 0.9
    }

    /// Whether there were responses and every one had a 4xx or 5xx status.
    pub fn all_failed(&self) -> bool {
        let s = &self.stats;
        !s.statuses.is_empty() && s.statuses.keys().all(|status| *status >= 400)
    }

    /// Findings drawn from the figures.
    pub fn recommendations(&self) -> Vec<String> {
        let s = &self.stats;
        let mut out = Vec::new();
        if !self.connected {
            out.push(format!("the target {} was unreachable: no connection succeeded", self.url));
            return out;
        }
        let attempts = s.requests + s.errors.total();
        if s.errors.total() > 0 {
            let share = s.errors.total() as f64 * 100.0 / attempts.max(1) as f64;
            out.push(format!(
                "{:.1}% of requests failed (connect {}, timeout {}, reset {}, parse {}): look at the server's logs and limits",
                share, s.errors.connect, s.errors.timeout, s.errors.reset, s.errors.parse
            ));
        }
        if self.all_failed() {
            out.push(format!(
                "every response was an error status ({}): the server answered, but not with what was asked",
                s.statuses.keys().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        let refused: u64 = s.statuses.iter().filter(|(k, _)| matches!(**k, 429 | 503)).map(|(_, v)| v).sum();
        if refused > 0 {
            out.push(format!(
                "{refused} responses were 429/503: the server shed load; this rate is past what it accepts"
            ));
        }
        if let Some(target) = self.target_rate {
            let rate = self.rate();
            if rate < target * 0.95 {
                if self.harness_bound() {
                    out.push(format!(
                        "the harness could not reach {target:.0} req/s (achieved {rate:.0}, its threads were busy): add threads (-t) or run it on more cores; latencies above are of the achieved rate"
                    ));
                } else {
                    out.push(format!(
                        "achieved {rate:.0} of {target:.0} req/s: the server is saturated (requests waited for a free connection; the corrected latency shows the queueing)"
                    ));
                }
            }
        }
        let p50 = s.corrected.value_at_quantile(0.5).max(1);
        let p99 = s.corrected.value_at_quantile(0.99);
        if p99 > p50 * 10 && s.corrected.len() > 100 {
            out.push(format!(
                "a long tail: p99 is {:.0}x p50; look for stalls (GC, locks, disk, a full queue)",
                p99 as f64 / p50 as f64
            ));
        }
        let seconds: Vec<u64> =
            s.seconds.iter().filter(|x| x.requests > 0).map(|x| x.latency.value_at_quantile(0.99)).collect();
        if seconds.len() >= 6 {
            let third = seconds.len() / 3;
            let first = seconds[..third].iter().sum::<u64>() as f64 / third as f64;
            let last = seconds[seconds.len() - third..].iter().sum::<u64>() as f64 / third as f64;
            if last > first * 2.0 && last > 1000.0 {
                out.push(format!(
                    "the tail rose during the run (p99 {:.2} ms in the first third, {:.2} ms in the last): a queue is building; the server cannot sustain this load",
                    first / 1000.0,
                    last / 1000.0
                ));
            }
        }
        if self.target_rate.is_none() && s.errors.total() == 0 && refused == 0 {
            out.push(
                "closed loop measures throughput; for latency under a known load, use --rate (open loop, coordinated-omission corrected)"
                    .into(),
            );
        }
        out
    }

    /// The whole report as JSON.
    pub fn json(&self) -> Value {
        let s = &self.stats;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let series: Vec<Value> = s
            .seconds
            .iter()
            .enumerate()
            .map(|(i, x)| {
                json!({"second": i, "requests": x.requests, "errors": x.errors, "p99_ms": ms(x.latency.value_at_quantile(0.99))})
            })
            .collect();
        let mut tasks = Value::Null;
        if !s.tasks.outcomes.is_empty() {
            tasks = json!({"outcomes": s.tasks.outcomes, "latency": quantiles(&s.tasks.latency)});
        }
        let polls = json!({
            "count": s.polls.count,
            "latency": quantiles(&s.polls.latency),
            "status": s.polls.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        json!({
            "url": self.url,
            "threads": self.threads,
            "connections": self.connections,
            "mode": if self.target_rate.is_some() { "open" } else { "closed" },
            "target_rate": self.target_rate,
            "duration_s": secs,
            "requests": s.requests,
            "requests_per_s": self.rate(),
            "bytes": s.bytes,
            "bytes_per_s": s.bytes as f64 / secs,
            "scheduled": s.scheduled,
            "latency": {"corrected": quantiles(&s.corrected), "uncorrected": quantiles(&s.uncorrected)},
            "status": s.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "by_name": s.by_name,
            "errors": {"connect": s.errors.connect, "timeout": s.errors.timeout, "reset": s.errors.reset, "parse": s.errors.parse, "total": s.errors.total()},
            "tasks": tasks,
            "polls": polls,
            "harness_cpu_s": s.cpu.as_secs_f64(),
            "harness_bound": self.harness_bound(),
            "timeseries": series,
            "recommendations": self.recommendations(),
        })
    }

    /// The text report.
    pub fn text(&self, spectrum: bool) -> String {
        let s = &self.stats;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = String::new();
        let mode = match self.target_rate {
            Some(r) => format!("open loop at {r:.0} req/s"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(out, "{} threads and {} connections, {mode} @ {}", self.threads, self.connections, self.url);
        let header = QUANTILES.iter().map(|(n, _)| format!("{n:>9}")).collect::<String>();
        let _ = writeln!(out, "  Latency (ms)        {header}     mean    stdev");
        // Closed loop sends each request when the previous answer comes, so
        // corrected and uncorrected are one figure: one row.
        let rows: &[(&str, &Histogram<u64>)] = match self.target_rate {
            Some(_) => &[("corrected", &s.corrected), ("uncorrected", &s.uncorrected)],
            None => &[("latency", &s.uncorrected)],
        };
        for (label, h) in rows {
            let row =
                QUANTILES.iter().map(|(_, q)| format!("{:>9.3}", ms(h.value_at_quantile(*q)))).collect::<String>();
            let _ = writeln!(out, "    {label:<16}{row}{:>9.3}{:>9.3}", h.mean() / 1000.0, h.stdev() / 1000.0);
        }
        if spectrum {
            let _ = writeln!(out, "  Detailed percentile spectrum (corrected):");
            out.push_str(&hgrm(&s.corrected));
        }
        let _ = writeln!(out, "  {} requests in {:.2}s, {:.2} MB read", s.requests, secs, s.bytes as f64 / 1e6);
        status_table(&mut out, &s.statuses);
        let e = &s.errors;
        let _ = writeln!(
            out,
            "  Errors: connect {}, timeout {}, reset {}, parse {}",
            e.connect, e.timeout, e.reset, e.parse
        );
        if !s.tasks.outcomes.is_empty() {
            let outcomes = s.tasks.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
            let t = &s.tasks.latency;
            let _ = writeln!(
                out,
                "  Tasks: {outcomes}; end to end p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                ms(t.value_at_quantile(0.5)),
                ms(t.value_at_quantile(0.99)),
                ms(t.max())
            );
        }
        if s.polls.count > 0 {
            let p = &s.polls.latency;
            let statuses = s.polls.statuses.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                out,
                "  Polls (the tool's own, not in the figures above): {}, p50 {:.3} ms, p99 {:.3} ms; {statuses}",
                s.polls.count,
                ms(p.value_at_quantile(0.5)),
                ms(p.value_at_quantile(0.99))
            );
        }
        let _ = writeln!(out, "Requests/sec: {:.2}", self.rate());
        let _ = writeln!(out, "Transfer/sec: {:.2} MB", s.bytes as f64 / 1e6 / secs);
        for r in self.recommendations() {
            let _ = writeln!(out, "  * {r}");
        }
        out
    }
}

/// Responses by status, one row each with its reason and share.
fn status_table(out: &mut String, statuses: &std::collections::BTreeMap<u16, u64>) {
    let total: u64 = statuses.values().sum();
    if total == 0 {
        let _ = writeln!(out, "  Status: no responses");
        return;
    }
    let _ = writeln!(out, "  Status                              count    share");
    for (status, n) in statuses {
        let label = format!("{status} {}", crate::http::response::reason(*status));
        let _ = writeln!(out, "    {label:<30}{n:>9}{:>8.1}%", *n as f64 * 100.0 / total as f64);
    }
}

/// The HDR percentile distribution in milliseconds, as HdrHistogram's
/// `outputPercentileDistribution` writes it.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = ms(v.value_iterated_to());
        if q < 1.0 {
            let _ = writeln!(out, "{value:12.3} {q:14.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(out, "{value:12.3} {q:14.12} {total:10}");
        }
    }
    let _ = writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / 1000.0, h.stdev() / 1000.0);
    let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", ms(h.max()), h.len());
    let _ = writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), h.distinct_values());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::stats::{latency, record};

    /// A 10 s open-loop run at 100,000 req/s on 2 threads that achieved
    /// 40,000 req/s, its threads having used `cpu` seconds.
    fn short_of_rate(cpu: f64) -> Report {
        let stats = Stats { requests: 400_000, cpu: Duration::from_secs_f64(cpu), ..Stats::default() };
        Report {
            url: "http://127.0.0.1:1/".into(),
            threads: 2,
            connections: 64,
            target_rate: Some(100_000.0),
            elapsed: Duration::from_secs(10),
            stats,
            connected: true,
        }
    }

    #[test]
    fn a_rate_missed_with_busy_threads_is_the_harness_not_the_server() {
        // 19 of the 20 thread-seconds busy: the harness was the limit.
        let busy = short_of_rate(19.0);
        assert!(busy.harness_bound());
        let said = busy.recommendations().join("\n");
        assert!(said.contains("could not reach 100000 req/s (achieved 40000"), "{said}");
        assert!(!said.contains("saturated"), "{said}");
        assert_eq!(busy.json()["harness_bound"], true);
        // Mostly idle threads: the server was.
        let idle = short_of_rate(4.0);
        assert!(!idle.harness_bound());
        let said = idle.recommendations().join("\n");
        assert!(said.contains("achieved 40000 of 100000 req/s: the server is saturated"), "{said}");
        // A rate reached is neither, however busy the threads.
        let reached = Report { stats: Stats { requests: 1_000_000, ..Stats::default() }, ..short_of_rate(20.0) };
        assert!(!reached.harness_bound());
        assert!(!reached.recommendations().iter().any(|r| r.contains("req/s")));
    }

    #[test]
    fn hgrm_is_the_plotters_format() {
        let mut h = latency();
        for ms in 1..=100 {
            record(&mut h, Duration::from_millis(ms));
        }
        let text = hgrm(&h);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.trim_start().starts_with("Value"))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 10);
        assert!(rows.windows(2).all(|w| w[0][1] <= w[1][1] && w[0][2] <= w[1][2]), "monotonic");
        let last = rows.last().unwrap();
        assert_eq!((last[1], last[2]), (1.0, 100.0));
        assert!((last[0] - 100.0).abs() < 0.2, "{last:?}");
        assert!(text.contains("#[Max     =      100.031, Total count    =          100]"), "{text}");
    }
}
