//! What a crawl found of each URL, and the checks that only a whole site
//! shows: duplicates, broken links with the pages that hold them, redirect
//! chains and loops, canonical and hreflang targets, orphans, sitemap
//! entries, depth, dead ends, nofollow, slow pages. Each issue names the
//! pages where it is to be fixed and the URLs it concerns.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::frontier::{Frontier, Skip, UrlId};
use crate::seo::checks::Severity;

/// A link from a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Where it goes.
    pub to: UrlId,
    /// `rel=nofollow` (or the page's own `nofollow`).
    pub nofollow: bool,
}

/// What an HTML page says, kept for the site's checks.
#[derive(Debug, Clone, Default)]
pub struct HtmlFacts {
    /// `<title>`.
    pub title: Option<String>,
    /// `<meta name=description>`.
    pub description: Option<String>,
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
    pub hreflang: Vec<(String, UrlId)>,
    /// Links to http(s) URLs, one per target.
    pub links: Vec<Edge>,
    /// The page's own failed checks (the SEO engine's).
    pub failed_checks: Vec<(&'static str, Severity)>,
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
        /// Its `Content-Type`.
        content_type: Option<String>,
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
}

impl Site {
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

    fn status(&self, id: UrlId) -> Option<u16> {
        match self.get(id) {
            Some(Outcome::Response { status, .. }) => Some(*status),
            _ => None,
        }
    }

    fn html(&self, id: UrlId) -> Option<&HtmlFacts> {
        match self.get(id) {
            Some(Outcome::Response { html: Some(html), .. }) => Some(html),
            _ => None,
        }
    }

    /// An error: no response, or 4xx/5xx.
    fn is_error(&self, id: UrlId) -> bool {
        matches!(self.get(id), Some(Outcome::Failed(_))) || self.status(id).is_some_and(|s| s >= 400)
    }

    fn redirect(&self, id: UrlId) -> Option<UrlId> {
        match self.get(id) {
            Some(Outcome::Response { status: 300..=399, location, .. }) => *location,
            _ => None,
        }
    }

    fn noindex(&self, id: UrlId) -> bool {
        self.html(id).is_some_and(|h| h.noindex)
    }

    /// The canonical a page names, if it is another URL.
    fn canonical_elsewhere(&self, id: UrlId) -> Option<UrlId> {
        self.html(id).and_then(|h| h.canonical).filter(|&c| c != id)
    }
}

/// One place an issue is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The page where it is (and is fixed).
    pub url: String,
    /// The URLs it concerns: the broken targets, the other duplicates, the chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
}

/// An issue and every page it is found on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issue {
    /// Stable identifier (`duplicate-title`).
    pub id: String,
    /// How much it matters.
    pub severity: Severity,
    /// What it is, for a person.
    pub about: String,
    /// Pages it is found on.
    pub count: usize,
    /// Where.
    pub pages: Vec<Finding>,
}

