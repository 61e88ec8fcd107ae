//! A linear pass over the decoded page before tl sees it.
//!
//! tl parses `<script>` and `<style>` bodies as markup, compares tag names
//! case-sensitively, and has no implied end tags, so one `<p>` left open
//! inside a `<template>` would hide the rest of the page. This pass, in place:
//! - lowercases tag names (`<DIV>`, `</Title>`);
//! - lifts out the contents of raw-text and hidden elements (script, style,
//!   title, textarea, template, noscript, svg, ...) into [`RawElement`]s and
//!   cuts them from the page, so tl sees only empty elements there and does
//!   not parse what is often half of a page's bytes;
//! - cuts comments, and the attributes of every element whose attributes the
//!   analysis does not read (`class`, `style`, `data-*` on `div`, `span`,
//!   ...), so tl does not tokenize and hash what nothing looks at.

/// Elements whose contents are text to the tokenizer (RCDATA / raw text) or
/// are not part of the visible, crawlable document. A `match` rather than a
/// list search: it runs for every tag of every page.
fn lifted_name(name: &[u8]) -> Option<&'static str> {
    Some(match name {
        b"script" => "script",
        b"style" => "style",
        b"title" => "title",
        b"textarea" => "textarea",
        b"xmp" => "xmp",
        b"iframe" => "iframe",
        b"noembed" => "noembed",
        b"noframes" => "noframes",
        b"noscript" => "noscript",
        b"template" => "template",
        b"svg" => "svg",
        b"math" => "math",
        _ => return None,
    })
}

/// Elements whose attributes the page model reads; every other element
/// reaches tl as a bare `<name>`.
fn reads_attributes(name: &[u8]) -> bool {
    matches!(name, b"a" | b"img" | b"meta" | b"link" | b"base" | b"html")
}

/// One lifted element. Contents are kept only where the analysis reads
/// them (titles, and scripts that may be JSON-LD); a page's other scripts
/// and styles are often most of its bytes and are not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawElement {
    /// Lowercased tag name.
    pub name: &'static str,
    /// The start tag as written, `<script type="...">`.
    pub start_tag: String,
    /// The contents, exactly as written, if kept.
    pub content: Option<String>,
}

/// Whether the contents of this element are needed later.
fn keeps_content(name: &str, start_tag: &[u8]) -> bool {
    name == "title" || (name == "script" && memchr::memmem::find(&start_tag.to_ascii_lowercase(), b"ld+json").is_some())
}

/// Normalises `page` in place and returns the lifted elements in document order.
pub fn prescan(page: &mut Vec<u8>) -> Vec<RawElement> {
    let mut lifted = Vec::new();
    let mut cuts = Vec::new();
    let mut at = 0;
    while let Some(offset) = find_lt(&page[at..]) {
        let lt = at + offset;
        let rest = &page[lt + 1..];
        if rest.starts_with(b"!--") {
            // A comment runs to `-->`; an unterminated one swallows the rest, as in browsers.
            at = find(page, lt + 4, b"-->").map_or(page.len(), |end| end + 3);
            cuts.push(lt..at);
            continue;
        }
        let closing = rest.first() == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        let name_len =
            page[name_start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b':').count();
        if name_len == 0 || !page[name_start].is_ascii_alphabetic() {
            // `<!DOCTYPE`, `<?xml`, a stray `<`: not a tag we care about.
            at = lt + 1;
            continue;
        }
        let name_end = name_start + name_len;
        page[name_start..name_end].make_ascii_lowercase();
        let Some(tag_end) = tag_end(page, name_end) else {
            break;
        };
        at = tag_end + 1;
        if closing {
            continue;
        }
        if !reads_attributes(&page[name_start..name_end]) {
            // Keep the slash of `<br class=x />`: tl reads it as self-closing.
            let attributes_end = if page[tag_end - 1] == b'/' { tag_end - 1 } else { tag_end };
            if attributes_end > name_end {
                cuts.push(name_end..attributes_end);
            }
        }
        let Some(name) = lifted_name(&page[name_start..name_end]) else { continue };
        if page[..tag_end].ends_with(b"/") && (name == "svg" || name == "math") {
            continue; // `<svg/>`: foreign elements may self-close
        }
        let (content_end, close_at) = closing_tag(page, tag_end + 1, name);
        let start_tag = &page[lt..=tag_end];
        let content = keeps_content(name, start_tag)
            .then(|| String::from_utf8_lossy(&page[tag_end + 1..content_end]).into_owned());
        lifted.push(RawElement { name, start_tag: String::from_utf8_lossy(start_tag).into_owned(), content });
        cuts.push(tag_end + 1..content_end);
        at = close_at;
    }
    cut(page, &cuts);
    lifted
}

/// Removes the ascending, disjoint `ranges` from `page` in one pass.
fn cut(page: &mut Vec<u8>, ranges: &[std::ops::Range<usize>]) {
    let (mut write, mut read) = (0, 0);
    for range in ranges {
        page.copy_within(read..range.start, write);
        write += range.start - read;
        read = range.end;
    }
    page.copy_within(read.., write);
    write += page.len() - read;
    page.truncate(write);
}

