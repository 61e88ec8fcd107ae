//! The SEO engine through its library API and `pagelens analyze`: every
//! check passing and failing on hand-made pages, real pages against an
//! independent count, and bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pagelens::seo::checks::Check;
use pagelens::seo::{analyze, Analysis, AnalyzeError, Options};

fn run(html: &str, url: Option<&str>) -> Analysis {
    let options = Options {
        url: url.map(|u| u.parse().unwrap()),
        include_links: true,
        include_images: true,
        ..Options::default()
    };
    analyze(html.as_bytes(), &options).expect("analysis")
}

fn check<'a>(a: &'a Analysis, id: &str) -> &'a Check {
    a.checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}: {:?}", a.checks))
}

fn passes(a: &Analysis, id: &str) -> bool {
    check(a, id).passed
}

/// A page that passes every check.
const GOOD: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Handmade Fish and Chips: a Complete Home Guide</title>
<meta name="description" content="How to make crisp, golden fish and chips at home: choosing fish, the batter, double-fried chips and the sauces that go with them.">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="canonical" href="https://food.example.com/fish-and-chips">
<link rel="alternate" hreflang="en" href="https://food.example.com/fish-and-chips">
<link rel="alternate" hreflang="de-DE" href="https://food.example.com/de/fisch">
<link rel="alternate" hreflang="x-default" href="https://food.example.com/fish-and-chips">
<meta property="og:title" content="Fish and chips">
<meta property="og:description" content="At home">
<meta property="og:image" content="https://food.example.com/f.jpg">
<meta name="twitter:card" content="summary_large_image">
<script type="application/ld+json">{"@context":"https://schema.org","@type":"Recipe","name":"Fish and chips"}</script>
</head>
<body>
<h1>Fish and chips at home</h1>
<h2>Choosing the fish</h2>
<h3>Cod or haddock</h3>
<h2>The batter</h2>
<p>WORDS</p>
<a href="/batter">Batter recipe</a>
<a href="https://other.example.org/tartare">Tartare sauce from a friend</a>
<img src="/f.jpg" alt="Golden fish" width="600" height="400">
<img src="/line.png" alt="" width="600" height="2">
</body>
</html>"#;

fn good_page() -> String {
    GOOD.replace("WORDS", &"crisp golden batter ".repeat(110))
}

const URL: &str = "https://food.example.com/fish-and-chips";

#[test]
fn a_good_page_passes_every_check() {
    let a = run(&good_page(), Some(URL));
    let failed: Vec<&Check> = a.checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(a.score, 100);
    assert!(a.recommendations.is_empty());
    assert_eq!(a.title.as_deref(), Some("Handmade Fish and Chips: a Complete Home Guide"));
    assert_eq!(a.canonical.as_deref(), Some(URL));
    assert_eq!(a.lang.as_deref(), Some("en"));
    assert_eq!(a.links.internal, 1);
    assert_eq!(a.links.external, 1);
    assert_eq!(a.images.empty_alt, 1);
    assert_eq!(a.json_ld[0].types, ["Recipe"]);
    assert!(a.word_count > 300);
}

/// A JavaScript-only redirect stub is reported as such, with its target;
/// a script that may navigate on a page with content of its own is not.
#[test]
fn a_script_redirect_stub_is_a_finding() {
    let stub = "<html><head><title>Moved</title><script>location.replace('/new-home')</script></head><body>Redirecting…</body></html>";
    let a = run(stub, Some(URL));
    assert_eq!(a.script_redirect.as_deref(), Some("https://food.example.com/new-home"));
    let c = check(&a, "js-redirect");
    assert!(!c.passed && c.message.contains("redirect stub"), "{c:?}");
    assert!(a.recommendations.iter().any(|r| r.contains("script redirect")), "{:?}", a.recommendations);
    let with_content =
        good_page().replace("</head>", "<script>function go() { location.href = '/next'; }</script></head>");
    assert!(passes(&run(&with_content, Some(URL)), "js-redirect"));
}

