//! URLs as a crawler must see them: one spelling per page, which of them
//! are the site's, and the patterns users pick them with.

use serde::{Deserialize, Serialize};
use url::Url;

/// Query parameters that track a visit and never change a page.
const TRACKING: &[&str] = &["gclid", "fbclid", "msclkid", "dclid", "yclid", "mc_cid", "mc_eid", "_ga", "igshid"];

/// The one spelling of `url` a crawl keeps: no fragment; the url crate has
/// already lowercased the host, dropped a default port, resolved dot
/// segments and percent-encoded what must be. `strip_tracking` also drops
/// `utm_*` and the other tracking parameters (an emptied query goes).
pub fn normalise(mut url: Url, strip_tracking: bool) -> Url {
    url.set_fragment(None);
    if strip_tracking && url.query().is_some() {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !(k.starts_with("utm_") || TRACKING.contains(&k.as_ref())))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let dropped = url.query_pairs().count() != kept.len();
        if dropped && kept.is_empty() {
            url.set_query(None);
        } else if dropped {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// Which URLs belong to the crawled site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The start URL's host.
    #[default]
    Host,
    /// The start URL's registrable domain and its subdomains (the host
    /// without a leading `www.`, and everything under it).
    Domain,
    /// URLs under the start URL's path, on its host.
    Prefix,
}

impl Scope {
    /// Whether `url` is in the site that starts at `start`.
    pub fn contains(self, start: &Url, url: &Url) -> bool {
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let (Some(home), Some(host)) = (start.host_str(), url.host_str()) else { return false };
        match self {
            Scope::Host => host == home,
            Scope::Domain => {
                let domain = home.strip_prefix("www.").unwrap_or(home);
                host == domain || host.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.'))
            }
            Scope::Prefix => {
                let prefix = start.path();
                let dir = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
                host == home && url.path().starts_with(dir)
            }
        }
    }
}

/// A URL pattern: `*` stands for any run of characters; anything else is
/// itself. A pattern matches anywhere in the URL unless it starts with
/// `^` (the URL's start) or ends with `$` (its end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<String>,
    anchored_start: bool,
    anchored_end: bool,
}

impl Pattern {
    /// Parses `text`; an empty pattern would match everything by mistake.
    pub fn new(text: &str) -> Result<Pattern, String> {
        let anchored_start = text.starts_with('^');
        let anchored_end = text.ends_with('$') && text.len() > usize::from(anchored_start);
        let body = &text[usize::from(anchored_start)..text.len() - usize::from(anchored_end)];
        if body.trim_matches('*').is_empty() {
            return Err(format!("{text:?} matches every URL; leave it out instead"));
        }
        Ok(Pattern { parts: body.split('*').map(str::to_string).collect(), anchored_start, anchored_end })
    }

    /// Whether `url` matches.
    pub fn matches(&self, url: &str) -> bool {
        let (mut hay, mut parts) = (url, &self.parts[..]);
        if self.anchored_end {
            let Some((last, init)) = parts.split_last() else { return false };
            let Some(rest) = hay.strip_suffix(last.as_str()) else { return false };
            (hay, parts) = (rest, init);
            if parts.is_empty() {
                return !self.anchored_start || hay.is_empty();
            }
        }
        let mut at = 0;
        for (i, part) in parts.iter().enumerate() {
            if i == 0 && self.anchored_start {
                if !hay.starts_with(part.as_str()) {
                    return false;
                }
                at = part.len();
                continue;
            }
            match hay[at..].find(part.as_str()) {
                Some(found) => at += found + part.len(),
                None => return false,
            }
        }
        true
    }
}

/// A URL's shape: its host and path with every run of digits as `N`
/// (`/2024/05/` and `/2031/11/` are one shape), for capping URL spaces
/// without end, such as calendars.
pub fn shape(url: &Url) -> String {
    let mut shape = String::with_capacity(url.path().len() + 16);
    shape.push_str(url.host_str().unwrap_or_default());
    let mut in_digits = false;
    for c in url.path().chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                shape.push('N');
            }
            in_digits = true;
        } else {
            shape.push(c);
            in_digits = false;
        }
    }
    // The query's names count, not their values (`?month=5`).
    if url.query().is_some() {
        shape.push('?');
        for (name, _) in url.query_pairs() {
            shape.push_str(&name);
            shape.push('&');
        }
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(url: &str) -> String {
        normalise(Url::parse(url).unwrap(), true).to_string()
    }

    #[test]
    fn one_spelling_per_page() {
        assert_eq!(n("HTTP://Example.COM:80/a/./b/../c#top"), "http://example.com/a/c");
        assert_eq!(n("https://example.com:443/?utm_source=x&utm_medium=y"), "https://example.com/");
        assert_eq!(n("https://example.com/p?id=3&gclid=abc"), "https://example.com/p?id=3");
        assert_eq!(n("https://example.com/p?"), "https://example.com/p");
        assert_eq!(n("https://example.com/caf%C3%A9 x"), "https://example.com/caf%C3%A9%20x");
        assert_eq!(normalise(Url::parse("https://e.com/?utm_x=1").unwrap(), false).as_str(), "https://e.com/?utm_x=1");
    }

    #[test]
    fn scopes() {
        let start = Url::parse("https://www.example.com/blog/post").unwrap();
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(Scope::Host.contains(&start, &u("http://www.example.com/x")));
        assert!(!Scope::Host.contains(&start, &u("https://shop.example.com/")));
        assert!(Scope::Domain.contains(&start, &u("https://shop.example.com/")));
        assert!(Scope::Domain.contains(&start, &u("https://example.com/")));
        assert!(!Scope::Domain.contains(&start, &u("https://notexample.com/")));
        assert!(Scope::Prefix.contains(&start, &u("https://www.example.com/blog/other")));
        assert!(!Scope::Prefix.contains(&start, &u("https://www.example.com/shop/")));
        assert!(!Scope::Host.contains(&start, &u("mailto:a@www.example.com")));
    }

    #[test]
    fn patterns() {
        let p = |s: &str| Pattern::new(s).unwrap();
        assert!(p("/tag/").matches("https://e.com/tag/x"));
        assert!(p("/calendar/*/day").matches("https://e.com/calendar/2024/05/day"));
        assert!(!p("^https://e.com/a").matches("https://x.com/https://e.com/a"));
        assert!(p(".pdf$").matches("https://e.com/f.pdf"));
        assert!(!p(".pdf$").matches("https://e.com/f.pdf?x"));
        assert!(p("^https://e.com/*.pdf$").matches("https://e.com/a/b.pdf"));
        assert!(
            p("^https://e.com/a$").matches("https://e.com/a") && !p("^https://e.com/a$").matches("https://e.com/ab")
        );
        assert!(!p("^ab*b$").matches("ab") && p("^ab*b$").matches("abxb"));
        assert!(Pattern::new("*").is_err() && Pattern::new("").is_err() && Pattern::new("^$").is_err());
    }

    #[test]
    fn shapes() {
        let s = |u: &str| shape(&Url::parse(u).unwrap());
        assert_eq!(s("https://e.com/cal/2024/05/"), s("https://e.com/cal/1999/12/"));
        assert_eq!(s("https://e.com/cal?month=5"), s("https://e.com/cal?month=11"));
        assert_ne!(s("https://e.com/cal/2024/"), s("https://e.com/blog/2024/"));
    }
}
