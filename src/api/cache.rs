//! The result cache of URL analyses (`--cache-ttl`): an analysis is kept,
//! keyed by the URL and the options that change it, and answered again
//! without a fetch or a parse while fresh. Past its TTL (or when the client
//! asks `no-cache`) the origin is asked with the stored validators
//! (`If-None-Match`, `If-Modified-Since`), and a `304` renews the stored
//! analysis without a parse. Bounded in bytes: the oldest go first.
//!
//! Memory is the first tier; the task store is the second (once the engine
//! is known, [`ResultCache::keep_in`]): what is kept goes to the store with
//! the next commit group, and a key memory lacks is looked for there, so a
//! SQLite store's cache survives a restart (the memory store keeps none).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use crate::jobs::store::CachedPage;
use crate::jobs::Engine;

/// What the client's `Cache-Control` asks of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directives {
    /// `no-store`: neither read nor fill the cache.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_store: bool,
    /// `no-cache`: revalidate with the origin before answering.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    /// `max-age=N`: accept a stored analysis at most this many seconds old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

impl Directives {
    /// From a request's `Cache-Control` value.
    pub fn parse(value: Option<&[u8]>) -> Directives {
        let mut d = Directives::default();
        let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else { return d };
        for part in text.split(',').map(str::trim) {
            let (name, arg) = part.split_once('=').unwrap_or((part, ""));
            match name.to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "max-age" => d.max_age = arg.trim_matches('"').parse().ok(),
                _ => {}
            }
        }
        d
    }
}

/// How an answer used the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the cache.
    Hit,
    /// Fetched and analysed.
    Miss,
    /// The origin said `304`: the stored analysis, renewed.
    Revalidated,
}

impl Outcome {
    /// Its name in the answer.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Revalidated => "revalidated",
        }
    }
}

/// What closes a cached analysis (see [`Entry::analysis`]) in an answer:
/// its `"cache"` and `"cache_age_seconds"` fields and the brace.
pub fn closing(outcome: Outcome, age: Duration) -> Vec<u8> {
    format!(",\"cache\":\"{}\",\"cache_age_seconds\":{}}}", outcome.name(), age.as_secs()).into_bytes()
}

/// A cached analysis with its closing, as one document.
pub fn annotated(analysis: &[u8], outcome: Outcome, age: Duration) -> Vec<u8> {
    [analysis, &closing(outcome, age)].concat()
}

/// An analysis as the cache keeps it: without its closing brace (see
/// [`CachedPage::analysis`]).
pub fn open(analysis: &[u8]) -> Arc<[u8]> {
    Arc::from(analysis.strip_suffix(b"}").unwrap_or(analysis))
}

/// How far a lookup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Memory only: for the intake thread, which must not wait on a store
    /// (a miss there goes on to the task, whose lookup reads the store).
    Memory,
    /// Memory, then the store (on a worker).
    Store,
}

/// The cache.
#[derive(Debug)]
pub struct ResultCache {
    ttl: Duration,
    max_bytes: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    revalidations: AtomicU64,
    /// The engine whose store is the second tier.
    store: OnceLock<Weak<Engine>>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, CachedPage>,
    /// Keys in insertion order (a renewed key is moved to the back).
    order: VecDeque<String>,
    bytes: usize,
}

/// The figures of the cache.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figures {
    /// Answers from the cache.
    pub hits: u64,
    /// Fetched and analysed.
    pub misses: u64,
    /// Renewed by a `304`.
    pub revalidations: u64,
    /// Analyses kept.
    pub entries: usize,
    /// Bytes they hold.
    pub bytes: usize,
}

impl ResultCache {
    /// A cache keeping analyses fresh for `ttl`, at most `max_bytes` of them.
    pub fn new(ttl: Duration, max_bytes: usize) -> ResultCache {
        ResultCache {
            ttl,
            max_bytes,
            inner: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            revalidations: AtomicU64::new(0),
            store: OnceLock::new(),
        }
    }

    /// Makes `engine`'s task store the second tier. (Weak: the engine's
    /// handlers hold this cache.)
    pub fn keep_in(&self, engine: &Arc<Engine>) {
        let _ = self.store.set(Arc::downgrade(engine));
    }

