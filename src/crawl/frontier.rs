//! Every URL a crawl discovers, interned once (edges and records hold a
//! `u32`, never a string), and the order they are fetched in: the site's
//! pages breadth first (so a page's depth is its fewest clicks), then
//! pages known only from sitemaps, then links to other sites, checked
//! once each.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use url::Url;

use super::settings::Checked;
use super::urls::{normalise, shape};

/// A URL's number in its crawl.
pub type UrlId = u32;

/// Why a discovered URL is not fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    /// An `exclude` pattern matched.
    Excluded,
    /// No `include` pattern matched.
    NotIncluded,
    /// Deeper than `max_depth`.
    TooDeep,
    /// Its URL shape already had `max_per_pattern` pages.
    PatternCap,
    /// `max_pages` were already taken.
    PageCap,
    /// robots.txt disallows it.
    Robots,
}

/// How a URL was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The start URL.
    Start,
    /// A link of a page at this depth.
    Page(u16),
    /// A redirect from a URL at this depth (no click: the same depth).
    Redirect(u16),
    /// A canonical or hreflang alternate: fetched to be checked, but no
    /// click, so no depth (a page only these reach is still an orphan).
    Reference,
    /// A sitemap.
    Sitemap,
}

/// What the crawl knows of one URL.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Fewest clicks from the start page; `None`: reached by no link.
    pub depth: Option<u16>,
    /// Inside the crawled site.
    pub internal: bool,
    /// Listed in a sitemap.
    pub in_sitemap: bool,
    /// Taken to be fetched.
    pub taken: bool,
    /// Why it is not fetched, if it is not.
    pub skipped: Option<Skip>,
    /// In the queue of linked pages.
    linked: bool,
    /// In the queue of listed pages.
    listed: bool,
}

/// The frontier of one crawl.
#[derive(Debug)]
pub struct Frontier {
    ids: HashMap<Box<str>, UrlId>,
    urls: Vec<Box<str>>,
    entries: Vec<Entry>,
    /// Internal pages reached by links, breadth first.
    pages: VecDeque<UrlId>,
    /// Internal pages reached only by sitemaps so far.
    listed: VecDeque<UrlId>,
    /// Other sites' URLs to check.
    external: VecDeque<UrlId>,
    /// Pages taken, by URL shape.
    shapes: HashMap<String, usize>,
    /// Internal URLs queued or taken, against `max_pages`.
    admitted: usize,
    /// External URLs queued or taken, against `max_pages` too.
    admitted_external: usize,
    checked: Checked,
}

impl Frontier {
    /// An empty frontier for the crawl `checked` describes.
    pub fn new(checked: Checked) -> Frontier {
        Frontier {
            ids: HashMap::new(),
            urls: Vec::new(),
            entries: Vec::new(),
            pages: VecDeque::new(),
            listed: VecDeque::new(),
            external: VecDeque::new(),
            shapes: HashMap::new(),
            admitted: 0,
            admitted_external: 0,
            checked,
        }
    }

    /// The crawl's settings.
    pub fn checked(&self) -> &Checked {
        &self.checked
    }

    /// The URL numbered `id`.
    pub fn url(&self, id: UrlId) -> &str {
        self.urls.get(id as usize).map_or("", |u| u)
    }

    /// What is known of `id`.
    pub fn entry(&self, id: UrlId) -> Option<&Entry> {
        self.entries.get(id as usize)
    }

    /// Every URL discovered, by number.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether nothing was discovered.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// URLs waiting to be taken.
    pub fn waiting(&self) -> usize {
        self.pages.len() + self.listed.len() + self.external.len()
    }

    /// The number of `url` (normalised), discovered now if new.
    pub fn intern(&mut self, url: Url) -> (UrlId, Url) {
        let url = normalise(url, self.checked.settings.strip_tracking);
        if let Some(&id) = self.ids.get(url.as_str()) {
            return (id, url);
        }
        let id = self.urls.len() as UrlId;
        let text: Box<str> = url.as_str().into();
        self.ids.insert(text.clone(), id);
        self.urls.push(text);
        let internal = self.checked.settings.scope.contains(&self.checked.start, &url);
        let entry = Entry {
            depth: None,
            internal,
            in_sitemap: false,
            taken: false,
            skipped: None,
            linked: false,
            listed: false,
        };
        self.entries.push(entry);
        (id, url)
    }

