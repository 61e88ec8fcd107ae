//! Sitemaps (sitemaps.org): a `<urlset>` of page `<loc>`s or a
//! `<sitemapindex>` of sitemap `<loc>`s, plain or gzipped. Read by a scan for
//! `<loc>` elements: a sitemap is a flat list, and a scan needs no DOM for a
//! 50 MB file.

use memchr::memmem;

/// What a sitemap document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pages.
    UrlSet,
    /// Other sitemaps.
    Index,
}

/// A sitemap read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sitemap {
    /// Pages or sitemaps.
    pub kind: Kind,
    /// The `<loc>` values, entities decoded, in order.
    pub locs: Vec<String>,
    /// Entries left unread past the cap.
    pub dropped: usize,
}

/// The protocol's own limit of URLs in one sitemap.
pub const MAX_ENTRIES: usize = 50_000;
/// The protocol's own limit of bytes in one (uncompressed) sitemap.
pub const MAX_BYTES: usize = 50 * 1024 * 1024;

/// Whether `body` is gzip data (a `.xml.gz` served without `Content-Encoding`).
pub fn is_gzip(body: &[u8]) -> bool {
    body.starts_with(&[0x1f, 0x8b])
}

/// Reads `text`, keeping at most `max` entries.
pub fn parse(text: &[u8], max: usize) -> Sitemap {
    let kind = if memmem::find(text, b"<sitemapindex").is_some() { Kind::Index } else { Kind::UrlSet };
    let (mut locs, mut dropped) = (Vec::new(), 0);
    let mut at = 0;
    while let Some(open) = memmem::find(&text[at..], b"<loc>") {
        let start = at + open + b"<loc>".len();
        let Some(len) = memmem::find(&text[start..], b"</loc>") else { break };
        at = start + len + b"</loc>".len();
        if locs.len() >= max {
            dropped += 1;
            continue;
        }
        let raw = String::from_utf8_lossy(&text[start..start + len]);
        let raw = raw.trim();
        let raw = raw.strip_prefix("<![CDATA[").and_then(|r| r.strip_suffix("]]>")).unwrap_or(raw);
        let loc = html_escape::decode_html_entities(raw.trim());
        if !loc.is_empty() {
            locs.push(loc.into_owned());
        }
    }
    Sitemap { kind, locs, dropped }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_sets_and_indexes() {
        let set = br#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <url><loc>https://e.com/a?x=1&amp;y=2</loc><lastmod>2024-01-01</lastmod></url>
            <url><loc> <![CDATA[https://e.com/b]]> </loc></url><url><loc></loc></url></urlset>"#;
        let s = parse(set, 10);
        assert_eq!(
            (s.kind, s.locs.as_slice(), s.dropped),
            (Kind::UrlSet, &["https://e.com/a?x=1&y=2".to_string(), "https://e.com/b".into()][..], 0)
        );
        let index = b"<sitemapindex><sitemap><loc>https://e.com/s1.xml.gz</loc></sitemap></sitemapindex>";
        assert_eq!(parse(index, 10).kind, Kind::Index);
    }

    #[test]
    fn capped_and_unterminated() {
        let many: String = (0..100).map(|i| format!("<url><loc>https://e.com/{i}</loc></url>")).collect();
        let s = parse(many.as_bytes(), 10);
        assert_eq!((s.locs.len(), s.dropped), (10, 90));
        assert_eq!(parse(b"<urlset><url><loc>https://e.com/", 10).locs.len(), 0);
        assert!(is_gzip(&[0x1f, 0x8b, 8]) && !is_gzip(b"<?xml"));
    }
}