    fn engine(&self) -> Option<Arc<Engine>> {
        self.store.get().and_then(Weak::upgrade)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key of an analysis of `url` with these list options.
    pub fn key(url: &url::Url, options: &crate::seo::Options) -> String {
        // The fragment never reaches the origin: `/a#x` and `/a` are one page.
        let mut url = url.clone();
        url.set_fragment(None);
        format!("{}|{}|{}", url, u8::from(options.include_links), u8::from(options.include_images))
    }

    /// What the cache does for an analysis of `key` asked with
    /// `directives`, looking as far as `reach`: `Ok`, a fresh answer
    /// (counted as a hit) and its age; `Err`, what it holds to revalidate,
    /// if anything.
    pub fn consult(
        &self,
        key: &str,
        directives: Directives,
        reach: Reach,
    ) -> Result<(CachedPage, Duration), Option<CachedPage>> {
        let now = SystemTime::now();
        match self.lookup(key, directives, now, reach) {
            Some((entry, true)) => {
                self.count(Outcome::Hit);
                let age = now.duration_since(entry.fresh_at).unwrap_or_default();
                Ok((entry, age))
            }
            held => Err(held.map(|(entry, _)| entry)),
        }
    }

    /// What the cache holds for `key` (looking as far as `reach`), and
    /// whether it is fresh for a client asking `directives` at `now`.
    pub fn lookup(
        &self,
        key: &str,
        directives: Directives,
        now: SystemTime,
        reach: Reach,
    ) -> Option<(CachedPage, bool)> {
        let held = self.lock().entries.get(key).cloned();
        let entry = match reach {
            Reach::Memory => held?,
            Reach::Store => held.or_else(|| self.recall(key))?,
        };
        // A clock set back makes an entry look new; it is still revalidated at its TTL.
        let age = now.duration_since(entry.fresh_at).unwrap_or_default();
        let fresh =
            !directives.no_cache && age < self.ttl && directives.max_age.is_none_or(|m| age <= Duration::from_secs(m));
        Some((entry, fresh))
    }

    /// What the store keeps under `key`, taken into memory.
    fn recall(&self, key: &str) -> Option<CachedPage> {
        let engine = self.engine()?;
        match engine.cached(key) {
            Ok(page) => {
                let page = page?;
                self.remember(key.to_string(), page.clone());
                Some(page)
            }
            Err(e) => {
                crate::warn!("the result cache cannot read the store: {e}");
                None
            }
        }
    }

    /// Keeps `entry` under `key`, in memory and in the store.
    pub fn store(&self, key: String, entry: CachedPage) {
        if let Some(engine) = self.engine() {
            engine.keep_cached(key.clone(), entry.clone(), self.max_bytes);
        }
        self.remember(key, entry);
    }

    /// Keeps `entry` in memory, forgetting the oldest past the bound.
    fn remember(&self, key: String, entry: CachedPage) {
        let bytes = entry.bytes() + key.len();
        if bytes > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.bytes() + key.len();
            inner.order.retain(|k| *k != key);
        }
        inner.bytes += bytes;
        inner.order.push_back(key.clone());
        inner.entries.insert(key, entry);
        while inner.bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.bytes() + oldest.len();
            }
        }
    }

    /// Counts an answer.
    pub fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Hit => &self.hits,
            Outcome::Miss => &self.misses,
            Outcome::Revalidated => &self.revalidations,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Its figures now.
    pub fn figures(&self) -> Figures {
        let inner = self.lock();
        Figures {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            revalidations: self.revalidations.load(Ordering::Relaxed),
            entries: inner.entries.len(),
            bytes: inner.bytes,
        }
    }
}

/// The cache's figures for `/metrics`.
pub fn collector(cache: Arc<ResultCache>) -> crate::metrics::Collector {
    Box::new(move |out: &mut crate::metrics::Exposition| {
        let f = cache.figures();
        let name = "pagelens_cache_answers_total";
        out.family(name, "counter", "URL analyses answered, by how they used the result cache.");
        for (outcome, n) in [("hit", f.hits), ("miss", f.misses), ("revalidated", f.revalidations)] {
            out.sample(name, &[("outcome", outcome)], n as f64);
        }
        out.single("pagelens_cache_entries", "gauge", "Analyses the result cache holds.", f.entries as f64);
        out.single("pagelens_cache_bytes", "gauge", "Bytes the result cache holds.", f.bytes as f64);
    })
}

/// Whether the origin lets a response be kept: not `no-store` or `private`.
pub fn storable(cache_control: Option<&str>) -> bool {
    cache_control
        .is_none_or(|v| !v.split(',').map(|p| p.trim().to_ascii_lowercase()).any(|p| p == "no-store" || p == "private"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_freshness_and_the_byte_bound() {
        let d = Directives::parse(Some(b"No-Cache, max-age=30, no-store"));
        assert_eq!(d, Directives { no_store: true, no_cache: true, max_age: Some(30) });
        assert_eq!(Directives::parse(None), Directives::default());
        let cache = ResultCache::new(Duration::from_secs(60), 4_000);
        let now = SystemTime::now();
        let entry =
            |n: usize| CachedPage { analysis: vec![b'x'; n].into(), fresh_at: now, etag: None, last_modified: None };
        cache.store("a".into(), entry(1_000));
        let later = now + Duration::from_secs(40);
        assert!(cache.lookup("a", Directives::default(), later, Reach::Store).unwrap().1, "fresh within the TTL");
        assert!(
            !cache.lookup("a", Directives { max_age: Some(30), ..Default::default() }, later, Reach::Store).unwrap().1
        );
        assert!(!cache.lookup("a", Directives { no_cache: true, ..Default::default() }, now, Reach::Store).unwrap().1);
        assert!(
            !cache.lookup("a", Directives::default(), now + Duration::from_secs(61), Reach::Store).unwrap().1,
            "stale"
        );
        for k in ["b", "c", "d"] {
            cache.store(k.into(), entry(1_000));
        }
        assert!(
            cache.lookup("a", Directives::default(), now, Reach::Store).is_none(),
            "the oldest went past the bound"
        );
        assert!(cache.figures().bytes <= 4_000);
        assert!(storable(None) && storable(Some("max-age=60")) && !storable(Some("private, max-age=0")));
        assert_eq!(
            annotated(&open(b"{\"title\":\"x\"}"), Outcome::Hit, Duration::from_secs(7)),
            b"{\"title\":\"x\",\"cache\":\"hit\",\"cache_age_seconds\":7}"
        );
    }
}