    /// `url` found `via` a page, a sitemap or the start: interned, and
    /// queued when the crawl should fetch it. Returns its number.
    pub fn discover(&mut self, url: Url, via: Via) -> UrlId {
        let (id, url) = self.intern(url);
        let depth = match via {
            Via::Start => Some(0),
            Via::Page(from) => Some(from.saturating_add(1)),
            Via::Redirect(from) => Some(from),
            Via::Sitemap | Via::Reference => None,
        };
        let max_pages = self.checked.settings.max_pages;
        let entry = &mut self.entries[id as usize];
        entry.depth = match (entry.depth, depth) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        entry.in_sitemap |= via == Via::Sitemap;
        if entry.taken || entry.skipped.is_some() {
            return id;
        }
        if !entry.internal {
            // Checked once, when a page first refers to it (a sitemap lists only its own site).
            if via != Via::Sitemap && !entry.linked && self.checked.settings.check_external {
                entry.linked = true;
                if self.admitted_external < max_pages {
                    self.admitted_external += 1;
                    self.external.push_back(id);
                } else {
                    entry.skipped = Some(Skip::PageCap);
                }
            }
            return id;
        }
        // Queued already: by a link (its place is final), or by a sitemap
        // and listed again.
        if entry.linked || (via == Via::Sitemap && entry.listed) {
            return id;
        }
        let text = url.as_str();
        let settings = &self.checked.settings;
        let skip = if self.checked.exclude.iter().any(|p| p.matches(text)) {
            Some(Skip::Excluded)
        } else if via != Via::Start
            && !self.checked.include.is_empty()
            && !self.checked.include.iter().any(|p| p.matches(text))
        {
            Some(Skip::NotIncluded)
        } else if depth.is_some_and(|d| d > settings.max_depth) {
            Some(Skip::TooDeep)
        } else if self.shapes.get(&shape(&url)).is_some_and(|&n| n >= settings.max_per_pattern) {
            Some(Skip::PatternCap)
        } else {
            None
        };
        let entry = &mut self.entries[id as usize];
        if let Some(skip) = skip {
            entry.skipped = Some(skip);
            return id;
        }
        if via == Via::Sitemap {
            entry.listed = true;
            self.listed.push_back(id);
        } else {
            entry.linked = true;
            self.pages.push_back(id);
        }
        id
    }

    /// The next URL to fetch, marked taken; `None` when none waits.
    pub fn take(&mut self) -> Option<(UrlId, Url)> {
        loop {
            let id =
                self.pages.pop_front().or_else(|| self.listed.pop_front()).or_else(|| self.external.pop_front())?;
            let entry = &self.entries[id as usize];
            if entry.taken || entry.skipped.is_some() {
                continue;
            }
            let Ok(url) = Url::parse(self.url(id)) else { continue };
            if entry.internal {
                if self.admitted >= self.checked.settings.max_pages {
                    self.entries[id as usize].skipped = Some(Skip::PageCap);
                    continue;
                }
                let shape = shape(&url);
                let count = self.shapes.entry(shape).or_default();
                if *count >= self.checked.settings.max_per_pattern {
                    self.entries[id as usize].skipped = Some(Skip::PatternCap);
                    continue;
                }
                *count += 1;
                self.admitted += 1;
            }
            self.entries[id as usize].taken = true;
            return Some((id, url));
        }
    }

    /// Marks `id` taken without its turn (an earlier run fetched it),
    /// counted against the caps as if taken now.
    pub fn mark_taken(&mut self, id: UrlId) {
        let Some(entry) = self.entries.get_mut(id as usize) else { return };
        if entry.taken {
            return;
        }
        (entry.taken, entry.skipped) = (true, None);
        if entry.internal {
            self.admitted += 1;
            if let Ok(url) = Url::parse(&self.urls[id as usize]) {
                *self.shapes.entry(shape(&url)).or_default() += 1;
            }
        } else {
            self.admitted_external += 1;
        }
    }

    /// Marks `id` not fetched, for `why` (robots.txt said no).
    pub fn skip(&mut self, id: UrlId, why: Skip) {
        if let Some(entry) = self.entries.get_mut(id as usize) {
            entry.skipped = Some(why);
        }
    }

