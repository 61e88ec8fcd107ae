//! The analysis result (the shape of DESIGN.md), built from the page model:
//! URLs resolved against the document base, links classified, counts taken.

use super::robots_txt::{self, RobotsReport, RobotsSource};
use std::collections::BTreeMap;

use serde::Serialize;
use url::Url;

use super::checks::Check;
use super::page::Page;

/// What the caller knows about the page besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the page was published (or fetched from).
    pub url: Option<Url>,
    /// HTTP status, when fetched.
    pub status_code: Option<u16>,
    /// HTTP `Content-Type`, when fetched (its charset wins over `<meta>`).
    pub content_type: Option<String>,
    /// The page came as Unicode text (a JSON string), not as bytes: it is
    /// UTF-8 whatever its `<meta charset>` says.
    pub unicode: bool,
    /// Hash the visible text ([`Analysis::text_hash`]), for a site audit.
    pub hash_text: bool,
    /// The security headers of the response, when fetched.
    pub security_headers: Option<SecurityHeaders>,
    /// HTTP `X-Robots-Tag` values, when fetched.
    pub x_robots_tag: Vec<String>,
    /// Include the list of links, not only their counts.
    pub include_links: bool,
    /// Include the list of images, not only their counts.
    pub include_images: bool,
    /// The site's robots.txt (its URL and what fetching it found), when fetched.
    pub robots_txt: Option<(String, RobotsSource)>,
    /// The redirects followed to reach `url`, when fetched: each URL that
    /// answered with one, and its status.
    pub redirected_from: Vec<(String, u16)>,
}

/// Which security headers a fetched page's response has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityHeaders {
    /// `Strict-Transport-Security`.
    pub hsts: bool,
    /// `Content-Security-Policy`.
    pub csp: bool,
    /// `X-Content-Type-Options: nosniff`.
    pub nosniff: bool,
}

impl SecurityHeaders {
    /// The headers a response has, by the value of each named header.
    pub fn of<'a>(header: impl Fn(&str) -> Option<&'a str>) -> SecurityHeaders {
        SecurityHeaders {
            hsts: header("strict-transport-security").is_some(),
            csp: header("content-security-policy").is_some(),
            nosniff: header("x-content-type-options").is_some_and(|v| v.trim().eq_ignore_ascii_case("nosniff")),
        }
    }
}

/// The full analysis of one page.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// The page URL, if known.
    pub url: Option<String>,
    /// HTTP status, if fetched.
    pub status_code: Option<u16>,
    /// Fetch timings; filled in by the fetcher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<serde_json::Value>,
    /// What the site's robots.txt says about this page (for Googlebot), when fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robots_txt: Option<RobotsReport>,
    /// The first `<title>` outside SVG.
    pub title: Option<String>,
    /// The first `<meta name=description>`.
    pub meta_description: Option<String>,
    /// The canonical URL, resolved.
    pub canonical: Option<String>,
    /// The canonical `href` as written.
    pub canonical_raw: Option<String>,
    /// Robots directives.
    pub robots: Robots,
    /// `<html lang>`.
    pub lang: Option<String>,
    /// `<meta name=viewport>` content.
    pub viewport: Option<String>,
    /// The charset the page declares, else the one it was decoded with.
    pub charset: String,
    /// Where the encoding it was decoded with came from: `bom`, `http` (the
    /// `Content-Type` charset), `meta` (a `<meta>` in the first 1,024 bytes)
    /// or `default` (declared nowhere a browser looks: guessed).
    pub charset_source: &'static str,
    /// Headings by level, in document order.
    pub headings: Headings,
    /// Link counts and items.
    pub links: Links,
    /// Image counts and items.
    pub images: Images,
    /// Open Graph properties.
    pub open_graph: BTreeMap<String, String>,
    /// Twitter card tags.
    pub twitter: BTreeMap<String, String>,
    /// hreflang alternates.
    pub hreflang: Vec<Hreflang>,
    /// JSON-LD blocks.
    pub json_ld: Vec<JsonLd>,
    /// Words of visible text.
    pub word_count: usize,
    /// A hash of the visible text, when [`Options::hash_text`] asked for it.
    #[serde(skip)]
    pub text_hash: Option<u64>,
    /// A `<meta http-equiv=refresh>`: a reload, or a redirect done by the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_refresh: Option<MetaRefresh>,
    /// Where an inline script that sets `location` sends the reader (resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_redirect: Option<String>,
    /// Every check, passed or not.
    pub checks: Vec<Check>,
    /// 0-100, from the checks' weights.
    pub score: u8,
    /// What to fix, most important first.
    pub recommendations: Vec<String>,
    /// Heading levels in document order, for the heading-order check.
    #[serde(skip)]
    pub(crate) heading_order: Vec<u8>,
    /// Several canonical links that resolve to different URLs.
    #[serde(skip)]
    pub(crate) canonical_conflict: bool,
    /// The redirects followed to reach the page, when fetched (the fetch
    /// section lists them as `redirect_chain`).
    #[serde(skip)]
    pub(crate) redirected_from: Vec<(String, u16)>,
    /// `<link rel=next|prev|alternate>` targets (not hreflang), resolved:
    /// pages a crawler follows.
    #[serde(skip)]
    pub related_links: Vec<String>,
    /// What the page-structure checks read: counts of titles,
    /// descriptions, metas in the body, insecure links and forms, long
    /// alt texts, elements; and the response's security headers.
    #[serde(skip)]
    pub(crate) structure: Structure,
}

