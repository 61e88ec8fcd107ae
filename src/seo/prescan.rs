//! A linear pass over the decoded page before tl sees it.
//!
//! tl parses `<script>` and `<style>` bodies as markup, compares tag names
//! case-sensitively, has no implied end tags, and spends most of its time
//! building a node (a few hundred bytes) for every element. The page model
//! reads a dozen kinds of element, so this pass reduces the page, in place,
//! to those elements and the text between them:
//! - raw-text and hidden elements (script, style, title, textarea, template,
//!   noscript, svg, ...) are lifted out into [`RawElement`]s, contents and all;
//! - the elements the model reads are kept, names lowercased, and keep their
//!   attributes only where the model reads them;
//! - inline elements (`span`, `b`, `em`, ...) are removed, as browsers render
//!   them: `Hel<b>lo</b>` is one word;
//! - every other tag becomes a space: blocks, line breaks and table cells
//!   separate words;
//! - comments are removed.
//!
//! tl then builds a node for each kept element and each run of text.

use std::ops::Range;

/// What the pass does with a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treatment {
    /// Kept with its attributes: the page model reads them.
    Keep,
    /// Kept as a bare `<name>`: the model needs the element, not its attributes.
    Bare,
    /// Removed: an inline element, which does not separate words.
    Drop,
    /// Replaced by a space: any other element separates words.
    Space,
}

/// A `match` rather than a table search: it runs for every tag of every page.
fn treatment(name: &[u8]) -> Treatment {
    match name {
        b"a" | b"img" | b"meta" | b"link" | b"base" | b"html" | b"form" => Treatment::Keep,
        b"head" | b"body" | b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" => Treatment::Bare,
        b"span" | b"b" | b"i" | b"u" | b"s" | b"em" | b"strong" | b"small" | b"big" | b"code" | b"kbd" | b"samp"
        | b"var" | b"tt" | b"abbr" | b"acronym" | b"cite" | b"dfn" | b"q" | b"sub" | b"sup" | b"mark" | b"time"
        | b"data" | b"bdi" | b"bdo" | b"font" | b"label" | b"ins" | b"del" | b"strike" | b"nobr" | b"wbr" => {
            Treatment::Drop
        }
        _ => Treatment::Space,
    }
}

/// Removes ranges from the page while the scan goes on: kept bytes move
/// down to `write` as each cut is met. Cuts come in ascending order, and
/// the scan only reads at or after `read`, which the moves never reach.
struct Compactor {
    write: usize,
    read: usize,
}

impl Compactor {
    /// Removes `range`, putting a space in its place if `space`. A space
    /// fits: every cut range holds at least one byte.
    fn cut(&mut self, page: &mut [u8], range: Range<usize>, space: bool) {
        page.copy_within(self.read..range.start, self.write);
        self.write += range.start - self.read;
        if space {
            page[self.write] = b' ';
            self.write += 1;
        }
        self.read = range.end;
    }

    fn finish(self, page: &mut Vec<u8>) {
        let end = page.len();
        page.copy_within(self.read..end, self.write);
        page.truncate(self.write + end - self.read);
    }
}

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

/// One lifted element. Contents are kept only where the analysis reads
/// them (titles, scripts that may be JSON-LD, inline scripts that mention
/// `location`, which may redirect); a page's other scripts and styles are
/// often most of its bytes and are not copied.
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
fn keeps_content(name: &str, start_tag: &[u8], content: &[u8]) -> bool {
    let has = |haystack: &[u8], needle: &[u8]| memchr::memmem::find(haystack, needle).is_some();
    name == "title"
        || (name == "script" && {
            let tag = start_tag.to_ascii_lowercase();
            has(&tag, b"ld+json") || (!has(&tag, b"src") && has(content, b"location"))
        })
}

/// What the pass took out of the page besides the reduced text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prescanned {
    /// The lifted elements, in document order.
    pub lifted: Vec<RawElement>,
    /// Start tags seen (the DOM's size, outside lifted contents).
    pub elements: usize,
    /// `id` values used more than once: how many repeats, and the first few.
    pub duplicate_ids: (usize, Vec<String>),
}

/// Duplicate ids named in [`Prescanned::duplicate_ids`].
const NAMED_DUPLICATES: usize = 5;

