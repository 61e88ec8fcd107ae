//! Any bytes as an upstream's response, fed whole and in small pieces to
//! the client codec, and as a robots.txt: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagelens::http::client::{Progress, ResponseReader};
use pagelens::seo::robots_txt::{judge, RobotsSource};

fuzz_target!(|data: &[u8]| {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut reader = ResponseReader::new(4096, 1 << 16, false);
    for piece in data.chunks(step) {
        reader.buffer().extend_from_slice(piece);
        match reader.advance() {
            Ok(Progress::Done) | Err(_) => break,
            Ok(Progress::More) => {}
        }
    }
    let _ = reader.eof();
    let text = String::from_utf8_lossy(data);
    let path = text.lines().next().unwrap_or("/");
    let _ = judge("http://x/robots.txt", &RobotsSource::Found(text.to_string()), "googlebot", path);
});
