//! The checks, the score and the recommendations.
//!
//! Ids are stable: clients match on them. The set covers Lighthouse's SEO
//! audits (`document-title`, `meta-description`, `http-status-code`,
//! `is-crawlable`, `link-text`, `crawlable-anchors`, `image-alt`, `hreflang`,
//! `canonical`, and `robots-txt` for fetched pages) and the usual on-page
//! analysers' checks.
//!
//! The score is the weighted share of checks passed, 0-100. Weights, by
//! how much a failure costs in search: 10 for what can remove a page from
//! results (status, crawlability, title); 8 for the description that makes
//! the snippet; 6 for canonical, viewport (mobile-first indexing) and image
//! alt; 4 for link text, crawlable anchors, hreflang, lang and a single h1;
//! 1-3 for refinements (lengths, heading order, word count, social tags,
//! dimensions, structured data, charset, meta refresh).

use serde::Serialize;
use url::Url;

use super::analysis::{is_relative, Analysis, LONG_ALT};

/// How much a failed check matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Can keep the page out of search results.
    High,
    /// Hurts ranking or presentation noticeably.
    Medium,
    /// A refinement.
    Low,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier.
    pub id: &'static str,
    /// Whether the page passes.
    pub passed: bool,
    /// How much a failure matters.
    pub severity: Severity,
    /// Its weight in the score.
    pub weight: u8,
    /// What was found, for a person.
    pub message: String,
}

const TITLE_RANGE: (usize, usize) = (30, 60);
const DESCRIPTION_RANGE: (usize, usize) = (70, 160);
const MIN_WORDS: usize = 300;
/// Fewer words than this make a page that redirects by script a stub.
const STUB_WORDS: usize = 50;

/// A length check's message: within the range, or how far off.
fn length_message(what: &str, n: usize, (min, max): (usize, usize)) -> String {
    match n {
        n if n < min => format!("{what} is {n} characters: too short (aim for {min}-{max})"),
        n if n > max => format!("{what} is {n} characters: too long, cut off in results (aim for {min}-{max})"),
        n => format!("{what} is {n} characters, within {min}-{max}"),
    }
}

