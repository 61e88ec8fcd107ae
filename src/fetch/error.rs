//! Why a fetch failed: a stable code, the status a synchronous caller gets,
//! and whether trying again could help.

use std::fmt;
use std::io;

/// A failed fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// The HTTP status the API answers with: `403` refused by the guard,
    /// `422` a URL that cannot be fetched, `502` the upstream failed, `504`
    /// it was too slow.
    pub status: u16,
    /// Stable identifier (`blocked-address`, `connect-timeout`, ...).
    pub code: &'static str,
    /// For a person.
    pub detail: String,
    /// Whether a retry may succeed (refused, reset, timed out, 429, 5xx).
    pub transient: bool,
}

impl FetchError {
    /// A new error.
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>, transient: bool) -> Self {
        FetchError { status, code, detail: detail.into(), transient }
    }

    /// A scheme other than http and https.
    pub fn blocked_scheme(scheme: &str) -> Self {
        FetchError::new(403, "blocked-scheme", format!("the {scheme}: scheme is refused; use http or https"), false)
    }

    /// A socket error while connected.
    pub fn io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => FetchError::new(502, "connect-refused", e.to_string(), true),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted => {
                FetchError::new(502, "connection-reset", e.to_string(), true)
            }
            io::ErrorKind::UnexpectedEof => {
                FetchError::new(502, "connection-closed", "the upstream closed the connection mid-response", true)
            }
            _ => FetchError::new(502, "io-error", e.to_string(), true),
        }
    }

    /// A response that breaks HTTP/1.1.
    pub fn malformed(detail: impl Into<String>) -> Self {
        FetchError::new(502, "malformed-response", detail, false)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for FetchError {}
