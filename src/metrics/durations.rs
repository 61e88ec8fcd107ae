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
    sum_micros: u64,
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
        let mut map = self.by_label.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let timing = map.entry(label).or_insert_with(|| Timing { histogram: latency_histogram(), sum_micros: 0 });
        timing.histogram.saturating_record(micros.clamp(1, MAX_MICROS));
        timing.sum_micros = timing.sum_micros.saturating_add(micros);
    }

    /// Writes the histograms as family `name`, labelled `label_name`
    /// (no label when `label_name` is empty).
    pub fn write(&self, out: &mut Exposition, name: &str, label_name: &str, help: &str) {
        let map = self.by_label.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.family(name, "histogram", help);
        for (label, timing) in map.iter() {
            let labels: &[(&str, &str)] = if label_name.is_empty() { &[] } else { &[(label_name, label)] };
            histogram_samples(out, name, labels, &timing.histogram, timing.sum_micros);
        }
    }
}
