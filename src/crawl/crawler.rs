//! The crawl's driver, on a thread of its own: takes URLs from the
//! frontier, fetches them through the fetcher (a few at a time, paced by the
//! crawl's rate and robots.txt's `Crawl-delay`), analyses each HTML page
//! with the SEO engine, feeds what the page links to back to the frontier,
//! and records every outcome for the site's checks.
//!
//! Redirects are not followed by the fetcher here: each hop is a URL of its
//! own, so chains and loops are seen as they are.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::audit::{audit, Audit};
use super::frontier::{Frontier, Skip, UrlId, Via};
use super::journal::{Fetch, Journal, Line, PageLine};
use super::report::ReportView;
use super::settings::Checked;
use super::site::{text_key, Edge, HtmlFacts, Outcome, Site};
use super::sitemap::{self, Kind};
use crate::fetch::{decode_body, describe_page, is_html, FetchError, FetchRequest, FetchResponse, Fetcher};
use crate::seo;
use crate::seo::analysis::LinkKind;
use crate::seo::robots_txt::{self, judge, RobotsSource};

/// The user agent robots.txt rules are read for (then `*`).
const AGENT: &str = "pagelens";
/// Fetches in flight at once.
const IN_FLIGHT: usize = 8;
/// Most sitemap documents read (an index of indexes stops here).
const MAX_SITEMAPS: usize = 100;
/// Journal lines read back at once when a crawl resumes.
const REPLAY_PAGE: usize = 1024;
/// How often progress is told.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where a crawl is.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CrawlProgress {
    /// URLs fetched (internal and external).
    pub fetched: usize,
    /// URLs waiting.
    pub queued: usize,
    /// Fetches under way.
    pub in_flight: usize,
    /// Fetches that failed or answered 4xx/5xx.
    pub errors: usize,
    /// URLs discovered.
    pub discovered: usize,
    /// Fetches a second since the start.
    pub pages_per_second: f64,
}

/// Why a crawl could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlError {
    /// The HTTP status the API answers with.
    pub status: u16,
    /// Stable identifier.
    pub code: &'static str,
    /// For a person.
    pub detail: String,
}

impl From<FetchError> for CrawlError {
    fn from(e: FetchError) -> Self {
        CrawlError { status: e.status, code: e.code, detail: e.detail }
    }
}

/// A fetch that ended: which URL, and how.
type Done = (UrlId, Result<FetchResponse, FetchError>);

/// A crawl ended: its records and what the audit found in them.
#[derive(Debug)]
pub struct Crawled {
    frontier: Frontier,
    site: Site,
    /// The audit.
    pub audit: Audit,
}

impl Crawled {
    /// The site report, spelt out as it is written.
    pub fn report(&self) -> ReportView<'_> {
        ReportView::new(&self.frontier, &self.site, &self.audit)
    }
}

/// Runs the crawl `checked` describes to its end on this thread and returns
/// what it found. `cancel` stops it early (the report says so);
/// `progress` is told where it is every quarter second or so; `journal`
/// keeps a line a URL as it goes, and gives back an earlier run's lines
/// first, so that a crawl run again resumes where it was.
pub fn crawl(
    checked: Checked,
    fetcher: &Fetcher,
    cancel: &Arc<AtomicBool>,
    journal: &mut dyn Journal,
    progress: &mut dyn FnMut(&CrawlProgress),
) -> Result<Crawled, CrawlError> {
    fetcher.guard().check_url(&checked.start)?;
    if checked.settings.rate == 0.0 && !opened(fetcher, &checked.start) {
        return Err(CrawlError {
            status: 422,
            code: "rate-unlimited",
            detail: "rate 0 (no limit) is only for sites on addresses the server was opened to (--fetch-allow)".into(),
        });
    }
    let mut run = Run::new(checked, fetcher, cancel, journal);
    run.start();
    run.replay();
    run.crawl(progress);
    let Run { frontier, site, mut notes, .. } = run;
    for (skip, count) in frontier.skipped() {
        let why = match skip {
            Skip::PageCap => "max_pages was reached",
            Skip::TooDeep => "they are deeper than max_depth",
            Skip::PatternCap => "their URL shape reached max_per_pattern",
            Skip::Robots => "robots.txt disallows them",
            Skip::Excluded => "an exclude pattern matches",
            Skip::NotIncluded => "no include pattern matches",
        };
        notes.push(format!("{count} URLs not fetched: {why}"));
    }
    let audit = audit(&frontier, &site, notes);
    Ok(Crawled { frontier, site, audit })
}

