//! The site report as CSV (RFC 4180): one row an issue found on a page, for
//! spreadsheets; and the pages table.

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
            let row = [issue.id, &severity, &finding.url, &finding.related.join(" ")].map(field);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a, \"b\""), "\"a, \"\"b\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }
}