/// What the page-structure checks read (not part of the result).
#[derive(Debug, Clone, Default)]
pub(crate) struct Structure {
    pub(crate) titles: usize,
    pub(crate) descriptions: usize,
    pub(crate) metas_in_body: usize,
    /// `http:` links, when the page is on `https:`.
    pub(crate) http_links: usize,
    /// Forms posting to `http:`, when the page is on `https:`.
    pub(crate) insecure_forms: usize,
    /// Alt texts longer than [`LONG_ALT`] characters.
    pub(crate) long_alts: usize,
    pub(crate) elements: usize,
    pub(crate) duplicate_ids: (usize, Vec<String>),
    pub(crate) security: Option<SecurityHeaders>,
}

/// Alt text longer than this is a description, not a label (SEOnaut's bound).
pub(crate) const LONG_ALT: usize = 100;

/// Robots directives from `<meta>` and `X-Robots-Tag`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Robots {
    /// `<meta name=robots>` content, lowercased.
    pub content: Option<String>,
    /// Indexing is forbidden (for all crawlers, or for Googlebot).
    pub noindex: bool,
    /// Following links is forbidden.
    pub nofollow: bool,
    /// Per-crawler meta rules (`googlebot`, `bingbot`, ...).
    pub agents: BTreeMap<String, String>,
    /// `X-Robots-Tag` header values.
    pub x_robots_tag: Vec<String>,
}

/// Headings h1-h6.
#[derive(Debug, Clone, Default, Serialize)]
#[allow(missing_docs)]
pub struct Headings {
    pub h1: Vec<String>,
    pub h2: Vec<String>,
    pub h3: Vec<String>,
    pub h4: Vec<String>,
    pub h5: Vec<String>,
    pub h6: Vec<String>,
}

/// What a `<meta http-equiv=refresh>` does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetaRefresh {
    /// Seconds before it acts.
    pub delay_seconds: f64,
    /// Where it goes (resolved); `None` for a reload of the page itself.
    pub url: Option<String>,
}

/// Parses a refresh's content (`5`, `0; url=/next`, `0;URL='x'`) against `base`.
fn meta_refresh(content: &str, base: Option<&Url>) -> MetaRefresh {
    let (delay, rest) = content.split_once([';', ',']).unwrap_or((content, ""));
    let delay_seconds = delay.trim().parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0).unwrap_or(0.0);
    let rest = rest.trim();
    let target = match rest.get(..4) {
        Some(key) if key.eq_ignore_ascii_case("url=") => &rest[4..],
        _ => rest,
    };
    let target = target.trim().trim_matches(|c| c == '\'' || c == '"');
    let url = (!target.is_empty()).then(|| resolved_or_raw(target, base));
    MetaRefresh { delay_seconds, url }
}

/// `target` resolved against `base`, or as written when it does not resolve.
fn resolved_or_raw(target: &str, base: Option<&Url>) -> String {
    resolve(base, target).map_or_else(|_| target.to_string(), String::from)
}

/// How a link relates to the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// Same host as the page.
    Internal,
    /// Another host.
    External,
    /// `""` or `#fragment`.
    SamePage,
    /// `javascript:`.
    Javascript,
    /// `mailto:`, `tel:` and other non-HTTP schemes.
    OtherScheme,
    /// An `href` that is not a valid URL.
    Invalid,
}

