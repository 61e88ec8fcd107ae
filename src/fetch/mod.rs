//! The outbound HTTP/1.1 client: fetches pages and delivers callbacks.
//!
//! It runs its own mio event loop ([`Fetcher`]), never a CPU worker or a
//! server reactor: a TLS handshake costs a millisecond of CPU that would
//! otherwise stall every connection of a reactor. Names are resolved on a
//! few threads of their own ([`dns`]); [`guard`] keeps it off private
//! networks; [`origin`] keeps it polite.

pub mod callback;
pub mod client;
pub mod connection;
pub mod dns;
pub mod error;
pub mod guard;
pub mod origin;
pub mod request;
pub mod transport;

use std::io::Read;

pub use crate::cidr::Cidr;
pub use client::Fetcher;
pub use error::FetchError;
pub use guard::Guard;
pub use request::{FetchConfig, FetchRequest, FetchResponse, Redirect, RetryOn, Timings};

/// The media type of a `Content-Type` value, lower case, without parameters.
pub fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Whether a response with this `Content-Type` is an HTML page; a missing or
/// empty one is given the benefit of the doubt.
pub fn is_html(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|t| matches!(essence(t).as_str(), "text/html" | "application/xhtml+xml" | ""))
}

/// Fills in what the SEO analysis learns of a page from its response: its
/// status, `Content-Type` (whose charset decodes the page), `X-Robots-Tag`
/// and security headers.
pub fn describe_page(options: &mut crate::seo::Options, status: u16, head: &crate::http::client::ResponseHead) {
    options.status_code = Some(status);
    options.content_type = head.header("content-type").map(str::to_string);
    options.x_robots_tag = head.all("x-robots-tag").map(str::to_string).collect();
    options.security_headers = Some(crate::seo::analysis::SecurityHeaders::of(|name| head.header(name)));
}

/// Undoes `Content-Encoding` (gzip, deflate, identity), refusing output
/// over `max` bytes (a small gzip can inflate to gigabytes). CPU work: run
/// it on the pool, not on the fetcher's loop.
pub fn decode_body(encoding: Option<&str>, body: Vec<u8>, max: usize) -> Result<Vec<u8>, FetchError> {
    let encoding = encoding.unwrap_or("identity").trim().to_ascii_lowercase();
    let limit = max as u64 + 1;
    let mut out = Vec::new();
    let read = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body.as_slice()).take(limit).read_to_end(&mut out),
        // "deflate" is zlib-wrapped by the RFC, raw in some servers' hands.
        "deflate" if body.first().is_some_and(|b| b & 0x0f == 8) => {
            flate2::read::ZlibDecoder::new(body.as_slice()).take(limit).read_to_end(&mut out)
        }
        "deflate" => flate2::read::DeflateDecoder::new(body.as_slice()).take(limit).read_to_end(&mut out),
        other => {
            return Err(FetchError::new(
                502,
                "unsupported-encoding",
                format!("the response is {other}-encoded, which is not supported"),
                false,
            ))
        }
    };
    read.map_err(|e| FetchError::malformed(format!("cannot decode the {encoding} body: {e}")))?;
    if out.len() > max {
        return Err(FetchError::new(502, "response-too-large", "the decoded response is over the size limit", false));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_and_caps() {
        let page = b"<html><title>t</title></html>".repeat(10);
        assert_eq!(decode_body(Some("gzip"), gzip(&page), 1000).unwrap(), page);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&page).unwrap();
        assert_eq!(decode_body(Some("deflate"), z.finish().unwrap(), 1000).unwrap(), page);
        assert_eq!(decode_body(None, page.clone(), 1000).unwrap(), page);
        // A bomb: 10 MB of zeros in a few KB.
        let bomb = gzip(&vec![0u8; 10_000_000]);
        assert!(bomb.len() < 20_000);
        assert_eq!(decode_body(Some("gzip"), bomb, 1_000_000).unwrap_err().code, "response-too-large");
        assert_eq!(decode_body(Some("gzip"), b"not gzip".to_vec(), 100).unwrap_err().code, "malformed-response");
        assert_eq!(decode_body(Some("br"), vec![1], 100).unwrap_err().code, "unsupported-encoding");
    }
}