/// Runs every check that applies and sets `checks`, `score` and
/// `recommendations` on `analysis`.
pub fn judge(analysis: &mut Analysis, page_url: Option<&Url>) {
    let a = &*analysis;
    let mut checks = Vec::new();
    let mut check = |id, severity, weight, passed: bool, message: String| {
        checks.push(Check { id, passed, severity, weight, message });
    };
    use Severity::{High, Low, Medium};

    if let Some(status) = a.status_code {
        check("http-status-code", High, 10, (200..400).contains(&status), format!("HTTP status {status}"));
    }
    let crawl_message = match (a.robots.noindex, a.robots.nofollow) {
        (true, _) => "robots directives forbid indexing (noindex)".to_string(),
        (false, true) => "indexable, but robots directives forbid following links (nofollow)".to_string(),
        (false, false) => "no robots directive blocks indexing".to_string(),
    };
    check("is-crawlable", High, 10, !a.robots.noindex, crawl_message);
    if let Some(r) = &a.robots_txt {
        let message = match (r.status, r.allowed, &r.matched, r.errors.len()) {
            ("unreachable", ..) => format!("{} could not be fetched: crawlers treat the site as disallowed", r.url),
            (_, false, Some(m), _) => {
                format!("robots.txt blocks this page for Googlebot ({} {} on line {})", m.kind, m.pattern, m.line)
            }
            (_, true, _, 0) if r.status == "missing" => "no robots.txt: every page may be crawled".to_string(),
            (_, true, _, 0) => "robots.txt is valid and allows this page".to_string(),
            (_, true, _, n) => format!("robots.txt allows this page but has {n} invalid line(s): {}", r.errors[0]),
            (_, false, None, _) => "robots.txt blocks this page".to_string(),
        };
        check("robots-txt", High, 10, r.allowed && r.errors.is_empty(), message);
    }

    match &a.title {
        Some(title) => {
            check("document-title", High, 10, true, format!("title: {title:?}"));
            let n = title.chars().count();
            let ok = (TITLE_RANGE.0..=TITLE_RANGE.1).contains(&n);
            check("title-length", Low, 3, ok, length_message("the title", n, TITLE_RANGE));
        }
        None => check("document-title", High, 10, false, "the page has no <title>".into()),
    }
    match &a.meta_description {
        Some(d) if !d.is_empty() => {
            check("meta-description", High, 8, true, format!("meta description: {d:?}"));
            let n = d.chars().count();
            let ok = (DESCRIPTION_RANGE.0..=DESCRIPTION_RANGE.1).contains(&n);
            check("meta-description-length", Low, 3, ok, length_message("the meta description", n, DESCRIPTION_RANGE));
        }
        Some(_) => check("meta-description", High, 8, false, "the meta description is empty".into()),
        None => check("meta-description", High, 8, false, "the page has no meta description".into()),
    }

    let (canonical_ok, canonical_msg) = canonical(a, page_url);
    check("canonical", Medium, 6, canonical_ok, canonical_msg);

    let bad_hreflang: Vec<&str> = a
        .hreflang
        .iter()
        .filter(|h| !valid_hreflang(&h.lang) || h.href.is_none() || is_relative(&h.raw))
        .map(|h| h.lang.as_str())
        .collect();
    let hreflang_msg = match (a.hreflang.len(), bad_hreflang.len()) {
        (0, _) => "no hreflang alternates".to_string(),
        (n, 0) => format!("{n} hreflang alternates, all valid"),
        (_, _) => {
            format!("invalid hreflang entries (bad language code or href that is not absolute): {bad_hreflang:?}")
        }
    };
    check("hreflang", Medium, 4, bad_hreflang.is_empty(), hreflang_msg);

    let l = &a.links;
    check(
        "link-text",
        Medium,
        4,
        l.generic_text == 0,
        match l.generic_text {
            0 => format!("every link's text says where it goes ({} links)", l.total),
            n => format!("{n} of {} links say nothing of their target (\"click here\", \"read more\")", l.total),
        },
    );
    check(
        "crawlable-anchors",
        Medium,
        4,
        l.javascript == 0 && l.script_only == 0,
        match (l.javascript, l.script_only) {
            (0, 0) => "every link has an href a crawler can follow".into(),
            (js, script) => format!("{js} javascript: links and {script} anchors without an href cannot be crawled"),
        },
    );
    let external_nofollow_heavy = l.external >= 5 && l.external_nofollow * 2 > l.external;
    check(
        "external-nofollow",
        Low,
        1,
        !external_nofollow_heavy,
        if external_nofollow_heavy {
            format!("{} of {} external links are nofollow: more than half", l.external_nofollow, l.external)
        } else {
            format!("{} of {} external links are nofollow", l.external_nofollow, l.external)
        },
    );

    let i = &a.images;
    check(
        "image-alt",
        Medium,
        6,
        i.missing_alt == 0,
        match i.missing_alt {
            0 => format!("every image has an alt attribute ({} images)", i.total),
            n => format!("{n} of {} images have no alt attribute", i.total),
        },
    );
    check(
        "image-dimensions",
        Low,
        2,
        i.missing_dimensions == 0,
        match i.missing_dimensions {
            0 => format!("every image has a width and a height ({} images)", i.total),
            n => format!("{n} of {} images lack a width or a height", i.total),
        },
    );

    let viewport_ok = a.viewport.as_deref().is_some_and(|v| v.contains("width") || v.contains("initial-scale"));
    check(
        "viewport",
        Medium,
        6,
        viewport_ok,
        match (&a.viewport, viewport_ok) {
            (None, _) => "the page has no <meta name=viewport>".into(),
            (Some(v), true) => format!("viewport: {v:?}"),
            (Some(v), false) => format!("the viewport {v:?} sets neither a width nor an initial-scale"),
        },
    );
    let lang_ok = a.lang.as_deref().is_some_and(valid_language_tag);
    check(
        "html-lang",
        Medium,
        4,
        lang_ok,
        match (&a.lang, lang_ok) {
            (None, _) => "<html> has no lang".into(),
            (Some(l), true) => format!("lang: {l:?}"),
            (Some(l), false) => format!("lang {l:?} is not a language code"),
        },
    );

    let h = &a.headings;
    let h1_message = match h.h1.as_slice() {
        [] => "the page has no <h1>".to_string(),
        [one] => format!("one <h1>: {one:?}"),
        many => format!("{} <h1> elements where one should name the page", many.len()),
    };
    check("single-h1", Medium, 4, h.h1.len() == 1, h1_message);
    let skipped = skipped_heading_level(a);
    check(
        "heading-order",
        Low,
        2,
        skipped.is_none(),
        skipped.map_or("headings do not skip levels".into(), |(from, to)| {
            format!("heading level jumps from h{from} to h{to}")
        }),
    );
    if let (Some(title), Some(h1)) = (&a.title, h.h1.first()) {
        let same = title.trim().eq_ignore_ascii_case(h1.trim());
        check(
            "title-h1-duplicate",
            Low,
            1,
            !same,
            if same {
                "the title and the h1 are the same words".into()
            } else {
                "the title and the h1 say different things".into()
            },
        );
    }
    check(
        "word-count",
        Low,
        3,
        a.word_count >= MIN_WORDS,
        if a.word_count >= MIN_WORDS {
            format!("{} words of visible text", a.word_count)
        } else {
            format!("only {} words of visible text (under {MIN_WORDS} is thin)", a.word_count)
        },
    );

    let missing_og: Vec<&str> =
        ["og:title", "og:description", "og:image"].into_iter().filter(|k| !a.open_graph.contains_key(*k)).collect();
    check(
        "open-graph",
        Low,
        3,
        missing_og.is_empty(),
        if missing_og.is_empty() {
            "og:title, og:description and og:image present".into()
        } else {
            format!("missing {missing_og:?}")
        },
    );
    check(
        "twitter-card",
        Low,
        1,
        a.twitter.contains_key("twitter:card"),
        a.twitter.get("twitter:card").map_or("no twitter:card".into(), |c| format!("twitter:card {c:?}")),
    );
    let invalid_ld = a.json_ld.iter().filter(|j| !j.valid).count();
    check(
        "structured-data",
        Low,
        2,
        invalid_ld == 0,
        match (a.json_ld.len(), invalid_ld) {
            (0, _) => "no JSON-LD blocks".to_string(),
            (n, 0) => format!("{n} JSON-LD blocks, all valid"),
            (n, bad) => format!("{bad} of {n} JSON-LD blocks do not parse"),
        },
    );
    // Lighthouse's rule: declared by a BOM, the HTTP header, or a <meta> in
    // the first 1,024 bytes; a page browsers must guess for fails.
    let (declared, message) = match a.charset_source {
        "default" => {
            (false, "no charset declared in the Content-Type header or a <meta> in the first 1024 bytes".into())
        }
        source => (true, format!("charset {} declared ({source})", a.charset)),
    };
    check("charset", Low, 2, declared, message);
    // A page that moves itself: search engines may not follow it as a
    // redirect, and a reader loses the back button.
    let (moves, message) = match &a.meta_refresh {
        None => (false, "no meta refresh".to_string()),
        Some(r) => match &r.url {
            Some(url) => (true, format!("a meta refresh sends readers to {url} after {} s", r.delay_seconds)),
            None => (true, format!("a meta refresh reloads the page every {} s", r.delay_seconds)),
        },
    };
    check("meta-refresh", Medium, 5, !moves, message);
    // A page that is only a script sending readers elsewhere: crawlers may
    // index the stub, not the target.
    let stub = a.script_redirect.as_ref().filter(|_| a.word_count < STUB_WORDS);
    let message = match (&a.script_redirect, stub) {
        (_, Some(url)) => {
            format!(
                "a script sends readers to {url} and the page has {} words of its own: a redirect stub",
                a.word_count
            )
        }
        (Some(url), None) => format!("a script may send readers to {url}, but the page has content of its own"),
        (None, _) => "no script redirect".to_string(),
    };
    check("js-redirect", Medium, 5, stub.is_none(), message);
    if a.status_code.is_some() {
        // Every hop is a request a crawler spends, and a chain may lose
        // link equity: link to the final address.
        let message = match a.redirected_from.as_slice() {
            [] => "reached without a redirect".to_string(),
            hops => {
                let chain: Vec<String> = hops.iter().map(|(url, status)| format!("{url} ({status})")).collect();
                let n = hops.len();
                format!(
                    "reached through {n} redirect{}: {} -> {}",
                    if n == 1 { "" } else { "s" },
                    chain.join(" -> "),
                    a.url.as_deref().unwrap_or("?")
                )
            }
        };
        check("redirects", Medium, 4, a.redirected_from.is_empty(), message);
    }

    structure(a, page_url, &mut check);

    let total: u32 = checks.iter().map(|c| u32::from(c.weight)).sum();
    let passed: u32 = checks.iter().filter(|c| c.passed).map(|c| u32::from(c.weight)).sum();
    analysis.score = (passed * 100 + total / 2).checked_div(total).map_or(100, |s| s as u8);
    let mut failed: Vec<&Check> = checks.iter().filter(|c| !c.passed).collect();
    failed.sort_by_key(|c| (c.severity, std::cmp::Reverse(c.weight)));
    analysis.recommendations = failed.iter().map(|c| advice(c)).collect();
    analysis.checks = checks;
}