/// One link.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// The resolved URL (the raw value when it cannot be resolved).
    pub href: String,
    /// The `href` as written.
    pub raw: String,
    /// Anchor text.
    pub text: String,
    /// Its kind.
    pub kind: LinkKind,
    /// `rel` tokens.
    pub rel: Vec<String>,
}

/// Link counts (and the links, when asked for).
#[derive(Debug, Clone, Default, Serialize)]
#[allow(missing_docs)]
pub struct Links {
    pub total: usize,
    pub internal: usize,
    pub external: usize,
    pub same_page: usize,
    pub javascript: usize,
    pub other_scheme: usize,
    pub invalid: usize,
    pub nofollow: usize,
    pub external_nofollow: usize,
    pub sponsored: usize,
    pub ugc: usize,
    /// Anchors whose text says nothing ("click here", "read more").
    pub generic_text: usize,
    /// Anchors with no text at all.
    pub empty_text: usize,
    /// `<a onclick>` without `href`: not crawlable.
    pub script_only: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Link>>,
}

/// One image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageItem {
    /// The resolved `src`.
    pub src: Option<String>,
    /// `alt`: absent is `null`, empty is `""`.
    pub alt: Option<String>,
    /// Both `width` and `height` are given.
    pub has_dimensions: bool,
}

/// Image counts (and the images, when asked for).
#[derive(Debug, Clone, Default, Serialize)]
#[allow(missing_docs)]
pub struct Images {
    pub total: usize,
    pub missing_alt: usize,
    pub empty_alt: usize,
    pub missing_dimensions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ImageItem>>,
}

/// An hreflang alternate.
#[derive(Debug, Clone, Serialize)]
pub struct Hreflang {
    /// The language code as written.
    pub lang: String,
    /// The resolved URL.
    pub href: Option<String>,
    /// The `href` as written.
    pub raw: String,
}

/// A JSON-LD block.
#[derive(Debug, Clone, Serialize)]
pub struct JsonLd {
    /// Whether it parsed as JSON.
    pub valid: bool,
    /// Its `@type` values (top level and in `@graph`).
    pub types: Vec<String>,
    /// The parse error, if invalid.
    pub error: Option<String>,
}

/// Anchor texts that say nothing about the target (Lighthouse's list, English).
const GENERIC_LINK_TEXT: &[&str] = &[
    "click here",
    "click this",
    "go",
    "here",
    "information",
    "learn more",
    "more",
    "more info",
    "more information",
    "right here",
    "read more",
    "see more",
    "start",
    "this",
    "link",
    "continue",
];

/// Whether an anchor text is one of [`GENERIC_LINK_TEXT`], ignoring case
/// and the punctuation around it.
fn is_generic(text: &str) -> bool {
    let core = text.trim_matches(|c: char| !c.is_alphanumeric());
    if core.is_ascii() {
        GENERIC_LINK_TEXT.iter().any(|generic| generic.eq_ignore_ascii_case(core))
    } else {
        // Lowercasing can shrink a character to a third of its bytes (K, the
        // Kelvin sign, is k); longer texts cannot match.
        core.len() <= 48 && GENERIC_LINK_TEXT.contains(&core.to_lowercase().as_str())
    }
}

/// The base URL for relative references: `<base href>` resolved against the
/// page URL, else the page URL.
pub fn document_base(page_url: Option<&Url>, base_href: Option<&str>) -> Option<Url> {
    match (page_url, base_href) {
        (Some(url), Some(href)) => url.join(href).ok().or_else(|| Some(url.clone())),
        (None, Some(href)) => Url::parse(href).ok(),
        (url, None) => url.cloned(),
    }
}

/// Resolves `raw` against `base` (absolute references need no base).
pub fn resolve(base: Option<&Url>, raw: &str) -> Result<Url, url::ParseError> {
    match base {
        Some(base) => base.join(raw),
        None => Url::parse(raw),
    }
}

/// Whether `raw` is a relative reference (no scheme).
pub fn is_relative(raw: &str) -> bool {
    Url::parse(raw) == Err(url::ParseError::RelativeUrlWithoutBase)
}

