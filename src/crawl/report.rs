//! The site report: its JSON document (stored as a crawl task's result,
//! spelt out from the crawl's records as it is written), and its forms for
//! people: CSV (RFC 4180) for spreadsheets, one row an issue found on a
//! page, and the pages table; and one self-contained HTML page (no CDN: the
//! report's JSON inside it, rendered by its own script).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::audit::{Audit, Found};
use super::frontier::{Frontier, Skip, UrlId};
use super::site::{Outcome, Site};
use crate::seo::checks::Severity;

/// A field quoted when it must be (comma, quote, line break), with quotes doubled.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
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

/// The figures of a crawl.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
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
}

/// The site report as stored and served: the figures, the issues with
/// their pages, the notes, and the pages table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteReport {
    /// The figures.
    #[serde(flatten)]
    pub summary: Summary,
    /// Issues, most severe and most frequent first.
    pub issues: Vec<Issue>,
    /// What limited the crawl (caps reached, sitemaps cut short).
    pub notes: Vec<String>,
    /// Every fetched URL (and every URL robots.txt kept out).
    pub pages: Vec<PageRow>,
}

/// A report to write out: a stored one, or one spelt out from a crawl's
/// records as it is written (never held whole).
pub trait Report: Serialize {
    /// The figures.
    fn summary(&self) -> &Summary;
    /// Calls `each` with every issue, in order.
    fn each_issue(&self, each: &mut dyn FnMut(&Issue) -> io::Result<()>) -> io::Result<()>;
    /// Calls `each` with every row of the pages table, in order.
    fn each_page(&self, each: &mut dyn FnMut(&PageRow) -> io::Result<()>) -> io::Result<()>;
}

impl Report for SiteReport {
    fn summary(&self) -> &Summary {
        &self.summary
    }

    fn each_issue(&self, each: &mut dyn FnMut(&Issue) -> io::Result<()>) -> io::Result<()> {
        self.issues.iter().try_for_each(each)
    }

    fn each_page(&self, each: &mut dyn FnMut(&PageRow) -> io::Result<()>) -> io::Result<()> {
        self.pages.iter().try_for_each(each)
    }
}

/// The report of a crawl, spelt out from its records as it is serialised
/// or written: the same document as [`SiteReport`], without a copy of
/// every page's strings held at once.
#[derive(Debug, Clone, Copy)]
pub struct ReportView<'a> {
    frontier: &'a Frontier,
    site: &'a Site,
    audit: &'a Audit,
}

impl<'a> ReportView<'a> {
    /// The report of what `audit` found of `site`.
    pub fn new(frontier: &'a Frontier, site: &'a Site, audit: &'a Audit) -> Self {
        ReportView { frontier, site, audit }
    }

    fn urls(&self, ids: &[UrlId]) -> Vec<String> {
        ids.iter().map(|&id| self.frontier.url(id).to_string()).collect()
    }

    fn issue(&self, found: &Found) -> Issue {
        Issue {
            id: found.id.clone(),
            severity: found.severity,
            about: found.about.into(),
            count: found.pages.len(),
            pages: found
                .pages
                .iter()
                .map(|(page, related)| Finding { url: self.frontier.url(*page).into(), related: self.urls(related) })
                .collect(),
        }
    }

    /// The pages table's row of `id`, if it was fetched (or kept out by robots.txt).
    fn row(&self, id: UrlId) -> Option<PageRow> {
        let (entry, outcome) = (self.frontier.entry(id)?, self.site.get(id)?);
        let html = self.site.html(id);
        let (status, content_type, first_byte_ms, error) = match outcome {
            Outcome::Response { status, content_type, first_byte_ms, .. } => {
                (Some(*status), self.site.content_type_name(*content_type), Some(*first_byte_ms), None)
            }
            Outcome::Failed(code) => (None, None, None, Some(code.clone())),
            Outcome::Blocked => (None, None, None, Some("robots-txt".to_string())),
        };
        let issues = self.audit.on_page.get(&id).map_or(&[][..], Vec::as_slice);
        Some(PageRow {
            url: self.frontier.url(id).to_string(),
            depth: entry.depth,
            status,
            error,
            content_type,
            internal: entry.internal,
            in_sitemap: entry.in_sitemap,
            title: html.and_then(|h| h.title.as_deref().map(str::to_string)),
            indexable: html.is_some_and(|h| !h.noindex) && self.site.canonical_elsewhere(id).is_none(),
            word_count: html.map_or(0, |h| h.word_count),
            score: html.map(|h| h.score),
            first_byte_ms,
            links_in: self.audit.incoming.get(id as usize).map_or(0, |&n| n as usize),
            links_out: html.map_or(0, |h| h.links.len()),
            issues: issues
                .iter()
                .filter_map(|&n| self.audit.issues.get(usize::from(n)))
                .map(|f| f.id.clone())
                .collect(),
        })
    }

    fn ids(&self) -> std::ops::Range<UrlId> {
        0..self.frontier.len() as UrlId
    }
}