/// Lighthouse's canonical audit: several, invalid, relative, the site root,
/// another host, or another hreflang page are failures. None is fine.
fn canonical(a: &Analysis, page_url: Option<&Url>) -> (bool, String) {
    let Some(raw) = &a.canonical_raw else {
        return (true, "no canonical link".into());
    };
    let Some(canonical) = a.canonical.as_deref().and_then(|c| Url::parse(c).ok()) else {
        return (false, format!("canonical {raw:?} is not a valid URL"));
    };
    if a.canonical_conflict {
        return (false, "several different canonical links".into());
    }
    if is_relative(raw) {
        return (false, format!("canonical {raw:?} is relative; use an absolute URL"));
    }
    if let Some(page) = page_url {
        if canonical.host_str() != page.host_str() {
            return (false, format!("canonical points to another host: {canonical}"));
        }
        if canonical.path() == "/" && page.path() != "/" {
            return (false, "canonical points to the site root, not this page".into());
        }
        let points_at_alternate = a.hreflang.iter().any(|h| h.href.as_deref() == Some(canonical.as_str()))
            && canonical.as_str() != page.as_str();
        if points_at_alternate {
            return (false, "canonical points to another language version (an hreflang alternate)".into());
        }
    }
    (true, format!("canonical: {canonical}"))
}

