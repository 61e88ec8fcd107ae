//! The cost of metrics: one recording on the hot path, and one rendering
//! with 1,000 request series (what a scrape returns; it is rendered on the
//! metrics thread, never on a reactor). `cargo bench --bench metrics`.

use std::time::Instant;

use pagelens::metrics::recorder::{Interval, Recorder, SeriesKey};
use pagelens::metrics::Aggregate;

const ROUTES: [&str; 10] = ["/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h", "/i", "/j"];

fn main() {
    // A recorder that keeps what it records (its sink is alive but never read).
    let (sink, _source) = std::sync::mpsc::channel();
    let mut recorder = Recorder::new(Some(sink));
    let n = 20_000_000u64;
    for i in 0..1000 {
        recorder.record(ROUTES[i % 10], "GET", 200, "", 100);
    }
    let started = Instant::now();
    for i in 0..n {
        recorder.record(ROUTES[(i % 10) as usize], "GET", 200 + (i % 3) as u16 * 100, "", 50 + i % 5000);
    }
    let per_record = started.elapsed().as_nanos() as f64 / n as f64;
    println!("one recording: {per_record:.1} ns (mean of {n} calls, each of another series than the last, over 30)");
    let started = Instant::now();
    for i in 0..n {
        recorder.record(ROUTES[0], "GET", 200, "", 50 + i % 5000);
    }
    let per_record = started.elapsed().as_nanos() as f64 / n as f64;
    println!("one recording: {per_record:.1} ns (mean of {n} calls of one series, as on a busy route)");

    // 1,000 series: 100 routes x 5 methods x 2 classes, each with some data.
    let routes: Vec<&'static str> = (0..100).map(|i| &*Box::leak(format!("/route/{i}").into_boxed_str())).collect();
    let mut interval = Interval::default();
    for route in &routes {
        for method in ["GET", "POST", "PUT", "DELETE", "HEAD"] {
            for class in [2, 5] {
                for v in [80, 120, 950, 20_000] {
                    interval.record(SeriesKey { route, method, class, key: "" }, v);
                }
            }
        }
    }
    let mut aggregate = Aggregate::default();
    aggregate.merge(&interval);
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let started = Instant::now();
            let texts = aggregate.render(&[]);
            std::hint::black_box((texts.prometheus.len(), texts.openmetrics.len()));
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let lines = aggregate.render(&[]).prometheus.lines().count();
    println!("one rendering of 1,000 series in both formats ({lines} lines each): median {:.2} ms over 21", times[10]);
}