#[test]
fn every_check_has_a_failing_page() {
    let good = good_page();
    // (check id, how to break the good page)
    let cases: Vec<(&str, String)> = vec![
        ("document-title", good.replace("<title>Handmade Fish and Chips: a Complete Home Guide</title>", "")),
        ("title-length", good.replace("Handmade Fish and Chips: a Complete Home Guide", "Fish")),
        ("meta-description", good.replace(r#"<meta name="description""#, r#"<meta name="x""#)),
        ("meta-description-length", good.replace("How to make crisp, golden fish and chips at home: choosing fish, the batter, double-fried chips and the sauces that go with them.", "Fish.")),
        ("is-crawlable", good.replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\"><meta name=\"robots\" content=\"NOINDEX\">")),
        ("is-crawlable", good.replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\"><meta name=\"googlebot\" content=\"none\">")),
        ("canonical", good.replace("https://food.example.com/fish-and-chips\">\n<link rel=\"alternate\" hreflang=\"en\"", "/fish-and-chips\">\n<link rel=\"alternate\" hreflang=\"en\"")),
        ("canonical", good.replace("<link rel=\"canonical\" href=\"https://food.example.com/fish-and-chips\">", "<link rel=\"canonical\" href=\"https://food.example.com/\">")),
        ("canonical", good.replace("<link rel=\"canonical\" href=\"https://food.example.com/fish-and-chips\">", "<link rel=\"canonical\" href=\"https://food.example.com/de/fisch\">")),
        ("canonical", good.replace("<link rel=\"canonical\" href=\"https://food.example.com/fish-and-chips\">", "<link rel=\"canonical\" href=\"https://elsewhere.example.net/fish-and-chips\">")),
        ("canonical", good.replace("<link rel=\"canonical\" href=\"https://food.example.com/fish-and-chips\">", "<link rel=\"canonical\" href=\"https://food.example.com/fish-and-chips\"><link rel=\"canonical\" href=\"https://food.example.com/other\">")),
        ("canonical", good.replace("<link rel=\"canonical\" href=\"https://food.example.com/fish-and-chips\">", "<link rel=\"canonical\" href=\"http://[::1\">")),
        ("multiple-titles", good.replace("</head>", "<title>Another title for the very same page</title></head>")),
        ("multiple-descriptions", good.replace("</head>", "<meta name=\"description\" content=\"A second description of this page, long enough to be a real description.\"></head>")),
        ("meta-in-body", good.replace("<h1>", "<meta name=\"keywords\" content=\"fish, chips\"><h1>")),
        ("http-links", good.replace("https://other.example.org/tartare", "http://other.example.org/tartare")),
        ("insecure-forms", good.replace("</body>", "<form action=\"http://food.example.com/subscribe\" method=\"post\"></form></body>")),
        ("long-alt-text", good.replace("alt=\"Golden fish\"", &format!("alt=\"{}\"", "golden fish in batter ".repeat(6)))),
        ("duplicate-ids", good.replace("<h2>Choosing the fish</h2>", "<h2 id=\"fish\">Choosing the fish</h2><p id=\"fish\">x</p>")),
        ("dom-size", good.replace("</body>", &format!("{}</body>", "<div></div>".repeat(1600)))),
        ("preview-restrictions", good.replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\"><meta name=\"robots\" content=\"nosnippet\">")),
        ("hreflang", good.replace("hreflang=\"de-DE\"", "hreflang=\"deutsch\"")),
        ("hreflang", good.replace("hreflang=\"de-DE\" href=\"https://food.example.com/de/fisch\"", "hreflang=\"de-DE\" href=\"/de/fisch\"")),
        ("link-text", good.replace(">Batter recipe<", ">click here<")),
        ("link-text", good.replace(">Batter recipe<", "> Read more… <")),
        ("crawlable-anchors", good.replace("href=\"/batter\"", "href=\"javascript:void(0)\"")),
        ("crawlable-anchors", good.replace("<a href=\"/batter\">", "<a onclick=\"go()\">")),
        ("image-alt", good.replace(" alt=\"Golden fish\"", "")),
        ("image-dimensions", good.replace(" width=\"600\" height=\"400\"", "")),
        ("viewport", good.replace("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">", "")),
        ("html-lang", good.replace("<html lang=\"en\">", "<html>")),
        ("html-lang", good.replace("<html lang=\"en\">", "<html lang=\"english language\">")),
        ("single-h1", good.replace("<h2>The batter</h2>", "<h1>The batter</h1>")),
        ("single-h1", good.replace("<h1>Fish and chips at home</h1>", "")),
        ("heading-order", good.replace("<h2>Choosing the fish</h2>", "")),
        ("title-h1-duplicate", good.replace("<h1>Fish and chips at home</h1>", "<h1>Handmade fish and chips: a complete home guide</h1>")),
        ("word-count", GOOD.replace("WORDS", "just a few words")),
        ("open-graph", good.replace("<meta property=\"og:image\" content=\"https://food.example.com/f.jpg\">", "")),
        ("twitter-card", good.replace("<meta name=\"twitter:card\" content=\"summary_large_image\">", "")),
        ("structured-data", good.replace("\"name\":\"Fish and chips\"}", "\"name\":")),
        ("charset", good.replace("<meta charset=\"utf-8\">", "")),
        ("meta-refresh", good.replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0; url=/moved\">")),
        ("js-redirect", GOOD.replace("WORDS", "Redirecting").replace("</head>", "<script>window.location.href = \"/moved\";</script></head>")),
        // Declared too late: past the first 1024 bytes, where browsers stop looking.
        ("charset", good.replace("<meta charset=\"utf-8\">", "").replace("</head>", &format!("<!-- {} --><meta charset=\"utf-8\"></head>", "x".repeat(1100)))),
        (
            "external-nofollow",
            good.replace(
                "<a href=\"/batter\">Batter recipe</a>",
                &(0..6).map(|i| format!("<a href=\"https://x{i}.example.net/\" rel=\"nofollow\">Sauce {i}</a>")).collect::<String>(),
            ),
        ),
    ];
    // No check is left out (those of fetched pages, and url-format, which
    // judges the URL rather than the page, have tests of their own).
    let covered: std::collections::HashSet<&str> = cases.iter().map(|(id, _)| *id).chain(["url-format"]).collect();
    for c in &run(&good, Some(URL)).checks {
        assert!(covered.contains(c.id), "no failing page for check {}", c.id);
    }
    for (id, page) in cases {
        let a = run(&page, Some(URL));
        assert!(!passes(&a, id), "{id} should fail: {:?}", check(&a, id));
        assert!(a.score < 100, "{id}: score {}", a.score);
        assert!(a.recommendations.iter().any(|r| !r.is_empty()), "{id}: no recommendation");
        // Breaking one thing leaves the rest passing where independent.
        if id != "charset" {
            assert!(passes(&a, "charset"), "{id}");
        }
    }
}