/// BCP 47 as hreflang uses it: a 2-3 letter language, optional script and
/// region; or `x-default`.
fn valid_hreflang(code: &str) -> bool {
    code.eq_ignore_ascii_case("x-default") || valid_language_tag(code)
}

fn valid_language_tag(code: &str) -> bool {
    let mut parts = code.split(['-', '_']);
    let lang_ok =
        parts.next().is_some_and(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    let mut rest_ok = true;
    let mut seen_region = false;
    for part in parts {
        let script = part.len() == 4 && part.chars().all(|c| c.is_ascii_alphabetic()) && !seen_region;
        let region = (part.len() == 2 && part.chars().all(|c| c.is_ascii_alphabetic()))
            || (part.len() == 3 && part.chars().all(|c| c.is_ascii_digit()));
        seen_region |= region;
        rest_ok &= script || region;
    }
    lang_ok && rest_ok
}

fn skipped_heading_level(a: &Analysis) -> Option<(u8, u8)> {
    let mut previous: Option<u8> = None;
    for &level in &a.heading_order {
        if let Some(prev) = previous {
            if level > prev + 1 {
                return Some((prev, level));
            }
        }
        previous = Some(level);
    }
    None
}

/// Most elements before a page is heavy to render and to crawl
/// (Lighthouse warns past 800 body elements and fails past 1,400).
const MAX_ELEMENTS: usize = 1_500;

/// The page-structure checks (SEOnaut's beyond Lighthouse's): one title and
/// one description, no metas in the body, no `http:` links or forms on an
/// `https:` page, a clean URL, short alt texts, a DOM of sane size, no
/// preview restrictions, and a fetched page's security headers.
fn structure(a: &Analysis, page_url: Option<&Url>, check: &mut impl FnMut(&'static str, Severity, u8, bool, String)) {
    use Severity::{Low, Medium};
    let s = &a.structure;
    let count = |n: usize, what: &str| match n {
        0 | 1 => format!("at most one {what}"),
        n => format!("{n} {what} elements where one is read"),
    };
    check("multiple-titles", Medium, 3, s.titles <= 1, count(s.titles, "<title>"));
    check("multiple-descriptions", Low, 2, s.descriptions <= 1, count(s.descriptions, "meta description"));
    let in_body = match s.metas_in_body {
        0 => "every <meta name> is in the head".to_string(),
        n => format!("{n} <meta> element(s) in the body, where search engines ignore them"),
    };
    check("meta-in-body", Medium, 3, s.metas_in_body == 0, in_body);
    if page_url.is_some_and(|u| u.scheme() == "https") {
        let links = format!("{} link(s) to http:// URLs from this https page", s.http_links);
        check("http-links", Low, 2, s.http_links == 0, links);
        let forms = format!("{} form(s) sending to http:// from this https page", s.insecure_forms);
        check("insecure-forms", Medium, 3, s.insecure_forms == 0, forms);
    }
    if let Some(url) = page_url {
        let path = url.path();
        let mut flaws = Vec::new();
        if path.contains('_') {
            flaws.push("underscores");
        }
        if path.contains("%20") {
            flaws.push("spaces");
        }
        if path.contains("//") {
            flaws.push("repeated slashes");
        }
        let message = match flaws.as_slice() {
            [] => "the URL's path is plain".to_string(),
            flaws => format!("the URL's path has {}", flaws.join(", ")),
        };
        check("url-format", Low, 1, flaws.is_empty(), message);
    }
    let alt = format!("{} image(s) with alt text over {LONG_ALT} characters", s.long_alts);
    check("long-alt-text", Low, 1, s.long_alts == 0, alt);
    let (repeats, named) = &s.duplicate_ids;
    let ids = match repeats {
        0 => "every id is used once".to_string(),
        n => format!(
            "{n} repeated id(s), such as {}",
            named.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
        ),
    };
    check("duplicate-ids", Low, 1, *repeats == 0, ids);
    let dom = format!("{} elements (aim for at most {MAX_ELEMENTS})", s.elements);
    check("dom-size", Low, 2, s.elements <= MAX_ELEMENTS, dom);
    let directives: Vec<&str> = [a.robots.content.as_deref()]
        .into_iter()
        .flatten()
        .chain(a.robots.x_robots_tag.iter().map(String::as_str))
        .flat_map(|c| c.split(','))
        .map(str::trim)
        .filter(|d| d.eq_ignore_ascii_case("nosnippet") || d.eq_ignore_ascii_case("noimageindex"))
        .collect();
    let preview = match directives.as_slice() {
        [] => "no directive limits how results show the page".to_string(),
        found => format!("robots directives limit the page's search previews: {}", found.join(", ")),
    };
    check("preview-restrictions", Low, 1, directives.is_empty(), preview);
    if let Some(headers) = s.security {
        let https = page_url.is_some_and(|u| u.scheme() == "https");
        let mut missing = Vec::new();
        if https && !headers.hsts {
            missing.push("Strict-Transport-Security");
        }
        if !headers.csp {
            missing.push("Content-Security-Policy");
        }
        if !headers.nosniff {
            missing.push("X-Content-Type-Options: nosniff");
        }
        let message = match missing.as_slice() {
            [] => "the response has its security headers".to_string(),
            missing => format!("the response lacks {}", missing.join(", ")),
        };
        check("security-headers", Low, 2, missing.is_empty(), message);
    }
}

/// A recommendation for a person, from a failed check.
fn advice(check: &Check) -> String {
    let what = match check.id {
        "http-status-code" => "Serve the page with a 2xx status; search engines drop pages that answer with errors",
        "robots-txt" => {
            "Fix robots.txt: let crawlers fetch this page, make it reachable, and keep every line a valid directive"
        }
        "is-crawlable" => {
            "Remove the noindex directive (meta robots or X-Robots-Tag) if this page should appear in search"
        }
        "document-title" => "Add a <title> that says what the page is about",
        "title-length" => "Rewrite the title to 30-60 characters so it is neither vague nor cut off in results",
        "meta-description" => "Add a meta description that summarises the page; it often becomes the search snippet",
        "meta-description-length" => "Keep the meta description between 70 and 160 characters",
        "canonical" => "Fix the canonical link: one absolute URL pointing at this page's preferred address",
        "hreflang" => "Use valid language codes (e.g. en, en-GB, x-default) and absolute URLs in hreflang links",
        "link-text" => "Replace link text such as \"click here\" with words that describe the target",
        "crawlable-anchors" => {
            "Give every link a real href; javascript: links and onclick-only anchors cannot be crawled"
        }
        "external-nofollow" => "Review why most external links are nofollow; use sponsored or ugc where they apply",
        "image-alt" => "Add alt text to images that carry meaning (alt=\"\" for decorative ones)",
        "image-dimensions" => "Give images width and height to prevent layout shift",
        "viewport" => "Add <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"> for mobile",
        "html-lang" => "Declare the page language with a valid code on <html lang>",
        "single-h1" => "Use exactly one <h1> that names the page's topic",
        "heading-order" => "Do not skip heading levels (h2 after h1, h3 after h2)",
        "title-h1-duplicate" => "Make the title and the h1 complement each other rather than repeat",
        "word-count" => "Add substantive content; pages with little text rank poorly",
        "open-graph" => "Add og:title, og:description and og:image so shared links render well",
        "twitter-card" => "Add a twitter:card meta tag",
        "structured-data" => "Fix the JSON-LD blocks that do not parse",
        "charset" => "Declare the character encoding with <meta charset=\"utf-8\">",
        "meta-refresh" => "Replace the meta refresh with an HTTP 301 redirect to the page's one address",
        "js-redirect" => "Replace the script redirect with an HTTP 301 redirect from the server",
        "redirects" => "Link to the final address, and make old addresses redirect there in one 301 hop",
        "multiple-titles" => "Keep one <title>: search engines pick one of several, not always the one meant",
        "multiple-descriptions" => "Keep one meta description",
        "meta-in-body" => "Move <meta> elements into the <head>: in the body they are ignored",
        "http-links" => "Link to the https:// addresses of pages that have them",
        "insecure-forms" => "Send forms to https:// addresses: browsers warn before sending them in clear",
        "url-format" => "Use hyphens, not underscores or spaces, and single slashes in URL paths",
        "long-alt-text" => {
            "Keep alt text short (at most 100 characters): it labels the image, it does not describe the page"
        }
        "dom-size" => "Trim the page's markup: a large DOM is slow to render and to crawl",
        "duplicate-ids" => "Give each element its own id: anchors, labels and scripts find only the first",
        "preview-restrictions" => "Remove nosnippet or noimageindex unless the page must hide its previews",
        "security-headers" => {
            "Send Strict-Transport-Security, Content-Security-Policy and X-Content-Type-Options: nosniff"
        }
        _ => "Fix this check",
    };
    format!("{what} ({}).", check.message)
}
