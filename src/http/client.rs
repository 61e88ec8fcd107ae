//! The client side of HTTP/1.1: request heads out, responses in. Shared by
//! the fetcher and the load tester; no sockets here.
//!
//! [`ResponseReader`] is fed bytes as they arrive and frames the response
//! (RFC 9112 §6.3): no body for `HEAD`, 1xx, 204 and 304; chunked (decoded in
//! place with the server's decoder); Content-Length; else until close.

use std::mem::MaybeUninit;

use super::chunked::ChunkedDecoder;
use super::error::HttpError;

/// Most header lines in a response.
const MAX_HEADERS: usize = 100;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The head or body is over its limit.
    TooLarge(&'static str),
    /// Not a valid HTTP/1.1 response.
    Malformed(String),
}

/// A response's status line and headers.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// The first value of header `name` (lower-case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| std::str::from_utf8(v).ok()).map(str::trim)
    }

    /// Every value of header `name` (lower-case), as text.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }
}

/// Where the reader is in the body.
#[derive(Debug, Clone)]
enum Body {
    Length {
        remaining: u64,
    },
    /// `decoded`: body bytes so far, which lie at the start of the body; unread bytes follow them.
    Chunked {
        decoder: ChunkedDecoder,
        decoded: usize,
    },
    UntilClose,
}

/// What one look at the head found.
enum Head {
    Partial,
    Interim,
    Complete,
}

#[derive(Debug)]
enum State {
    Head,
    Body(Body),
    Done,
}

/// Reads one response from the bytes of a connection.
#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    /// Bytes read; after the head, the (decoded) body starts at `body_start`.
    buf: Vec<u8>,
    body_start: usize,
    head: ResponseHead,
    max_head: usize,
    max_body: usize,
    no_body: bool,
    /// Bytes that followed the response (the connection cannot be reused).
    trailing: bool,
}

/// What [`ResponseReader::advance`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed.
    More,
    /// The response is complete.
    Done,
}

impl ResponseReader {
    /// A reader for the response to a request; `head_request` for `HEAD`.
    pub fn new(max_head: usize, max_body: usize, head_request: bool) -> ResponseReader {
        ResponseReader {
            state: State::Head,
            buf: Vec::new(),
            body_start: 0,
            head: ResponseHead::default(),
            max_head,
            max_body,
            no_body: head_request,
            trailing: false,
        }
    }

    /// The buffer to append received bytes to; call [`advance`](Self::advance) after.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Whether any byte of the response has arrived.
    pub fn started(&self) -> bool {
        !self.buf.is_empty() || !matches!(self.state, State::Head)
    }

    /// Frames what has arrived.
    pub fn advance(&mut self) -> Result<Progress, ResponseError> {
        loop {
            match &mut self.state {
                State::Head => match self.parse_head()? {
                    Head::Partial => return Ok(Progress::More),
                    // An interim response was dropped; the real one may be in the buffer already.
                    Head::Interim | Head::Complete => {}
                },
                State::Body(Body::Length { remaining }) => {
                    let have = (self.buf.len() - self.body_start) as u64;
                    if have < *remaining {
                        return Ok(Progress::More);
                    }
                    let end = self.body_start + *remaining as usize;
                    self.trailing = self.buf.len() > end;
                    self.buf.truncate(end);
                    self.state = State::Done;
                }
                State::Body(Body::Chunked { decoder, decoded }) => {
                    let progress = decoder.decode(&mut self.buf[self.body_start..], *decoded).map_err(|e| match e {
                        HttpError::BodyTooLarge { .. } => ResponseError::TooLarge("body"),
                        _ => ResponseError::Malformed("bad chunked encoding".into()),
                    })?;
                    // Drop the consumed framing so the buffer holds body and unread bytes only.
                    let decoded_end = self.body_start + progress.decoded;
                    self.buf.copy_within(self.body_start + progress.raw.., decoded_end);
                    self.buf.truncate(self.buf.len() - (progress.raw - progress.decoded));
                    *decoded = progress.decoded;
                    if !progress.done {
                        return Ok(Progress::More);
                    }
                    self.trailing = self.buf.len() > decoded_end;
                    self.buf.truncate(decoded_end);
                    self.state = State::Done;
                }
                State::Body(Body::UntilClose) => {
                    if self.buf.len() - self.body_start > self.max_body {
                        return Err(ResponseError::TooLarge("body"));
                    }
                    return Ok(Progress::More);
                }
                State::Done => return Ok(Progress::Done),
            }
        }
    }