/// A passing check says what is good; a failing one says what is wrong.
#[test]
fn messages_say_what_is_good_or_what_is_wrong() {
    let good = run(&good_page(), Some(URL));
    let message = |a: &Analysis, id: &str| check(a, id).message.clone();
    assert!(message(&good, "word-count").ends_with("words of visible text"), "{}", message(&good, "word-count"));
    assert!(message(&good, "single-h1").starts_with("one <h1>: "));
    assert!(message(&good, "title-length").contains("within 30-60"));
    for c in &good.checks {
        for wrong in ["is thin", "missing", "no <", "lack", "invalid", "too short", "too long"] {
            assert!(!c.message.contains(wrong), "passing {} says {:?}", c.id, c.message);
        }
    }
    let thin = run(&GOOD.replace("WORDS", "just a few words"), Some(URL));
    assert!(message(&thin, "word-count").starts_with("only "), "{}", message(&thin, "word-count"));
    let two = run(&good_page().replace("<h2>The batter</h2>", "<h1>The batter</h1>"), Some(URL));
    assert_eq!(message(&two, "single-h1"), "2 <h1> elements where one should name the page");
}

#[test]
fn url_format_judges_the_pages_url() {
    for (url, flaw) in [
        ("https://food.example.com/fish_and_chips", "underscores"),
        ("https://food.example.com/fish%20and%20chips", "spaces"),
        ("https://food.example.com/recipes//fish", "repeated slashes"),
    ] {
        let a = run(&good_page().replace(URL, url), Some(url));
        assert!(!passes(&a, "url-format") && check(&a, "url-format").message.contains(flaw), "{url}");
        assert!(passes(&a, "canonical"), "{url}: only the URL is at fault");
    }
    assert!(run(&good_page(), None).checks.iter().all(|c| c.id != "url-format"), "no URL, no judgement");
    // An http page has no mixed content to judge.
    let plain = run(&good_page().replace("https://", "http://"), Some("http://food.example.com/fish-and-chips"));
    assert!(plain.checks.iter().all(|c| c.id != "http-links" && c.id != "insecure-forms"));
}

