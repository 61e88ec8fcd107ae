//! robots.txt for fetched pages: fetched once per origin through the
//! fetcher and kept for a while, so a batch of one site's pages costs one
//! fetch. What it says is judged by the SEO engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use crate::fetch::{FetchRequest, Fetcher};
use crate::seo::robots_txt::{self, RobotsSource};

/// How long a robots.txt is kept.
const TTL: Duration = Duration::from_secs(600);
/// Most origins kept; the cache is cleared when full.
const MAX_ORIGINS: usize = 10_000;

/// Told the robots.txt URL and what fetching it found.
pub type Then = Box<dyn FnOnce(String, RobotsSource) + Send>;

/// robots.txt by origin.
#[derive(Debug, Default)]
pub struct RobotsCache {
    entries: Mutex<HashMap<String, (Instant, RobotsSource)>>,
}

impl RobotsCache {
    /// The robots.txt of `page`'s origin, from the cache or fetched (until
    /// `deadline`); `then` is called with it, on this thread or the fetcher's.
    /// Two pages of an uncached origin at once may both fetch it.
    pub fn get(self: &Arc<Self>, fetcher: &Fetcher, page: &Url, deadline: Instant, then: Then) {
        let url = robots_txt::location(page);
        let origin = url.origin().ascii_serialization();
        let cached = {
            let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            entries.get(&origin).filter(|(at, _)| at.elapsed() < TTL).map(|(_, source)| source.clone())
        };
        if let Some(source) = cached {
            return then(url.to_string(), source);
        }
        let cache = Arc::clone(self);
        let name = url.to_string();
        let request = FetchRequest { deadline: Some(deadline), retries: Some(1), ..FetchRequest::get(url) };
        fetcher.fetch(
            request,
            Box::new(move |result| {
                let source = match result {
                    Ok(r) => robots_txt::source(r.status, &r.body),
                    Err(e) => RobotsSource::Unreachable(e.to_string()),
                };
                let mut entries = cache.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if entries.len() >= MAX_ORIGINS {
                    entries.clear();
                }
                entries.insert(origin, (Instant::now(), source.clone()));
                drop(entries);
                then(name, source);
            }),
        );
    }
}
