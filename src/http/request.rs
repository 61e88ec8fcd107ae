//! Request heads: parsing with httparse, then every RFC 9112 check that
//! httparse leaves to its caller.
//!
//! [`parse_head`] is the checked view: once it returns `Complete`, the head
//! is within the size limit, names one message framing, and nothing built on
//! it may panic.

use std::mem::MaybeUninit;

use super::error::HttpError;

/// The most header lines a request may carry; more is `431`.
pub const MAX_HEADERS: usize = 64;

/// Room for httparse to parse headers into. Left uninitialised: zeroing
/// 64 slots of 32 bytes per request showed up as libc's memset in profiles.
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Fresh header slots for one parse.
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: close after each response unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: keep-alive unless `Connection: close`.
    Http11,
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and validated request head, borrowing the connection's buffer.
#[derive(Debug)]
pub struct Head<'b> {
    /// Method token as sent (`GET`, `POST`, ...).
    pub method: &'b str,
    /// Path part of the request target, without the query.
    pub path: &'b str,
    /// Query string after `?`, if any.
    pub query: Option<&'b str>,
    /// Protocol version.
    pub version: Version,
    /// Header lines in arrival order.
    pub headers: &'b [httparse::Header<'b>],
    /// Length of the head in bytes, including the blank line.
    pub len: usize,
    /// Body framing.
    pub framing: Framing,
    /// Whether the client allows the connection to stay open afterwards.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// A complete request as handlers see it: the head and the decoded body.
#[derive(Debug)]
pub struct Request<'b> {
    /// The validated head.
    pub head: Head<'b>,
    /// The body, de-chunked; empty when there is none.
    pub body: &'b [u8],
}

/// Result of feeding a buffer to [`parse_head`].
#[derive(Debug)]
pub enum Parsed<'b> {
    /// The head is not complete yet; read more.
    Partial,
    /// A complete, validated head.
    Complete(Head<'b>),
}

/// Parses the request head at the start of `buf`.
///
/// `max_head` bounds the head's size: a partial head already longer than
/// that, or a complete one longer than that, is `431`. The limit is applied
/// to the head alone so that a head arriving together with its body is not
/// wrongly rejected.
pub fn parse_head<'b>(
    buf: &'b [u8],
    headers: &'b mut HeaderSlots<'b>,
    max_head: usize,
    max_body: usize,
) -> Result<Parsed<'b>, HttpError> {
    // Leading empty lines before a request line are to be ignored (RFC 9112 §2.2);
    // httparse already does so.
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Partial) if buf.len() > max_head => return Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Ok(httparse::Status::Complete(len)) if len > max_head => return Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HttpError::BadVersion),
        Err(httparse::Error::HeaderName) if has_obs_fold(buf) => return Err(HttpError::ObsFold),
        Err(e) => return Err(HttpError::Malformed(e)),
    };
    // These three are present on Complete; httparse sets them before the headers.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed(httparse::Error::Token));
    };
    let version = if minor == 0 { Version::Http10 } else { Version::Http11 };
    let headers: &'b [httparse::Header<'b>] = req.headers;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if !(path.starts_with('/') || method == "OPTIONS" && path == "*") {
        return Err(HttpError::BadTarget);
    }

    let mut content_length: Option<usize> = None;
    let mut transfer_encoding = TransferEncoding::None;
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(HttpError::BadContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = transfer_encoding.add_line(h.value)?;
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(h.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(HttpError::ExpectationFailed);
            }
        }
    }

    // RFC 9112 §3.2: exactly one Host in HTTP/1.1; at most one in 1.0.
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(HttpError::BadHost);
    }
    let framing = match (transfer_encoding, content_length) {
        (TransferEncoding::None, None) => Framing::Empty,
        (TransferEncoding::None, Some(0)) => Framing::Empty,
        (TransferEncoding::None, Some(n)) if n > max_body => return Err(HttpError::BodyTooLarge { limit: max_body }),
        (TransferEncoding::None, Some(n)) => Framing::Length(n),
        // §6.1: a sender MUST NOT send both; a server ought to treat it as an
        // error, since it is how requests are smuggled past proxies.
        (_, Some(_)) => return Err(HttpError::LengthAndChunked),
        // §6.1: HTTP/1.0 has no chunked coding; the framing is faulty.
        (_, None) if version == Version::Http10 => return Err(HttpError::TransferEncodingInHttp10),
        (TransferEncoding::Chunked, None) => Framing::Chunked,
        (TransferEncoding::Unsupported, None) => return Err(HttpError::UnsupportedTransferEncoding),
        (TransferEncoding::NotChunkedLast, None) => return Err(HttpError::ChunkedNotLast),
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    Ok(Parsed::Complete(Head {
        method,
        path,
        query,
        version,
        headers,
        len,
        framing,
        keep_alive,
        expect_continue: expect_continue && framing != Framing::Empty,
    }))
}