/// Reduces `page` in place (see the module documentation) and returns what
/// it lifted and counted.
pub fn prescan(page: &mut Vec<u8>) -> Prescanned {
    let mut lifted = Vec::new();
    let mut elements = 0;
    let mut ids = std::collections::HashSet::new();
    let mut duplicate_ids = (0, Vec::new());
    let mut kept = Compactor { write: 0, read: 0 };
    let mut at = 0;
    while let Some(offset) = find_lt(&page[at..]) {
        let lt = at + offset;
        let rest = &page[lt + 1..];
        if rest.starts_with(b"!--") {
            // A comment runs to `-->`; an unterminated one swallows the rest, as in browsers.
            at = find(page, lt + 4, b"-->").map_or(page.len(), |end| end + 3);
            kept.cut(page, lt..at, false);
            continue;
        }
        let closing = rest.first() == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        if !page.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
            // `<!DOCTYPE`, `<?xml`, a stray `<`: not a tag.
            at = lt + 1;
            continue;
        }
        let name_end = lowercase_name(page, name_start);
        let Some((tag_end, id)) = tag_end(page, name_end) else {
            break;
        };
        at = tag_end + 1;
        elements += usize::from(!closing);
        if let Some(id) = id.map(|range| &page[range]).filter(|id| !id.is_empty()) {
            // Hashes, not copies: a page may have thousands of ids.
            if !ids.insert(id_hash(id)) {
                duplicate_ids.0 += 1;
                if duplicate_ids.1.len() < NAMED_DUPLICATES {
                    duplicate_ids.1.push(String::from_utf8_lossy(id).into_owned());
                }
            }
        }
        let name = &page[name_start..name_end];
        match treatment(name) {
            Treatment::Keep => {}
            Treatment::Bare if closing => {}
            Treatment::Bare => {
                // Keep the slash of `<h1 class=x />`: tl reads it as self-closing.
                let attributes_end = if page[tag_end - 1] == b'/' { tag_end - 1 } else { tag_end };
                if attributes_end > name_end {
                    kept.cut(page, name_end..attributes_end, false);
                }
            }
            Treatment::Drop => kept.cut(page, lt..at, false),
            // Every lifted element is one that would otherwise become a space.
            Treatment::Space => match lifted_name(name).filter(|_| !closing) {
                // `<svg/>`: foreign elements may self-close, and then hold nothing.
                Some(name) if !(page[tag_end - 1] == b'/' && (name == "svg" || name == "math")) => {
                    let content_end = closing_tag(page, at, name);
                    let start_tag = &page[lt..at];
                    let body = &page[at..content_end];
                    let content =
                        keeps_content(name, start_tag, body).then(|| String::from_utf8_lossy(body).into_owned());
                    lifted.push(RawElement {
                        name,
                        start_tag: String::from_utf8_lossy(start_tag).into_owned(),
                        content,
                    });
                    kept.cut(page, lt..content_end, true);
                    at = content_end;
                }
                _ => kept.cut(page, lt..at, true),
            },
        }
    }
    kept.finish(page);
    Prescanned { lifted, elements, duplicate_ids }
}

/// A 64-bit hash of an id (FxHash's step a byte; ids are short).
fn id_hash(id: &[u8]) -> u64 {
    id.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95))
}