    /// Internal pages taken (against `max_pages`).
    pub fn pages_taken(&self) -> usize {
        self.admitted
    }

    /// How many URLs were skipped, by reason.
    pub fn skipped(&self) -> Vec<(Skip, usize)> {
        let mut counts: HashMap<Skip, usize> = HashMap::new();
        for skip in self.entries.iter().filter_map(|e| e.skipped) {
            *counts.entry(skip).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crawl::settings::CrawlSettings;

    fn frontier(json: serde_json::Value) -> Frontier {
        Frontier::new(serde_json::from_value::<CrawlSettings>(json).unwrap().check().unwrap())
    }

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn breadth_first_then_sitemaps_then_external() {
        let mut f = frontier(serde_json::json!({"url": "https://e.com/"}));
        f.discover(u("https://e.com/"), Via::Start);
        f.discover(u("https://e.com/listed"), Via::Sitemap);
        let (start, _) = f.take().unwrap();
        f.discover(u("https://e.com/a#x"), Via::Page(0));
        f.discover(u("https://other.org/"), Via::Page(0));
        f.discover(u("https://e.com/a"), Via::Page(0));
        let order: Vec<String> = std::iter::from_fn(|| f.take()).map(|(_, url)| url.to_string()).collect();
        assert_eq!(order, ["https://e.com/a", "https://e.com/listed", "https://other.org/"]);
        assert_eq!(f.entry(start).unwrap().depth, Some(0));
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn a_sitemap_page_found_by_a_link_gets_its_depth() {
        let mut f = frontier(serde_json::json!({"url": "https://e.com/"}));
        let listed = f.discover(u("https://e.com/l"), Via::Sitemap);
        f.discover(u("https://e.com/l"), Via::Page(2));
        assert_eq!(f.entry(listed).unwrap().depth, Some(3));
        assert!(f.entry(listed).unwrap().in_sitemap);
        assert_eq!(std::iter::from_fn(|| f.take()).count(), 1, "fetched once");
    }

    #[test]
    fn caps_and_patterns() {
        let mut f = frontier(serde_json::json!({
            "url": "https://e.com/", "max_pages": 3, "max_depth": 2, "max_per_pattern": 2,
            "exclude": ["/private/"], "check_external": false
        }));
        let id = |f: &mut Frontier, s: &str, via| f.discover(u(s), via);
        let private = id(&mut f, "https://e.com/private/x", Via::Page(0));
        let deep = id(&mut f, "https://e.com/deep", Via::Page(2));
        let other = id(&mut f, "https://other.org/", Via::Page(0));
        for month in 1..=5 {
            id(&mut f, &format!("https://e.com/cal/2024/{month}"), Via::Page(1));
        }
        let taken: Vec<String> = std::iter::from_fn(|| f.take()).map(|(_, url)| url.to_string()).collect();
        assert_eq!(taken, ["https://e.com/cal/2024/1", "https://e.com/cal/2024/2"]);
        assert_eq!(f.entry(private).unwrap().skipped, Some(Skip::Excluded));
        assert_eq!(f.entry(deep).unwrap().skipped, Some(Skip::TooDeep));
        assert_eq!(f.entry(other).unwrap().skipped, None, "not checked, not skipped");
        // A new shape is still admitted until max_pages.
        id(&mut f, "https://e.com/x", Via::Page(0));
        id(&mut f, "https://e.com/y/z", Via::Page(0));
        let more: Vec<String> = std::iter::from_fn(|| f.take()).map(|(_, url)| url.to_string()).collect();
        assert_eq!(more, ["https://e.com/x"]);
        assert_eq!(f.pages_taken(), 3);
        assert!(f.skipped().contains(&(Skip::PageCap, 1)));
        assert!(f.skipped().contains(&(Skip::PatternCap, 3)));
    }

    #[test]
    fn a_page_linking_to_itself_many_times_is_one_url() {
        let mut f = frontier(serde_json::json!({"url": "https://e.com/"}));
        for _ in 0..100_000 {
            f.discover(u("https://e.com/"), Via::Page(0));
        }
        assert_eq!((f.len(), f.waiting()), (1, 1));
    }
}