fn classify(raw: &str, resolved: &Result<Url, url::ParseError>, page_host: Option<&str>) -> LinkKind {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return LinkKind::SamePage;
    }
    // Compared as bytes: slicing the str at 11 could split a character.
    if trimmed.as_bytes().get(..11).is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"javascript:")) {
        return LinkKind::Javascript;
    }
    match resolved {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => LinkKind::OtherScheme,
        Ok(url) => match (url.host_str(), page_host) {
            (Some(host), Some(page)) if host.eq_ignore_ascii_case(page) => LinkKind::Internal,
            (Some(_), Some(_)) => LinkKind::External,
            // No page URL: a relative link stays on the site, an absolute one leaves it.
            (Some(_), None) => LinkKind::External,
            (None, _) => LinkKind::Invalid,
        },
        // Without a base, a relative reference cannot resolve, and is internal.
        Err(url::ParseError::RelativeUrlWithoutBase) if page_host.is_none() => LinkKind::Internal,
        Err(_) => LinkKind::Invalid,
    }
}

/// Builds the result from the page model (checks, score and
/// recommendations are added by the caller).
pub fn build(page: Page, options: &Options, charset: String, charset_source: &'static str) -> Analysis {
    let base = document_base(options.url.as_ref(), page.base_href.as_deref());
    let page_host = options.url.as_ref().and_then(|u| u.host_str()).map(str::to_string);

    let mut links = Links { script_only: page.script_only_anchors, ..Links::default() };
    let mut items = Vec::new();
    let secure = options.url.as_ref().is_some_and(|u| u.scheme() == "https");
    let mut structure = Structure {
        titles: page.titles.len(),
        descriptions: page.descriptions.len(),
        metas_in_body: page.metas_in_body,
        elements: page.elements,
        duplicate_ids: page.duplicate_ids,
        security: options.security_headers,
        long_alts: page.images.iter().filter(|i| i.alt.as_ref().is_some_and(|a| a.chars().count() > LONG_ALT)).count(),
        ..Structure::default()
    };
    if secure {
        let insecure = |raw: &str| resolve(base.as_ref(), raw).is_ok_and(|u| u.scheme() == "http");
        structure.insecure_forms = page.form_actions.iter().filter(|a| insecure(a)).count();
    }
    for anchor in page.anchors {
        let resolved = resolve(base.as_ref(), &anchor.href);
        structure.http_links += usize::from(secure && resolved.as_ref().is_ok_and(|u| u.scheme() == "http"));
        let kind = classify(&anchor.href, &resolved, page_host.as_deref());
        let has = |t: &str| anchor.rel.iter().any(|r| r == t);
        links.total += 1;
        match kind {
            LinkKind::Internal => links.internal += 1,
            LinkKind::External => links.external += 1,
            LinkKind::SamePage => links.same_page += 1,
            LinkKind::Javascript => links.javascript += 1,
            LinkKind::OtherScheme => links.other_scheme += 1,
            LinkKind::Invalid => links.invalid += 1,
        }
        links.nofollow += usize::from(has("nofollow"));
        links.external_nofollow += usize::from(has("nofollow") && kind == LinkKind::External);
        links.sponsored += usize::from(has("sponsored"));
        links.ugc += usize::from(has("ugc"));
        links.generic_text += usize::from(is_generic(&anchor.text));
        links.empty_text += usize::from(anchor.text.is_empty());
        if options.include_links {
            items.push(Link {
                href: resolved.map_or_else(|_| anchor.href.clone(), String::from),
                raw: anchor.href,
                text: anchor.text,
                kind,
                rel: anchor.rel,
            });
        }
    }
    links.items = options.include_links.then_some(items);

    let mut images = Images { total: page.images.len(), ..Images::default() };
    let mut image_items = Vec::new();
    for image in page.images {
        images.missing_alt += usize::from(image.alt.is_none());
        images.empty_alt += usize::from(image.alt.as_deref() == Some(""));
        images.missing_dimensions += usize::from(!image.has_dimensions);
        if options.include_images {
            let src = image.src.map(|s| resolve(base.as_ref(), &s).map_or(s, String::from));
            image_items.push(ImageItem { src, alt: image.alt, has_dimensions: image.has_dimensions });
        }
    }
    images.items = options.include_images.then_some(image_items);

    let mut headings = Headings::default();
    let heading_order = page.headings.iter().map(|(level, _)| *level).collect();
    for (level, text) in page.headings {
        let list = match level {
            1 => &mut headings.h1,
            2 => &mut headings.h2,
            3 => &mut headings.h3,
            4 => &mut headings.h4,
            5 => &mut headings.h5,
            _ => &mut headings.h6,
        };
        list.push(text);
    }

    let canonical_raw = page.canonicals.first().cloned();
    let resolved_canonicals: Vec<Option<Url>> =
        page.canonicals.iter().map(|raw| resolve(base.as_ref(), raw).ok()).collect();
    let canonical_conflict = resolved_canonicals.windows(2).any(|w| w[0] != w[1]);
    let canonical = canonical_raw.as_deref().and_then(|raw| resolve(base.as_ref(), raw).ok()).map(String::from);
    let hreflang = page
        .hreflang
        .into_iter()
        .map(|(lang, raw)| Hreflang { lang, href: resolve(base.as_ref(), &raw).ok().map(String::from), raw })
        .collect();
    let json_ld = page.json_ld.iter().map(|block| json_ld(block)).collect();
    let related_links =
        page.related_links.iter().filter_map(|raw| resolve(base.as_ref(), raw).ok()).map(String::from).collect();

    let mut robots = Robots { x_robots_tag: options.x_robots_tag.clone(), ..Robots::default() };
    for (agent, content) in page.robots {
        if agent == "robots" {
            robots.content.get_or_insert(content);
        } else {
            robots.agents.entry(agent).or_insert(content);
        }
    }
    let (noindex, nofollow) = robots_flags(&robots);
    robots.noindex = noindex;
    robots.nofollow = nofollow;

    let robots_txt = match (&options.robots_txt, &options.url) {
        (Some((robots_url, source)), Some(url)) => {
            let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
            Some(robots_txt::judge(robots_url, source, "googlebot", path))
        }
        _ => None,
    };

    Analysis {
        url: options.url.as_ref().map(Url::to_string),
        status_code: options.status_code,
        fetch: None,
        robots_txt,
        title: page.titles.into_iter().next(),
        meta_description: page.descriptions.into_iter().next(),
        canonical,
        canonical_raw,
        robots,
        lang: page.lang,
        viewport: page.viewport,
        charset: page.meta_charset.unwrap_or(charset),
        charset_source,
        headings,
        links,
        images,
        open_graph: page.open_graph,
        twitter: page.twitter,
        hreflang,
        json_ld,
        word_count: page.word_count,
        text_hash: page.text_hash,
        meta_refresh: page.refresh.as_deref().map(|c| meta_refresh(c, base.as_ref())),
        script_redirect: page.script_redirect.map(|u| resolved_or_raw(&u, base.as_ref())),
        checks: Vec::new(),
        score: 0,
        recommendations: Vec::new(),
        heading_order,
        canonical_conflict,
        related_links,
        structure,
        redirected_from: options.redirected_from.clone(),
    }
}

