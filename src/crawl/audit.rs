//! The checks that only a whole site shows: duplicates, broken links with
//! the pages that hold them, redirect chains and loops, canonical and
//! hreflang targets, orphans, sitemap entries, depth, dead ends, nofollow,
//! slow pages; and the pages' own failed checks. Each issue names the pages
//! where it is to be fixed and the URLs it concerns, by URL number: the
//! report spells them out as it is written.

use std::collections::{BTreeMap, HashMap};

use super::frontier::{Frontier, UrlId};
use super::report::Summary;
use super::site::{text_key, HtmlFacts, Outcome, Site};
use crate::seo::checks::Severity;

/// An issue found, by URL number: each page it is on, with the URLs it concerns.
#[derive(Debug, Clone)]
pub struct Found {
    /// Stable identifier.
    pub id: String,
    /// How much it matters.
    pub severity: Severity,
    /// What it is, for a person.
    pub about: &'static str,
    /// The pages, in URL order, with the URLs each concerns.
    pub pages: Vec<Place>,
}

/// A page an issue is on, and the URLs it concerns there.
pub type Place = (UrlId, Box<[UrlId]>);

/// What the audit found: the issues, and what the report's pages table
/// needs beside the records (links in, issues a page).
#[derive(Debug)]
pub struct Audit {
    /// The figures of the crawl.
    pub summary: Summary,
    /// Issues, most severe and most frequent first.
    pub issues: Vec<Found>,
    /// What limited the crawl.
    pub notes: Vec<String>,
    /// Links into each URL from crawled pages, by URL number.
    pub(super) incoming: Vec<u32>,
    /// The issues (their places in `issues`) on each page that has any.
    pub(super) on_page: HashMap<UrlId, Vec<u16>>,
}

/// Collects findings by issue (ids are the site's checks' or the page
/// checks' named in the site's records).
struct Findings<'a> {
    by_issue: BTreeMap<&'a str, (Severity, &'static str, Vec<Place>)>,
}

impl<'a> Findings<'a> {
    fn add(&mut self, id: &'a str, severity: Severity, about: &'static str, at: UrlId, related: &[UrlId]) {
        self.by_issue.entry(id).or_insert((severity, about, Vec::new())).2.push((at, related.into()));
    }
}

/// Runs the site's checks over what the crawl found.
pub fn audit(frontier: &Frontier, site: &Site, notes: Vec<String>) -> Audit {
    let settings = &frontier.checked().settings;
    let ids = 0..frontier.len() as UrlId;
    let internal = |id: UrlId| frontier.entry(id).is_some_and(|e| e.internal);
    let mut found = Findings { by_issue: BTreeMap::new() };
    // Links into each URL from crawled pages, and the sources of nofollow ones.
    let mut incoming = vec![0u32; frontier.len()];
    let mut nofollow_from: HashMap<UrlId, Vec<UrlId>> = HashMap::new();
    for page in ids.clone() {
        for edge in site.html(page).map_or(&[][..], |h| &h.links) {
            if let Some(count) = incoming.get_mut(edge.to as usize) {
                *count += 1;
            }
            if edge.nofollow {
                nofollow_from.entry(edge.to).or_default().push(page);
            }
        }
    }
    for page in ids.clone() {
        let Some(html) = site.html(page) else { continue };
        page_links(&mut found, site, page, html, &internal);
        canonicals(&mut found, site, page, html);
        hreflangs(&mut found, site, page, html);
        for (check, severity) in site.failed(html.failed_checks) {
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
        let links = incoming.get(id as usize).copied().unwrap_or(0) as usize;
        let nofollowed = nofollow_from.get(&id).map_or(&[][..], Vec::as_slice);
        if internal(id) && !nofollowed.is_empty() && nofollowed.len() < links {
            found.add(
                "mixed-nofollow-incoming",
                Severity::Low,
                "an internal page linked both with and without nofollow",
                id,
                nofollowed,
            );
        }
    }
    duplicates(
        &mut found,
        site,
        ids.clone(),
        |h| h.title.as_deref().filter(|t| !t.trim().is_empty()).map(text_key),
        "duplicate-title",
    );
    duplicates(&mut found, site, ids.clone(), |h| h.description, "duplicate-description");
    duplicates(&mut found, site, ids.clone(), |h| h.text_hash.filter(|_| h.word_count > 0), "duplicate-content");
    let summary = summary(frontier, site);
    let mut issues: Vec<Found> = found
        .by_issue
        .into_iter()
        .map(|(id, (severity, about, mut pages))| {
            pages.sort_by(|a, b| frontier.url(a.0).cmp(frontier.url(b.0)));
            Found { id: id.to_string(), severity, about, pages }
        })
        .collect();
    issues.sort_by(|a, b| a.severity.cmp(&b.severity).then(b.pages.len().cmp(&a.pages.len())).then(a.id.cmp(&b.id)));
    let mut on_page: HashMap<UrlId, Vec<u16>> = HashMap::new();
    for (n, issue) in issues.iter().enumerate() {
        for (page, _) in &issue.pages {
            on_page.entry(*page).or_default().push(n as u16);
        }
    }
    Audit { summary, issues, notes, incoming, on_page }
}

/// The crawl's figures.
fn summary(frontier: &Frontier, site: &Site) -> Summary {
    let mut depth_histogram = Vec::new();
    let (mut fetched, mut html_pages, mut external, mut errors) = (0, 0, 0, 0);
    for id in 0..frontier.len() as UrlId {
        let (Some(entry), Some(outcome)) = (frontier.entry(id), site.get(id)) else { continue };
        match (entry.internal, outcome) {
            (_, Outcome::Blocked) => {}
            (true, _) => fetched += 1,
            (false, _) => external += 1,
        }
        errors += usize::from(site.is_error(id));
        if site.html(id).is_none() {
            continue;
        }
        html_pages += 1;
        if let Some(depth) = entry.depth.map(usize::from) {
            if depth_histogram.len() <= depth {
                depth_histogram.resize(depth + 1, 0);
            }
            depth_histogram[depth] += 1;
        }
    }
    Summary {
        start: frontier.checked().start.to_string(),
        pages_fetched: fetched,
        html_pages,
        external_checked: external,
        urls_discovered: frontier.len(),
        errors,
        skipped: frontier.skipped().into_iter().collect(),
        depth_histogram,
    }
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
    key: impl Fn(&HtmlFacts) -> Option<u64>,
    issue: &'static str,
) {
    let mut groups: HashMap<u64, Vec<UrlId>> = HashMap::new();
    for id in ids {
        let Some(html) = site.html(id) else { continue };
        if html.noindex || site.canonical_elsewhere(id).is_some() {
            continue;
        }
        if let Some(key) = key(html) {
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
