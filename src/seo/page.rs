//! The page model: what one walk over tl's tree finds, before any URL is
//! resolved or any check is judged.
//!
//! The walk keeps its own stack instead of recursing (tl's recursive helpers
//! overflow the thread stack on a few thousand nested tags), so depth costs
//! heap, not stack, and a hostile page cannot abort the process.

use std::borrow::Cow;
use std::collections::BTreeMap;

use tl::{HTMLTag, Node, ParserOptions};

use super::prescan::{Prescanned, RawElement};
use super::text::{clean, count_words, decode_entities, finish, push_collapsed};

/// Longest anchor or heading text kept; the rest of a runaway element (one
/// left open by broken markup) is not collected.
const MAX_TEXT: usize = 2048;

/// An `<a>` element with an `href`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anchor {
    /// The `href` as written (entities decoded, trimmed).
    pub href: String,
    /// Visible text, or `aria-label`, or the alt text of images inside.
    pub text: String,
    /// `rel` tokens, lowercased.
    pub rel: Vec<String>,
}

/// An `<img>` element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// `src` as written.
    pub src: Option<String>,
    /// `alt`: `None` when absent, `Some("")` when empty.
    pub alt: Option<String>,
    /// Both `width` and `height` are given.
    pub has_dimensions: bool,
}

/// Everything extracted from one page.
#[derive(Debug, Default)]
pub struct Page {
    /// Texts of `<title>` elements outside SVG, in order.
    pub titles: Vec<String>,
    /// `<html lang>`.
    pub lang: Option<String>,
    /// The first `<base href>`.
    pub base_href: Option<String>,
    /// Contents of `<meta name=description>`, in order.
    pub descriptions: Vec<String>,
    /// `<meta name=viewport>` content.
    pub viewport: Option<String>,
    /// `<meta charset>` or the charset of `<meta http-equiv=content-type>`.
    pub meta_charset: Option<String>,
    /// The content of the first `<meta http-equiv=refresh>` (`5; url=/next`).
    pub refresh: Option<String>,
    /// Where the first inline script that sets `location` sends the reader (as written).
    pub script_redirect: Option<String>,
    /// Robots meta rules: (agent, content) with `robots` for all agents; lowercased.
    pub robots: Vec<(String, String)>,
    /// `og:*` properties (first value of each).
    pub open_graph: BTreeMap<String, String>,
    /// `twitter:*` names (first value of each).
    pub twitter: BTreeMap<String, String>,
    /// `<link rel=canonical href>` values, as written.
    pub canonicals: Vec<String>,
    /// `<link rel=alternate hreflang href>`: (language, href as written).
    pub hreflang: Vec<(String, String)>,
    /// Headings in document order: (level 1-6, text).
    pub headings: Vec<(u8, String)>,
    /// Anchors with an `href`.
    pub anchors: Vec<Anchor>,
    /// `<a>` without `href` but with an `onclick`: links a crawler cannot follow.
    pub script_only_anchors: usize,
    /// Images.
    pub images: Vec<Image>,
    /// Bodies of `<script type=application/ld+json>`.
    pub json_ld: Vec<String>,
    /// Words of visible text outside `<head>`.
    pub word_count: usize,
    /// `<link rel=next|prev>` and `<link rel=alternate>` without hreflang, as written.
    pub related_links: Vec<String>,
    /// `<meta name>` and `<meta http-equiv>` found after `<body>`, where
    /// search engines ignore them.
    pub metas_in_body: usize,
    /// `action`s of `<form>`s, as written.
    pub form_actions: Vec<String>,
    /// Elements in the page (start tags).
    pub elements: usize,
    /// Repeated `id` values: how many repeats, and the first few.
    pub duplicate_ids: (usize, Vec<String>),
    /// A hash of the visible text outside `<head>` (each text node trimmed),
    /// when asked for: pages with the same one have the same content.
    pub text_hash: Option<u64>,
}