#[test]
fn security_headers_are_judged_on_fetched_pages() {
    use pagelens::seo::analysis::SecurityHeaders;
    let page = good_page();
    let fetched = |headers: &[(&str, &str)]| {
        let headers = SecurityHeaders::of(|name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v));
        let options =
            Options { url: Some(URL.parse().unwrap()), security_headers: Some(headers), ..Options::default() };
        analyze(page.as_bytes(), &options).unwrap()
    };
    assert!(run(&page, Some(URL)).checks.iter().all(|c| c.id != "security-headers"), "a sent page has no headers");
    let all = [
        ("strict-transport-security", "max-age=63072000"),
        ("content-security-policy", "default-src 'self'"),
        ("x-content-type-options", "nosniff"),
    ];
    assert!(passes(&fetched(&all), "security-headers"));
    let none = fetched(&[]);
    assert!(!passes(&none, "security-headers"));
    let message = &check(&none, "security-headers").message;
    assert!(message.contains("Strict-Transport-Security") && message.contains("nosniff"), "{message}");
    assert!(!passes(&fetched(&[all[0], all[1], ("x-content-type-options", "sniff")]), "security-headers"));
}

#[test]
fn http_status_is_checked_only_when_known() {
    let page = good_page();
    assert!(run(&page, Some(URL)).checks.iter().all(|c| c.id != "http-status-code"));
    let fetched = |status| {
        let options = Options { url: Some(URL.parse().unwrap()), status_code: Some(status), ..Options::default() };
        analyze(page.as_bytes(), &options).unwrap()
    };
    assert!(passes(&fetched(200), "http-status-code"));
    assert!(!passes(&fetched(404), "http-status-code"));
}

#[test]
fn x_robots_tag_counts_with_per_agent_rules() {
    let page = good_page();
    let with_header = |value: &str| {
        let options = Options { x_robots_tag: vec![value.into()], ..Options::default() };
        analyze(page.as_bytes(), &options).unwrap()
    };
    assert!(!passes(&with_header("noindex"), "is-crawlable"));
    assert!(!passes(&with_header("googlebot: noindex, nofollow"), "is-crawlable"));
    assert!(passes(&with_header("otherbot: noindex"), "is-crawlable"));
}

