//! SEO engine throughput over the shared corpus, single thread, beside tl's
//! parse-and-walk alone over the same pages in the same run.
//!
//! `cargo bench --bench seo` (reads `../shared/corpus/pages`, or the folder
//! in `PAGELENS_CORPUS`; says so and exits when it is absent). Each variant
//! runs `ROUNDS` times over every page; the median round is reported.

use std::time::{Duration, Instant};

use pagelens::seo::{analyze, Options};

const ROUNDS: usize = 7;

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

    let tl_walk = median(|| {
        let mut tags = 0usize;
        for text in &texts {
            let dom = tl::parse(text, tl::ParserOptions::default()).expect("parse");
            tags += dom.nodes().iter().filter(|n| n.as_tag().is_some()).count();
        }
        std::hint::black_box(tags);
    });
    let options = Options { include_links: true, include_images: true, ..Options::default() };
    let full = median(|| {
        for page in &pages {
            std::hint::black_box(analyze(page, &options).expect("every corpus page analyses"));
        }
    });
    let report = |name: &str, t: Duration| {
        let secs = t.as_secs_f64();
        println!("{name:<28} {:>8.0} pages/s {:>8.1} MB/s", pages.len() as f64 / secs, bytes as f64 / 1e6 / secs);
    };
    report("tl parse + walk", tl_walk);
    report("pagelens analyze (full)", full);
    println!("full analysis / tl alone: {:.0}%", tl_walk.as_secs_f64() / full.as_secs_f64() * 100.0);
}

fn median(mut round: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            round();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[ROUNDS / 2]
}