impl<'b> Head<'b> {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// What the `Transfer-Encoding` lines seen so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    None,
    /// Exactly `chunked`.
    Chunked,
    /// Ends in `chunked` but applies another coding first (e.g. `gzip, chunked`).
    Unsupported,
    /// Something other than `chunked` comes last: the length cannot be known.
    NotChunkedLast,
}

impl TransferEncoding {
    fn add_line(self, value: &[u8]) -> Result<Self, HttpError> {
        // Several Transfer-Encoding lines are a list in principle, but no
        // honest client splits them; it is a smuggling pattern, so refuse it.
        if self != TransferEncoding::None {
            return Err(HttpError::RepeatedTransferEncoding);
        }
        let mut codings = tokens(value).peekable();
        let mut count = 0;
        let mut last_chunked = false;
        let mut chunked_before_last = false;
        while let Some(coding) = codings.next() {
            count += 1;
            let is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if codings.peek().is_none() {
                last_chunked = is_chunked;
            } else if is_chunked {
                chunked_before_last = true;
            }
        }
        Ok(match (count, last_chunked, chunked_before_last) {
            (0, _, _) => return Err(HttpError::Malformed(httparse::Error::HeaderValue)),
            // chunked applied twice, or before another coding: framing is faulty.
            (_, _, true) => TransferEncoding::NotChunkedLast,
            (_, false, _) => TransferEncoding::NotChunkedLast,
            (1, true, _) => TransferEncoding::Chunked,
            (_, true, _) => TransferEncoding::Unsupported,
        })
    }
}

/// `Content-Length`: 1*DIGIT, or a list of identical values (RFC 9110 §8.6).
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    let mut result: Option<usize> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::BadContentLength);
        }
        let n = part.iter().fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        if result.is_some_and(|prev| prev != n) {
            return Err(HttpError::BadContentLength);
        }
        result = Some(n);
    }
    result.ok_or(HttpError::BadContentLength)
}

/// Comma-separated list elements, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// obs-fold: a header line continued on the next line by leading whitespace.
fn has_obs_fold(buf: &[u8]) -> bool {
    buf.windows(3).any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t') && w[2] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<(Framing, bool, usize)>, HttpError> {
        let mut headers = header_slots();
        match parse_head(raw.as_bytes(), &mut headers, 16 * 1024, 1024)? {
            Parsed::Partial => Ok(None),
            Parsed::Complete(h) => Ok(Some((h.framing, h.keep_alive, h.len))),
        }
    }

    #[test]
    fn simple_get_keeps_alive() {
        let raw = "GET /livez HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse(raw), Ok(Some((Framing::Empty, true, raw.len()))));
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert_eq!(parse("GET /livez HTTP/1.1\r\nHo"), Ok(None));
    }

    #[test]
    fn http10_closes_unless_asked() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().1);
        assert!(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap().1);
        assert!(!parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap().unwrap().1);
    }

    #[test]
    fn framings() {
        let cl = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(cl.0, Framing::Length(5));
        let te = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(te.0, Framing::Chunked);
        let same = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(same.unwrap().unwrap().0, Framing::Length(5));
    }

    #[test]
    fn rejects_what_rfc9112_says_to_reject() {
        let cases = [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::LengthAndChunked,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                HttpError::BadContentLength,
            ),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", HttpError::BadContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", HttpError::BadContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", HttpError::BadContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n", HttpError::BodyTooLarge { limit: 1024 }),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", HttpError::ChunkedNotLast),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", HttpError::ChunkedNotLast),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", HttpError::ChunkedNotLast),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                HttpError::UnsupportedTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::RepeatedTransferEncoding,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HttpError::TransferEncodingInHttp10),
            ("GET / HTTP/1.1\r\n\r\n", HttpError::BadHost),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HttpError::BadHost),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n  folded\r\n\r\n", HttpError::ObsFold),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HttpError::BadVersion),
            ("GET nopath HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::BadTarget),
            ("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", HttpError::ExpectationFailed),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn head_limit_applies_to_partial_and_complete_heads() {
        let mut headers = header_slots();
        let long = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "a".repeat(200));
        assert_eq!(parse_head(long.as_bytes(), &mut headers, 100, 0).unwrap_err(), HttpError::HeadTooLarge);
        let mut headers = header_slots();
        let complete = format!("{long}\r\n\r\n");
        assert_eq!(parse_head(complete.as_bytes(), &mut headers, 100, 0).unwrap_err(), HttpError::HeadTooLarge);
        // A small head followed by a large body is fine.
        let mut headers = header_slots();
        let with_body = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 300\r\n\r\n{}", "b".repeat(300));
        assert!(parse_head(with_body.as_bytes(), &mut headers, 100, 1000).is_ok());
    }

    #[test]
    fn too_many_headers_is_431() {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse(&raw), Err(HttpError::TooManyHeaders));
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
    }
}
