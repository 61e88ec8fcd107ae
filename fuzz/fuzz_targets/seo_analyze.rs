//! Any bytes, as a page with a URL, through the whole SEO engine: it must
//! give an analysis or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagelens::seo::{analyze, Options};

fuzz_target!(|data: &[u8]| {
    let options = Options {
        url: "https://www.example.com/a/b.html".parse().ok(),
        include_links: true,
        include_images: true,
        ..Options::default()
    };
    if let Ok(analysis) = analyze(data, &options) {
        // The result must always serialise.
        serde_json::to_vec(&analysis).expect("analysis serialises");
    }
});