/// Whether every address of `url`'s host is one the fetcher's guard was opened to.
fn opened(fetcher: &Fetcher, url: &Url) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| fetcher.guard().opened_to(a.ip()))
        }
        Err(_) => false,
    }
}

/// One crawl under way.
struct Run<'a> {
    journal: &'a mut dyn Journal,
    /// Lines kept in the journal.
    lines: usize,
    frontier: Frontier,
    site: Site,
    fetcher: &'a Fetcher,
    cancel: &'a Arc<AtomicBool>,
    /// robots.txt by origin.
    robots: HashMap<String, (String, RobotsSource)>,
    /// Time between two requests.
    interval: Duration,
    notes: Vec<String>,
    fetched: usize,
    errors: usize,
    began: Instant,
    max_bytes: usize,
}

impl<'a> Run<'a> {
    fn new(
        checked: Checked,
        fetcher: &'a Fetcher,
        cancel: &'a Arc<AtomicBool>,
        journal: &'a mut dyn Journal,
    ) -> Run<'a> {
        let rate = checked.settings.rate;
        // check() keeps the rate 0 or at least MIN_RATE; a bad one never panics here.
        let interval = Duration::try_from_secs_f64(1.0 / rate).ok().filter(|_| rate > 0.0).unwrap_or(Duration::ZERO);
        Run {
            journal,
            lines: 0,
            frontier: Frontier::new(checked),
            site: Site::default(),
            fetcher,
            cancel,
            robots: HashMap::new(),
            interval,
            notes: Vec::new(),
            fetched: 0,
            errors: 0,
            began: Instant::now(),
            max_bytes: fetcher.max_response_bytes(),
        }
    }

    /// The start URL, robots.txt's pace, and the sitemaps.
    fn start(&mut self) {
        let start = self.frontier.checked().start.clone();
        self.frontier.discover(start.clone(), Via::Start);
        let (robots_url, source) = self.robots_of(&start);
        let report = judge(&robots_url, &source, AGENT, "/");
        if let Some(delay) = report.crawl_delay.filter(|_| self.frontier.checked().settings.respect_robots) {
            let delay = Duration::from_secs_f64(delay.min(60.0));
            if delay > self.interval {
                self.notes.push(format!(
                    "robots.txt asks for {} s between requests; the crawl keeps to it",
                    delay.as_secs_f64()
                ));
                self.interval = delay;
            }
        }
        if !self.frontier.checked().settings.sitemaps {
            return;
        }
        let mut sitemaps: Vec<Url> = report.sitemaps.iter().filter_map(|s| Url::parse(s).ok()).collect();
        if sitemaps.is_empty() {
            sitemaps.extend(start.join("/sitemap.xml").ok());
        }
        self.read_sitemaps(sitemaps);
    }

    /// Reads sitemaps and their indexes, breadth first, within the caps.
    fn read_sitemaps(&mut self, mut queue: Vec<Url>) {
        let (mut read, mut listed) = (0, 0);
        let max_listed = self.frontier.checked().settings.max_pages;
        queue.reverse();
        while let Some(url) = queue.pop() {
            if read >= MAX_SITEMAPS {
                self.notes.push(format!("sitemaps: only the first {MAX_SITEMAPS} sitemap files were read"));
                break;
            }
            read += 1;
            let body = match self.fetch_now(url.clone()) {
                Ok(r) if r.status == 200 => r,
                Ok(r) if r.status == 404 && url.path() == "/sitemap.xml" => continue,
                Ok(r) => {
                    self.notes.push(format!("sitemap {url}: HTTP {}", r.status));
                    continue;
                }
                Err(e) => {
                    self.notes.push(format!("sitemap {url}: {e}"));
                    continue;
                }
            };
            let encoding = body.head.header("content-encoding").map(str::to_string);
            let text =
                decode_body(encoding.as_deref(), body.body, sitemap::MAX_BYTES).and_then(
                    |text| match sitemap::is_gzip(&text) {
                        true => decode_body(Some("gzip"), text, sitemap::MAX_BYTES),
                        false => Ok(text),
                    },
                );
            let text = match text {
                Ok(text) => text,
                Err(e) => {
                    self.notes
                        .push(format!("sitemap {url}: {e} (over {} MB unpacked is refused)", sitemap::MAX_BYTES >> 20));
                    continue;
                }
            };
            let room = (max_listed - listed.min(max_listed)).min(sitemap::MAX_ENTRIES);
            let parsed = sitemap::parse(&text, room);
            if parsed.dropped > 0 {
                self.notes.push(format!("sitemap {url}: {} entries past the cap were not read", parsed.dropped));
            }
            for loc in parsed.locs {
                let Ok(loc) = url.join(&loc) else { continue };
                match parsed.kind {
                    Kind::Index => queue.insert(0, loc),
                    Kind::UrlSet => {
                        listed += 1;
                        let id = self.frontier.discover(loc, Via::Sitemap);
                        let internal = self.frontier.entry(id).is_some_and(|e| e.internal);
                        if !internal {
                            self.notes.push(format!(
                                "sitemap {url} lists {} outside the crawled site",
                                self.frontier.url(id)
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Fetches `url` and waits for it (robots.txt, sitemaps: before the crawl proper).
    fn fetch_now(&self, url: Url) -> Result<FetchResponse, FetchError> {
        self.fetcher.fetch_and_wait(FetchRequest { cancel: Some(Arc::clone(self.cancel)), ..FetchRequest::get(url) })
    }

    /// The robots.txt of `url`'s origin: its URL and what fetching it found.
    fn robots_of(&mut self, url: &Url) -> (String, RobotsSource) {
        let origin = url.origin().ascii_serialization();
        if let Some(known) = self.robots.get(&origin) {
            return known.clone();
        }
        let robots = robots_txt::location(url);
        let source = match self.fetch_now(robots.clone()) {
            Ok(r) => {
                let source = robots_txt::source(r.status, &r.body);
                if matches!(source, RobotsSource::Unreachable(_)) {
                    self.notes.push(format!(
                        "{robots} answered {}: the site is taken as disallowed, as search engines take it",
                        r.status
                    ));
                }
                source
            }
            // No answer at all: the pages will say why themselves.
            Err(e) => {
                self.notes.push(format!("{robots} could not be fetched ({}): crawled as if there were none", e.code));
                RobotsSource::Missing(0)
            }
        };
        let known = (robots.to_string(), source);
        self.robots.insert(origin, known.clone());
        known
    }

    /// Whether robots.txt lets the crawl fetch `url`.
    fn allowed(&mut self, url: &Url) -> bool {
        if !self.frontier.checked().settings.respect_robots {
            return true;
        }
        let (robots_url, source) = self.robots_of(url);
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        judge(&robots_url, &source, AGENT, &path).allowed
    }

    /// The crawl proper: keeps `IN_FLIGHT` fetches going until the frontier is empty.
    fn crawl(&mut self, progress: &mut dyn FnMut(&CrawlProgress)) {
        let (tx, rx) = mpsc::channel::<Done>();
        let (mut in_flight, mut next_send, mut told) = (0usize, Instant::now(), Instant::now());
        let mut cancelled = false;
        loop {
            if self.cancel.load(Ordering::Relaxed) && !cancelled {
                cancelled = true;
                self.notes.push("the crawl was cancelled: the report covers what was fetched until then".into());
            }
            // Send what may be sent now.
            while !cancelled && in_flight < IN_FLIGHT && Instant::now() >= next_send {
                let Some((id, url)) = self.frontier.take() else { break };
                let internal = self.frontier.entry(id).is_some_and(|e| e.internal);
                if internal && !self.allowed(&url) {
                    self.keep(id, Fetch::Blocked);
                    continue;
                }
                let tx = tx.clone();
                let request = FetchRequest {
                    follow_redirects: false,
                    cancel: Some(Arc::clone(self.cancel)),
                    ..FetchRequest::get(url)
                };
                let sent = Instant::now();
                self.fetcher.fetch(request, Box::new(move |result| drop(tx.send((id, result)))));
                in_flight += 1;
                // Never closer than the interval (robots.txt's Crawl-delay is a
                // floor): a late turn lowers the rate a little, never raises it.
                next_send = next_send.max(sent) + self.interval;
            }
            if in_flight == 0 && (cancelled || self.frontier.waiting() == 0) {
                break;
            }
            let wait = if in_flight < IN_FLIGHT && self.frontier.waiting() > 0 && !cancelled {
                next_send.saturating_duration_since(Instant::now())
            } else {
                PROGRESS_EVERY
            };
            if let Ok((id, result)) = rx.recv_timeout(wait.min(PROGRESS_EVERY)) {
                in_flight -= 1;
                self.fetched += 1;
                let fetch = self.fetch_of(id, result);
                self.keep(id, fetch);
            }
            if told.elapsed() >= PROGRESS_EVERY {
                told = Instant::now();
                progress(&self.progress(in_flight));
            }
        }
        progress(&self.progress(0));
    }

    fn progress(&self, in_flight: usize) -> CrawlProgress {
        let secs = self.began.elapsed().as_secs_f64().max(1e-3);
        CrawlProgress {
            fetched: self.fetched,
            queued: self.frontier.waiting(),
            in_flight,
            errors: self.errors,
            discovered: self.frontier.len(),
            pages_per_second: self.fetched as f64 / secs,
        }
    }

    /// Reads back an earlier run's journal: each URL it fetched is taken
    /// again without a fetch, and what it found applied as then.
    fn replay(&mut self) {
        let (mut read, mut damaged) = (0, 0);
        // A page of lines at a time: a large crawl's journal is never held whole.
        loop {
            let lines = self.journal.read(read + damaged, REPLAY_PAGE);
            let more = lines.len() == REPLAY_PAGE;
            for line in lines {
                let Some((url, fetch)) = serde_json::from_slice::<Line>(&line)
                    .ok()
                    .and_then(|Line { url, fetch }| Some((Url::parse(&url).ok()?, fetch)))
                else {
                    damaged += 1;
                    continue;
                };
                let (id, _) = self.frontier.intern(url);
                self.frontier.mark_taken(id);
                self.fetched += 1;
                self.apply(id, fetch);
                read += 1;
            }
            if !more {
                break;
            }
        }
        self.lines = read + damaged;
        if read > 0 {
            self.notes.push(format!(
                "resumed after a restart: {read} URLs were read back from the journal, not fetched again"
            ));
        }
        if damaged > 0 {
            self.notes.push(format!("{damaged} damaged journal lines were skipped (those URLs may be missing)"));
        }
    }

    /// Keeps how fetching `id` ended in the journal, then applies it.
    fn keep(&mut self, id: UrlId, fetch: Fetch) {
        if self.journal.keeps() {
            let line = Line { url: self.frontier.url(id).to_string(), fetch };
            // A line of strings and numbers always serialises.
            if let Ok(bytes) = serde_json::to_vec(&line) {
                self.journal.write(self.lines, bytes);
                self.lines += 1;
            }
            return self.apply(id, line.fetch);
        }
        self.apply(id, fetch);
    }

    /// How fetching `id` ended, with what an HTML page of the site says
    /// (analysed here); URLs as text.
    fn fetch_of(&self, id: UrlId, result: Result<FetchResponse, FetchError>) -> Fetch {
        let response = match result {
            Ok(response) => response,
            Err(e) => return Fetch::Failed { code: e.code.to_string() },
        };
        let internal = self.frontier.entry(id).is_some_and(|e| e.internal);
        let status = response.status;
        let content_type = response.head.header("content-type").map(str::to_string);
        let location = response
            .head
            .header("location")
            .filter(|_| (300..400).contains(&status))
            .and_then(|l| response.final_url.join(l).ok())
            .map(String::from);
        let first_byte_ms = response.timings.first_byte_ms.max(0.0);
        let page = match internal && status == 200 && is_html(content_type.as_deref()) {
            true => self.analyse(response).map(Box::new),
            false => None,
        };
        Fetch::Response { status, content_type, location, first_byte_ms, page }
    }

    /// Records how fetching `id` ended and discovers what it links to.
    fn apply(&mut self, id: UrlId, fetch: Fetch) {
        let entry = self.frontier.entry(id).cloned();
        let internal = entry.as_ref().is_some_and(|e| e.internal);
        // A URL no link reaches (sitemap only) passes no depth on.
        let depth = entry.as_ref().and_then(|e| e.depth);
        let (status, content_type, location, first_byte_ms, page) = match fetch {
            Fetch::Failed { code } => {
                self.errors += 1;
                if id == 0 {
                    self.notes.push(format!("the start page could not be fetched: {code}"));
                }
                return self.site.record(id, Outcome::Failed(code));
            }
            Fetch::Blocked => {
                self.frontier.skip(id, Skip::Robots);
                return self.site.record(id, Outcome::Blocked);
            }
            Fetch::Response { status, content_type, location, first_byte_ms, page } => {
                (status, content_type, location, first_byte_ms, page)
            }
        };
        self.errors += usize::from(status >= 400);
        let location = location.and_then(|l| Url::parse(&l).ok()).map(|target| match internal {
            // A redirect is no click: its target is as deep as it.
            true => self.frontier.discover(target, depth.map_or(Via::Reference, Via::Redirect)),
            false => self.frontier.intern(target).0,
        });
        if id == 0 && status == 200 && !is_html(content_type.as_deref()) {
            self.notes.push(format!(
                "the start URL is not an HTML page ({}): there is nothing to follow",
                content_type.as_deref().unwrap_or_default()
            ));
        }
        let html = page.map(|page| self.facts(depth, *page));
        let content_type = content_type.and_then(|t| self.site.content_type(&t));
        self.site.record(id, Outcome::Response { status, content_type, location, first_byte_ms, html });
    }

    /// Analyses a fetched HTML page: what the journal keeps of it.
    fn analyse(&self, response: FetchResponse) -> Option<PageLine> {
        let FetchResponse { status, final_url, head, body, .. } = response;
        let body = decode_body(head.header("content-encoding"), body, self.max_bytes).ok()?;
        let mut options = seo::Options {
            url: Some(final_url.clone()),
            include_links: true,
            include_images: false,
            hash_text: true,
            ..seo::Options::default()
        };
        describe_page(&mut options, status, &head);
        let mut analysis = seo::analyze(&body, &options).ok()?;
        let page_nofollow = analysis.robots.nofollow;
        // Taken, not copied: the analysis is not needed after this.
        let links = analysis
            .links
            .items
            .take()
            .into_iter()
            .flatten()
            .filter(|link| matches!(link.kind, LinkKind::Internal | LinkKind::External))
            .map(|link| {
                let nofollow = page_nofollow || link.rel.iter().any(|r| r.eq_ignore_ascii_case("nofollow"));
                (link.href, nofollow)
            })
            // <link rel=next|prev|alternate>: followed like links.
            .chain(std::mem::take(&mut analysis.related_links).into_iter().map(|href| (href, page_nofollow)))
            .collect();
        let http_canonical =
            head.all("link").find_map(link_canonical).and_then(|c| final_url.join(&c).ok()).map(String::from);
        let failed_checks =
            analysis.checks.iter().filter(|c| !c.passed).map(|c| (c.id.to_string(), c.severity)).collect();
        Some(PageLine {
            title: analysis.title.take(),
            description: analysis.meta_description.as_deref().filter(|d| !d.trim().is_empty()).map(text_key),
            canonical: analysis.canonical.take(),
            http_canonical,
            noindex: analysis.robots.noindex,
            text_hash: analysis.text_hash,
            word_count: analysis.word_count,
            hreflang: analysis.hreflang.into_iter().filter_map(|h| Some((h.lang, h.href?))).collect(),
            links,
            failed_checks,
            score: analysis.score,
        })
    }

    /// A page's facts as the site keeps them, discovering its links,
    /// canonical and alternates (a page no link reaches passes no depth on).
    fn facts(&mut self, depth: Option<u16>, page: PageLine) -> Box<HtmlFacts> {
        let discover = |frontier: &mut Frontier, href: &str, via| {
            Url::parse(href).ok().filter(|u| matches!(u.scheme(), "http" | "https")).map(|u| frontier.discover(u, via))
        };
        let mut links: Vec<Edge> = Vec::new();
        for (href, nofollow) in &page.links {
            let Some(to) = discover(&mut self.frontier, href, depth.map_or(Via::Reference, Via::Page)) else {
                continue;
            };
            match links.iter_mut().find(|e| e.to == to) {
                Some(edge) => edge.nofollow |= nofollow,
                None => links.push(Edge { to, nofollow: *nofollow }),
            }
        }
        let canonical = page.canonical.as_deref().and_then(|c| discover(&mut self.frontier, c, Via::Reference));
        let http_canonical =
            page.http_canonical.as_deref().and_then(|c| discover(&mut self.frontier, c, Via::Reference));
        let hreflang = page
            .hreflang
            .iter()
            .filter_map(|(lang, href)| {
                Some((lang.as_str().into(), discover(&mut self.frontier, href, Via::Reference)?))
            })
            .collect();
        let failed_checks = self.site.checks(page.failed_checks.iter().map(|(id, severity)| (id.as_str(), *severity)));
        Box::new(HtmlFacts {
            title: page.title.map(String::into_boxed_str),
            description: page.description,
            canonical,
            http_canonical,
            noindex: page.noindex,
            text_hash: page.text_hash,
            word_count: page.word_count,
            hreflang,
            links: links.into_boxed_slice(),
            failed_checks,
            score: page.score,
        })
    }
}

/// The target of a `Link` header value's `rel=canonical` entry.
fn link_canonical(value: &str) -> Option<String> {
    value.split(',').find_map(|entry| {
        let (target, params) = entry.trim().strip_prefix('<')?.split_once('>')?;
        let canonical = params.split(';').any(|p| {
            let Some((name, value)) = p.split_once('=') else { return false };
            name.trim().eq_ignore_ascii_case("rel")
                && value.trim().trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("canonical"))
        });
        canonical.then(|| target.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(link_canonical(r#"<https://e.com/a>; rel="canonical""#).as_deref(), Some("https://e.com/a"));
        assert_eq!(link_canonical(r#"</s.css>; rel=preload, </a>; rel=canonical"#).as_deref(), Some("/a"));
        assert_eq!(link_canonical(r#"<https://e.com/a>; rel="alternate""#), None);
        assert_eq!(link_canonical("garbage"), None);
    }
}