/// Where a text hash starts (any odd constant).
const FX_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into `hash` eight at a time (rustc's FxHash step): fast,
/// and good enough to tell pages' texts apart; not for an adversary.
fn fx_hash(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    for &byte in chunks.remainder() {
        hash = (hash.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    hash
}

/// What leaving an element ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closes {
    Nothing,
    Head,
    /// A heading or anchor, identified by its node index.
    Heading(usize),
    Anchor(usize),
}

/// Collects the page model during the walk.
#[derive(Default)]
struct Walker {
    page: Page,
    in_head: bool,
    in_body: bool,
    heading: Option<(usize, u8, String)>,
    anchor: Option<(usize, Anchor)>,
}

/// Parses the prescanned `html` with tl and walks it once.
///
/// tl stores nodes in document order with each element's descendants right
/// after it, so the walk is a loop over that list; an element whose end
/// matters (head, headings, anchors) is closed once the index passes its
/// last descendant. Nothing recurses: depth costs heap, not stack.
/// `hash_text` asks for [`Page::text_hash`] (a site audit's duplicate content).
pub fn extract(html: &str, scanned: Prescanned, hash_text: bool) -> Page {
    let mut walker = Walker::default();
    walker.page.text_hash = hash_text.then_some(FX_SEED);
    walker.page.elements = scanned.elements;
    walker.page.duplicate_ids = scanned.duplicate_ids;
    walker.lifted(&scanned.lifted);
    // tl's only error is an input over u32::MAX bytes, far past any body limit.
    let Ok(dom) = tl::parse(html, ParserOptions::default()) else {
        return walker.page;
    };
    let ends = subtree_ends(&dom);
    // (index of the element's last descendant, what leaving it ends)
    let mut open: Vec<(usize, Closes)> = Vec::new();
    for (index, node) in dom.nodes().iter().enumerate() {
        while let Some(&(last, closes)) = open.last() {
            if index <= last {
                break;
            }
            open.pop();
            walker.exit(closes);
        }
        match node {
            Node::Raw(bytes) => walker.text(&text_of(html, bytes.as_bytes())),
            Node::Tag(tag) => {
                let closes = walker.enter(tag, index);
                if closes != Closes::Nothing {
                    open.push((ends[index], closes));
                }
            }
            Node::Comment(_) => {}
        }
    }
    while let Some((_, closes)) = open.pop() {
        walker.exit(closes);
    }
    walker.end_heading();
    walker.end_anchor();
    walker.page
}

/// For every node, the index of the last node in its subtree. Children
/// come after their parent, so one pass from the end fills it in: O(nodes),
/// where following last children from each element (as tl's recursive
/// `Children::end` does) is quadratic on deeply nested anchors.
fn subtree_ends(dom: &tl::VDom<'_>) -> Vec<usize> {
    let nodes = dom.nodes();
    let mut ends: Vec<usize> = (0..nodes.len()).collect();
    for index in (0..nodes.len()).rev() {
        if let Node::Tag(tag) = &nodes[index] {
            if let Some(last) = tag.children().top().as_slice().last() {
                let last = last.get_inner() as usize;
                // A child always has a larger index; `get` guards the invariant.
                ends[index] = ends.get(last).copied().filter(|&e| e > index).unwrap_or(index);
            }
        }
    }
    ends
}

/// `slice` as a `&str` of `html`. tl's text nodes borrow the page, so the
/// slice is found by address in O(1) instead of validating UTF-8 again; a
/// slice from elsewhere (never seen) falls back to a lossy copy.
fn text_of<'h>(html: &'h str, slice: &[u8]) -> Cow<'h, str> {
    let start = (slice.as_ptr() as usize).wrapping_sub(html.as_ptr() as usize);
    match html.get(start..start.wrapping_add(slice.len())) {
        Some(text) if text.as_ptr() == slice.as_ptr() => Cow::Borrowed(text),
        _ => Cow::Owned(String::from_utf8_lossy(slice).into_owned()),
    }
}

