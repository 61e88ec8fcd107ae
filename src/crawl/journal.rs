//! A crawl's journal: one line a URL fetched (or kept out by robots.txt),
//! written as the crawl goes, so that a crawl run again after a restart
//! reads back what it had found and fetches only the rest. A line holds
//! what the site's checks need of the URL, with URLs as text.

use serde::{Deserialize, Serialize};

use crate::seo::checks::Severity;

/// Where a crawl keeps its lines.
pub trait Journal {
    /// Up to `most` of the lines an earlier run of this crawl kept, past
    /// the first `skip`, in order.
    fn read(&mut self, skip: usize, most: usize) -> Vec<Vec<u8>>;
    /// Keeps line `n`.
    fn write(&mut self, n: usize, line: Vec<u8>);
    /// Whether lines are kept at all (if not, none is made).
    fn keeps(&mut self) -> bool {
        true
    }
}

/// No journal: a crawl that cannot be resumed (`pagelens crawl`).
#[derive(Debug, Default)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn read(&mut self, _: usize, _: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }

    fn write(&mut self, _: usize, _: Vec<u8>) {}

    fn keeps(&mut self) -> bool {
        false
    }
}

/// One URL's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The URL, normalised.
    pub url: String,
    /// How fetching it ended.
    pub fetch: Fetch,
}

/// How fetching a URL ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fetch {
    /// A response.
    Response {
        /// Its status.
        status: u16,
        /// Its `Content-Type`.
        content_type: Option<String>,
        /// Where a redirect sends the client (absolute).
        location: Option<String>,
        /// Time to the first byte, in ms.
        first_byte_ms: f64,
        /// What an HTML page of the site says.
        page: Option<Box<PageLine>>,
    },
    /// No response: the fetcher's error code.
    Failed {
        /// The code.
        code: String,
    },
    /// Not fetched: robots.txt disallows it.
    Blocked,
}

/// What an HTML page says, with URLs as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageLine {
    /// `<title>`.
    pub title: Option<String>,
    /// A hash of the meta description.
    pub description: Option<u64>,
    /// `<link rel=canonical>`, resolved.
    pub canonical: Option<String>,
    /// The `Link` header's canonical, resolved.
    pub http_canonical: Option<String>,
    /// `noindex`.
    pub noindex: bool,
    /// A hash of the visible text.
    pub text_hash: Option<u64>,
    /// Words of visible text.
    pub word_count: usize,
    /// hreflang alternates: language and URL.
    pub hreflang: Vec<(String, String)>,
    /// Links to http(s) URLs and whether each is nofollow.
    pub links: Vec<(String, bool)>,
    /// The page's failed checks.
    pub failed_checks: Vec<(String, Severity)>,
    /// The page's score.
    pub score: u8,
}