/// Lowercases the tag name starting at `from` (ASCII letters, digits, `-`
/// and `:`) and returns where it ends.
fn lowercase_name(page: &mut [u8], from: usize) -> usize {
    let mut end = from;
    while let Some(b) = page.get_mut(end) {
        if !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b':') {
            break;
        }
        b.make_ascii_lowercase();
        end += 1;
    }
    end
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
/// skipping quoted attribute values, and where its `id` value lies, if it
/// has one: found in the same pass, at each `=`.
fn tag_end(page: &[u8], from: usize) -> Option<(usize, Option<Range<usize>>)> {
    // A plain loop: tags are short, and a SIMD search per tag cost more in
    // call overhead than it saved.
    let mut id = None;
    let mut i = from;
    while i < page.len() {
        match page[i] {
            b'>' => return Some((i, id)),
            b'=' if id.is_none() && i >= from + 3 && is_id_name(&page[i - 3..i]) => {
                let value_start = i + 1;
                // Scanning resumes past the value: after a quoted one's closing
                // quote, or at the space or `>` that ends an unquoted one.
                (id, i) = match page.get(value_start) {
                    Some(&quote @ (b'"' | b'\'')) => {
                        let end = value_start + 1 + memchr::memchr(quote, &page[value_start + 1..])?;
                        (Some(value_start + 1..end), end)
                    }
                    _ => {
                        let len = page[value_start..].iter().position(|b| b.is_ascii_whitespace() || *b == b'>');
                        let end = value_start + len.unwrap_or(page.len() - value_start);
                        (Some(value_start..end), end - 1)
                    }
                };
            }
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

/// Whether `three` bytes before an `=` are ` id` (any case, after whitespace).
fn is_id_name(three: &[u8]) -> bool {
    matches!(three, [w, b'i' | b'I', b'd' | b'D'] if w.is_ascii_whitespace())
}

/// Where the contents of `name` opened at `from` end: at its closing tag
/// (where scanning resumes), or, unclosed, at the end of the page, as
/// browsers do. `svg` and `math` nest, so their depth is counted.
fn closing_tag(page: &[u8], from: usize, name: &str) -> usize {
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
                return lt;
            }
        } else if matches && nests {
            depth += 1;
        }
        at = lt + 1;
    }
    page.len()
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack.get(from..)?, needle).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str) -> (String, Vec<RawElement>) {
        let mut page = html.as_bytes().to_vec();
        let scanned = prescan(&mut page);
        (String::from_utf8(page).unwrap(), scanned.lifted)
    }

    #[test]
    fn finds_repeated_ids() {
        let mut page =
            br#"<div id=a><p ID="b">x</p><span data-x="id=c" id='a'></span><i class=id=z id=b></i><b id=c>"#.to_vec();
        let scanned = prescan(&mut page);
        assert_eq!(scanned.duplicate_ids, (2, vec!["a".to_string(), "b".to_string()]));
        assert_eq!(scanned.elements, 5);
        let mut unique = b"<a id=one href=/x>1</a><a id=two>2</a><div data-id=one></div>".to_vec();
        assert_eq!(prescan(&mut unique).duplicate_ids.0, 0, "data-id is not id");
    }

    #[test]
    fn counts_start_tags_and_keeps_forms() {
        let mut page =
            b"<html><body><div><p>a<br></p><form action=http://x.example/ method=post></form><script>x</script></div>"
                .to_vec();
        assert_eq!(prescan(&mut page).elements, 7);
        assert!(String::from_utf8(page).unwrap().contains("<form action=http://x.example/ method=post>"));
    }

    #[test]
    fn keeps_what_the_model_reads_lowercased() {
        let (page, _) =
            run(r#"<HTML Lang=en><HEAD Id=h></HEAD><BODY Class=b><H1 Class=x>T</H1><A HREF="/X">Go</A></BODY>"#);
        assert_eq!(page, r#"<html Lang=en><head></head><body><h1>T</h1><a HREF="/X">Go</a></body>"#);
    }

    #[test]
    fn inline_tags_vanish_and_other_tags_become_spaces() {
        let (page, _) = run(
            r#"<div class="x>y" data-a='1'>Hel<B>lo</B><!-- c -->, <br class=z />wor<span id=s>ld</span></DIV><img src=i.png alt=""><!-- open"#,
        );
        assert_eq!(page, r#" Hello,  world <img src=i.png alt="">"#);
    }

    #[test]
    fn lifts_script_bodies_with_markup_inside() {
        let (page, lifted) =
            run("a<script>if (a<b) { x = '</head><title>no</title>' }</script>b<title>Yes &amp; no</title>");
        assert_eq!(lifted.len(), 2);
        assert_eq!(lifted[0].name, "script");
        assert_eq!(lifted[0].content, None, "a plain script's body is not kept");
        assert_eq!(lifted[1].name, "title");
        assert_eq!(lifted[1].content.as_deref(), Some("Yes &amp; no"));
        assert_eq!(page, "a  b  ");
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
        let (page, lifted) = run("<!-- <script>x</script> --><STYLE>a{}</STYLE>x<title>never closed <p>");
        assert_eq!(lifted.len(), 2);
        assert_eq!(page, "  x ");
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
