//! Any bytes as a request head (routed as the API routes), and any bytes
//! after it as a chunked body: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagelens::http::chunked::ChunkedDecoder;
use pagelens::http::request::{header_slots, parse_head, Parsed};
use pagelens::http::router::Router;

fuzz_target!(|data: &[u8]| {
    let mut headers = header_slots();
    if let Ok(Parsed::Complete(head)) = parse_head(data, &mut headers, 16 * 1024, 1 << 20) {
        let router = Router::new()
            .route("GET", "/livez", 0)
            .route("GET", "/analyze/status/{id}", 1)
            .route("POST", "/tasks/{id}/revoke", 2)
            .route("GET", "/", 3);
        let _ = router.find(head.method, head.path);
        let mut body = data[head.len..].to_vec();
        let _ = ChunkedDecoder::new(1 << 20).decode(&mut body, 0);
    }
    // Byte by byte, as a trickling client sends it.
    let mut body = data.to_vec();
    let mut decoder = ChunkedDecoder::new(1 << 20);
    let mut raw = 0;
    for end in 1..=body.len() {
        match decoder.decode(&mut body[..end], raw) {
            Ok(progress) => raw = progress.raw,
            Err(_) => break,
        }
    }
});
