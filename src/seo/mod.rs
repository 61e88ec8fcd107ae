//! The SEO engine: bytes of a page (and what is known about it) in, an
//! [`Analysis`] out. A pure library: no sockets, no threads, no clock.
//!
//! One pass decodes the bytes ([`charset`]), one normalises them and lifts
//! raw-text elements out ([`prescan`]), tl parses once and one walk collects
//! the page model ([`page`]), then URLs are resolved ([`analysis`]) and the
//! checks judged ([`checks`]).

pub mod analysis;
pub mod charset;
pub mod checks;
pub mod page;
pub mod prescan;
pub mod robots_txt;
pub mod text;

use std::fmt;

pub use analysis::{Analysis, Options};

/// Why a page could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalyzeError {
    /// The input has no bytes at all.
    Empty,
    /// The input does not look like text (NUL bytes in its first kilobytes).
    Binary,
}

impl fmt::Display for AnalyzeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnalyzeError::Empty => f.write_str("the page is empty"),
            AnalyzeError::Binary => f.write_str("the content is binary, not an HTML page"),
        }
    }
}

impl std::error::Error for AnalyzeError {}

/// How far into the page to look for NUL bytes that mark binary content.
const BINARY_SNIFF: usize = 8 * 1024;

/// Analyses one page.
pub fn analyze(bytes: &[u8], options: &Options) -> Result<Analysis, AnalyzeError> {
    parse(bytes, options).map(|parsed| score(parsed, options))
}

/// A page parsed into its model, ready to be scored.
#[derive(Debug)]
pub struct Parsed {
    page: page::Page,
    charset: String,
    charset_source: &'static str,
}

/// The first half of [`analyze`]: decodes the bytes and extracts the page model.
pub fn parse(bytes: &[u8], options: &Options) -> Result<Parsed, AnalyzeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AnalyzeError::Empty);
    }
    let decoded = charset::decode(bytes, options.content_type.as_deref(), options.unicode);
    // UTF-16 legitimately has NULs before decoding; after it, none belong in HTML.
    if decoded.text[..floor_char_boundary(&decoded.text, BINARY_SNIFF)].contains('\0') {
        return Err(AnalyzeError::Binary);
    }
    let mut text = decoded.text.into_bytes();
    let scanned = prescan::prescan(&mut text);
    // The prescan lowercases ASCII letters and blanks whole element bodies
    // (cut at ASCII '<' and '>'), so the text is still UTF-8; the lossy
    // branch is a guard that never runs.
    let html = String::from_utf8(text).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok(Parsed {
        page: page::extract(&html, scanned, options.hash_text),
        charset: decoded.encoding.to_string(),
        charset_source: decoded.source,
    })
}

/// The second half of [`analyze`]: resolves URLs, judges the checks, scores.
pub fn score(parsed: Parsed, options: &Options) -> Analysis {
    let mut analysis = analysis::build(parsed.page, options, parsed.charset, parsed.charset_source);
    checks::judge(&mut analysis, options.url.as_ref());
    analysis
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}