    /// The peer closed the connection: fine for a body read until close,
    /// an error anywhere else.
    pub fn eof(&mut self) -> Result<(), ResponseError> {
        match self.state {
            State::Body(Body::UntilClose) => {
                self.state = State::Done;
                Ok(())
            }
            State::Done => Ok(()),
            _ => Err(ResponseError::Malformed("the connection closed before the response ended".into())),
        }
    }

    /// Whether the connection can carry another request after this response.
    pub fn reusable(&self) -> bool {
        matches!(self.state, State::Done) && self.head.keep_alive && !self.trailing
    }

    /// The head and the body, once [`Progress::Done`].
    pub fn into_parts(mut self) -> (ResponseHead, Vec<u8>) {
        self.buf.drain(..self.body_start);
        (self.head, self.buf)
    }

    /// Parses the head if it is all there; drops an interim (1xx) response.
    fn parse_head(&mut self) -> Result<Head, ResponseError> {
        let mut headers = Vec::new();
        let parsed = parse_head(&self.buf, self.max_head, self.max_body, self.no_body, |name, value| {
            headers.push((name.to_ascii_lowercase(), value.to_vec()))
        })?;
        let info = match parsed {
            ParsedHead::Partial => return Ok(Head::Partial),
            ParsedHead::Interim(n) => {
                self.buf.drain(..n);
                return Ok(Head::Interim);
            }
            ParsedHead::Complete(info) => info,
        };
        self.head = ResponseHead { status: info.status, headers, keep_alive: info.keep_alive };
        self.body_start = info.len;
        self.state = State::Body(match info.framing {
            Framing::Length(remaining) => Body::Length { remaining },
            Framing::Chunked => Body::Chunked { decoder: ChunkedDecoder::new(self.max_body), decoded: 0 },
            Framing::UntilClose => Body::UntilClose,
        });
        Ok(Head::Complete)
    }
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes.
    UntilClose,
}

/// A response head's meaning, without its header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadInfo {
    /// The status code.
    pub status: u16,
    /// The head's length in bytes; the body starts there.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
}

/// What [`parse_head`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedHead {
    /// More bytes are needed.
    Partial,
    /// An interim (1xx) response of this many bytes, to skip.
    Interim(usize),
    /// A final response head.
    Complete(HeadInfo),
}

