//! robots.txt (RFC 9309): groups of `user-agent` lines with `allow` and
//! `disallow` rules; the most specific (longest) matching rule decides, and
//! `allow` wins a tie; `*` matches any run of characters, a final `$`
//! anchors the end. Lines that are not rules are reported, as Lighthouse's
//! `robots-txt` audit does.

use serde::Serialize;

/// How the site's robots.txt was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotsSource {
    /// It was fetched: its text.
    Found(String),
    /// The server answered this 4xx: no robots.txt, everything allowed.
    Missing(u16),
    /// A 5xx or a failed fetch: crawlers treat the site as disallowed.
    Unreachable(String),
}

/// A rule that decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matched {
    /// `allow` or `disallow`.
    pub kind: &'static str,
    /// The rule's path pattern.
    pub pattern: String,
    /// The line it is on (1-based).
    pub line: usize,
}

/// What robots.txt says about one page.
#[derive(Debug, Clone, Serialize)]
pub struct RobotsReport {
    /// Where it was looked for.
    pub url: String,
    /// `found`, `missing` or `unreachable`.
    pub status: &'static str,
    /// Whether Googlebot (or, without a group for it, any crawler) may fetch the page.
    pub allowed: bool,
    /// The rule that decided, if one matched.
    pub matched: Option<Matched>,
    /// Lines that are not valid directives, with their numbers.
    pub errors: Vec<String>,
    /// `sitemap` URLs it lists.
    pub sitemaps: Vec<String>,
    /// The `crawl-delay` (seconds) of the group that applies, for crawlers
    /// that pace themselves by it.
    #[serde(skip)]
    pub crawl_delay: Option<f64>,
}

#[derive(Debug, Default)]
struct Group {
    agents: Vec<String>,
    rules: Vec<(bool, String, usize)>,
    delay: Option<f64>,
}

/// Longest robots.txt read (Google reads the first 500 KiB).
pub const MAX_BYTES: usize = 500 * 1024;

/// Where the robots.txt of `page`'s origin is.
pub fn location(page: &url::Url) -> url::Url {
    let mut url = page.clone();
    url.set_path("/robots.txt");
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// What a robots.txt response with `status` and `body` says: its text
/// (the first [`MAX_BYTES`]) for a 2xx, none for a 4xx, and unreachable
/// for anything else.
pub fn source(status: u16, body: &[u8]) -> RobotsSource {
    match status {
        200..=299 => RobotsSource::Found(String::from_utf8_lossy(&body[..body.len().min(MAX_BYTES)]).into_owned()),
        400..=499 => RobotsSource::Missing(status),
        _ => RobotsSource::Unreachable(format!("HTTP {status}")),
    }
}

/// Judges `path` (path and query of the page) for `agent` (lower case).
pub fn judge(url: &str, source: &RobotsSource, agent: &str, path: &str) -> RobotsReport {
    let bare = |status, allowed| RobotsReport {
        url: url.into(),
        status,
        allowed,
        matched: None,
        errors: Vec::new(),
        sitemaps: Vec::new(),
        crawl_delay: None,
    };
    let text = match source {
        RobotsSource::Found(text) => text.as_str(),
        RobotsSource::Missing(_) => return bare("missing", true),
        RobotsSource::Unreachable(_) => return bare("unreachable", false),
    };
    let text = &text[..floor_boundary(text, MAX_BYTES)];
    let (groups, errors, sitemaps) = parse(text);
    // The group naming the agent, else the `*` group; rules of every matching group combine.
    let named: Vec<&Group> = groups.iter().filter(|g| g.agents.iter().any(|a| a == agent)).collect();
    let chosen =
        if named.is_empty() { groups.iter().filter(|g| g.agents.iter().any(|a| a == "*")).collect() } else { named };
    let mut best: Option<(usize, bool, &str, usize)> = None;
    let crawl_delay = chosen.iter().filter_map(|g| g.delay).reduce(f64::max);
    for group in chosen {
        for (allow, pattern, line) in &group.rules {
            if pattern.is_empty() || !matches(pattern, path) {
                continue;
            }
            let len = pattern.len();
            let better = match best {
                None => true,
                Some((l, a, _, _)) => len > l || (len == l && *allow && !a),
            };
            if better {
                best = Some((len, *allow, pattern, *line));
            }
        }
    }
    let matched = best.map(|(_, allow, pattern, line)| Matched {
        kind: if allow { "allow" } else { "disallow" },
        pattern: pattern.to_string(),
        line,
    });
    let allowed = best.is_none_or(|(_, allow, _, _)| allow) || path == "/robots.txt";
    RobotsReport { url: url.into(), status: "found", allowed, matched, errors, sitemaps, crawl_delay }
}

fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Groups, invalid lines, sitemaps.
fn parse(text: &str) -> (Vec<Group>, Vec<String>, Vec<String>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut errors = Vec::new();
    let mut sitemaps = Vec::new();
    // A run of user-agent lines opens a group; a rule after it closes the run.
    let mut in_agents = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            errors.push(format!("line {}: not a directive: {raw:?}", n + 1));
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "user-agent" => {
                if !in_agents || groups.is_empty() {
                    groups.push(Group::default());
                }
                in_agents = true;
                if let Some(g) = groups.last_mut() {
                    g.agents.push(value.to_ascii_lowercase());
                }
            }
            kind @ ("allow" | "disallow") => {
                in_agents = false;
                match groups.last_mut() {
                    Some(g) => g.rules.push((kind == "allow", value.to_string(), n + 1)),
                    None => errors.push(format!("line {}: {kind} before any user-agent", n + 1)),
                }
                if !value.is_empty() && !value.starts_with('/') && !value.starts_with('*') {
                    errors.push(format!("line {}: a path pattern must start with / or *: {value:?}", n + 1));
                }
            }
            "sitemap" => match url::Url::parse(value) {
                Ok(_) => sitemaps.push(value.to_string()),
                Err(_) => errors.push(format!("line {}: sitemap is not an absolute URL: {value:?}", n + 1)),
            },
            "crawl-delay" => {
                in_agents = false;
                match (groups.last_mut(), value.parse::<f64>()) {
                    (Some(g), Ok(delay)) if delay.is_finite() && delay >= 0.0 => g.delay = Some(delay),
                    _ => errors.push(format!("line {}: crawl-delay is not a number of seconds: {value:?}", n + 1)),
                }
            }
            // Widely used extensions, not errors.
            "host" | "clean-param" | "request-rate" | "visit-time" | "noindex" => {}
            other => errors.push(format!("line {}: unknown directive {other:?}", n + 1)),
        }
    }
    (groups, errors, sitemaps)
}