/// One row of the pages table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageRow {
    /// The URL.
    pub url: String,
    /// Fewest clicks from the start page (none: reached by no link).
    pub depth: Option<u16>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Why there is no status (`connect-refused`, `robots-txt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Inside the site (else a checked link to another site).
    pub internal: bool,
    /// Listed in a sitemap.
    pub in_sitemap: bool,
    /// `<title>`.
    pub title: Option<String>,
    /// Indexable: 200, HTML, no noindex, canonical to itself.
    pub indexable: bool,
    /// Words of visible text.
    pub word_count: usize,
    /// The SEO engine's score.
    pub score: Option<u8>,
    /// Time to first byte, ms.
    pub first_byte_ms: Option<f64>,
    /// Links to it from crawled pages.
    pub links_in: usize,
    /// Links out of it.
    pub links_out: usize,
    /// Issues found on it.
    pub issues: Vec<String>,
}

/// The site report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteReport {
    /// Where the crawl started.
    pub start: String,
    /// Internal URLs fetched (pages, redirects, other files).
    pub pages_fetched: usize,
    /// HTML pages analysed.
    pub html_pages: usize,
    /// Links to other sites checked.
    pub external_checked: usize,
    /// URLs discovered, fetched or not.
    pub urls_discovered: usize,
    /// Fetched URLs that failed or answered 4xx/5xx.
    pub errors: usize,
    /// URLs not fetched, by reason.
    pub skipped: BTreeMap<Skip, usize>,
    /// Pages by depth (index: clicks from the start page).
    pub depth_histogram: Vec<usize>,
    /// Issues, most severe and most frequent first.
    pub issues: Vec<Issue>,
    /// What limited the crawl (caps reached, sitemaps cut short).
    pub notes: Vec<String>,
    /// Every fetched URL (and every URL robots.txt kept out).
    pub pages: Vec<PageRow>,
}

/// Collects findings by issue.
struct Findings<'a> {
    frontier: &'a Frontier,
    by_issue: BTreeMap<&'static str, (Severity, &'static str, Vec<Finding>)>,
}

impl Findings<'_> {
    fn add(&mut self, id: &'static str, severity: Severity, about: &'static str, at: UrlId, related: &[UrlId]) {
        let finding = Finding {
            url: self.frontier.url(at).to_string(),
            related: related.iter().map(|&r| self.frontier.url(r).to_string()).collect(),
        };
        self.by_issue.entry(id).or_insert((severity, about, Vec::new())).2.push(finding);
    }
}

/// Runs the site's checks over what the crawl found.
pub fn audit(frontier: &Frontier, site: &Site, notes: Vec<String>) -> SiteReport {
    let settings = &frontier.checked().settings;
    let ids = 0..frontier.len() as UrlId;
    let internal = |id: UrlId| frontier.entry(id).is_some_and(|e| e.internal);
    let mut found = Findings { frontier, by_issue: BTreeMap::new() };
    // Links into each URL from crawled pages: (source, nofollow).
    let mut incoming: HashMap<UrlId, Vec<(UrlId, bool)>> = HashMap::new();
    for page in ids.clone() {
        for edge in site.html(page).map_or(&[][..], |h| &h.links) {
            incoming.entry(edge.to).or_default().push((page, edge.nofollow));
        }
    }
    for page in ids.clone() {
        let Some(html) = site.html(page) else { continue };
        page_links(&mut found, site, page, html, &internal);
        canonicals(&mut found, site, page, html);
        hreflangs(&mut found, site, page, html);
        for &(check, severity) in &html.failed_checks {
            found.add(check, severity, "the page fails this check of the SEO engine", page, &[]);
        }
        if html.links.is_empty() {
            found.add("dead-end", Severity::Low, "an HTML page with no links out", page, &[]);
        }
        let depth = frontier.entry(page).and_then(|e| e.depth);
        if depth.is_some_and(|d| d > settings.deep_after) {
            found.add("deep-page", Severity::Low, "more clicks from the start page than deep_after", page, &[]);
        }
    }
    for id in ids.clone() {
        redirects(&mut found, site, id);
        let entry = frontier.entry(id);
        if entry.is_some_and(|e| e.in_sitemap) {
            sitemap_entry(&mut found, site, id, entry.is_some_and(|e| e.depth.is_none()));
        }
        if let Some(Outcome::Response { first_byte_ms, .. }) = site.get(id) {
            if internal(id) && *first_byte_ms > settings.slow_first_byte_ms {
                found.add(
                    "slow-first-byte",
                    Severity::Medium,
                    "the first byte came later than slow_first_byte_ms",
                    id,
                    &[],
                );
            }
        }
        let links = incoming.get(&id).map_or(&[][..], Vec::as_slice);
        let nofollowed: Vec<UrlId> = links.iter().filter(|(_, nofollow)| *nofollow).map(|(from, _)| *from).collect();
        if internal(id) && !nofollowed.is_empty() && nofollowed.len() < links.len() {
            found.add(
                "mixed-nofollow-incoming",
                Severity::Low,
                "an internal page linked both with and without nofollow",
                id,
                &nofollowed,
            );
        }
    }
    duplicates(&mut found, site, ids.clone(), |h| h.title.as_deref().map(normalise_text), "duplicate-title");
    duplicates(
        &mut found,
        site,
        ids.clone(),
        |h| h.description.as_deref().map(normalise_text),
        "duplicate-description",
    );
    duplicates(
        &mut found,
        site,
        ids.clone(),
        |h| h.text_hash.filter(|_| h.word_count > 0).map(|hash| format!("{hash:016x}")),
        "duplicate-content",
    );
    report(frontier, site, found, &incoming, notes)
}

fn normalise_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn page_links(found: &mut Findings<'_>, site: &Site, page: UrlId, html: &HtmlFacts, internal: &dyn Fn(UrlId) -> bool) {
    let (mut broken_in, mut broken_out, mut to_redirect, mut nofollow) = (vec![], vec![], vec![], vec![]);
    for edge in &html.links {
        match (site.is_error(edge.to), internal(edge.to)) {
            (true, true) => broken_in.push(edge.to),
            (true, false) => broken_out.push(edge.to),
            _ => {}
        }
        if internal(edge.to) && site.redirect(edge.to).is_some() {
            to_redirect.push(edge.to);
        }
        if internal(edge.to) && edge.nofollow {
            nofollow.push(edge.to);
        }
    }
    let issues = [
        ("broken-internal-link", Severity::High, "links to pages of the site that fail or answer 4xx/5xx", broken_in),
        (
            "broken-external-link",
            Severity::Medium,
            "links to other sites' pages that fail or answer 4xx/5xx",
            broken_out,
        ),
        ("link-to-redirect", Severity::Low, "links to URLs of the site that redirect", to_redirect),
        ("internal-nofollow", Severity::Low, "nofollow on links to the site's own pages", nofollow),
    ];
    for (id, severity, about, targets) in issues {
        if !targets.is_empty() {
            found.add(id, severity, about, page, &targets);
        }
    }
}

fn canonicals(found: &mut Findings<'_>, site: &Site, page: UrlId, html: &HtmlFacts) {
    if let (Some(a), Some(b)) = (html.canonical, html.http_canonical) {
        if a != b {
            found.add("canonical-mismatch", Severity::High, "the HTML and HTTP canonicals disagree", page, &[a, b]);
        }
    }
    let Some(target) = site.canonical_elsewhere(page) else { return };
    let checks = [
        (site.is_error(target), "canonical-to-error", Severity::High, "the canonical fails or answers 4xx/5xx"),
        (site.redirect(target).is_some(), "canonical-to-redirect", Severity::Medium, "the canonical redirects"),
        (site.noindex(target), "canonical-to-noindex", Severity::High, "the canonical is noindex"),
        (
            site.canonical_elsewhere(target).is_some(),
            "canonical-to-non-canonical",
            Severity::Medium,
            "the canonical names yet another canonical",
        ),
    ];
    for (hit, id, severity, about) in checks {
        if hit {
            found.add(id, severity, about, page, &[target]);
        }
    }
}

fn hreflangs(found: &mut Findings<'_>, site: &Site, page: UrlId, html: &HtmlFacts) {
    if html.hreflang.is_empty() {
        return;
    }
    if !html.hreflang.iter().any(|(lang, _)| lang.eq_ignore_ascii_case("x-default")) {
        found.add("hreflang-no-x-default", Severity::Low, "hreflang alternates without x-default", page, &[]);
    }
    if !html.hreflang.iter().any(|&(_, to)| to == page) {
        found.add(
            "hreflang-no-self",
            Severity::Medium,
            "hreflang alternates that leave the page itself out",
            page,
            &[],
        );
    }
    let (mut one_way, mut errors, mut redirects, mut noindex) = (vec![], vec![], vec![], vec![]);
    for &(_, to) in &html.hreflang {
        if to == page {
            continue;
        }
        if site.is_error(to) {
            errors.push(to);
        } else if site.redirect(to).is_some() {
            redirects.push(to);
        } else if site.noindex(to) {
            noindex.push(to);
        }
        if site.html(to).is_some_and(|other| !other.hreflang.iter().any(|&(_, back)| back == page)) {
            one_way.push(to);
        }
    }
    let issues = [
        ("hreflang-not-reciprocal", Severity::Medium, "hreflang alternates that do not link back", one_way),
        ("hreflang-to-error", Severity::High, "hreflang alternates that fail or answer 4xx/5xx", errors),
        ("hreflang-to-redirect", Severity::Medium, "hreflang alternates that redirect", redirects),
        ("hreflang-to-noindex", Severity::Medium, "hreflang alternates that are noindex", noindex),
    ];
    for (id, severity, about, targets) in issues {
        if !targets.is_empty() {
            found.add(id, severity, about, page, &targets);
        }
    }
}

/// A URL that redirects: a chain (a redirect to a redirect) or a loop.
fn redirects(found: &mut Findings<'_>, site: &Site, id: UrlId) {
    let Some(mut next) = site.redirect(id) else { return };
    let mut chain = vec![next];
    while let Some(after) = site.redirect(next) {
        if after == id || chain.contains(&after) {
            chain.push(after);
            found.add("redirect-loop", Severity::High, "redirects that come back to a URL already passed", id, &chain);
            return;
        }
        chain.push(after);
        next = after;
    }
    if chain.len() >= 2 {
        found.add("redirect-chain", Severity::Medium, "a redirect to another redirect", id, &chain);
    }
}

fn sitemap_entry(found: &mut Findings<'_>, site: &Site, id: UrlId, unlinked: bool) {
    let checks = [
        (
            matches!(site.get(id), Some(Outcome::Blocked)),
            "sitemap-blocked",
            Severity::Medium,
            "a sitemap lists a URL robots.txt disallows",
        ),
        (site.is_error(id), "sitemap-error", Severity::Medium, "a sitemap lists a URL that fails or answers 4xx/5xx"),
        (site.redirect(id).is_some(), "sitemap-redirect", Severity::Low, "a sitemap lists a URL that redirects"),
        (site.noindex(id), "sitemap-noindex", Severity::Medium, "a sitemap lists a noindex page"),
        (
            site.canonical_elsewhere(id).is_some(),
            "sitemap-non-canonical",
            Severity::Medium,
            "a sitemap lists a page whose canonical is another URL",
        ),
        (
            unlinked && site.status(id) == Some(200),
            "orphan-page",
            Severity::Medium,
            "a page in a sitemap that no crawled page links to",
        ),
    ];
    for (hit, issue, severity, about) in checks {
        if hit {
            found.add(issue, severity, about, id, &[]);
        }
    }
}

/// Indexable HTML pages sharing the same `key`: each is reported with the others.
fn duplicates(
    found: &mut Findings<'_>,
    site: &Site,
    ids: std::ops::Range<UrlId>,
    key: impl Fn(&HtmlFacts) -> Option<String>,
    issue: &'static str,
) {
    let mut groups: HashMap<String, Vec<UrlId>> = HashMap::new();
    for id in ids {
        let Some(html) = site.html(id) else { continue };
        if html.noindex || site.canonical_elsewhere(id).is_some() {
            continue;
        }
        if let Some(key) = key(html).filter(|k| !k.is_empty()) {
            groups.entry(key).or_default().push(id);
        }
    }
    let about = match issue {
        "duplicate-title" => "indexable pages with the same title",
        "duplicate-description" => "indexable pages with the same meta description",
        _ => "indexable pages with the same visible text",
    };
    for group in groups.values().filter(|g| g.len() > 1) {
        for &id in group {
            let others: Vec<UrlId> = group.iter().copied().filter(|&o| o != id).collect();
            found.add(issue, Severity::Medium, about, id, &others);
        }
    }
}

fn report(
    frontier: &Frontier,
    site: &Site,
    found: Findings<'_>,
    incoming: &HashMap<UrlId, Vec<(UrlId, bool)>>,
    notes: Vec<String>,
) -> SiteReport {
    let mut issues: Vec<Issue> = found
        .by_issue
        .into_iter()
        .map(|(id, (severity, about, mut pages))| {
            pages.sort_by(|a, b| a.url.cmp(&b.url));
            Issue { id: id.into(), severity, about: about.into(), count: pages.len(), pages }
        })
        .collect();
    issues.sort_by(|a, b| a.severity.cmp(&b.severity).then(b.count.cmp(&a.count)).then(a.id.cmp(&b.id)));
    let mut on_page: HashMap<&str, Vec<String>> = HashMap::new();
    for issue in &issues {
        for finding in &issue.pages {
            on_page.entry(finding.url.as_str()).or_default().push(issue.id.clone());
        }
    }
    let (mut pages, mut depth_histogram) = (Vec::new(), Vec::new());
    let (mut fetched, mut html_pages, mut external, mut errors) = (0, 0, 0, 0);
    for id in 0..frontier.len() as UrlId {
        let (Some(entry), Some(outcome)) = (frontier.entry(id), site.get(id)) else { continue };
        let url = frontier.url(id);
        let html = site.html(id);
        match (entry.internal, outcome) {
            (_, Outcome::Blocked) => {}
            (true, _) => fetched += 1,
            (false, _) => external += 1,
        }
        errors += usize::from(site.is_error(id));
        if let (Some(depth), true) = (entry.depth, html.is_some()) {
            html_pages += 1;
            let depth = usize::from(depth);
            if depth_histogram.len() <= depth {
                depth_histogram.resize(depth + 1, 0);
            }
            depth_histogram[depth] += 1;
        } else if html.is_some() {
            html_pages += 1;
        }
        let (status, content_type, first_byte_ms, error) = match outcome {
            Outcome::Response { status, content_type, first_byte_ms, .. } => {
                (Some(*status), content_type.clone(), Some(*first_byte_ms), None)
            }
            Outcome::Failed(code) => (None, None, None, Some(code.clone())),
            Outcome::Blocked => (None, None, None, Some("robots-txt".to_string())),
        };
        pages.push(PageRow {
            url: url.to_string(),
            depth: entry.depth,
            status,
            error,
            content_type,
            internal: entry.internal,
            in_sitemap: entry.in_sitemap,
            title: html.and_then(|h| h.title.clone()),
            indexable: html.is_some_and(|h| !h.noindex) && site.canonical_elsewhere(id).is_none(),
            word_count: html.map_or(0, |h| h.word_count),
            score: html.map(|h| h.score),
            first_byte_ms,
            links_in: incoming.get(&id).map_or(0, Vec::len),
            links_out: html.map_or(0, |h| h.links.len()),
            issues: on_page.get(url).cloned().unwrap_or_default(),
        });
    }
    SiteReport {
        start: frontier.checked().start.to_string(),
        pages_fetched: fetched,
        html_pages,
        external_checked: external,
        urls_discovered: frontier.len(),
        errors,
        skipped: frontier.skipped().into_iter().collect(),
        depth_histogram,
        issues,
        notes,
        pages,
    }
}
