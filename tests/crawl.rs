//! The site audit through `pagelens crawl`: a local site with a planted
//! problem of every kind the audit knows, and clean pages beside them.
//! Every planted problem is reported on exactly its pages; no clean page
//! is flagged. And the inputs that must not run away: caps, bombs, loops.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pagelens::fetch::{FetchConfig, Guard};
use serde_json::{json, Value};

use crate::origin::{response, Action, Origin, Seen};
use crate::util::{
    api_config, call, config, engine_config, get, in_chromium, json_of, post, start_full, submit, wait_for, TempDir,
};

/// A page that passes every check of the SEO engine: `slug` makes its title
/// and description its own, `text` its visible words; `head` and `body` add
/// what a planted problem needs.
fn page(slug: &str, text: &str, head: &str, body: &str) -> String {
    render(&format!("The {slug} page of the planted test site"), &description(slug), text, head, body)
}

fn description(slug: &str) -> String {
    format!("Everything about the {slug} page: what it holds, why it is here and where it links, for the crawl test.")
}

/// [`page`] with its title and description given.
fn render(title: &str, description: &str, text: &str, head: &str, body: &str) -> String {
    let slug = text;
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<meta name="description" content="{description}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta property="og:title" content="{slug}"><meta property="og:description" content="A page">
<meta property="og:image" content="https://img.example.com/{slug}.jpg"><meta name="twitter:card" content="summary">
<script type="application/ld+json">{{"@context":"https://schema.org","@type":"WebPage","name":"{slug}"}}</script>
{head}</head><body><h1>All about {text}</h1><h2>Why</h2><h3>Details</h3><h2>More</h2>
<p>{words}</p><img src="/i.jpg" alt="A picture of {text}" width="600" height="400">
<a href="/">Back to the home page</a>{body}</body></html>"#,
        words = format!("{text} words of the page ").repeat(80),
    )
}

