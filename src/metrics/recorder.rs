//! Per-thread recording of request durations: no locks, no allocation in
//! steady state.
//!
//! Each reactor owns a [`Recorder`] holding one [`Interval`] it records
//! into. Once a second it swaps in an empty interval handed back by the
//! metrics thread and sends the full one there; the metrics thread merges
//! it, resets it (keeping its memory) and hands it back. So a recording is
//! a histogram increment after a map lookup (skipped when the series is the
//! previous one's), and a scrape never touches a reactor.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::mpsc::{Receiver, Sender};

use hdrhistogram::Histogram;

/// Highest latency recorded, in microseconds (one hour).
pub const MAX_MICROS: u64 = 3_600_000_000;

/// A new latency histogram: 1 µs to 1 h at 3 significant figures. Fixed
/// bounds, so recording never resizes (allocates).
pub fn latency_histogram() -> Histogram<u64> {
    // This expect cannot fire: the bounds are constants hdrhistogram accepts
    // (low >= 1, high >= 2 * low, significant figures <= 5), checked by a test.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant, valid histogram bounds")
}

/// What one request series is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The route pattern, e.g. `/analyze/status/{id}`.
    pub route: &'static str,
    /// The method, or `OTHER`.
    pub method: &'static str,
    /// Status class: 1 to 5.
    pub class: u8,
    /// The API key's name, or `""` (no keys, or none given).
    pub key: &'static str,
}

impl SeriesKey {
    /// Whether `other` has the very same labels (same addresses): a check
    /// of a few words that may say no for equal keys, never yes for
    /// different ones.
    fn same(&self, other: &SeriesKey) -> bool {
        std::ptr::eq(self.route, other.route)
            && std::ptr::eq(self.method, other.method)
            && self.class == other.class
            && std::ptr::eq(self.key, other.key)
    }
}

/// One series' figures for an interval.
#[derive(Debug, Clone)]
pub struct SeriesStats {
    /// Durations in microseconds (rounded up: at least 1).
    pub latency: Histogram<u64>,
    /// Exact sum of durations in nanoseconds (HDR keeps no exact sum), so
    /// that sub-microsecond requests do not sum to 0.
    pub sum_nanos: u64,
}

/// FNV-1a: the keys are a few short labels, where SipHash's setup cost
/// dominated a lookup (40 ns, measured by `cargo bench --bench metrics`).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What a thread recorded during one interval.
#[derive(Debug, Default)]
pub struct Interval {
    /// Figures by series, in the order they first appeared.
    pub series: Vec<(SeriesKey, SeriesStats)>,
    /// Where each key is in `series`.
    index: HashMap<SeriesKey, usize, BuildHasherDefault<Fnv>>,
    /// The position of the series recorded last: consecutive requests are
    /// mostly of one series, and hashing their labels was 5 % of a
    /// pipelined `/livez` request's CPU.
    last: usize,
    /// Request bytes read.
    pub bytes_in: u64,
    /// Response bytes written.
    pub bytes_out: u64,
    /// Requests handed to the service.
    pub requests_started: u64,
    /// Requests that fail to parse or frame, by problem code.
    pub protocol_errors: HashMap<&'static str, u64, BuildHasherDefault<Fnv>>,
}

impl Interval {
    /// Records one request that took `nanos`.
    pub fn record(&mut self, key: SeriesKey, nanos: u64) {
        let at = match self.series.get(self.last) {
            Some((last, _)) if last.same(&key) => self.last,
            _ => self.position(key),
        };
        self.last = at;
        if let Some((_, stats)) = self.series.get_mut(at) {
            stats.latency.saturating_record(nanos.div_ceil(1000).clamp(1, MAX_MICROS));
            stats.sum_nanos = stats.sum_nanos.saturating_add(nanos);
        }
    }

    /// Where `key`'s series is in `series`, added if new. `get` then
    /// `insert`: the `entry` API made a lookup 42 ns instead of 26-40.
    fn position(&mut self, key: SeriesKey) -> usize {
        if let Some(&at) = self.index.get(&key) {
            return at;
        }
        self.series.push((key, SeriesStats { latency: latency_histogram(), sum_nanos: 0 }));
        self.index.insert(key, self.series.len() - 1);
        self.series.len() - 1
    }

    /// Empties every series, keeping their memory for reuse.
    pub fn reset(&mut self) {
        for (_, stats) in &mut self.series {
            stats.latency.reset();
            stats.sum_nanos = 0;
        }
        self.bytes_in = 0;
        self.bytes_out = 0;
        self.requests_started = 0;
        self.protocol_errors.values_mut().for_each(|n| *n = 0);
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty() && self.bytes_in == 0 && self.bytes_out == 0
    }
}

