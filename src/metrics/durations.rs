//! Durations by label, as Prometheus histograms: HDR histograms behind a
//! short lock, for figures recorded off the reactors' hot path (task
//! stages, fetches).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::recorder::{latency_histogram, MAX_MICROS};
use super::{histogram_samples, Exposition};

#[derive(Debug)]
struct Timing {
    histogram: Histogram<u64>,
    /// In nanoseconds: sub-microsecond durations (a short stage) add up.
    sum_nanos: u64,
}

/// One histogram per label value.
#[derive(Debug, Default)]
pub struct Durations {
    by_label: Mutex<BTreeMap<&'static str, Timing>>,
}

impl Durations {
    /// Records `took` under `label`.
    pub fn record(&self, label: &'static str, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(MAX_MICROS);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let mut map = self.by_label.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let timing = map.entry(label).or_insert_with(|| Timing { histogram: latency_histogram(), sum_nanos: 0 });
        timing.histogram.saturating_record(micros.clamp(1, MAX_MICROS));
        timing.sum_nanos = timing.sum_nanos.saturating_add(nanos);
    }

    /// Each label's count, p50 and p99 (milliseconds), as JSON.
    pub fn summary(&self) -> serde_json::Value {
        let map = self.by_label.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let by_label: serde_json::Map<String, serde_json::Value> = map
            .iter()
            .map(|(label, t)| {
                let h = &t.histogram;
                (label.to_string(), serde_json::json!({"count": h.len(), "p50_ms": ms(h, 0.5), "p99_ms": ms(h, 0.99)}))
            })
            .collect();
        serde_json::Value::Object(by_label)
    }

    /// Writes the histograms as family `name`, labelled `label_name`
    /// (no label when `label_name` is empty).
    pub fn write(&self, out: &mut Exposition, name: &str, label_name: &str, help: &str) {
        let map = self.by_label.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.family(name, "histogram", help);
        for (label, timing) in map.iter() {
            let labels: &[(&str, &str)] = if label_name.is_empty() { &[] } else { &[(label_name, label)] };
            histogram_samples(out, name, labels, &timing.histogram, timing.sum_nanos as f64 / 1e9);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_microsecond_durations_add_up() {
        let durations = Durations::default();
        for _ in 0..4 {
            durations.record("encoding", Duration::from_nanos(250));
        }
        let mut out = Exposition::default();
        durations.write(&mut out, "pagelens_job_duration_seconds", "stage", "Stages.");
        let text = out.finish().prometheus;
        let sum = text.lines().find(|l| l.starts_with("pagelens_job_duration_seconds_sum")).unwrap();
        let value: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((value - 1e-6).abs() < 1e-12, "{sum}");
    }
}