/// Whether `pattern` (with `*` and a final `$`) matches the start of `path`.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !path.starts_with(part) {
                return false;
            }
            at = part.len();
        } else if i == parts.len() - 1 && anchored {
            // The last piece must end the path, after `at`.
            return path.len() >= at + part.len() && path.ends_with(part);
        } else {
            match path[at..].find(part) {
                Some(found) => at += found + part.len(),
                None => return false,
            }
        }
    }
    !anchored || at == path.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TXT: &str = "User-agent: *\nDisallow: /private/\nAllow: /private/open\nDisallow: /*.pdf$\n\n\
                       User-agent: Googlebot\nUser-agent: bingbot\nDisallow: /nogoogle\n\nSitemap: https://example.com/sitemap.xml\n";

    fn allowed(agent: &str, path: &str) -> bool {
        judge("https://example.com/robots.txt", &RobotsSource::Found(TXT.into()), agent, path).allowed
    }

    #[test]
    fn longest_match_wins_and_allow_wins_ties() {
        assert!(allowed("otherbot", "/"));
        assert!(!allowed("otherbot", "/private/x"));
        assert!(allowed("otherbot", "/private/open/page"));
        assert!(!allowed("otherbot", "/files/a.pdf"));
        assert!(allowed("otherbot", "/files/a.pdf?x=1"), "$ anchors the end");
        // Googlebot has its own group: the * group no longer applies.
        assert!(allowed("googlebot", "/private/x"));
        assert!(!allowed("googlebot", "/nogoogle/a"));
        let tie = "User-agent: *\nDisallow: /a\nAllow: /a\n";
        assert!(judge("u", &RobotsSource::Found(tie.into()), "*", "/a").allowed);
        let report = judge("u", &RobotsSource::Found(TXT.into()), "otherbot", "/private/x");
        assert_eq!(report.matched, Some(Matched { kind: "disallow", pattern: "/private/".into(), line: 2 }));
        assert_eq!(report.sitemaps, vec!["https://example.com/sitemap.xml".to_string()]);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    #[test]
    fn missing_allows_unreachable_blocks_and_bad_lines_are_reported() {
        assert!(judge("u", &RobotsSource::Missing(404), "googlebot", "/x").allowed);
        assert!(!judge("u", &RobotsSource::Unreachable("503".into()), "googlebot", "/x").allowed);
        let bad = "Disallow: /early\nUser-agent: *\nDisalow: /typo\nthis is not a line\nDisallow: nope\nSitemap: /relative.xml\n";
        let r = judge("u", &RobotsSource::Found(bad.into()), "googlebot", "/x");
        assert_eq!(r.errors.len(), 5, "{:?}", r.errors);
        assert!(r.allowed);
    }

    #[test]
    fn where_it_is_and_what_a_response_says() {
        let page = url::Url::parse("https://e.com:8443/a/b?q=1#top").unwrap();
        assert_eq!(location(&page).as_str(), "https://e.com:8443/robots.txt");
        assert_eq!(source(200, b"User-agent: *"), RobotsSource::Found("User-agent: *".into()));
        assert_eq!(source(404, b""), RobotsSource::Missing(404));
        assert_eq!(source(503, b""), RobotsSource::Unreachable("HTTP 503".into()));
        let big = vec![b'#'; MAX_BYTES + 10];
        assert!(matches!(source(200, &big), RobotsSource::Found(t) if t.len() == MAX_BYTES));
    }

    #[test]
    fn crawl_delay_of_the_group_that_applies() {
        let txt = "User-agent: *\nCrawl-delay: 2\nDisallow: /x\n\nUser-agent: pagelens\nCrawl-delay: 0.5\nCrawl-delay: soon\n";
        let r = |agent| judge("u", &RobotsSource::Found(txt.into()), agent, "/");
        assert_eq!((r("pagelens").crawl_delay, r("otherbot").crawl_delay), (Some(0.5), Some(2.0)));
        assert_eq!(r("pagelens").errors.len(), 1);
        assert_eq!(judge("u", &RobotsSource::Missing(404), "pagelens", "/").crawl_delay, None);
    }

    #[test]
    fn wildcards() {
        assert!(matches("/*.php", "/index.php?x"));
        assert!(matches("/a*b*c", "/aXbYc/z"));
        assert!(!matches("/a*b*c$", "/aXbYc/z"));
        assert!(matches("/a*b*c$", "/aXbYc"));
        assert!(matches("*", "/anything"));
        assert!(!matches("/x", "/"));
    }
}