/// `noindex` / `nofollow` for all crawlers or Googlebot, from the meta rules
/// and `X-Robots-Tag` (whose values may name an agent: `googlebot: noindex`).
fn robots_flags(robots: &Robots) -> (bool, bool) {
    let mut rules: Vec<&str> = robots.content.iter().map(String::as_str).collect();
    rules.extend(robots.agents.get("googlebot").map(String::as_str));
    let header_rules: Vec<String> = robots
        .x_robots_tag
        .iter()
        .filter_map(|value| {
            let value = value.to_ascii_lowercase();
            match value.split_once(':') {
                // `unavailable_after: date` is a directive, not an agent.
                Some((agent, rest))
                    if !agent.contains(',') && !agent.trim().contains(' ') && agent.trim() != "unavailable_after" =>
                {
                    matches!(agent.trim(), "googlebot" | "robots" | "*").then(|| rest.to_string())
                }
                _ => Some(value),
            }
        })
        .collect();
    rules.extend(header_rules.iter().map(String::as_str));
    let has = |directive: &str| rules.iter().any(|r| r.split(',').any(|t| t.trim() == directive));
    (has("noindex") || has("none"), has("nofollow") || has("none"))
}

fn json_ld(block: &str) -> JsonLd {
    match serde_json::from_str::<serde_json::Value>(block.trim()) {
        Ok(value) => {
            let mut types = Vec::new();
            let mut collect = |v: &serde_json::Value| match v.get("@type") {
                Some(serde_json::Value::String(t)) => types.push(t.clone()),
                Some(serde_json::Value::Array(ts)) => {
                    types.extend(ts.iter().filter_map(|t| t.as_str().map(String::from)))
                }
                _ => {}
            };
            let roots: Vec<&serde_json::Value> = match &value {
                serde_json::Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for root in roots {
                collect(root);
                if let Some(serde_json::Value::Array(graph)) = root.get("@graph") {
                    graph.iter().for_each(&mut collect);
                }
            }
            JsonLd { valid: true, types, error: None }
        }
        Err(e) => JsonLd { valid: false, types: Vec::new(), error: Some(e.to_string()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_link_text_ignores_case_and_punctuation() {
        for text in ["Click HERE!", "« More »", "read more…", "LEARN MORE", "lin\u{212A}"] {
            assert!(is_generic(text), "{text:?}");
        }
        for text in ["", "Batter recipe", "here and there", "mehr"] {
            assert!(!is_generic(text), "{text:?}");
        }
    }

    #[test]
    fn links_are_classified_against_the_page_host() {
        let page = Url::parse("https://www.example.com/a/b.html").unwrap();
        let host = Some("www.example.com");
        let base = document_base(Some(&page), None);
        let kind = |raw: &str| classify(raw, &resolve(base.as_ref(), raw), host);
        assert_eq!(kind("/x"), LinkKind::Internal);
        assert_eq!(kind("c.html"), LinkKind::Internal);
        assert_eq!(kind("HTTPS://WWW.EXAMPLE.COM/y"), LinkKind::Internal);
        assert_eq!(kind("https://shop.example.com/"), LinkKind::External);
        assert_eq!(kind("//cdn.example.net/z"), LinkKind::External);
        assert_eq!(kind(""), LinkKind::SamePage);
        assert_eq!(kind("#top"), LinkKind::SamePage);
        assert_eq!(kind("JavaScript:void(0)"), LinkKind::Javascript);
        assert_eq!(kind("mailto:a@b.c"), LinkKind::OtherScheme);
        assert_eq!(kind("tel:+1"), LinkKind::OtherScheme);
        assert_eq!(kind("http://[bad"), LinkKind::Invalid);
        // Found by fuzzing: a multi-byte character across byte 11 once panicked.
        assert_eq!(kind("contri\u{fffd}\u{fffd}html"), LinkKind::Internal);
        assert_eq!(kind("javascript\u{e9}:x"), LinkKind::Internal);
    }

    #[test]
    fn base_href_moves_relative_links() {
        let page = Url::parse("https://example.com/a/b.html").unwrap();
        let base = document_base(Some(&page), Some("/docs/")).unwrap();
        assert_eq!(resolve(Some(&base), "x.html").unwrap().as_str(), "https://example.com/docs/x.html");
        let base = document_base(Some(&page), Some("https://other.org/")).unwrap();
        assert_eq!(classify("p", &resolve(Some(&base), "p"), Some("example.com")), LinkKind::External);
    }

    #[test]
    fn robots_rules_from_meta_and_header() {
        let mut r = Robots { content: Some("index, follow".into()), ..Robots::default() };
        assert_eq!(robots_flags(&r), (false, false));
        r.agents.insert("googlebot".into(), "noindex".into());
        assert_eq!(robots_flags(&r), (true, false));
        let h =
            Robots { x_robots_tag: vec!["bingbot: noindex".into(), "googlebot: nofollow".into()], ..Robots::default() };
        assert_eq!(robots_flags(&h), (false, true));
        let h = Robots { x_robots_tag: vec!["none".into()], ..Robots::default() };
        assert_eq!(robots_flags(&h), (true, true));
        let h = Robots { x_robots_tag: vec!["unavailable_after: 25 Jun 2010".into()], ..Robots::default() };
        assert_eq!(robots_flags(&h), (false, false));
    }

    #[test]
    fn json_ld_types_and_errors() {
        let ok = json_ld(
            r#"{"@context":"https://schema.org","@graph":[{"@type":"Organization"},{"@type":["WebSite","Thing"]}]}"#,
        );
        assert!(ok.valid);
        assert_eq!(ok.types, ["Organization", "WebSite", "Thing"]);
        let bad = json_ld("{\"@type\": ");
        assert!(!bad.valid && bad.error.is_some());
    }

    #[test]
    fn meta_refresh_contents() {
        let base = Url::parse("https://example.com/dir/page").ok();
        let r = |c: &str| meta_refresh(c, base.as_ref());
        assert_eq!(r("5"), MetaRefresh { delay_seconds: 5.0, url: None });
        assert_eq!(r("0; url=/next").url.as_deref(), Some("https://example.com/next"));
        assert_eq!(r("0;URL='other'").url.as_deref(), Some("https://example.com/dir/other"));
        assert_eq!(r("3, https://x.example/").url.as_deref(), Some("https://x.example/"));
        assert_eq!(r("soon; url=").delay_seconds, 0.0);
        assert_eq!(r("é;é").url.as_deref(), Some("https://example.com/dir/%C3%A9"));
    }
}