/// Parses a response head at the start of `buf` without allocating, frames
/// its body (RFC 9112 §6.3) and shows each header to `visit`. Shared by the
/// fetcher (through [`ResponseReader`]) and the load tester.
pub fn parse_head(
    buf: &[u8],
    max_head: usize,
    max_body: usize,
    head_request: bool,
    mut visit: impl FnMut(&str, &[u8]),
) -> Result<ParsedHead, ResponseError> {
    // Uninitialised slots: a response is parsed per request in the load tester.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_head => return Err(ResponseError::TooLarge("head")),
        Ok(httparse::Status::Partial) => return Ok(ParsedHead::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge("head")),
        Err(e) => return Err(ResponseError::Malformed(format!("bad response head: {e}"))),
    };
    if n > max_head {
        return Err(ResponseError::TooLarge("head"));
    }
    let status = response.code.unwrap_or(0);
    if (100..200).contains(&status) {
        // 100 Continue and friends: the real response follows.
        if status == 101 {
            return Err(ResponseError::Malformed("unexpected protocol switch".into()));
        }
        return Ok(ParsedHead::Interim(n));
    }
    let (mut close, mut keep_alive, mut chunked, mut other_coding) = (false, false, false, false);
    let mut length: Option<u64> = None;
    for h in response.headers.iter() {
        visit(h.name, h.value);
        let framing_header = ["connection", "transfer-encoding", "content-length"]
            .iter()
            .any(|n| h.name.len() == n.len() && h.name.eq_ignore_ascii_case(n));
        if !framing_header {
            continue;
        }
        let value = std::str::from_utf8(h.value).unwrap_or_default();
        if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding of the last line decides.
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            chunked = last.eq_ignore_ascii_case("chunked");
            other_coding = !chunked;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let n: u64 = part
                    .trim()
                    .parse()
                    .map_err(|_| ResponseError::Malformed(format!("bad Content-Length {value:?}")))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ResponseError::Malformed("differing Content-Length values".into()));
                }
                length = Some(n);
            }
        }
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if other_coding {
        // Not chunked last: the body runs to the close (RFC 9112 §6.3).
        Framing::UntilClose
    } else {
        match length {
            Some(n) if n > max_body as u64 => return Err(ResponseError::TooLarge("body")),
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let http10 = response.version == Some(0);
    let keep_alive = !close && (!http10 || keep_alive) && framing != Framing::UntilClose;
    Ok(ParsedHead::Complete(HeadInfo { status, len: n, framing, keep_alive }))
}

/// Writes a request head (and body) for `method` `target` on `host`.
pub fn encode_request(method: &str, target: &str, host: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    for part in [method, " ", target, " HTTP/1.1\r\nHost: ", host, "\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    for (name, value) in headers {
        for part in [name, ": ", value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.extend_from_slice(b"Content-Length: ");
        super::response::push_decimal(&mut out, body.len());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8], step: usize) -> Result<(ResponseHead, Vec<u8>, bool), ResponseError> {
        let mut r = ResponseReader::new(1024, 100, false);
        for piece in raw.chunks(step) {
            r.buffer().extend_from_slice(piece);
            if r.advance()? == Progress::Done {
                let reusable = r.reusable();
                let (head, body) = r.into_parts();
                return Ok((head, body, reusable));
            }
        }
        r.eof()?;
        let reusable = r.reusable();
        let (head, body) = r.into_parts();
        Ok((head, body, reusable))
    }

    #[test]
    fn frames_by_length_chunks_and_close() {
        for step in [1, 3, 1000] {
            let (h, b, reuse) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", step).unwrap();
            assert_eq!((h.status, b.as_slice(), reuse), (200, &b"hello"[..], true));
            let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
            let (_, b, reuse) = read(raw, step).unwrap();
            assert_eq!((b.as_slice(), reuse), (&b"hello"[..], true));
            let (_, b, reuse) = read(b"HTTP/1.0 200 OK\r\n\r\nuntil close", step).unwrap();
            assert_eq!((b.as_slice(), reuse), (&b"until close"[..], false));
            let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
            let (h, b, reuse) = read(raw, step).unwrap();
            assert_eq!((h.status, b.len(), reuse), (204, 0, false));
        }
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        let big = read(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", 1000).unwrap_err();
        assert_eq!(big, ResponseError::TooLarge("body"));
        let close = vec![b'x'; 200];
        let mut raw = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        raw.extend_from_slice(&close);
        assert_eq!(read(&raw, 1000).unwrap_err(), ResponseError::TooLarge("body"));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 1),
            Err(ResponseError::Malformed(_))
        ));
        assert!(matches!(read(b"SMTP ready\r\n\r\n", 1000), Err(ResponseError::Malformed(_))));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 1000),
            Err(ResponseError::Malformed(_))
        ));
        let chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(read(chunk, 1000), Err(ResponseError::Malformed(_))));
        let head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(read(head.as_bytes(), 100).unwrap_err(), ResponseError::TooLarge("head"));
    }

    #[test]
    fn extra_bytes_make_the_connection_unusable() {
        let (_, b, reuse) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 1000).unwrap();
        assert_eq!((b.as_slice(), reuse), (&b"ok"[..], false));
    }

    #[test]
    fn encodes_requests() {
        let r = encode_request("POST", "/cb?x=1", "example.com:8080", &[("Content-Type", "application/json")], b"{}");
        assert_eq!(
            r,
            b"POST /cb?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
