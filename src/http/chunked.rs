//! Decoding of `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1),
//! in place in the connection's read buffer.
//!
//! Decoded data is never longer than the raw bytes it came from, so the
//! decoder moves each chunk's data down to just after the body decoded so far.
//! When it is done, the body lies contiguous right after the head and no
//! second buffer was needed.

use super::error::HttpError;

/// Longest chunk-size line (size, extensions) accepted.
const MAX_SIZE_LINE: usize = 1024;
/// Most bytes of trailer fields accepted; trailers are checked and dropped.
const MAX_TRAILERS: usize = 8 * 1024;

/// A `tchar` of RFC 9110 §5.6.2: what a field name (and an extension name) is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte a field value may hold (VCHAR, SP, HTAB, obs-text): no controls.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..0x7f).contains(&b) || b >= 0x80
}

/// Where the decoder is inside the chunked stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { digits: u8 },
    /// Whitespace after the size (BWS): only `;` (an extension) or CR may follow.
    SizeWs,
    /// Skipping chunk extensions up to CR.
    Extension,
    /// Saw CR after the size line; LF must follow.
    SizeLf,
    /// Copying chunk data.
    Data { remaining: u64 },
    /// Chunk data ended; CR must follow.
    DataCr,
    /// CR after data; LF must follow.
    DataLf,
    /// At the start of a trailer line: a field name, or CR for the end.
    TrailerStart,
    /// In a trailer field's name (a token), up to its colon.
    TrailerName,
    /// In a trailer field's value, up to CR.
    TrailerValue,
    /// Saw CR in the trailer section; LF must follow. `empty` marks the final blank line.
    TrailerLf { empty: bool },
    /// The last chunk and trailers were read.
    Done,
}

/// An incremental, in-place chunked decoder.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    size_line: usize,
    trailer_bytes: usize,
    /// Decoded body bytes so far.
    decoded: usize,
    max_body: usize,
}

