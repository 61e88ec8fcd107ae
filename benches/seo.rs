//! SEO engine throughput over the shared corpus, single thread, beside tl's
//! parse-and-walk alone over the same pages in the same run.
//!
//! `cargo bench --bench seo` (reads `../shared/corpus/pages`, or the folder
//! in `PAGELENS_CORPUS`; says so and exits when it is absent). Each variant
//! runs `ROUNDS` times over every page, the two alternating; medians are reported.

use std::time::{Duration, Instant};

use pagelens::seo::{analyze, Options};

const ROUNDS: usize = 15;

fn main() {
    let dir = std::env::var("PAGELENS_CORPUS").unwrap_or_else(|_| "../shared/corpus/pages".into());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("corpus not found at {dir}; set PAGELENS_CORPUS to a folder of .html pages");
        return;
    };
    let mut pages: Vec<Vec<u8>> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "html"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    pages.sort();
    let bytes: usize = pages.iter().map(Vec::len).sum();
    // tl needs UTF-8; decode outside the timed part so tl alone is timed.
    let texts: Vec<String> = pages.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    println!("{} pages, {:.1} MB, {ROUNDS} rounds, median round", pages.len(), bytes as f64 / 1e6);

    let tl_walk = || {
        let mut tags = 0usize;
        for text in &texts {
            let dom = tl::parse(text, tl::ParserOptions::default()).expect("parse");
            tags += dom.nodes().iter().filter(|n| n.as_tag().is_some()).count();
        }
        std::hint::black_box(tags);
    };
    let options = Options { include_links: true, include_images: true, ..Options::default() };
    let full = || {
        for page in &pages {
            std::hint::black_box(analyze(page, &options).expect("every corpus page analyses"));
        }
    };
    // Rounds alternate between the two so that a noisy neighbour slows both
    // alike; the ratio is the median of the per-round ratios.
    let mut rounds: Vec<(Duration, Duration)> = (0..ROUNDS).map(|_| (time(tl_walk), time(full))).collect();
    let report = |name: &str, t: Duration| {
        let secs = t.as_secs_f64();
        println!("{name:<28} {:>8.0} pages/s {:>8.1} MB/s", pages.len() as f64 / secs, bytes as f64 / 1e6 / secs);
    };
    report("tl parse + walk", median(rounds.iter().map(|r| r.0).collect()));
    report("pagelens analyze (full)", median(rounds.iter().map(|r| r.1).collect()));
    rounds.sort_by(|a, b| (a.0.as_secs_f64() / a.1.as_secs_f64()).total_cmp(&(b.0.as_secs_f64() / b.1.as_secs_f64())));
    let (tl, full) = rounds[ROUNDS / 2];
    println!(
        "full analysis / tl alone: {:.0}% (median of per-round ratios)",
        tl.as_secs_f64() / full.as_secs_f64() * 100.0
    );
}

fn time(round: impl FnOnce()) -> Duration {
    let start = Instant::now();
    round();
    start.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
