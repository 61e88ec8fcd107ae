//! Checked requests turned into task work ([`Pages`]): a sent page is
//! analysed on the pool; a URL is fetched first (on the fetcher, holding no
//! worker), then analysed on the pool. And the callbacks and webhooks.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;

use super::cache::{annotated, open, storable, CachedPage, Outcome, Reach, ResultCache};
use super::input::{PageInput, Source, ANALYZE, BULK};
use super::robots::RobotsCache;
use crate::fetch::{
    callback, decode_body, describe_page, essence, is_html, FetchError, FetchRequest, FetchResponse, Fetcher,
};
use crate::jobs::engine::{CallbackSender, Resume};
use crate::jobs::{Handlers, TaskError, Work};
use crate::metrics::alerts::Change;
use crate::metrics::AlertHook;
use crate::seo;

/// What pages are fetched with: the fetcher, the robots.txt cache, and the
/// result cache of URL analyses (if on).
#[derive(Debug, Clone)]
pub struct Pages {
    fetcher: Arc<Fetcher>,
    robots: Arc<RobotsCache>,
    cache: Option<Arc<ResultCache>>,
}

/// A URL analysis' place in the result cache: the cache, its key, what the
/// client asked, and what it already holds.
struct Cached {
    cache: Arc<ResultCache>,
    key: String,
    held: Option<CachedPage>,
}

impl Pages {
    /// Pages fetched with `fetcher`.
    pub fn new(fetcher: Arc<Fetcher>) -> Pages {
        Pages { fetcher, robots: Arc::default(), cache: None }
    }

    /// URL analyses kept in `cache` and answered from it while fresh.
    pub fn with_cache(mut self, cache: Arc<ResultCache>) -> Pages {
        self.cache = Some(cache);
        self
    }

    /// The result cache, if on (for its metrics).
    pub fn cache(&self) -> Option<&Arc<ResultCache>> {
        self.cache.as_ref()
    }

    /// The fetcher (its guard, callbacks).
    pub fn fetcher(&self) -> &Arc<Fetcher> {
        &self.fetcher
    }

    /// The work of analysing `page`: CPU only for a sent page, a fetch
    /// first for a URL.
    pub fn work(&self, page: PageInput) -> Work {
        let PageInput { source, options, cache: directives } = page;
        let url = match source {
            Source::Html(html) => return Work::cpu(move |cx| analyse(cx, &html, &options, None)),
            Source::Url(url) => url,
        };
        let cached = match self.cache.as_ref().filter(|_| !directives.no_store) {
            None => None,
            Some(cache) => {
                let key = ResultCache::key(&url, &options);
                match cache.consult(&key, directives, Reach::Store) {
                    // Fresh: no fetch, no parse.
                    Ok((entry, age)) => {
                        let answer = annotated(&entry.analysis, Outcome::Hit, age);
                        return Work::cpu(move |_| raw(answer));
                    }
                    Err(held) => Some(Cached { cache: Arc::clone(cache), key, held }),
                }
            }
        };
        let pages = self.clone();
        Work::Io(Box::new(move |resume| fetch_then_analyse(resume, url, options, pages, cached)))
    }
}

/// Fetches `url` (and its site's robots.txt) on the fetcher, then hands the
/// analysis back to the pool.
fn fetch_then_analyse(resume: Resume, url: url::Url, options: seo::Options, pages: Pages, cached: Option<Cached>) {
    let Pages { fetcher, robots, .. } = pages;
    let progress = resume.progress();
    progress(5, "fetching".into());
    // A stale analysis is revalidated with its validators.
    let held = cached.as_ref().and_then(|c| c.held.as_ref());
    let mut headers = Vec::new();
    if let Some(etag) = held.and_then(|e| e.etag.clone()) {
        headers.push(("If-None-Match".to_string(), etag));
    }
    if let Some(date) = held.and_then(|e| e.last_modified.clone()) {
        headers.push(("If-Modified-Since".to_string(), date));
    }
    let request = FetchRequest {
        deadline: Some(resume.deadline()),
        cancel: Some(resume.cancel_flag()),
        on_attempt: Some(Box::new(move |n| progress(5, format!("fetching (attempt {n})")))),
        headers,
        ..FetchRequest::get(url)
    };
    let max = fetcher.max_response_bytes();
    let page_fetcher = Arc::clone(&fetcher);
    page_fetcher.fetch(
        request,
        Box::new(move |result| {
            let response = match result.and_then(html_only) {
                Ok(response) => response,
                Err(e) => {
                    resume.record_stage("fetching");
                    return resume.fail(e.into());
                }
            };
            // Not modified: the stored analysis, renewed, without a parse.
            let cached = match (response.status, cached) {
                (304, Some(Cached { cache, key, held: Some(mut entry) })) => {
                    resume.record_stage("fetching");
                    entry.fresh_at = SystemTime::now();
                    let answer = annotated(&entry.analysis, Outcome::Revalidated, std::time::Duration::ZERO);
                    cache.count(Outcome::Revalidated);
                    cache.store(key, entry);
                    return resume.then(Box::new(move |_| raw(answer)));
                }
                (_, cached) => cached,
            };
            // What the cache keeps of a fresh answer: its validators, if the origin allows it.
            let storing = response.status == 200 && storable(response.head.header("cache-control"));
            let keep = cached.map(|c| {
                let header = |name: &str| response.head.header(name).map(str::to_string);
                (c, header("etag"), header("last-modified"))
            });
            let (final_url, deadline) = (response.final_url.clone(), resume.deadline());
            robots.get(
                &fetcher,
                &final_url,
                deadline,
                Box::new(move |robots_url, robots_source| {
                    resume.record_stage("fetching");
                    resume.then(Box::new(move |cx| {
                        let (html, mut options, fetch) = fetched_page(response, options, max)?;
                        options.robots_txt = Some((robots_url, robots_source));
                        let analysis = analyse(cx, &html, &options, Some(fetch))?;
                        let Some((Cached { cache, key, .. }, etag, last_modified)) = keep else { return Ok(analysis) };
                        let bytes = open(analysis.get().as_bytes());
                        cache.count(Outcome::Miss);
                        let answer = annotated(&bytes, Outcome::Miss, std::time::Duration::ZERO);
                        if storing {
                            cache.store(
                                key,
                                CachedPage { analysis: bytes, fresh_at: SystemTime::now(), etag, last_modified },
                            );
                        }
                        raw(answer)
                    }));
                }),
            );
        }),
    );
}

