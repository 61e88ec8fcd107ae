//! Responses and their encoding onto the wire.
//!
//! A [`Response`] is a value a handler returns (or sends later from another
//! thread); the connection encodes it with [`Response::encode`] straight into
//! its reused write buffer, so the common case allocates nothing.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::json;

use super::error::HttpError;

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// No body at all.
    Empty,
    /// A body known at compile time; costs no allocation.
    Static(&'static [u8]),
    /// A body built at run time.
    Bytes(Vec<u8>),
    /// A large shared buffer between a small built prefix and a static
    /// suffix (a task's stored result inside its status document): every
    /// response holds the same buffer, none a copy of it.
    Spliced { before: Vec<u8>, shared: Arc<[u8]>, after: Cow<'static, [u8]> },
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len(),
            Body::Bytes(b) => b.len(),
            Body::Spliced { before, shared, after } => before.len() + shared.len() + after.len(),
        }
    }

    fn write_to(&self, out: &mut impl Sink) {
        match self {
            Body::Empty => {}
            Body::Static(b) => out.bytes(b),
            Body::Bytes(b) => out.bytes(b),
            Body::Spliced { before, shared, after } => {
                out.bytes(before);
                out.shared(shared);
                out.bytes(after);
            }
        }
    }
}

/// Where an encoded response goes: owned bytes are appended to a buffer, a
/// shared buffer may be kept by reference instead.
pub trait Sink {
    /// The buffer owned bytes are appended to.
    fn buf(&mut self) -> &mut Vec<u8>;
    /// Appends a shared buffer's bytes (by reference where the sink can).
    fn shared(&mut self, bytes: &Arc<[u8]>);
    /// Appends bytes.
    fn bytes(&mut self, bytes: &[u8]) {
        self.buf().extend_from_slice(bytes);
    }
}

impl Sink for Vec<u8> {
    fn buf(&mut self) -> &mut Vec<u8> {
        self
    }

    fn shared(&mut self, bytes: &Arc<[u8]>) {
        self.extend_from_slice(bytes);
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Body,
    close: bool,
    /// The body follows in chunks (see `Responder::stream`).
    streamed: bool,
}

/// Per-request facts the encoder needs beyond the response itself.
#[derive(Debug, Clone, Copy)]
pub struct Encoding<'a> {
    /// The request was `HEAD`: send headers only.
    pub head_only: bool,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// The request was HTTP/1.0, so keep-alive must be said explicitly.
    pub http10: bool,
    /// The cached IMF-fixdate for the `Date` header.
    pub date: &'a [u8],
}

impl Response {
    /// A response with the given status and no body.
    pub fn empty(status: u16) -> Self {
        Response { status, content_type: None, headers: Vec::new(), body: Body::Empty, close: false, streamed: false }
    }

    /// A `text/plain` response with a static body.
    pub fn text(status: u16, body: &'static str) -> Self {
        Response::with_static(status, "text/plain; charset=utf-8", body.as_bytes())
    }

    /// A response with a body known at compile time (no allocation).
    pub fn with_static(status: u16, content_type: &'static str, body: &'static [u8]) -> Self {
        Response {
            status,
            content_type: Some(content_type),
            headers: Vec::new(),
            body: Body::Static(body),
            close: false,
            streamed: false,
        }
    }