/// A plain page: its own title, description, text and canonical.
fn clean(path: &str, body: &str) -> String {
    let slug = path.trim_matches('/').replace('/', "-");
    let slug = if slug.is_empty() { "home".to_string() } else { slug };
    page(&slug, &slug, &format!(r#"<link rel="canonical" href="{path}">"#), body)
}

fn links(paths: &[&str]) -> String {
    paths.iter().map(|p| format!(r#"<a href="{p}">Read the {} page</a> "#, p.trim_matches('/'))).collect()
}

/// A `200` HTML page served from `host`, its `href`s made absolute (the
/// SEO engine wants absolute canonicals and alternates), with the security
/// headers a page should have.
fn html_from(host: &str, body: String) -> Action {
    let body = body.replace("href=\"/", &format!("href=\"http://{host}/"));
    Action::Send(response(200, &[("Content-Type", "text/html; charset=utf-8"), CSP, NOSNIFF], body.as_bytes()))
}

const CSP: (&str, &str) = ("Content-Security-Policy", "default-src 'self'");
const NOSNIFF: (&str, &str) = ("X-Content-Type-Options", "nosniff");

fn redirect(status: u16, to: &str) -> Action {
    Action::Send(response(status, &[("Location", to)], b""))
}

fn alternates(entries: &[(&str, &str)]) -> String {
    entries.iter().map(|(lang, href)| format!(r#"<link rel="alternate" hreflang="{lang}" href="{href}">"#)).collect()
}

/// Pages linked from the home page (everything but what only sitemaps,
/// redirects and canonicals reach).
const LINKED: &[&str] = &[
    "/a",
    "/b",
    "/dup-title-1",
    "/dup-title-2",
    "/dup-desc-1",
    "/dup-desc-2",
    "/dup-text-1",
    "/dup-text-2",
    "/broken-linker",
    "/external-linker",
    "/redirect-linker",
    "/canon-error",
    "/canon-redirect",
    "/canon-noindex",
    "/canon-chain",
    "/canon-mismatch",
    "/en",
    "/fr",
    "/de",
    "/es",
    "/it",
    "/deep/1",
    "/dead-end",
    "/nofollow-linker",
    "/slow",
    "/noindexed",
];

/// The planted site. `dead` is a closed loopback port (a broken external link).
fn planted(seen: &Seen, dead: u16) -> Action {
    let host = seen.header("host").unwrap_or_default().to_string();
    let path = seen.path.as_str();
    let html = |body: String| html_from(&host, body);
    let dup_text = |slug: &str| page(slug, "shared", &format!(r#"<link rel="canonical" href="/{slug}">"#), "");
    match path {
        "/robots.txt" => Action::Send(response(
            200,
            &[("Content-Type", "text/plain")],
            format!("User-agent: *\nDisallow: /private/\n\nSitemap: http://{host}/sitemap.xml\n").as_bytes(),
        )),
        "/sitemap.xml" => {
            let listed = ["/", "/orphan", "/noindexed", "/private/page", "/canon-redirect", "/gone", "/moved"];
            let urls: String = listed.iter().map(|p| format!("<url><loc>http://{host}{p}</loc></url>")).collect();
            let xml = format!(
                r#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>"#
            );
            Action::Send(response(200, &[("Content-Type", "application/xml")], xml.as_bytes()))
        }
        "/" => html(clean("/", &links(LINKED))),
        "/a" | "/b" | "/chain-3" | "/orphan" | "/private/page" | "/deep/6" => html(clean(path, "")),
        "/dup-title-1" | "/dup-title-2" => {
            let canonical = format!(r#"<link rel="canonical" href="{path}">"#);
            html(render(
                "A title that two pages of the site share",
                &description(&path[1..]),
                &path[1..],
                &canonical,
                "",
            ))
        }
        "/dup-desc-1" | "/dup-desc-2" => {
            let canonical = format!(r#"<link rel="canonical" href="{path}">"#);
            let title = format!("The {} page of the planted test site", &path[1..]);
            html(render(&title, &description("shared-description"), &path[1..], &canonical, ""))
        }
        "/dup-text-1" => html(dup_text("dup-text-1")),
        "/dup-text-2" => html(dup_text("dup-text-2")),
        "/broken-linker" => html(clean(path, &links(&["/missing", "/a"]))),
        "/external-linker" => html(clean(path, &format!(r#"<a href="http://localhost:{dead}/x">A friend's page</a>"#))),
        "/redirect-linker" => html(clean(path, &links(&["/chain-1", "/loop-a"]))),
        "/chain-1" => redirect(301, "/chain-2"),
        "/chain-2" => redirect(301, "/chain-3"),
        "/loop-a" => redirect(302, "/loop-b"),
        "/loop-b" => redirect(302, "/loop-a"),
        "/moved" => redirect(301, "/a"),
        "/canon-error" => html(page("canon-error", "canon-error", r#"<link rel="canonical" href="/gone">"#, "")),
        "/canon-redirect" => {
            html(page("canon-redirect", "canon-redirect", r#"<link rel="canonical" href="/moved">"#, ""))
        }
        "/canon-noindex" => {
            html(page("canon-noindex", "canon-noindex", r#"<link rel="canonical" href="/noindexed">"#, ""))
        }
        "/noindexed" => html(clean(path, "").replace("<head>", r#"<head><meta name="robots" content="noindex">"#)),
        "/canon-chain" => {
            html(page("canon-chain", "canon-chain", r#"<link rel="canonical" href="/canon-middle">"#, ""))
        }
        "/canon-middle" => html(page("canon-middle", "canon-middle", r#"<link rel="canonical" href="/b">"#, "")),
        "/canon-mismatch" => Action::Send(response(
            200,
            &[("Content-Type", "text/html"), ("Link", "</a>; rel=\"canonical\""), CSP, NOSNIFF],
            clean(path, "").replace("href=\"/", &format!("href=\"http://{host}/")).as_bytes(),
        )),
        "/en" | "/fr" => {
            let head = alternates(&[("en", "/en"), ("fr", "/fr"), ("x-default", "/en")]);
            html(page(&path[1..], &path[1..], &format!(r#"<link rel="canonical" href="{path}">{head}"#), ""))
        }
        "/de" => html(page("de", "de", &alternates(&[("de", "/de"), ("en", "/en"), ("x-default", "/en")]), "")),
        "/es" => html(page("es", "es", &alternates(&[("es", "/es"), ("en-gb", "/gone")]), "")),
        "/it" => html(page("it", "it", &alternates(&[("en", "/en"), ("x-default", "/en")]), "")),
        "/dead-end" => html(clean(path, "").replace(r#"<a href="/">Back to the home page</a>"#, "")),
        "/nofollow-linker" => html(clean(path, r#"<a href="/b" rel="nofollow">The b page, not endorsed</a>"#)),
        "/slow" => match html(clean(path, "")) {
            Action::Send(bytes) => Action::SendAfter(Duration::from_millis(400), bytes),
            other => other,
        },
        "/gone" => Action::Send(response(410, &[], b"gone")),
        deep if deep.starts_with("/deep/") => {
            let n: u32 = deep[6..].parse().unwrap_or(0);
            html(clean(deep, &links(&[&format!("/deep/{}", n + 1)])))
        }
        _ => Action::Send(response(404, &[("Content-Type", "text/html")], b"<title>Not found</title>")),
    }
}

/// Runs `pagelens crawl` with `args` into a temporary folder: its exit
/// status, output and the report.
fn crawl(url: &str, args: &[&str]) -> (std::process::ExitStatus, String, Value) {
    let dir = TempDir::new("crawl");
    let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(["crawl", url, "--allow-private-fetch", "--fetch-ports", "any", "--out"])
        .arg(dir.path())
        .args(args)
        .output()
        .expect("run pagelens crawl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report = std::fs::read(dir.path().join("report.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);
    (out.status, text, report)
}

/// Issue id -> the paths it is reported on.
fn issues_by_path(report: &Value, origin: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for issue in report["issues"].as_array().expect("issues") {
        for page in issue["pages"].as_array().unwrap() {
            let url = page["url"].as_str().unwrap();
            found.entry(issue["id"].as_str().unwrap().into()).or_default().insert(url.replace(origin, ""));
        }
    }
    found
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn every_planted_problem_is_reported_on_exactly_its_pages() {
    let dead = closed_port();
    let origin = Origin::start(move |seen| planted(seen, dead));
    let base = origin.url("");
    let (status, output, report) =
        crawl(&origin.url("/"), &["--rate", "0", "--slow-first-byte-ms", "300", "--fetch-retries", "0"]);
    assert!(status.success(), "{output}");
    let found = issues_by_path(&report, &base);
    let set = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect::<BTreeSet<String>>();
    // Site-level issues: exactly these pages.
    let expected: BTreeMap<&str, BTreeSet<String>> = [
        ("duplicate-title", set(&["/dup-title-1", "/dup-title-2"])),
        ("duplicate-description", set(&["/dup-desc-1", "/dup-desc-2"])),
        ("duplicate-content", set(&["/dup-text-1", "/dup-text-2"])),
        ("broken-internal-link", set(&["/broken-linker"])),
        ("broken-external-link", set(&["/external-linker"])),
        ("redirect-chain", set(&["/chain-1"])),
        ("redirect-loop", set(&["/loop-a", "/loop-b"])),
        ("link-to-redirect", set(&["/redirect-linker"])),
        ("canonical-to-error", set(&["/canon-error"])),
        ("canonical-to-redirect", set(&["/canon-redirect"])),
        ("canonical-to-noindex", set(&["/canon-noindex"])),
        ("canonical-to-non-canonical", set(&["/canon-chain"])),
        ("canonical-mismatch", set(&["/canon-mismatch"])),
        ("hreflang-not-reciprocal", set(&["/de", "/it"])),
        ("hreflang-to-error", set(&["/es"])),
        ("hreflang-no-x-default", set(&["/es"])),
        ("hreflang-no-self", set(&["/it"])),
        ("orphan-page", set(&["/orphan"])),
        ("sitemap-noindex", set(&["/noindexed"])),
        ("sitemap-blocked", set(&["/private/page"])),
        ("sitemap-non-canonical", set(&["/canon-redirect"])),
        ("sitemap-error", set(&["/gone"])),
        ("sitemap-redirect", set(&["/moved"])),
        ("deep-page", set(&["/deep/5", "/deep/6"])),
        ("dead-end", set(&["/dead-end"])),
        ("internal-nofollow", set(&["/nofollow-linker"])),
        ("mixed-nofollow-incoming", set(&["/b"])),
        ("slow-first-byte", set(&["/slow"])),
    ]
    .into_iter()
    .collect();
    let got: BTreeMap<&str, BTreeSet<String>> =
        expected.keys().map(|id| (*id, found.get(*id).cloned().unwrap_or_default())).collect();
    assert_eq!(got, expected, "{output}");
    // No clean page is flagged, by the site's checks or the page's own.
    let clean = ["/", "/a", "/chain-3", "/en", "/fr", "/deep/1", "/deep/2", "/deep/3", "/deep/4", "/canon-middle"];
    for (id, pages) in &found {
        for page in clean {
            assert!(!pages.contains(page), "{page} is flagged with {id}");
        }
    }
    // The related URLs name what is wrong.
    let issue = |id: &str| report["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().unwrap();
    assert_eq!(issue("broken-internal-link")["pages"][0]["related"], serde_json::json!([format!("{base}/missing")]));
    assert_eq!(
        issue("redirect-chain")["pages"][0]["related"],
        serde_json::json!([format!("{base}/chain-2"), format!("{base}/chain-3")])
    );
    // Pages: depth, robots, sitemaps.
    let row = |path: &str| {
        let url = format!("{base}{path}");
        report["pages"].as_array().unwrap().iter().find(|p| p["url"] == url.as_str()).cloned().unwrap_or(Value::Null)
    };
    assert_eq!((row("/")["depth"].as_u64(), row("/deep/6")["depth"].as_u64()), (Some(0), Some(6)));
    assert_eq!(row("/chain-3")["depth"].as_u64(), Some(2), "a redirect is no click");
    assert_eq!(row("/private/page")["error"], "robots-txt");
    assert_eq!((row("/orphan")["in_sitemap"].as_bool(), row("/orphan")["depth"].as_u64()), (Some(true), None));
    assert_eq!(report["depth_histogram"][0], 1);
    // Nothing robots.txt disallows was fetched.
    assert!(origin.seen().iter().all(|s| !s.path.starts_with("/private/")));
    // The CSVs are there too, one row a finding.
    assert!(output.contains("duplicate-title"), "{output}");
}

/// Notes of a report, joined.
fn notes(report: &Value) -> String {
    report["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

#[test]
fn a_start_url_the_guard_refuses_is_an_error_and_nothing_is_fetched() {
    let origin = Origin::start(|_| html_from("x", clean("/", "")));
    let dir = TempDir::new("crawl-refused");
    let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(["crawl", &origin.url("/"), "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("blocked-address"), "{stderr}");
    assert!(origin.seen().is_empty());
    assert!(!dir.path().join("report.json").exists());
    // Unlimited rate is refused for a site the guard was not opened to.
    let (status, output, _) = crawl("http://example.com/", &["--rate", "0", "--fetch-allow", "10.9.0.0/16"]);
    assert!(!status.success() && output.contains("rate-unlimited"), "{output}");
}

#[test]
fn an_unreachable_site_is_a_report_that_says_so() {
    let (status, output, report) = crawl(&format!("http://127.0.0.1:{}/", closed_port()), &["--fetch-retries", "0"]);
    assert!(status.success(), "{output}");
    assert!(notes(&report).contains("the start page could not be fetched"), "{report}");
    assert_eq!(report["pages"][0]["error"], "connect-refused");
    assert_eq!(report["errors"], 1);
}

#[test]
fn robots_txt_disallowing_everything_fetches_nothing_else() {
    let origin = Origin::start(|seen| match seen.path.as_str() {
        "/robots.txt" => Action::Send(response(200, &[], b"User-agent: *\nDisallow: /\n")),
        _ => html_from(seen.header("host").unwrap_or_default(), clean("/", "")),
    });
    let (status, output, report) = crawl(&origin.url("/"), &["--rate", "0"]);
    assert!(status.success(), "{output}");
    assert!(notes(&report).contains("1 URLs not fetched: robots.txt disallows them"), "{report}");
    assert_eq!(report["pages"][0]["error"], "robots-txt");
    let fetched: Vec<String> = origin.seen().iter().map(|s| s.path.clone()).collect();
    assert!(fetched.iter().all(|p| p == "/robots.txt" || p == "/sitemap.xml"), "{fetched:?}");
}

#[test]
fn a_redirect_loop_at_the_root_ends() {
    let origin = Origin::start(|seen| match seen.path.as_str() {
        "/" => redirect(301, "/home"),
        "/home" => redirect(301, "/"),
        _ => Action::Send(response(404, &[], b"")),
    });
    let (status, output, report) = crawl(&origin.url("/"), &["--rate", "0"]);
    assert!(status.success(), "{output}");
    let found = issues_by_path(&report, &origin.url(""));
    assert_eq!(found["redirect-loop"], ["/", "/home"].iter().map(|s| s.to_string()).collect());
}

#[test]
fn huge_sitemaps_and_gzip_bombs_are_capped_with_a_note() {
    // 120,000 entries (the protocol's cap is 50,000 a file) and 64 MiB of
    // zeros gzipped to a few kilobytes.
    let listed: String = (0..120_000).map(|i| format!("<url><loc>/p/{i}</loc></url>")).collect();
    let listed = Arc::new(format!("<urlset>{listed}</urlset>").into_bytes());
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..64 {
        bomb.write_all(&[0u8; 1 << 20]).unwrap();
    }
    let bomb = Arc::new(bomb.finish().unwrap());
    let origin = Origin::start(move |seen| {
        let host = seen.header("host").unwrap_or_default().to_string();
        match seen.path.as_str() {
            "/robots.txt" => Action::Send(response(
                200,
                &[],
                format!("Sitemap: http://{host}/big.xml\nSitemap: http://{host}/bomb.xml.gz\n").as_bytes(),
            )),
            "/big.xml" => Action::Send(response(200, &[("Content-Type", "application/xml")], &listed)),
            "/bomb.xml.gz" => Action::Send(response(200, &[("Content-Type", "application/gzip")], &bomb)),
            path => html_from(&host, clean(path, "")),
        }
    });
    let (status, output, report) = crawl(&origin.url("/"), &["--rate", "0", "--max-pages", "20"]);
    assert!(status.success(), "{output}");
    let said = notes(&report);
    assert!(said.contains("big.xml: 119980 entries past the cap were not read"), "{said}");
    assert!(said.contains("bomb.xml.gz") && said.contains("over 50 MB unpacked is refused"), "{said}");
    assert_eq!(report["pages_fetched"], 20);
}

#[test]
fn endless_calendars_and_self_links_stop() {
    let origin = Origin::start(|seen| {
        let (path, host) = (seen.path.clone(), seen.header("host").unwrap_or_default().to_string());
        let body = match path.strip_prefix("/cal/") {
            // Every month links to the next one, without end.
            Some(n) => links(&[&format!("/cal/{}", n.parse::<u64>().unwrap_or(0) + 1)]),
            // The home page links to itself 100,000 times, and to the calendar.
            None => format!("{}{}", r#"<a href="/">Home</a>"#.repeat(100_000), links(&["/cal/1"])),
        };
        html_from(&host, clean(&path, &body))
    });
    let (status, output, report) =
        crawl(&origin.url("/"), &["--rate", "0", "--max-per-pattern", "15", "--max-depth", "1000"]);
    assert!(status.success(), "{output}");
    assert!(notes(&report).contains("1 URLs not fetched: their URL shape reached max_per_pattern"), "{report}");
    let pages = report["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 16, "the home page and 15 months");
    assert_eq!(pages[0]["links_out"], 2, "100,000 links to itself are one edge");
}

#[test]
fn non_html_at_the_start_url_is_said_so() {
    let origin = Origin::start(|_| Action::Send(response(200, &[("Content-Type", "application/pdf")], b"%PDF-1.4")));
    let (status, output, report) = crawl(&origin.url("/file"), &["--rate", "0", "--no-sitemaps"]);
    assert!(status.success(), "{output}");
    assert!(notes(&report).contains("the start URL is not an HTML page (application/pdf)"), "{report}");
    assert_eq!(report["html_pages"], 0);
}

/// The test service with a fetcher open to loopback and unpaced.
fn crawl_server() -> pagelens::reactor::Server {
    let fetch = FetchConfig { guard: Guard::open(), per_origin_rate: 100_000.0, retries: 0, ..FetchConfig::default() };
    start_full(config(), engine_config(), api_config(), fetch)
}

fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let resp = call(addr, &get(path));
    (resp.status, resp.text())
}

#[test]
fn the_api_runs_a_crawl_as_a_task_and_serves_its_report() {
    let dead = closed_port();
    let origin = Origin::start(move |seen| planted(seen, dead));
    let server = crawl_server();
    let addr = server.local_addr();
    let resp = call(addr, &post("/crawl", &json!({"url": origin.url("/"), "rate": 0, "slow_first_byte_ms": 300}), ""));
    assert_eq!(resp.status, 202, "{}", resp.text());
    let accepted = json_of(&resp);
    let id = accepted["task_id"].as_str().unwrap().to_string();
    assert_eq!(resp.header("location"), Some(format!("/crawl/{id}").as_str()));
    assert_eq!(accepted["report_url"], format!("/crawl/{id}/report.html"));
    let done = wait_for(addr, &id, &["completed", "failed", "error"]);
    assert_eq!(done["status"], "completed", "{done}");
    // The status carries the report; the views are cut from it.
    let (status, body) = get_text(addr, &format!("/crawl/{id}"));
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, report["kind"].as_str()), (200, Some("crawl")));
    let expected = issues_by_path(&report["result"], &origin.url(""));
    assert_eq!(expected["redirect-loop"].len(), 2);
    let (status, body) = get_text(addr, &format!("/crawl/{id}/issues"));
    assert_eq!(status, 200);
    assert_eq!(issues_by_path(&serde_json::from_str(&body).unwrap(), &origin.url("")), expected);
    let (status, body) = get_text(addr, &format!("/crawl/{id}/pages?issue=duplicate-title"));
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let urls: BTreeSet<&str> = lines.iter().map(|l| l["url"].as_str().unwrap()).collect();
    assert_eq!(status, 200);
    assert_eq!(urls, [origin.url("/dup-title-1"), origin.url("/dup-title-2")].iter().map(String::as_str).collect());
    let (status, body) = get_text(addr, &format!("/crawl/{id}/pages"));
    assert_eq!((status, body.lines().count()), (200, report["result"]["pages"].as_array().unwrap().len()));
    let (status, csv) = get_text(addr, &format!("/crawl/{id}/report.csv"));
    assert_eq!(status, 200);
    assert!(csv.starts_with("issue,severity,url,related\r\n"), "{csv}");
    assert!(csv.contains(&format!(
        "broken-internal-link,high,{},{}",
        origin.url("/broken-linker"),
        origin.url("/missing")
    )));
    // The HTML report, in a browser: every issue listed; sorting and filtering work.
    let wait = "document.querySelectorAll('#pages tbody tr').length > 0";
    let state = r#"(() => {
        const rows = () => [...document.querySelectorAll('#pages tbody tr')].map(r => r.children[0].textContent);
        const all = rows().length;
        const depth = [...document.querySelectorAll('th')].find(t => t.dataset.key === 'depth');
        depth.click(); depth.click();
        const deepest = rows()[0];
        const pick = document.getElementById('issue-filter');
        pick.value = 'duplicate-content'; pick.dispatchEvent(new Event('change'));
        const duplicates = rows();
        pick.value = ''; pick.dispatchEvent(new Event('change'));
        const text = document.getElementById('filter');
        text.value = 'canon-'; text.dispatchEvent(new Event('input'));
        return { all, deepest, duplicates, canon: rows().length, issues: document.querySelectorAll('#issues details').length,
                 bars: document.querySelectorAll('#depths .bar').length, shown: document.getElementById('shown').textContent };
    })()"#;
    let page = in_chromium(&format!("http://{addr}/crawl/{id}/report.html"), wait, state, None);
    let pages = report["result"]["pages"].as_array().unwrap().len();
    assert_eq!(page["all"], pages, "{page}");
    assert_eq!(page["deepest"], origin.url("/deep/6"), "{page}");
    assert_eq!(page["duplicates"], json!([origin.url("/dup-text-1"), origin.url("/dup-text-2")]), "{page}");
    assert_eq!(page["canon"], 6, "the five canon-* pages and canon-middle: {page}");
    assert_eq!(page["issues"], report["result"]["issues"].as_array().unwrap().len());
    assert_eq!(page["bars"], report["result"]["depth_histogram"].as_array().unwrap().len());
}

#[test]
fn crawl_requests_are_checked_and_unfinished_crawls_say_so() {
    let server = crawl_server();
    let addr = server.local_addr();
    let bad = |body: Value| {
        let resp = call(addr, &post("/crawl", &body, ""));
        (resp.status, json_of(&resp)["code"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(bad(json!({})), (422, "bad-url".into()));
    assert_eq!(bad(json!({"url": "ftp://example.com/"})), (422, "bad-url".into()));
    assert_eq!(bad(json!({"url": "https://example.com/", "max_pages": 0})), (422, "invalid-field".into()));
    assert_eq!(bad(json!({"url": "https://example.com/", "max_pages": 100_001})), (422, "invalid-field".into()));
    assert_eq!(bad(json!({"url": "https://example.com/", "rate": 1e-300})), (422, "invalid-field".into()));
    assert_eq!(bad(json!({"url": "https://example.com/", "colour": "red"})), (422, "invalid-field".into()));
    assert_eq!(bad(json!({"url": "https://example.com/", "priority": "urgent"})), (422, "bad-priority".into()));
    assert_eq!(bad(json!({"url": "https://example.com/", "timeout_ms": -1})), (422, "bad-timeout".into()));
    assert_eq!(bad(json!([1])), (422, "invalid-field".into()));
    // A server whose guard is closed refuses a crawl of loopback at once.
    let closed = start_full(config(), engine_config(), api_config(), FetchConfig::default());
    let resp = call(closed.local_addr(), &post("/crawl", &json!({"url": "http://127.0.0.1:9/"}), ""));
    assert_eq!((resp.status, json_of(&resp)["code"].as_str()), (403, Some("blocked-address")));
    // A slow site: its report is not there while it runs; DELETE stops it.
    let origin = Origin::start(|seen| {
        let host = seen.header("host").unwrap_or_default().to_string();
        let n: u64 = seen.path.trim_start_matches("/p").parse().unwrap_or(0);
        match html_from(&host, clean(&seen.path, &links(&[&format!("/p{}", n + 1)]))) {
            Action::Send(bytes) => Action::SendAfter(Duration::from_millis(100), bytes),
            other => other,
        }
    });
    let id = submit_crawl(addr, json!({"url": origin.url("/"), "rate": 0}));
    // Live progress: the crawl's figures in its stage.
    let started = std::time::Instant::now();
    loop {
        let (_, body) = get_text(addr, &format!("/crawl/{id}"));
        let stage =
            serde_json::from_str::<Value>(&body).unwrap()["progress"]["stage"].as_str().unwrap_or("").to_string();
        if stage.starts_with("crawling: ") && !stage.starts_with("crawling: 0 fetched") {
            assert!(stage.contains(" queued, ") && stage.ends_with(" pages/s"), "{stage}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no progress: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = get_text(addr, &format!("/crawl/{id}/report.html"));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("crawl-not-completed") && body.contains("crawling: "), "{body}");
    let resp = call(addr, &format!("DELETE /crawl/{id} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let ended = wait_for(addr, &id, &["cancelled"]);
    assert_eq!(ended["kind"], "crawl");
    // Another kind of task is no crawl.
    let page = submit(addr, json!({"html": "<title>x</title>"}));
    assert_eq!(get_text(addr, &format!("/crawl/{page}")).0, 404);
}

fn submit_crawl(addr: std::net::SocketAddr, body: Value) -> String {
    let resp = call(addr, &post("/crawl", &body, ""));
    assert_eq!(resp.status, 202, "{}", resp.text());
    json_of(&resp)["task_id"].as_str().unwrap().to_string()
}

#[test]
fn sitemap_indexes_and_gzipped_sitemaps_are_read() {
    let origin = Origin::start(|seen| {
        let host = seen.header("host").unwrap_or_default().to_string();
        let set = |paths: &[&str]| {
            let urls: String = paths.iter().map(|p| format!("<url><loc>http://{host}{p}</loc></url>")).collect();
            format!("<urlset>{urls}</urlset>").into_bytes()
        };
        match seen.path.as_str() {
            // No robots.txt: /sitemap.xml is looked for, and is an index.
            "/sitemap.xml" => Action::Send(response(
                200,
                &[("Content-Type", "application/xml")],
                format!(
                    "<sitemapindex><sitemap><loc>http://{host}/plain.xml</loc></sitemap>\
                     <sitemap><loc>http://{host}/packed.xml.gz</loc></sitemap></sitemapindex>"
                )
                .as_bytes(),
            )),
            "/plain.xml" => Action::Send(response(200, &[("Content-Type", "application/xml")], &set(&["/from-plain"]))),
            "/packed.xml.gz" => {
                let mut packed = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                packed.write_all(&set(&["/from-packed"])).unwrap();
                Action::Send(response(200, &[("Content-Type", "application/gzip")], &packed.finish().unwrap()))
            }
            path => html_from(&host, clean(path, "")),
        }
    });
    let (status, output, report) = crawl(&origin.url("/"), &["--rate", "0"]);
    assert!(status.success(), "{output}");
    let found = issues_by_path(&report, &origin.url(""));
    let orphans: BTreeSet<String> = ["/from-packed", "/from-plain"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found.get("orphan-page"), Some(&orphans), "{report}");
}

#[test]
fn robots_crawl_delay_paces_the_crawl() {
    let origin = Origin::start(|seen| {
        let host = seen.header("host").unwrap_or_default().to_string();
        match seen.path.as_str() {
            "/robots.txt" => Action::Send(response(200, &[], b"User-agent: *\nCrawl-delay: 0.2\n")),
            "/" => html_from(&host, clean("/", &links(&["/a", "/b", "/c"]))),
            path => html_from(&host, clean(path, "")),
        }
    });
    let (status, output, report) = crawl(&origin.url("/"), &["--rate", "0", "--no-sitemaps"]);
    assert!(status.success(), "{output}");
    assert!(notes(&report).contains("robots.txt asks for 0.2 s between requests"), "{report}");
    let mut pages: Vec<std::time::Instant> =
        origin.seen().iter().filter(|s| s.path != "/robots.txt").map(|s| s.at).collect();
    pages.sort();
    assert_eq!(pages.len(), 4);
    for pair in pages.windows(2) {
        // The origin notes a request when its head arrives: a little jitter either side.
        assert!(pair[1] - pair[0] >= Duration::from_millis(180), "{:?} apart", pair[1] - pair[0]);
    }
}

/// The real binary on a SQLite file, killed with SIGKILL in the middle of a
/// crawl and started again: the crawl resumes from its journal, fetching
/// again only what was in flight, and its report covers the whole site.
#[test]
fn a_crawl_killed_midway_resumes_where_it_was() {
    const PAGES: u64 = 60;
    let origin = Origin::start(|seen| {
        let host = seen.header("host").unwrap_or_default().to_string();
        let n: u64 = seen.path.trim_start_matches("/p").parse().unwrap_or(0);
        // A chain of pages, 40 ms each: the kill lands midway.
        let next = if n + 1 < PAGES { links(&[&format!("/p{}", n + 1)]) } else { String::new() };
        match html_from(&host, clean(&seen.path, &next)) {
            Action::Send(bytes) if seen.path != "/robots.txt" => Action::SendAfter(Duration::from_millis(40), bytes),
            _ => Action::Send(response(404, &[], b"")),
        }
    });
    let dir = TempDir::new("crawl-resume");
    let store = format!("sqlite:{}", dir.path().join("tasks.db").display());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store,
        "--allow-private-fetch",
        "--fetch-ports",
        "any",
        "--fetch-rate",
        "1000",
    ];
    let (mut server, addr) = crate::binary::spawn_binary(&args, &[]);
    let id = submit_crawl(addr, json!({"url": origin.url("/p0"), "rate": 0, "max_depth": 100, "sitemaps": false}));
    let pages = |origin: &Origin| origin.seen().iter().filter(|s| s.path.starts_with("/p")).count() as u64;
    let started = std::time::Instant::now();
    while pages(&origin) < 20 {
        assert!(started.elapsed() < Duration::from_secs(20), "the crawl did not get going");
        std::thread::sleep(Duration::from_millis(10));
    }
    // While it runs, its pages as they come, from its journal: read a few
    // off the stream (which would last as long as the crawl).
    let mut stream = crate::util::connect(addr);
    stream.write_all(&get(&format!("/crawl/{id}/pages"))).unwrap();
    let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
    while seen.windows(6).filter(|w| w == b"\"url\":").count() < 10 {
        let n = std::io::Read::read(&mut stream, &mut buf).expect("the stream goes on");
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("application/x-ndjson"), "{text}");
    assert!(pages(&origin) < PAGES / 2, "read while the crawl runs");
    drop(stream);
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let before = pages(&origin);

    let (mut again, addr) = crate::binary::spawn_binary(&args, &[]);
    // Its pages as they come, from the journal read back on: the stream
    // ends with the crawl (or, if it already has, the report's rows).
    let (status, body) = get_text(addr, &format!("/crawl/{id}/pages"));
    let urls: BTreeSet<String> =
        body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["url"].as_str().unwrap().to_string()).collect();
    assert_eq!((status, urls.len() as u64), (200, PAGES + 1), "{body}");
    let done = wait_for(addr, &id, &["completed", "failed", "error"]);
    assert_eq!(done["status"], "completed", "{done}");
    let report = &done["result"];
    assert_eq!(report["pages_fetched"], PAGES + 1, "the chain and the home page each links to");
    assert!(
        notes(report).contains("resumed after a restart"),
        "notes {:?}, {before} pages before the kill, {} after",
        report["notes"],
        pages(&origin)
    );
    // Each page was fetched once, but for those in flight (or not yet in
    // the journal) at the kill: the crawl keeps 8 fetches going.
    let total = pages(&origin);
    assert!(total >= PAGES && total - PAGES <= 10, "{total} fetches of {PAGES} pages, {before} before the kill");
    crate::binary::stop(&mut again);
}

#[test]
fn pagination_and_alternate_links_are_followed() {
    let origin = Origin::start(|seen| {
        let host = seen.header("host").unwrap_or_default().to_string();
        let head = r#"<link rel="next" href="/page2"><link rel="alternate" media="only screen" href="/m/">"#;
        match seen.path.as_str() {
            "/" => html_from(&host, page("home", "home", head, "")),
            path => html_from(&host, clean(path, "")),
        }
    });
    let (status, output, report) = crawl(&origin.url("/"), &["--rate", "0", "--no-sitemaps"]);
    assert!(status.success(), "{output}");
    let depth = |path: &str| {
        let url = origin.url(path);
        report["pages"].as_array().unwrap().iter().find(|p| p["url"] == url.as_str()).map(|p| p["depth"].clone())
    };
    assert_eq!((depth("/page2"), depth("/m/")), (Some(json!(1)), Some(json!(1))), "{report}");
}

#[test]
fn a_sitemap_over_the_fetch_limit_is_refused_with_a_note() {
    // Ten million entries would be ~450 MB: past --fetch-max-bytes, the
    // sitemap is not read at all, and the report says so.
    let listed: String = (0..40_000).map(|i| format!("<url><loc>/p/{i}</loc></url>")).collect();
    let listed = Arc::new(format!("<urlset>{listed}</urlset>").into_bytes());
    let origin = Origin::start(move |seen| {
        let host = seen.header("host").unwrap_or_default().to_string();
        match seen.path.as_str() {
            "/sitemap.xml" => Action::Send(response(200, &[("Content-Type", "application/xml")], &listed)),
            path => html_from(&host, clean(path, "")),
        }
    });
    let (status, output, report) = crawl(&origin.url("/"), &["--rate", "0", "--fetch-max-bytes", "256KiB"]);
    assert!(status.success(), "{output}");
    let said = notes(&report);
    assert!(said.contains("sitemap.xml") && said.contains("response-too-large"), "{said}");
    assert_eq!(report["pages_fetched"], 1, "{said}");
}

/// On a terminal (a pseudo-terminal from `script`), `pagelens crawl` keeps
/// a progress line going on standard error; in a pipe it writes none.
#[test]
fn a_terminal_gets_a_progress_line() {
    let origin = Origin::start(|seen| {
        let host = seen.header("host").unwrap_or_default().to_string();
        let n: u64 = seen.path.trim_start_matches("/p").parse().unwrap_or(0);
        let next = if n < 8 { links(&[&format!("/p{}", n + 1)]) } else { String::new() };
        match html_from(&host, clean(&seen.path, &next)) {
            // Slow enough for a progress tick (every 250 ms) to fall inside the crawl.
            Action::Send(bytes) => Action::SendAfter(Duration::from_millis(60), bytes),
            other => other,
        }
    });
    let command = format!(
        "{} crawl {} --rate 0 --no-sitemaps --allow-private-fetch --fetch-ports any > /dev/null",
        env!("CARGO_BIN_EXE_pagelens"),
        origin.url("/p0")
    );
    let out = Command::new("script").args(["-qec", &command, "/dev/null"]).output().expect("script (util-linux) runs");
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{terminal}");
    assert!(
        terminal.contains("\r") && terminal.contains(" fetched, ") && terminal.contains(" pages/s"),
        "{terminal:?}"
    );
    let (_, piped, _) = crawl(&origin.url("/p0"), &["--rate", "0", "--no-sitemaps"]);
    assert!(!piped.contains(" pages/s"), "{piped}");
}
