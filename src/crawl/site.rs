//! What a crawl found of each URL, compact (a large crawl holds one record
//! a URL): outcomes by URL number, content types and failed checks numbered.

use super::frontier::UrlId;
use crate::seo::checks::Severity;

/// A link from a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Where it goes.
    pub to: UrlId,
    /// `rel=nofollow` (or the page's own `nofollow`).
    pub nofollow: bool,
}

/// What an HTML page says, kept for the site's checks: compact, as a
/// large crawl holds one a page.
#[derive(Debug, Clone, Default)]
pub struct HtmlFacts {
    /// `<title>`.
    pub title: Option<Box<str>>,
    /// A hash of `<meta name=description>` (whitespace collapsed, lower case).
    pub description: Option<u64>,
    /// `<link rel=canonical>`.
    pub canonical: Option<UrlId>,
    /// The HTTP `Link: <...>; rel=canonical` header.
    pub http_canonical: Option<UrlId>,
    /// `noindex` by meta or `X-Robots-Tag`.
    pub noindex: bool,
    /// A hash of the visible text.
    pub text_hash: Option<u64>,
    /// Words of visible text.
    pub word_count: usize,
    /// hreflang alternates: language and target.
    pub hreflang: Box<[(Box<str>, UrlId)]>,
    /// Links to http(s) URLs, one per target.
    pub links: Box<[Edge]>,
    /// The page's own failed checks (the SEO engine's), as bits of [`Site::check`].
    pub failed_checks: u64,
    /// The page's score.
    pub score: u8,
}

/// How fetching a URL ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A response.
    Response {
        /// Its status.
        status: u16,
        /// Its `Content-Type`, as a number of [`Site::content_type`].
        content_type: Option<u16>,
        /// Where a redirect sends the client.
        location: Option<UrlId>,
        /// Time to the first byte, in ms.
        first_byte_ms: f64,
        /// What an HTML page says (a 200 HTML page only).
        html: Option<Box<HtmlFacts>>,
    },
    /// No response (refused, timed out, too large...): the fetcher's code.
    Failed(String),
    /// Not fetched: robots.txt disallows it.
    Blocked,
}

/// Every outcome of a crawl, by URL number.
#[derive(Debug, Default)]
pub struct Site {
    outcomes: Vec<Option<Outcome>>,
    /// Content types seen, numbered.
    content_types: Vec<Box<str>>,
    /// The SEO engine's checks seen failing, numbered (their bits).
    checks: Vec<(String, Severity)>,
}

/// Most distinct content types numbered; a site that sends more gets the rest unnamed.
const MAX_CONTENT_TYPES: usize = 1024;

/// A text's hash for finding duplicates: its words, lower case.
pub fn text_key(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for word in text.split_whitespace() {
        word.to_lowercase().hash(&mut hasher);
    }
    hasher.finish()
}

impl Site {
    /// The number of content type `value`.
    pub fn content_type(&mut self, value: &str) -> Option<u16> {
        if let Some(i) = self.content_types.iter().position(|t| &**t == value) {
            return Some(i as u16);
        }
        if self.content_types.len() >= MAX_CONTENT_TYPES {
            return None;
        }
        self.content_types.push(value.into());
        Some((self.content_types.len() - 1) as u16)
    }

    /// The bits of failed checks `failed` (past 64 distinct checks, the rest are not kept).
    pub fn checks<'a>(&mut self, failed: impl Iterator<Item = (&'a str, Severity)>) -> u64 {
        let mut bits = 0;
        for (id, severity) in failed {
            let i = match self.checks.iter().position(|(known, _)| known == id) {
                Some(i) => i,
                None if self.checks.len() < 64 => {
                    self.checks.push((id.to_string(), severity));
                    self.checks.len() - 1
                }
                None => continue,
            };
            bits |= 1 << i;
        }
        bits
    }

    /// The checks whose bits are set in `bits`.
    pub(super) fn failed(&self, bits: u64) -> impl Iterator<Item = (&str, Severity)> + '_ {
        self.checks.iter().enumerate().filter(move |(i, _)| bits & (1 << i) != 0).map(|(_, (id, s))| (id.as_str(), *s))
    }

    pub(super) fn content_type_name(&self, number: Option<u16>) -> Option<String> {
        number.and_then(|n| self.content_types.get(usize::from(n))).map(|t| t.to_string())
    }

    /// Records how fetching `id` ended.
    pub fn record(&mut self, id: UrlId, outcome: Outcome) {
        let i = id as usize;
        if self.outcomes.len() <= i {
            self.outcomes.resize(i + 1, None);
        }
        self.outcomes[i] = Some(outcome);
    }

    /// How fetching `id` ended, if it was.
    pub fn get(&self, id: UrlId) -> Option<&Outcome> {
        self.outcomes.get(id as usize).and_then(Option::as_ref)
    }

    pub(super) fn status(&self, id: UrlId) -> Option<u16> {
        match self.get(id) {
            Some(Outcome::Response { status, .. }) => Some(*status),
            _ => None,
        }
    }

    pub(super) fn html(&self, id: UrlId) -> Option<&HtmlFacts> {
        match self.get(id) {
            Some(Outcome::Response { html: Some(html), .. }) => Some(html),
            _ => None,
        }
    }

    /// An error: no response, or 4xx/5xx.
    pub(super) fn is_error(&self, id: UrlId) -> bool {
        matches!(self.get(id), Some(Outcome::Failed(_))) || self.status(id).is_some_and(|s| s >= 400)
    }

    pub(super) fn redirect(&self, id: UrlId) -> Option<UrlId> {
        match self.get(id) {
            Some(Outcome::Response { status: 300..=399, location, .. }) => *location,
            _ => None,
        }
    }

    pub(super) fn noindex(&self, id: UrlId) -> bool {
        self.html(id).is_some_and(|h| h.noindex)
    }

    /// The canonical a page names, if it is another URL.
    pub(super) fn canonical_elsewhere(&self, id: UrlId) -> Option<UrlId> {
        self.html(id).and_then(|h| h.canonical).filter(|&c| c != id)
    }
}