#[test]
fn conventions_of_the_design() {
    let a = run(
        r##"<html><head><base href="/docs/"><title>  Fish &amp;
        Chips </title><svg><title>icon</title></svg></head><body>
        <h1>A &lt;b&gt; &eacute;t&eacute;</h1>
        <a href="">same</a><a href="#x">frag</a><a href="javascript:go()">js</a><a href="mailto:a@b.c">mail</a>
        <a href="tel:+1">tel</a><a href="page.html" rel="sponsored ugc">rel</a><a href="https://shop.example.com/">shop</a>
        <a>not a link</a><a href=/about>unquoted</a>
        <img src=a.png><img src=b.png alt=""><img src=c.png alt="c" width=1>
        <script>var hidden = "words";</script><style>.x{}</style><noscript>no script words</noscript>
        <template><p>inert</template><!-- a comment with words --> visible words here</body></html>"##,
        Some("https://www.example.com/a/b.html"),
    );
    assert_eq!(a.title.as_deref(), Some("Fish & Chips"));
    assert_eq!(a.meta_description, None);
    assert_eq!(a.headings.h1, ["A <b> été"]);
    let l = &a.links;
    assert_eq!((l.total, l.same_page, l.javascript, l.other_scheme), (8, 2, 1, 2));
    assert_eq!((l.internal, l.external), (2, 1));
    assert_eq!((l.sponsored, l.ugc), (1, 1));
    let items = l.items.as_ref().unwrap();
    let rel = items.iter().find(|i| i.text == "rel").unwrap();
    assert_eq!(rel.href, "https://www.example.com/docs/page.html");
    let unquoted = items.iter().find(|i| i.text == "unquoted").unwrap();
    assert_eq!(unquoted.href, "https://www.example.com/about");
    let i = &a.images;
    assert_eq!((i.total, i.missing_alt, i.empty_alt, i.missing_dimensions), (3, 1, 1, 3));
    // "A <b> été" (3) + anchor texts (9 words: same frag js mail tel rel shop not a link unquoted = 11)
    // + "visible words here" (3); nothing from script, style, noscript, template, svg or comments.
    assert_eq!(a.word_count, 3 + 11 + 3);
}

#[test]
fn links_and_images_lists_can_be_left_out() {
    let options = Options::default();
    let a = analyze(good_page().as_bytes(), &options).unwrap();
    assert!(a.links.items.is_none() && a.images.items.is_none());
    assert_eq!(a.links.total, 2);
    let json = serde_json::to_value(&a).unwrap();
    assert!(json["links"].get("items").is_none());
    assert_eq!(json["images"]["total"], 2);
}

#[test]
fn bad_input_gives_an_analysis_or_a_clear_error() {
    let options = Options::default();
    assert_eq!(analyze(b"", &options).unwrap_err(), AnalyzeError::Empty);
    assert_eq!(analyze(b" \n\t ", &options).unwrap_err(), AnalyzeError::Empty);
    let garbage: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_eq!(analyze(&garbage, &options).unwrap_err(), AnalyzeError::Binary);
    // Invalid UTF-8 that declares UTF-8: replacement characters, still analysed.
    let a = analyze(b"<meta charset=utf-8><title>caf\xe9 \xff</title>", &options).unwrap();
    assert_eq!(a.title.as_deref(), Some("caf\u{fffd} \u{fffd}"));
    // Unclosed comment and script swallow the rest, as in browsers.
    let a = analyze(b"<title>t</title><!-- never closed <h1>hidden</h1>", &options).unwrap();
    assert!(a.headings.h1.is_empty());
    let a = analyze(b"<h1>shown</h1><script>never closed <h1>hidden</h1>", &options).unwrap();
    assert_eq!(a.headings.h1, ["shown"]);
    // Deep nesting: no recursion anywhere, so no stack overflow.
    let deep = "<div><a href=x>".repeat(50_000) + "deep";
    let a = analyze(deep.as_bytes(), &options).unwrap();
    assert_eq!(a.links.total, 50_000);
    // Truncated in the middle of a tag.
    let a = analyze(b"<html><head><title>x</title><meta name=\"descr", &options).unwrap();
    assert_eq!(a.title.as_deref(), Some("x"));
}

fn corpus_pages(dir: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "html")).collect()
        })
        .unwrap_or_default();
    pages.sort();
    pages
}

/// Pages where tl and a browser-like tokenizer honestly disagree.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    // `<a href="{{< docsref "/components/navbar" >}}">`: a Hugo template left
    // in an attribute. html.parser keeps the link; tl drops the element.
    ("bootstrap__examples__navbar-bottom__index.html", "links"),
];