/// An attribute's value, entities decoded and trimmed; `Some("")` when
/// present without a value.
fn attr(tag: &HTMLTag<'_>, name: &str) -> Option<String> {
    match tag.attributes().get(name)? {
        Some(value) => {
            let raw = std::str::from_utf8(value.as_bytes()).map_or_else(|_| value.as_utf8_str(), Cow::Borrowed);
            // Decoding can leave new edge whitespace (`&#32;`): trimmed again, copied once.
            let decoded = decode_entities(raw.trim());
            let trimmed = decoded.trim();
            Some(if trimmed.len() == decoded.len() { decoded.into_owned() } else { trimmed.to_string() })
        }
        None => Some(String::new()),
    }
}

/// The URL an inline script sends the reader to, if it sets `location` to
/// a string literal: `location = "…"`, `location.href = '…'`,
/// `location.replace("…")` or `location.assign("…")`, whatever object the
/// `location` is reached through (`window.`, `document.`, `top.`).
fn script_redirect(script: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = script[from..].find("location") {
        let start = from + at;
        from = start + "location".len();
        let before = script[..start].bytes().next_back();
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$') {
            continue; // part of a longer name (`mylocation`)
        }
        let rest = &script[from..];
        let rest = rest.strip_prefix(".href").unwrap_or(rest).trim_start();
        let argument = match rest.strip_prefix('=') {
            Some(r) if !r.starts_with('=') => r,
            Some(_) => continue, // a comparison
            None => match rest.strip_prefix(".replace(").or_else(|| rest.strip_prefix(".assign(")) {
                Some(r) => r,
                None => continue,
            },
        };
        if let Some(url) = string_literal(argument.trim_start()) {
            return Some(url.to_string());
        }
    }
    None
}

/// The contents of the non-empty JavaScript string literal `text` starts with.
fn string_literal(text: &str) -> Option<&str> {
    let quote = text.chars().next().filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let body = &text[1..];
    let end = body.find(quote)?;
    let literal = &body[..end];
    (!literal.is_empty() && !literal.contains('\\') && !literal.contains("${")).then_some(literal)
}

impl Walker {
    fn lifted(&mut self, lifted: &[RawElement]) {
        for element in lifted {
            match element.name {
                // <svg> contents were lifted whole, so an SVG <title> never gets here.
                "title" => self.page.titles.extend(element.content.as_deref().and_then(clean)),
                "script" => {
                    let Some(content) = &element.content else {
                        continue;
                    };
                    let is_json_ld = tl::parse(&element.start_tag, ParserOptions::default()).ok().and_then(|dom| {
                        let parser = dom.parser();
                        let tag = dom.children().first()?.get(parser)?.as_tag()?;
                        let kind = attr(tag, "type")?;
                        Some(kind.trim().eq_ignore_ascii_case("application/ld+json"))
                    });
                    if is_json_ld == Some(true) {
                        self.page.json_ld.push(content.clone());
                    } else if self.page.script_redirect.is_none() {
                        self.page.script_redirect = script_redirect(content);
                    }
                }
                _ => {}
            }
        }
    }

    fn text(&mut self, raw: &str) {
        // Most text nodes are the indentation between tags.
        if raw.bytes().all(|b| b.is_ascii_whitespace()) {
            if let Some((_, _, heading)) = &mut self.heading {
                push_collapsed(heading, " ");
            }
            if let Some((_, anchor)) = &mut self.anchor {
                push_collapsed(&mut anchor.text, " ");
            }
            return;
        }
        let text = decode_entities(raw);
        if let Some((_, _, heading)) = &mut self.heading {
            if heading.len() < MAX_TEXT {
                push_collapsed(heading, &text);
            }
        }
        if let Some((_, anchor)) = &mut self.anchor {
            if anchor.text.len() < MAX_TEXT {
                push_collapsed(&mut anchor.text, &text);
            }
        }
        if !self.in_head {
            self.page.word_count += count_words(&text);
            if let Some(hash) = &mut self.page.text_hash {
                *hash = fx_hash(*hash, text.trim().as_bytes());
            }
        }
    }