    /// A response with a body and content type.
    pub fn with_body(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: Some(content_type),
            headers: Vec::new(),
            body: Body::Bytes(body),
            close: false,
            streamed: false,
        }
    }

    /// A response whose body is a shared buffer, sent without a copy.
    pub fn shared(status: u16, content_type: &'static str, body: Arc<[u8]>) -> Self {
        Response::spliced(status, content_type, Vec::new(), body, &b""[..])
    }

    /// A response whose body is `before`, the shared buffer, then `after`.
    pub fn spliced(
        status: u16,
        content_type: &'static str,
        before: Vec<u8>,
        shared: Arc<[u8]>,
        after: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        let after = after.into();
        Response {
            body: Body::Spliced { before, shared, after },
            ..Response::with_body(status, content_type, Vec::new())
        }
    }

    /// An `application/json` response with the serialised value.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::with_body(status, "application/json", body),
            Err(e) => Response::problem(500, "internal", &format!("could not encode the response: {e}")),
        }
    }

    /// An RFC 9457 problem document. `code` is a stable identifier that
    /// clients can match on; `detail` is for people.
    pub fn problem(status: u16, code: &str, detail: &str) -> Self {
        let doc = json!({
            "type": format!("urn:pagelens:problem:{code}"),
            "title": reason(status),
            "status": status,
            "detail": detail,
            "code": code,
        });
        // Serialising a json! value of strings and numbers cannot fail.
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        Response::with_body(status, "application/problem+json", body)
    }

    /// The problem response for a protocol error; it always closes.
    pub fn from_http_error(e: HttpError) -> Self {
        Response::problem(e.status(), e.code(), &e.to_string()).closing()
    }

    /// Adds a header. `Content-Length`, `Date` and `Connection` are the encoder's.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The head of a streamed response: its body comes later, in chunks.
    pub fn streaming(status: u16, content_type: &'static str) -> Self {
        Response { streamed: true, ..Response::with_body(status, content_type, Vec::new()) }
    }

    /// Whether the body is streamed.
    pub fn is_streamed(&self) -> bool {
        self.streamed
    }

    /// Marks the connection to be closed after this response.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Whether the connection must close after this response.
    pub fn closes(&self) -> bool {
        self.close
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The body bytes (copied only for a spliced body).
    pub fn body(&self) -> Cow<'_, [u8]> {
        match &self.body {
            Body::Spliced { .. } => {
                let mut all = Vec::with_capacity(self.body.len());
                self.body.write_to(&mut all);
                Cow::Owned(all)
            }
            Body::Empty => Cow::Borrowed(&[]),
            Body::Static(b) => Cow::Borrowed(b),
            Body::Bytes(b) => Cow::Borrowed(b),
        }
    }

    /// The value of an extra header set with [`Response::header`].
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Appends the encoded response to `out`.
    pub fn encode(&self, how: Encoding<'_>, sink: &mut impl Sink) {
        self.encode_head(how, sink.buf());
        if !how.head_only {
            self.body.write_to(sink);
        }
    }

    /// Appends the status line and headers (with the blank line) to `out`.
    pub fn encode_head(&self, how: Encoding<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, self.status.into());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nServer: pagelens\r\nDate: ");
        out.extend_from_slice(how.date);
        if let Some(ct) = self.content_type {
            out.extend_from_slice(b"\r\nContent-Type: ");
            out.extend_from_slice(ct.as_bytes());
        }
        if self.streamed {
            // HTTP/1.0 has no chunked coding: the body ends when the connection does.
            if !how.http10 {
                out.extend_from_slice(b"\r\nTransfer-Encoding: chunked");
            }
        } else if self.status >= 200 && self.status != 204 {
            // 1xx and 204 carry no Content-Length (RFC 9110 §8.6).
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_decimal(out, self.body.len());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
        }
        if !how.keep_alive {
            out.extend_from_slice(b"\r\nConnection: close");
        } else if how.http10 {
            out.extend_from_slice(b"\r\nConnection: keep-alive");
        }
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// Appends `n` in decimal; `write!` costs several times more on this path.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 22 Nov 2026 18:00:00 GMT";

    fn encode(r: &Response, head_only: bool, keep_alive: bool) -> String {
        let mut out = Vec::new();
        r.encode(Encoding { head_only, keep_alive, http10: false, date: DATE }, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_status_headers_and_body() {
        let text = encode(&Response::text(200, "ok").header("X-A", "b"), false, true);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: pagelens\r\nDate: Sun, 22 Nov 2026 18:00:00 GMT\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok"
        );
    }

    #[test]
    fn decimals() {
        for n in [0usize, 7, 10, 404, 65_535, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn head_keeps_length_but_drops_body() {
        let text = encode(&Response::text(200, "hello"), true, false);
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.contains("Connection: close\r\n\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn problem_documents_follow_rfc9457() {
        let r = Response::from_http_error(HttpError::BodyTooLarge { limit: 10 });
        assert_eq!(r.status, 413);
        assert!(r.closes());
        let doc: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(doc["status"], 413);
        assert_eq!(doc["code"], "body-too-large");
        assert_eq!(doc["title"], "Content Too Large");
        assert_eq!(doc["type"], "urn:pagelens:problem:body-too-large");
    }
}