/// Every page analyses, and its link, heading and image totals equal an
/// independent count by Python's html.parser (tests/data/count_tags.py).
fn check_against_independent_count(pages: &[PathBuf]) {
    assert!(!pages.is_empty());
    let out = Command::new("python3").arg("tests/data/count_tags.py").args(pages).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let options = Options::default();
    let mut compared = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let want: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = want["file"].as_str().unwrap();
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        let a = analyze(&std::fs::read(path).unwrap(), &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = serde_json::json!({
            "links": a.links.total, "images": a.images.total,
            "h1": a.headings.h1.len(), "h2": a.headings.h2.len(), "h3": a.headings.h3.len(),
            "h4": a.headings.h4.len(), "h5": a.headings.h5.len(), "h6": a.headings.h6.len(),
        });
        for (key, value) in got.as_object().unwrap() {
            if KNOWN_DIFFERENCES.contains(&(name, key.as_str())) {
                continue;
            }
            assert_eq!(&want[key], value, "{name}: {key}");
        }
        compared += 1;
    }
    assert_eq!(compared, pages.len());
}

#[test]
fn bundled_corpus_pages_match_an_independent_count() {
    let pages = corpus_pages(Path::new("tests/data/corpus"));
    assert_eq!(pages.len(), 11);
    check_against_independent_count(&pages);
}

#[test]
fn shared_corpus_matches_an_independent_count_when_present() {
    let pages = corpus_pages(Path::new("../shared/corpus/pages"));
    if pages.is_empty() {
        eprintln!("../shared/corpus/pages is absent (a user's clone): only the bundled pages were checked");
        return;
    }
    assert_eq!(pages.len(), 300);
    check_against_independent_count(&pages);
}

#[test]
fn legacy_encodings_are_decoded() {
    let a =
        analyze(&std::fs::read("tests/data/corpus/apache__ko__programs__htdigest.html").unwrap(), &Options::default())
            .unwrap();
    assert_eq!(a.charset, "euc-kr");
    assert!(a.title.as_deref().unwrap().starts_with("htdigest - digest authentication에"), "{:?}", a.title);
}

fn pagelens(args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn analyze_command_reads_files_and_stdin() {
    let (ok, out, err) = pagelens(
        &["analyze", "tests/data/corpus/mkdocs__about__license.html", "--url", "https://www.mkdocs.org/about/license/"],
        None,
    );
    assert!(ok, "{err}");
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["url"], "https://www.mkdocs.org/about/license/");
    for field in [
        "title",
        "meta_description",
        "canonical",
        "robots",
        "lang",
        "viewport",
        "headings",
        "links",
        "images",
        "open_graph",
        "json_ld",
        "word_count",
        "checks",
        "score",
    ] {
        assert!(a.get(field).is_some(), "{field} missing");
    }
    assert!(a["links"]["items"].is_array());

    let (ok, out, err) = pagelens(&["analyze", "-", "--pretty", "--no-links"], Some(good_page().as_bytes()));
    assert!(ok, "{err}");
    assert!(out.contains("\n  \"title\": "), "pretty output");
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(a["links"].get("items").is_none());
}

#[test]
fn analyze_command_errors_are_clear() {
    let (ok, _, err) = pagelens(&["analyze", "/no/such/page.html"], None);
    assert!(!ok && err.contains("/no/such/page.html") && err.contains("No such file"), "{err}");
    let (ok, _, err) = pagelens(&["analyze", "-"], Some(b""));
    assert!(!ok && err.contains("empty"), "{err}");
    let big = vec![b'a'; 2048];
    let (ok, _, err) = pagelens(&["analyze", "-", "--max-page-bytes", "1KiB"], Some(&big));
    assert!(!ok && err.contains("larger than --max-page-bytes"), "{err}");
    // The command line keeps the service's guard: loopback is refused.
    let (ok, _, err) = pagelens(&["analyze", "http://127.0.0.1/"], None);
    assert!(!ok && err.contains("blocked-address"), "{err}");
    let (ok, _, err) = pagelens(&["analyze", "file:///etc/passwd"], None);
    assert!(!ok && err.contains("No such file"), "{err}");
}