    fn enter(&mut self, tag: &HTMLTag<'_>, id: usize) -> Closes {
        let name = tag.name().as_bytes();
        match name {
            b"html" if self.page.lang.is_none() => self.page.lang = attr(tag, "lang").filter(|l| !l.is_empty()),
            b"head" => {
                self.in_head = true;
                return Closes::Head;
            }
            // A <body> ends the head even where tl, lacking implied end tags, nests it inside.
            b"body" => (self.in_head, self.in_body) = (false, true),
            b"form" => self.page.form_actions.extend(attr(tag, "action")),
            b"base" if self.page.base_href.is_none() => self.page.base_href = attr(tag, "href"),
            b"meta" => self.meta(tag),
            b"link" => self.link(tag),
            b"img" => {
                let alt = attr(tag, "alt");
                if let (Some(alt), Some((_, anchor))) = (&alt, &mut self.anchor) {
                    push_collapsed(&mut anchor.text, alt);
                }
                self.page.images.push(Image {
                    src: attr(tag, "src"),
                    alt,
                    has_dimensions: tag.attributes().get("width").is_some() && tag.attributes().get("height").is_some(),
                });
            }
            b"a" => {
                let Some(href) = attr(tag, "href") else {
                    if tag.attributes().get("onclick").is_some() {
                        self.page.script_only_anchors += 1;
                    }
                    return Closes::Nothing;
                };
                // Nested anchors are not allowed; a new one ends the last (as browsers do).
                self.end_anchor();
                let rel = attr(tag, "rel").unwrap_or_default();
                let mut anchor = Anchor {
                    href,
                    text: String::new(),
                    rel: rel.split_ascii_whitespace().map(str::to_ascii_lowercase).collect(),
                };
                if let Some(label) = attr(tag, "aria-label").filter(|l| !l.is_empty()) {
                    anchor.text = label;
                }
                self.anchor = Some((id, anchor));
                return Closes::Anchor(id);
            }
            [b'h', level @ b'1'..=b'6'] => {
                self.end_heading();
                self.heading = Some((id, level - b'0', String::new()));
                return Closes::Heading(id);
            }
            _ => {}
        }
        Closes::Nothing
    }

    fn exit(&mut self, closes: Closes) {
        match closes {
            Closes::Head => self.in_head = false,
            Closes::Heading(id) if self.heading.as_ref().is_some_and(|h| h.0 == id) => self.end_heading(),
            Closes::Anchor(id) if self.anchor.as_ref().is_some_and(|a| a.0 == id) => self.end_anchor(),
            _ => {}
        }
    }

    fn end_heading(&mut self) {
        if let Some((_, level, text)) = self.heading.take() {
            self.page.headings.push((level, finish(text)));
        }
    }

    fn end_anchor(&mut self) {
        if let Some((_, mut anchor)) = self.anchor.take() {
            anchor.text = finish(anchor.text);
            self.page.anchors.push(anchor);
        }
    }