/// Progress of [`ChunkedDecoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Raw bytes consumed from the start of the body.
    pub raw: usize,
    /// Decoded bytes now lying at the start of the body.
    pub decoded: usize,
    /// Whether the whole body has been read.
    pub done: bool,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies longer than `max_body` decoded bytes.
    pub fn new(max_body: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            size_line: 0,
            trailer_bytes: 0,
            decoded: 0,
            max_body,
        }
    }

    /// Decodes `body[raw..]`, where `raw` is what earlier calls consumed, and
    /// moves chunk data down to `body[decoded..]`. Call again with the same
    /// slice start when more bytes have arrived.
    pub fn decode(&mut self, body: &mut [u8], mut raw: usize) -> Result<Progress, HttpError> {
        while raw < body.len() && self.state != State::Done {
            if let State::Data { remaining } = self.state {
                let available = body.len() - raw;
                let n = usize::try_from(remaining).map_or(available, |r| r.min(available));
                body.copy_within(raw..raw + n, self.decoded);
                raw += n;
                self.decoded += n;
                let remaining = remaining - n as u64;
                self.state = if remaining == 0 { State::DataCr } else { State::Data { remaining } };
                continue;
            }
            let byte = body[raw];
            raw += 1;
            self.state = self.step(byte)?;
        }
        Ok(Progress { raw, decoded: self.decoded, done: self.state == State::Done })
    }

    /// Advances over one control byte (everything but chunk data).
    fn step(&mut self, byte: u8) -> Result<State, HttpError> {
        if matches!(self.state, State::Size { .. } | State::SizeWs | State::Extension | State::SizeLf) {
            self.size_line += 1;
            if self.size_line > MAX_SIZE_LINE {
                return Err(HttpError::BadChunk);
            }
        }
        let next = match (self.state, byte) {
            (State::Size { digits }, b) if b.is_ascii_hexdigit() => {
                // 15 hex digits already exceed any body limit; more would overflow.
                if digits >= 15 {
                    return Err(HttpError::BadChunk);
                }
                self.size = self.size * 16 + u64::from(hex_value(b));
                State::Size { digits: digits + 1 }
            }
            // chunk-size [ BWS ";" chunk-ext ] CRLF: after the size only
            // whitespace, then `;` or the line's end (`10 junk` is refused).
            (State::Size { digits }, b';') if digits > 0 => State::Extension,
            (State::Size { digits }, b' ' | b'\t') if digits > 0 => State::SizeWs,
            (State::Size { digits }, b'\r') if digits > 0 => State::SizeLf,
            (State::SizeWs, b' ' | b'\t') => State::SizeWs,
            (State::SizeWs, b';') => State::Extension,
            (State::SizeWs, b'\r') => State::SizeLf,
            (State::Extension, b'\r') => State::SizeLf,
            (State::Extension, b) if b == b'\t' || (b' '..0x7f).contains(&b) || b >= 0x80 => State::Extension,
            (State::SizeLf, b'\n') => {
                let size = std::mem::take(&mut self.size);
                self.size_line = 0;
                if size == 0 {
                    State::TrailerStart
                } else if size > (self.max_body - self.decoded.min(self.max_body)) as u64 {
                    return Err(HttpError::BodyTooLarge { limit: self.max_body });
                } else {
                    State::Data { remaining: size }
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { digits: 0 },
            // Trailers are header fields (RFC 9112 §7.1.2): `name: value`.
            // A request line, a bare name, a NUL or a folded line is not one.
            (State::TrailerStart, b'\r') => State::TrailerLf { empty: true },
            (State::TrailerStart | State::TrailerName, b) if is_tchar(b) => self.trailer_byte(State::TrailerName)?,
            (State::TrailerName, b':') => self.trailer_byte(State::TrailerValue)?,
            (State::TrailerValue, b'\r') => State::TrailerLf { empty: false },
            (State::TrailerValue, b) if is_field_byte(b) => self.trailer_byte(State::TrailerValue)?,
            (State::TrailerLf { empty: true }, b'\n') => State::Done,
            (State::TrailerLf { empty: false }, b'\n') => State::TrailerStart,
            _ => return Err(HttpError::BadChunk),
        };
        Ok(next)
    }
}

impl ChunkedDecoder {
    /// Counts one byte of trailer fields against their bound.
    fn trailer_byte(&mut self, next: State) -> Result<State, HttpError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(next)
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(raw: &[u8], max: usize) -> Result<(Vec<u8>, usize), HttpError> {
        let mut buf = raw.to_vec();
        let p = ChunkedDecoder::new(max).decode(&mut buf, 0)?;
        assert!(p.done, "not done: {p:?}");
        Ok((buf[..p.decoded].to_vec(), p.raw))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let raw = b"5;name=val\r\nhello\r\n6 ; a=\"b c\"\r\n world\r\n0\r\nX-Trailer: t\r\nEmpty:\r\n\r\nNEXT";
        let (body, used) = decode_all(raw, 100).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(&raw[used..], b"NEXT");
    }

    #[test]
    fn decodes_byte_by_byte() {
        let raw = b"A\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n";
        let mut buf = Vec::new();
        let mut decoder = ChunkedDecoder::new(100);
        let mut progress = Progress { raw: 0, decoded: 0, done: false };
        for &b in raw.iter() {
            buf.push(b);
            progress = decoder.decode(&mut buf, progress.raw).unwrap();
        }
        assert!(progress.done);
        assert_eq!(&buf[..progress.decoded], b"0123456789x");
    }

    #[test]
    fn rejects_bad_chunks() {
        for raw in [
            &b"g\r\n"[..],
            b"\r\n",
            b"5\r\nhelloX\r\n",
            b"5\nhello\r\n",
            b"ffffffffffffffffff\r\n",
            b"-1\r\n",
            b"5\r\nhello\r\n0\r\nbad\x01trailer\rX",
            // A size followed by anything but an extension.
            b"10 junk\r\n",
            b"5 \t x\r\n",
            // What is not a field in the trailer section: a smuggled request
            // line, a name without a colon, a NUL, a folded line, a bare LF,
            // a space before the colon.
            b"0\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
            b"0\r\nnocolon\r\n\r\n",
            b"0\r\nX-A: a\x00b\r\n\r\n",
            b"0\r\nX-A: a\r\n  folded\r\n\r\n",
            b"0\r\nX-A: a\n\r\n",
            b"0\r\nX-A : a\r\n\r\n",
            b"0\r\n: no name\r\n\r\n",
        ] {
            let mut buf = raw.to_vec();
            assert_eq!(ChunkedDecoder::new(100).decode(&mut buf, 0), Err(HttpError::BadChunk), "{raw:?}");
        }
    }

    #[test]
    fn enforces_the_body_limit_across_chunks() {
        let mut buf = b"8\r\n01234567\r\n8\r\n01234567\r\n".to_vec();
        assert_eq!(ChunkedDecoder::new(10).decode(&mut buf, 0), Err(HttpError::BodyTooLarge { limit: 10 }));
    }

    #[test]
    fn endless_extension_is_refused() {
        let mut buf = format!("1;{}", "x".repeat(2000)).into_bytes();
        assert_eq!(ChunkedDecoder::new(10).decode(&mut buf, 0), Err(HttpError::BadChunk));
    }
}
