//! What a crawl is asked to do (`POST /crawl`, `pagelens crawl`), checked.

use serde::{Deserialize, Serialize};
use url::Url;

use super::urls::{Pattern, Scope};

/// A crawl's settings, as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrawlSettings {
    /// Where the crawl starts.
    pub url: String,
    /// Most pages fetched (HTML or not, redirects included).
    pub max_pages: usize,
    /// Most clicks from the start page.
    pub max_depth: u16,
    /// Which URLs are the site's.
    pub scope: Scope,
    /// Only URLs matching one of these (`*` any run of characters) are crawled.
    pub include: Vec<String>,
    /// URLs matching one of these are not crawled.
    pub exclude: Vec<String>,
    /// Requests a second to the site; 0: no limit (only for sites the
    /// fetcher's guard was opened to).
    pub rate: f64,
    /// Honour robots.txt (`Disallow`, `Crawl-delay`).
    pub respect_robots: bool,
    /// Read robots.txt's `Sitemap:` lines and `/sitemap.xml`.
    pub sitemaps: bool,
    /// Most pages a URL shape may have (its path with digits as `N`): a
    /// calendar's endless months stop here.
    pub max_per_pattern: usize,
    /// Drop tracking parameters (`utm_*`, `gclid`, `fbclid`...) so a page
    /// linked with them is fetched once.
    pub strip_tracking: bool,
    /// Check links to other sites (one request each).
    pub check_external: bool,
    /// Pages deeper than this many clicks are reported.
    pub deep_after: u16,
    /// A first byte slower than this (ms) is reported.
    pub slow_first_byte_ms: f64,
    /// Where the final status is posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl Default for CrawlSettings {
    fn default() -> Self {
        CrawlSettings {
            url: String::new(),
            max_pages: 10_000,
            max_depth: 10,
            scope: Scope::Host,
            include: Vec::new(),
            exclude: Vec::new(),
            rate: 20.0,
            respect_robots: true,
            sitemaps: true,
            max_per_pattern: 10_000,
            strip_tracking: true,
            check_external: true,
            deep_after: 4,
            slow_first_byte_ms: 800.0,
            callback_url: None,
        }
    }
}

/// The slowest rate a crawl may ask for: one request every 100 seconds.
pub const MIN_RATE: f64 = 0.01;

/// The most pages a crawl may ask for.
pub const MAX_PAGES: usize = 1_000_000;

/// Settings checked and parsed.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The settings as sent.
    pub settings: CrawlSettings,
    /// The start URL.
    pub start: Url,
    /// `include`, parsed.
    pub include: Vec<Pattern>,
    /// `exclude`, parsed.
    pub exclude: Vec<Pattern>,
}

impl CrawlSettings {
    /// Settings for a crawl of `url` with every default.
    pub fn new(url: &str) -> CrawlSettings {
        CrawlSettings { url: url.into(), ..CrawlSettings::default() }
    }

    /// Checks the settings: the field at fault and why, else the parsed form.
    pub fn check(self) -> Result<Checked, (&'static str, String)> {
        let start = Url::parse(&self.url).map_err(|e| ("url", format!("{:?}: {e}", self.url)))?;
        if !matches!(start.scheme(), "http" | "https") || start.host_str().is_none() {
            return Err(("url", format!("{:?} is not an http or https URL", self.url)));
        }
        if self.max_pages == 0 || self.max_pages > MAX_PAGES {
            return Err(("max_pages", format!("must be from 1 to {MAX_PAGES}, not {}", self.max_pages)));
        }
        if !(self.rate == 0.0 || (self.rate.is_finite() && self.rate >= MIN_RATE)) {
            return Err((
                "rate",
                format!("must be 0 (no limit) or at least {MIN_RATE} requests a second, not {}", self.rate),
            ));
        }
        if self.max_per_pattern == 0 {
            return Err(("max_per_pattern", "must be at least 1".into()));
        }
        if !(self.slow_first_byte_ms.is_finite() && self.slow_first_byte_ms > 0.0) {
            return Err(("slow_first_byte_ms", format!("must be over 0, not {}", self.slow_first_byte_ms)));
        }
        let patterns = |list: &[String], field| {
            list.iter().map(|p| Pattern::new(p).map_err(|e| (field, e))).collect::<Result<Vec<_>, _>>()
        };
        let include = patterns(&self.include, "include")?;
        let exclude = patterns(&self.exclude, "exclude")?;
        Ok(Checked { settings: self, start, include, exclude })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_settings() {
        let ok = CrawlSettings::new("https://example.com/").check().unwrap();
        assert_eq!((ok.settings.max_pages, ok.settings.max_depth, ok.settings.rate), (10_000, 10, 20.0));
        assert_eq!(ok.settings.scope, Scope::Host);
        let bad =
            |json: serde_json::Value| serde_json::from_value::<CrawlSettings>(json).unwrap().check().unwrap_err().0;
        assert_eq!(bad(serde_json::json!({"url": "ftp://example.com/"})), "url");
        assert_eq!(bad(serde_json::json!({"url": "not a url"})), "url");
        assert_eq!(bad(serde_json::json!({})), "url");
        assert_eq!(bad(serde_json::json!({"url": "https://a.example/", "max_pages": 0})), "max_pages");
        assert_eq!(bad(serde_json::json!({"url": "https://a.example/", "rate": -1})), "rate");
        assert_eq!(bad(serde_json::json!({"url": "https://a.example/", "rate": 1e-300})), "rate");
        assert_eq!(bad(serde_json::json!({"url": "https://a.example/", "exclude": [""]})), "exclude");
        assert!(serde_json::from_value::<CrawlSettings>(serde_json::json!({"url": "x", "colour": 1})).is_err());
    }
}