    fn meta(&mut self, tag: &HTMLTag<'_>) {
        // `itemprop` metas (microdata) belong in the body; named ones do not.
        let attributes = tag.attributes();
        if self.in_body && !self.in_head && (attributes.get("name").is_some() || attributes.get("http-equiv").is_some())
        {
            self.page.metas_in_body += 1;
        }
        if let Some(charset) = attr(tag, "charset").filter(|c| !c.is_empty()) {
            self.page.meta_charset.get_or_insert(charset);
        }
        let content = || attr(tag, "content").unwrap_or_default();
        if let Some(equiv) = attr(tag, "http-equiv") {
            if equiv.eq_ignore_ascii_case("refresh") {
                self.page.refresh.get_or_insert_with(content);
            }
            if equiv.eq_ignore_ascii_case("content-type") {
                let value = content();
                if let Some((_, charset)) = value.to_ascii_lowercase().split_once("charset=") {
                    self.page.meta_charset.get_or_insert(charset.trim().to_string());
                }
            }
        }
        let name = attr(tag, "name").unwrap_or_default().to_ascii_lowercase();
        // Open Graph is `property`; Twitter cards are `name` but often written
        // with `property`: either counts for those two, and only for them
        // (`property="description"` is not the meta description, as for
        // Lighthouse and Google).
        let social =
            if name.is_empty() { attr(tag, "property").unwrap_or_default().to_ascii_lowercase() } else { name.clone() };
        if social.starts_with("og:") {
            self.page.open_graph.entry(social).or_insert_with(content);
        } else if social.starts_with("twitter:") {
            self.page.twitter.entry(social).or_insert_with(content);
        }
        match name.as_str() {
            "description" => self.page.descriptions.push(clean(&content()).unwrap_or_default()),
            "viewport" => {
                self.page.viewport.get_or_insert_with(content);
            }
            // `robots` for every crawler; `googlebot`, `bingbot`, ... for one.
            k if k == "robots" || k.ends_with("bot") || k.starts_with("googlebot") => {
                self.page.robots.push((name.clone(), content().to_ascii_lowercase()));
            }
            _ => {}
        }
    }

