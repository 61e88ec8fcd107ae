//! The site report for people: CSV (RFC 4180) for spreadsheets, one row an
//! issue found on a page, and the pages table; and one self-contained HTML
//! page (no CDN: the report's JSON inside it, rendered by its own script).

use super::site::SiteReport;

/// A field quoted when it must be (comma, quote, line break), with quotes doubled.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// `issue,severity,url,related`: one row per page an issue is found on;
/// `related` lists the URLs it concerns, space-separated.
pub fn issues_csv(report: &SiteReport) -> String {
    let mut out = String::from("issue,severity,url,related\r\n");
    for issue in &report.issues {
        let severity = format!("{:?}", issue.severity).to_lowercase();
        for finding in &issue.pages {
            let row = [&issue.id, &severity, &finding.url, &finding.related.join(" ")].map(|f| field(f));
            out.push_str(&row.join(","));
            out.push_str("\r\n");
        }
    }
    out
}

/// The pages table: one row a fetched URL.
pub fn pages_csv(report: &SiteReport) -> String {
    let mut out = String::from(
        "url,depth,status,error,content_type,internal,in_sitemap,title,indexable,word_count,score,first_byte_ms,links_in,links_out,issues\r\n",
    );
    let opt = |v: Option<String>| v.unwrap_or_default();
    for p in &report.pages {
        let row = [
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
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// The HTML page: summary, issues by severity with their pages, a depth
/// histogram, and a pages table to sort and filter.
pub fn html(report: &SiteReport) -> String {
    // `<` escaped, so no string in the report can close the script element;
    // the page's script puts every string in with textContent, never as HTML.
    let json = serde_json::to_string(report).unwrap_or_else(|_| "null".into()).replace('<', "\\u003c");
    include_str!("report.html").replacen("REPORT_JSON", &json, 1)
}

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
            start: "https://e.com/</script><script>alert(1)</script>".into(),
            pages_fetched: 0,
            html_pages: 0,
            external_checked: 0,
            urls_discovered: 0,
            errors: 0,
            skipped: Default::default(),
            depth_histogram: vec![],
            issues: vec![],
            notes: vec![],
            pages: vec![],
        };
        let page = html(&report);
        assert!(!page.contains("</script><script>alert"), "the data cannot close its script element");
        assert!(page.contains("\\u003c/script>"));
        assert!(!page.contains("REPORT_JSON"));
    }
}
