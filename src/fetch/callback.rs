//! Callbacks: one signed `POST` of a task's final status to the URL the
//! client named, retried with backoff until it is taken (2xx) or the
//! attempts run out; through the fetcher, so under the same guard.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use url::Url;

use super::client::Fetcher;
use super::request::{FetchRequest, RetryOn};

/// Retries after the first attempt.
pub const RETRIES: u32 = 4;
/// How long delivery may take, retries included.
const DEADLINE: Duration = Duration::from_secs(60);

/// The `X-Pagelens-Signature` value: `sha256=` and the hex HMAC-SHA256 of
/// `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut out = String::from("sha256=");
    for b in tag.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Posts `body` (JSON) to `url`, signed with `secret` when there is one; a
/// delivery that fails after every retry is logged as `what` (e.g. `task
/// ID: callback`). `done` is called once delivery is over, taken or given
/// up; not when it was cut short by the fetcher stopping, so that a durable
/// outbox delivers it again at the next start.
pub fn deliver(
    fetcher: &Fetcher,
    url: Url,
    body: Vec<u8>,
    secret: Option<&[u8]>,
    what: String,
    done: Box<dyn FnOnce() + Send>,
) {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(secret) = secret {
        headers.push(("X-Pagelens-Signature".to_string(), signature(secret, &body)));
    }
    let target = url.to_string();
    let request = FetchRequest {
        method: "POST",
        headers,
        body,
        deadline: Some(Instant::now() + DEADLINE),
        retry_on: RetryOn::NotSuccess,
        retries: Some(RETRIES),
        ..FetchRequest::get(url)
    };
    fetcher.fetch(
        request,
        Box::new(move |result| {
            match result {
                Err(e) if e.code == "shutting-down" => return,
                Err(e) => crate::warn!("{what} to {target} failed after retries: {e}"),
                Ok(_) => {}
            }
            done();
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