    fn link(&mut self, tag: &HTMLTag<'_>) {
        let rel = attr(tag, "rel").unwrap_or_default().to_ascii_lowercase();
        let Some(href) = attr(tag, "href") else {
            return;
        };
        let tokens = || rel.split_ascii_whitespace();
        if tokens().any(|t| t == "canonical") {
            self.page.canonicals.push(href.clone());
        }
        // Pagination, and alternates other than languages (mobile, feeds):
        // pages a crawler follows though no <a> links them.
        if tokens().any(|t| matches!(t, "next" | "prev" | "previous")) {
            self.page.related_links.push(href.clone());
        }
        if tokens().any(|t| t == "alternate") {
            match attr(tag, "hreflang") {
                Some(lang) => self.page.hreflang.push((lang, href)),
                None => self.page.related_links.push(href),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seo::prescan::prescan;

    fn page(html: &str) -> Page {
        let mut bytes = html.as_bytes().to_vec();
        let scanned = prescan(&mut bytes);
        extract(std::str::from_utf8(&bytes).unwrap(), scanned, false)
    }

    #[test]
    fn head_fields() {
        let p = page(
            r#"<!doctype html><HTML LANG="en-GB"><head><meta charset=utf-8><TITLE> Fish &amp;  Chips </TITLE>
            <META NAME="Description" CONTENT="Best &quot;fish&quot;"><meta name=viewport content="width=device-width">
            <meta name=robots content="NoIndex, follow"><meta name=googlebot content=nofollow>
            <meta property="og:title" content="OG"><meta name="twitter:card" content="summary">
            <meta property="description" content="not the description"><meta property="twitter:site" content="@f">
            <meta property="robots" content="noindex"><meta property="viewport" content="width=1">
            <link rel=canonical href=/fish><link rel="alternate" hreflang="de" href="https://x.de/">
            <base href="https://example.com/dir/"></head><body></body></html>"#,
        );
        assert_eq!(p.titles, ["Fish & Chips"]);
        assert_eq!(p.lang.as_deref(), Some("en-GB"));
        assert_eq!(p.descriptions, ["Best \"fish\""]);
        assert_eq!(p.viewport.as_deref(), Some("width=device-width"));
        assert_eq!(p.meta_charset.as_deref(), Some("utf-8"));
        assert_eq!(p.robots, [("robots".into(), "noindex, follow".into()), ("googlebot".into(), "nofollow".into())]);
        assert_eq!(p.open_graph.get("og:title").map(String::as_str), Some("OG"));
        assert_eq!(p.twitter.get("twitter:card").map(String::as_str), Some("summary"));
        assert_eq!(p.twitter.get("twitter:site").map(String::as_str), Some("@f"), "Twitter tags with property count");
        assert_eq!(p.canonicals, ["/fish"]);
        assert_eq!(p.hreflang, [("de".into(), "https://x.de/".into())]);
        assert_eq!(p.base_href.as_deref(), Some("https://example.com/dir/"));
    }

    #[test]
    fn script_redirects_are_found_only_where_location_is_set() {
        for (script, url) in [
            ("window.location.href = \"https://new.example/\";", Some("https://new.example/")),
            ("location='/moved'", Some("/moved")),
            ("document.location.replace( \"/x?a=1\" )", Some("/x?a=1")),
            ("top.location.assign(`/y`)", Some("/y")),
            ("if (location == '/a') {}", None),
            ("var mylocation = '/no';", None),
            ("location.href = base + '/z';", None),
            ("location.href = `${base}/z`;", None),
            ("console.log(location.pathname)", None),
        ] {
            assert_eq!(script_redirect(script).as_deref(), url, "{script}");
        }
    }

    #[test]
    fn body_fields() {
        let p = page(
            r##"<body><H1>Main <b>title</b></H1><p>one two three</p><h3>Skipped</h3>
            <a href=/about rel="NoFollow ugc">About   us</a><a href="#top"><img src=i.png alt="Top"></a>
            <a onclick="go()">js</a><a>no href</a><img src="x.png" width=1 height=2><img src=y alt="">
            <script>var words = "not counted";</script><template><p>inert words</template><p>four</p></body>"##,
        );
        assert_eq!(p.headings, [(1, "Main title".into()), (3, "Skipped".into())]);
        assert_eq!(p.anchors.len(), 2);
        assert_eq!(
            p.anchors[0],
            Anchor { href: "/about".into(), text: "About us".into(), rel: vec!["nofollow".into(), "ugc".into()] }
        );
        assert_eq!(p.anchors[1].text, "Top");
        assert_eq!(p.script_only_anchors, 1);
        assert_eq!(p.images.len(), 3);
        assert_eq!(p.images[0].alt.as_deref(), Some("Top"));
        assert!(p.images[1].alt.is_none() && p.images[1].has_dimensions);
        assert_eq!(p.images[2].alt.as_deref(), Some(""));
        // Main title one two three Skipped About us js no href four
        assert_eq!(p.word_count, 12);
    }

    #[test]
    fn words_are_counted_as_rendered() {
        // Inline elements do not split a word; blocks, cells and line breaks separate words.
        let p = page(
            "<h2><span>Hel</span><b>lo</b>,<div>wor</div>ld</h2><table><tr><td>a</td><td>b</td></tr></table>x<br>y",
        );
        assert_eq!(p.headings, [(2, "Hello, wor ld".into())]);
        assert_eq!(p.word_count, 7);
    }

    #[test]
    fn svg_titles_and_head_text_are_not_the_page() {
        let p = page("<html><head><title>Real</title><body><svg><title>Icon</title></svg>word</body>");
        assert_eq!(p.titles, ["Real"]);
        assert_eq!(p.word_count, 1);
    }

    #[test]
    fn json_ld_blocks_are_collected_by_type() {
        let p = page(
            r#"<script type=" Application/LD+JSON ">{"@type":"Thing"}</script><script type="text/javascript">x</script><script type="application/ld+json">{bad</script>"#,
        );
        assert_eq!(p.json_ld, [r#"{"@type":"Thing"}"#, "{bad"]);
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let html = "<div>a".repeat(200_000);
        let p = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || page(&html).word_count)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(p, 200_000);
    }
}