impl Report for ReportView<'_> {
    fn summary(&self) -> &Summary {
        &self.audit.summary
    }

    fn each_issue(&self, each: &mut dyn FnMut(&Issue) -> io::Result<()>) -> io::Result<()> {
        self.audit.issues.iter().try_for_each(|found| each(&self.issue(found)))
    }

    fn each_page(&self, each: &mut dyn FnMut(&PageRow) -> io::Result<()>) -> io::Result<()> {
        self.ids().filter_map(|id| self.row(id)).try_for_each(|row| each(&row))
    }
}

impl Serialize for ReportView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// A sequence serialised from an iterator, one item at a time.
        struct Seq<F>(F);
        impl<I: Iterator<Item = T>, T: Serialize, F: Fn() -> I> Serialize for Seq<F> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq((self.0)())
            }
        }
        /// The same document as [`SiteReport`]'s, its lists made as written.
        #[derive(Serialize)]
        struct Document<'a, I, P> {
            #[serde(flatten)]
            summary: &'a Summary,
            issues: I,
            notes: &'a [String],
            pages: P,
        }
        Document {
            summary: &self.audit.summary,
            issues: Seq(|| self.audit.issues.iter().map(|f| self.issue(f))),
            notes: &self.audit.notes,
            pages: Seq(|| self.ids().filter_map(|id| self.row(id))),
        }
        .serialize(serializer)
    }
}

/// Writes one CSV row.
fn row(out: &mut impl Write, fields: &[&str]) -> io::Result<()> {
    let fields: Vec<String> = fields.iter().map(|f| field(f)).collect();
    write!(out, "{}\r\n", fields.join(","))
}

/// `issue,severity,url,related`: one row per page an issue is found on;
/// `related` lists the URLs it concerns, space-separated.
pub fn write_issues_csv(report: &impl Report, out: &mut impl Write) -> io::Result<()> {
    row(out, &["issue", "severity", "url", "related"])?;
    report.each_issue(&mut |issue| {
        let severity = format!("{:?}", issue.severity).to_lowercase();
        for finding in &issue.pages {
            row(out, &[&issue.id, &severity, &finding.url, &finding.related.join(" ")])?;
        }
        Ok(())
    })
}

/// The pages table: one row a fetched URL.
pub fn write_pages_csv(report: &impl Report, out: &mut impl Write) -> io::Result<()> {
    let head = "url,depth,status,error,content_type,internal,in_sitemap,title,indexable,word_count,score,first_byte_ms,links_in,links_out,issues";
    row(out, &head.split(',').collect::<Vec<_>>())?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    report.each_page(&mut |p| {
        let fields = [
            p.url.clone(),
            opt(p.depth.map(|d| d.to_string())),
            opt(p.status.map(|s| s.to_string())),
            opt(p.error.clone()),
            opt(p.content_type.clone()),
            p.internal.to_string(),
            p.in_sitemap.to_string(),
            opt(p.title.clone()),
            p.indexable.to_string(),
            p.word_count.to_string(),
            opt(p.score.map(|s| s.to_string())),
            opt(p.first_byte_ms.map(|t| format!("{t:.1}"))),
            p.links_in.to_string(),
            p.links_out.to_string(),
            p.issues.join(" "),
        ];
        row(out, &fields.iter().map(String::as_str).collect::<Vec<_>>())
    })
}

/// Passes bytes on with every `<` written `\u003c`: inside a JSON document
/// that only ever occurs in strings, where it means the same.
struct EscapeLt<W>(W);

impl<W: Write> Write for EscapeLt<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (i, part) in buf.split(|&b| b == b'<').enumerate() {
            if i > 0 {
                self.0.write_all(b"\\u003c")?;
            }
            self.0.write_all(part)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The HTML page: summary, issues by severity with their pages, a depth
/// histogram, and a pages table to sort and filter.
pub fn write_html(report: &impl Report, out: &mut impl Write) -> io::Result<()> {
    let (head, tail) = TEMPLATE.split_once("REPORT_JSON").unwrap_or((TEMPLATE, ""));
    out.write_all(head.as_bytes())?;
    // `<` escaped, so no string in the report can close the script element;
    // the page's script puts every string in with textContent, never as HTML.
    serde_json::to_writer(EscapeLt(&mut *out), report).map_err(io::Error::other)?;
    out.write_all(tail.as_bytes())
}

/// The page the report goes into.
const TEMPLATE: &str = include_str!("report.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a, \"b\""), "\"a, \"\"b\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn html_keeps_page_strings_inside_its_data() {
        let report = SiteReport {
            summary: Summary {
                start: "https://e.com/</script><script>alert(1)</script>".into(),
                pages_fetched: 0,
                html_pages: 0,
                external_checked: 0,
                urls_discovered: 0,
                errors: 0,
                skipped: Default::default(),
                depth_histogram: vec![],
            },
            issues: vec![],
            notes: vec![],
            pages: vec![],
        };
        let mut page = Vec::new();
        write_html(&report, &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(!page.contains("</script><script>alert"), "the data cannot close its script element");
        assert!(page.contains("\\u003c/script>"));
        assert!(!page.contains("REPORT_JSON"));
    }
}