/// Refuses responses that are not HTML (an image, a PDF, JSON). A missing
/// Content-Type is given the benefit of the doubt.
pub fn html_only(response: FetchResponse) -> Result<FetchResponse, FetchError> {
    let content_type = response.head.header("content-type");
    if is_html(content_type) {
        return Ok(response);
    }
    let essence = essence(content_type.unwrap_or_default());
    Err(FetchError::new(422, "not-html", format!("{} is {essence}, not HTML", response.final_url), false))
}

/// What the analysis needs of a fetched page: the decoded bytes, the
/// options filled in from the response, and the `fetch` section of the
/// result. Decoding is CPU work: call it on the pool.
pub fn fetched_page(
    response: FetchResponse,
    mut options: seo::Options,
    max: usize,
) -> Result<(Vec<u8>, seo::Options, serde_json::Value), FetchError> {
    let FetchResponse { status, final_url, head, body, timings, attempts, redirects, reused_connection } = response;
    describe_page(&mut options, status, &head);
    let json = json!({
        "final_url": final_url.as_str(),
        "status_code": status,
        "content_type": options.content_type,
        "bytes": body.len(),
        "attempts": attempts,
        "redirects": redirects.len(),
        "redirect_chain": redirects,
        "reused_connection": reused_connection,
        "timings": timings,
    });
    options.redirected_from = redirects.into_iter().map(|r| (r.url, r.status)).collect();
    options.url = Some(final_url);
    let html = decode_body(head.header("content-encoding"), body, max)?;
    Ok((html, options, json))
}

fn analyse(
    cx: &crate::jobs::JobContext,
    html: &[u8],
    options: &seo::Options,
    fetch: Option<serde_json::Value>,
) -> Result<Box<serde_json::value::RawValue>, TaskError> {
    cx.stage(10, "parsing")?;
    let parsed = seo::parse(html, options).map_err(|e| TaskError::new(422, "unanalysable", e.to_string()))?;
    cx.stage(70, "scoring")?;
    let mut analysis = seo::score(parsed, options);
    analysis.fetch = fetch;
    cx.stage(90, "encoding")?;
    // Serialised straight into a RawValue: no second parse to validate it.
    serde_json::value::to_raw_value(&analysis).map_err(|e| TaskError::new(500, "internal", e.to_string()))
}

/// Bytes known to be one JSON document (an analysis as made, with the
/// cache's fields added) as the engine's outcome.
fn raw(json: Vec<u8>) -> Result<Box<serde_json::value::RawValue>, TaskError> {
    String::from_utf8(json)
        .ok()
        .and_then(|text| serde_json::value::RawValue::from_string(text).ok())
        .ok_or_else(|| TaskError::new(500, "internal", "a cached analysis is damaged"))
}

/// The task handlers of the API: `analyze` runs one page, `bulk` runs
/// each page of a batch the same way, `crawl` audits a site.
pub fn handlers(pages: &Pages) -> Handlers {
    let (one, each) = (pages.clone(), pages.clone());
    let (crawlers, fetcher) = (super::crawl::Crawlers::default(), Arc::clone(&pages.fetcher));
    Handlers::default()
        .with(ANALYZE, move |payload| Ok(one.work(PageInput::from_payload(payload)?)))
        .with(BULK, move |payload| Ok(each.work(PageInput::from_payload(payload)?)))
        .with(super::crawl::CRAWL, move |payload| crawlers.work(&fetcher, payload))
}

/// Posts a task's final status to its callback URL, signed with `secret`.
pub fn callback_sender(fetcher: &Arc<Fetcher>, secret: Option<Arc<[u8]>>) -> CallbackSender {
    let fetcher = Arc::clone(fetcher);
    Box::new(move |id, url, body, done| {
        let what = format!("task {id}: callback");
        match url::Url::parse(url) {
            Ok(url) => callback::deliver(&fetcher, url, body, secret.as_deref(), what, done),
            Err(e) => {
                crate::error!("{what}: the stored URL {url:?} does not parse: {e}");
                done();
            }
        }
    })
}

/// Posts every alert change to `url` (signed like callbacks, retried the same way).
pub fn alert_webhook(fetcher: &Arc<Fetcher>, url: url::Url, secret: Option<Arc<[u8]>>) -> AlertHook {
    let fetcher = Arc::clone(fetcher);
    Box::new(move |change: &Change| {
        let body = serde_json::to_vec(&json!({ "event": "alert", "change": change })).unwrap_or_default();
        let what = format!("alert {}: webhook", change.rule.name);
        callback::deliver(&fetcher, url.clone(), body, secret.as_deref(), what, Box::new(|| {}));
    })
}
