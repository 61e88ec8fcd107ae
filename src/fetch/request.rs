//! What a fetch is: the fetcher's settings, a request, its response and
//! timings.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde::Serialize;
use url::Url;

use super::error::FetchError;
use super::guard::Guard;
use crate::http::client::ResponseHead;

/// Fetcher settings.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// What may be reached.
    pub guard: Guard,
    /// TCP connect, and separately the TLS handshake.
    pub connect_timeout: Duration,
    /// From the request written to the first byte of the response.
    pub first_byte_timeout: Duration,
    /// A whole fetch, redirects and retries included (a task's deadline may cut it shorter).
    pub total_timeout: Duration,
    /// Redirects followed.
    pub max_redirects: u32,
    /// Retries of transient failures.
    pub retries: u32,
    /// Largest response body, as sent and decoded.
    pub max_response_bytes: usize,
    /// Concurrent connections per origin.
    pub per_origin_connections: usize,
    /// Requests per second per origin (the bucket's starting rate).
    pub per_origin_rate: f64,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// Most idle connections kept in all.
    pub max_idle: usize,
    /// Reuse connections (off: one connection per request, for comparison).
    pub keep_alive: bool,
    /// Roots trusted beside the web PKI (`--ca-file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// How long a name's addresses are cached.
    pub dns_ttl: Duration,
    /// The `User-Agent` sent.
    pub user_agent: String,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            guard: Guard::default(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            max_redirects: 5,
            retries: 2,
            max_response_bytes: 10 * 1024 * 1024,
            per_origin_connections: 6,
            per_origin_rate: 20.0,
            idle_timeout: Duration::from_secs(15),
            max_idle: 256,
            keep_alive: true,
            extra_roots: Vec::new(),
            dns_ttl: Duration::from_secs(30),
            user_agent: concat!("pagelens/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// Which failures a fetch retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// Transient failures: refused, reset, timed out, `429`, `502`-`504`.
    Transient,
    /// Those and any status outside 2xx (callbacks must be received).
    NotSuccess,
}

/// Told of each new attempt (2, 3, ...), on the fetcher's thread.
pub type OnAttempt = Box<dyn Fn(u32) + Send>;

/// One request to make.
pub struct FetchRequest {
    /// `GET`, `HEAD` or `POST`.
    pub method: &'static str,
    /// Where.
    pub url: Url,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body (for `POST`).
    pub body: Vec<u8>,
    /// When to give up at the latest (a task's deadline).
    pub deadline: Option<Instant>,
    /// What to retry.
    pub retry_on: RetryOn,
    /// Retries, instead of the configured number.
    pub retries: Option<u32>,
    /// Told when a retry starts.
    pub on_attempt: Option<OnAttempt>,
    /// Follow redirects (off: a redirect is the response, as a crawler
    /// that records every hop wants it).
    pub follow_redirects: bool,
    /// Set when the caller no longer wants the answer (a cancelled task): the
    /// fetch ends within [`super::client::CANCEL_CHECK`] and its connection is closed.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for FetchRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchRequest").field("method", &self.method).field("url", &self.url.as_str()).finish()
    }
}

impl FetchRequest {
    /// A `GET` of `url` with the default policy.
    pub fn get(url: Url) -> FetchRequest {
        FetchRequest {
            method: "GET",
            url,
            headers: Vec::new(),
            body: Vec::new(),
            deadline: None,
            retry_on: RetryOn::Transient,
            retries: None,
            on_attempt: None,
            follow_redirects: true,
            cancel: None,
        }
    }
}

/// How long a fetch's steps took, in milliseconds (of the last attempt's
/// last hop, except `total`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Name resolution (0 when cached or an address).
    pub dns_ms: f64,
    /// TCP connect (0 on a reused connection).
    pub connect_ms: f64,
    /// TLS handshake (0 for http or a reused connection).
    pub tls_ms: f64,
    /// Request written to first response byte.
    pub first_byte_ms: f64,
    /// The whole fetch, redirects and retries included.
    pub total_ms: f64,
}

/// One redirect followed: the URL that sent it and its status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Redirect {
    /// The URL that answered with the redirect.
    pub url: String,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A fetched response.
#[derive(Debug)]
pub struct FetchResponse {
    /// Its status.
    pub status: u16,
    /// The URL that answered, after redirects.
    pub final_url: Url,
    /// Its headers.
    pub head: ResponseHead,
    /// The body as sent (see [`super::decode_body`] for `Content-Encoding`).
    pub body: Vec<u8>,
    /// Step durations.
    pub timings: Timings,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// Redirects followed, in order: each URL that answered with one.
    pub redirects: Vec<Redirect>,
    /// Whether the last exchange ran on a reused connection.
    pub reused_connection: bool,
}

/// Told how a fetch ended, on the fetcher's thread: keep it short.
pub type OnDone = Box<dyn FnOnce(Result<FetchResponse, FetchError>) + Send>;