/// A full interval on its way to the metrics thread, with the way back.
pub type Handoff = (Interval, Sender<Interval>);

/// A thread's recorder.
#[derive(Debug)]
pub struct Recorder {
    current: Interval,
    sink: Option<Sender<Handoff>>,
    back: Sender<Interval>,
    returned: Receiver<Interval>,
}

impl Recorder {
    /// A recorder sending its intervals to `sink`; `None` records nothing.
    pub fn new(sink: Option<Sender<Handoff>>) -> Self {
        let (back, returned) = std::sync::mpsc::channel();
        Recorder { current: Interval::default(), sink, back, returned }
    }

    /// Records one response of `key` (an API key's name, or `""`), `nanos`
    /// after its request was complete.
    pub fn record(&mut self, route: &'static str, method: &'static str, status: u16, key: &'static str, nanos: u64) {
        if self.sink.is_some() {
            let class = (status / 100).clamp(1, 5) as u8;
            self.current.record(SeriesKey { route, method, class, key }, nanos);
        }
    }

    /// Counts a request handed to the service.
    pub fn request_started(&mut self) {
        self.current.requests_started += 1;
    }

    /// Counts bytes read from and written to clients.
    pub fn bytes(&mut self, read: usize, written: usize) {
        self.current.bytes_in += read as u64;
        self.current.bytes_out += written as u64;
    }

    /// Counts a request rejected by the codec, by its problem code.
    pub fn protocol_error(&mut self, code: &'static str) {
        if self.sink.is_some() {
            *self.current.protocol_errors.entry(code).or_default() += 1;
        }
    }

    /// Hands the interval so far to the metrics thread.
    pub fn flush(&mut self) {
        let Some(sink) = &self.sink else { return };
        if self.current.is_empty() {
            return;
        }
        // The emptied interval the metrics thread handed back, if it has; a
        // new one only until the first comes back.
        let fresh = self.returned.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.current, fresh);
        if sink.send((full, self.back.clone())).is_err() {
            self.sink = None; // the metrics thread is gone: stop recording
        }
    }
}

/// The HTTP method as a static label.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_travel_and_come_back_empty() {
        let (sink, source) = std::sync::mpsc::channel::<Handoff>();
        let mut recorder = Recorder::new(Some(sink));
        recorder.record("/livez", "GET", 200, "", 120_000);
        recorder.record("/livez", "GET", 204, "", 400);
        recorder.record("/x", "POST", 503, "", 5_000_000);
        recorder.flush();
        let (mut interval, back) = source.recv().unwrap();
        let key = SeriesKey { route: "/livez", method: "GET", class: 2, key: "" };
        assert_eq!(stats(&interval, key).latency.len(), 2);
        assert_eq!(stats(&interval, key).sum_nanos, 120_400, "a sub-microsecond request adds its nanoseconds");
        assert_eq!(stats(&interval, key).latency.min(), 1, "and counts as 1 µs in the histogram");
        assert_eq!(stats(&interval, SeriesKey { route: "/x", method: "POST", class: 5, key: "" }).latency.len(), 1);
        interval.reset();
        back.send(interval).unwrap();
        recorder.record("/livez", "GET", 200, "", 1);
        recorder.flush();
        let (second, _) = source.recv().unwrap();
        assert_eq!(stats(&second, key).latency.len(), 1);
    }

    fn stats(interval: &Interval, key: SeriesKey) -> &SeriesStats {
        let mut found = interval.series.iter().filter(|(k, _)| *k == key);
        let (_, stats) = found.next().expect("the series was recorded");
        assert!(found.next().is_none(), "one entry per series");
        stats
    }

    #[test]
    fn equal_labels_at_other_addresses_are_one_series() {
        let mut interval = Interval::default();
        let elsewhere: &'static str = Box::leak(String::from("/livez").into_boxed_str());
        interval.record(SeriesKey { route: "/livez", method: "GET", class: 2, key: "" }, 10);
        interval.record(SeriesKey { route: "/x", method: "GET", class: 2, key: "" }, 10);
        interval.record(SeriesKey { route: elsewhere, method: "GET", class: 2, key: "" }, 30);
        interval.record(SeriesKey { route: "/livez", method: "GET", class: 2, key: "" }, 20);
        let livez = stats(&interval, SeriesKey { route: "/livez", method: "GET", class: 2, key: "" });
        assert_eq!((livez.latency.len(), livez.sum_nanos), (3, 60));
        assert_eq!(interval.series.len(), 2);
    }

    #[test]
    fn without_a_sink_nothing_is_kept() {
        let mut recorder = Recorder::new(None);
        recorder.record("/livez", "GET", 200, "", 10);
        assert!(recorder.current.series.is_empty());
    }
}