/// The next `<`. Tags are a few dozen bytes apart, where a SIMD search
/// costs more to set up than it saves; long text runs still get it.
fn find_lt(hay: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    match hay.iter().take(SHORT).position(|&b| b == b'<') {
        Some(i) => Some(i),
        None if hay.len() <= SHORT => None,
        None => memchr::memchr(b'<', &hay[SHORT..]).map(|i| i + SHORT),
    }
}

/// Index of the `>` ending the tag whose attributes start at `from`,
/// skipping quoted attribute values.
fn tag_end(page: &[u8], from: usize) -> Option<usize> {
    // A plain loop: tags are short, and a SIMD search per tag cost more in
    // call overhead than it saved.
    let mut i = from;
    while i < page.len() {
        match page[i] {
            b'>' => return Some(i),
            // A quote opens a value only after `=` (or whitespace after it).
            quote @ (b'"' | b'\'') if page[i - 1] == b'=' || page[i - 1].is_ascii_whitespace() => {
                i += 1 + memchr::memchr(quote, &page[i + 1..])?;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where the contents of `name` opened at `from` end, and where scanning
/// resumes (at its closing tag). Unclosed: the rest of the page, as browsers do.
/// `svg` and `math` nest, so their depth is counted.
fn closing_tag(page: &[u8], from: usize, name: &str) -> (usize, usize) {
    let nests = name == "svg" || name == "math";
    let mut depth = 1;
    let mut at = from;
    while let Some(offset) = memchr::memchr(b'<', &page[at..]) {
        let lt = at + offset;
        let closing = page.get(lt + 1) == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        let matches = page
            .get(name_start..name_start + name.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            && page.get(name_start + name.len()).is_none_or(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/');
        if matches && closing {
            depth -= 1;
            if depth == 0 {
                return (lt, lt);
            }
        } else if matches && nests {
            depth += 1;
        }
        at = lt + 1;
    }
    (page.len(), page.len())
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack.get(from..)?, needle).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str) -> (String, Vec<RawElement>) {
        let mut page = html.as_bytes().to_vec();
        let lifted = prescan(&mut page);
        (String::from_utf8(page).unwrap(), lifted)
    }

    #[test]
    fn lowercases_tag_names_only() {
        let (page, _) = run(r#"<DIV><P>Hello WORLD</P><A HREF="/X">Go</A></DIV>"#);
        assert_eq!(page, r#"<div><p>Hello WORLD</p><a HREF="/X">Go</a></div>"#);
    }

    #[test]
    fn cuts_comments_and_attributes_nothing_reads() {
        let (page, _) = run(
            r#"<div class="x>y" data-a='1'>a<!-- c --><br class=z /><img src=i.png alt=""><span id=s>b</span><!-- open"#,
        );
        assert_eq!(page, r#"<div>a<br/><img src=i.png alt=""><span>b</span>"#);
    }

    #[test]
    fn lifts_and_blanks_script_bodies_with_markup_inside() {
        let (page, lifted) =
            run("<script>if (a<b) { x = '</head><title>no</title>' }</script><title>Yes &amp; no</title>");
        assert_eq!(lifted.len(), 2);
        assert_eq!(lifted[0].name, "script");
        assert_eq!(lifted[0].content, None, "a plain script's body is not kept");
        assert_eq!(lifted[1].name, "title");
        assert_eq!(lifted[1].content.as_deref(), Some("Yes &amp; no"));
        assert_eq!(page, "<script></script><title></title>");
    }

    #[test]
    fn svg_nests_and_hides_its_title() {
        let (_, lifted) = run("<svg><svg><title>icon</title></svg><text>x</text></svg><title>Page</title>");
        let names: Vec<&str> = lifted.iter().map(|e| e.name).collect();
        assert_eq!(names, ["svg", "title"]);
        assert_eq!(lifted[1].content.as_deref(), Some("Page"));
    }

    #[test]
    fn comments_are_skipped_and_unclosed_elements_swallow_the_rest() {
        let (page, lifted) = run("<!-- <script>x</script> --><STYLE>a{}</STYLE><title>never closed <p>");
        assert_eq!(lifted.len(), 2);
        assert!(page.contains("<style></style><title>"), "{page}");
        assert_eq!(lifted[1].content.as_deref(), Some("never closed <p>"));
        let (_, lifted) = run("<!-- unterminated <script>x</script>");
        assert!(lifted.is_empty());
    }

    #[test]
    fn quoted_gt_does_not_end_a_tag() {
        let (_, lifted) = run(r#"<script data-x="a>b" type="application/ld+json">{"a":1}</script>"#);
        assert_eq!(lifted[0].content.as_deref(), Some(r#"{"a":1}"#));
        assert!(lifted[0].start_tag.contains("ld+json"));
    }
}
