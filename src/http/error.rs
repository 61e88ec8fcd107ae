//! Protocol errors found while reading a request. Each maps to one status and
//! one stable problem code; every one of them closes the connection, because
//! after a framing error the next request's start cannot be trusted.

use std::fmt;

/// Why a request could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// httparse rejected the request line or a header.
    Malformed(httparse::Error),
    /// Not HTTP/1.0 or HTTP/1.1.
    BadVersion,
    /// The request target is not an origin-form path.
    BadTarget,
    /// A header line continued with leading whitespace (obs-fold).
    ObsFold,
    /// The head is longer than `--max-header-bytes`.
    HeadTooLarge,
    /// More than [`super::request::MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// Missing `Host` in HTTP/1.1, or more than one.
    BadHost,
    /// Content-Length that is not digits, or several that differ.
    BadContentLength,
    /// Both Content-Length and Transfer-Encoding.
    LengthAndChunked,
    /// Transfer-Encoding sent on more than one line.
    RepeatedTransferEncoding,
    /// Transfer-Encoding whose final coding is not `chunked`.
    ChunkedNotLast,
    /// A coding before `chunked` that this server does not decode.
    UnsupportedTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request.
    TransferEncodingInHttp10,
    /// A malformed chunk-size line, chunk terminator or trailer.
    BadChunk,
    /// The body is longer than `--max-body-bytes`, the limit given.
    BodyTooLarge {
        /// The limit in bytes, said in the answer.
        limit: usize,
    },
    /// An `Expect` other than `100-continue`.
    ExpectationFailed,
    /// The head or body did not arrive before its deadline.
    Timeout,
    /// Plain HTTP sent to a port that speaks TLS.
    PlainOnTlsPort,
}

impl HttpError {
    /// The response status for this error.
    pub fn status(self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::BadVersion => 505,
            HttpError::ExpectationFailed => 417,
            HttpError::Timeout => 408,
            _ => 400,
        }
    }

    /// A stable, machine-readable code for the problem document.
    pub fn code(self) -> &'static str {
        match self {
            HttpError::Malformed(_) => "malformed-request",
            HttpError::BadVersion => "http-version-not-supported",
            HttpError::BadTarget => "bad-request-target",
            HttpError::ObsFold => "obsolete-line-folding",
            HttpError::HeadTooLarge => "header-too-large",
            HttpError::TooManyHeaders => "too-many-headers",
            HttpError::BadHost => "bad-host",
            HttpError::BadContentLength => "bad-content-length",
            HttpError::LengthAndChunked => "length-and-transfer-encoding",
            HttpError::RepeatedTransferEncoding => "repeated-transfer-encoding",
            HttpError::ChunkedNotLast => "chunked-not-last",
            HttpError::UnsupportedTransferEncoding => "unsupported-transfer-encoding",
            HttpError::TransferEncodingInHttp10 => "transfer-encoding-in-http10",
            HttpError::BadChunk => "bad-chunk",
            HttpError::BodyTooLarge { .. } => "body-too-large",
            HttpError::ExpectationFailed => "expectation-failed",
            HttpError::Timeout => "request-timeout",
            HttpError::PlainOnTlsPort => "http-to-https-port",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed(e) => write!(f, "malformed request: {e}"),
            HttpError::BadVersion => f.write_str("only HTTP/1.0 and HTTP/1.1 are supported"),
            HttpError::BadTarget => f.write_str("the request target must be a path starting with '/'"),
            HttpError::ObsFold => f.write_str("header line folding (obs-fold) is not accepted"),
            HttpError::HeadTooLarge => f.write_str("the request head is larger than the server accepts"),
            HttpError::TooManyHeaders => f.write_str("the request has more header lines than the server accepts"),
            HttpError::BadHost => f.write_str("an HTTP/1.1 request needs exactly one Host header"),
            HttpError::BadContentLength => f.write_str("Content-Length must be one non-negative decimal number"),
            HttpError::LengthAndChunked => f.write_str("Content-Length and Transfer-Encoding must not both be sent"),
            HttpError::RepeatedTransferEncoding => f.write_str("Transfer-Encoding must be sent on one line"),
            HttpError::ChunkedNotLast => f.write_str("the final transfer coding must be chunked, applied once"),
            HttpError::UnsupportedTransferEncoding => f.write_str("only the chunked transfer coding is supported"),
            HttpError::TransferEncodingInHttp10 => f.write_str("Transfer-Encoding is not defined for HTTP/1.0"),
            HttpError::BadChunk => f.write_str("malformed chunked body"),
            HttpError::BodyTooLarge { limit } => {
                write!(f, "the request body is larger than this server's limit of {limit} bytes")
            }
            HttpError::ExpectationFailed => f.write_str("only 'Expect: 100-continue' is supported"),
            HttpError::Timeout => f.write_str("the request was not received in time"),
            HttpError::PlainOnTlsPort => f.write_str("this port speaks TLS: send the request with https://"),
        }
    }
}

impl std::error::Error for HttpError {}
