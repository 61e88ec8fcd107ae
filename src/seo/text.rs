//! Text as the analysis conventions define it: entities decoded,
//! whitespace runs collapsed, trimmed; words counted.

use std::borrow::Cow;

/// Decodes character references (`&amp;`, `&#39;`, `&eacute;`).
///
/// The references that make up nearly all real use (`&amp; &lt; &gt; &quot;
/// &apos; &nbsp;` and numeric ones) are decoded here; any other is handed to
/// html-escape's full WHATWG table. Profiles showed its table search for
/// `&lt;` as 8 % of the walk on pages with code samples.
pub fn decode_entities(raw: &str) -> Cow<'_, str> {
    let Some(first) = memchr::memchr(b'&', raw.as_bytes()) else { return Cow::Borrowed(raw) };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut rest = &raw[first..];
    while let Some(amp) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let (decoded, used) = common_reference(rest).unwrap_or_else(|| full_table_reference(rest));
        out.push_str(&decoded);
        rest = &rest[used..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `text` starts with `&`: the common named and numeric references.
fn common_reference(text: &str) -> Option<(Cow<'static, str>, usize)> {
    const NAMED: [(&str, &str); 6] =
        [("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&apos;", "'"), ("&nbsp;", "\u{a0}")];
    if let Some((name, value)) = NAMED.iter().find(|(name, _)| text.starts_with(name)) {
        return Some((Cow::Borrowed(value), name.len()));
    }
    let digits = text.strip_prefix("&#")?;
    let (hex, digits) = match digits.strip_prefix(['x', 'X']) {
        Some(d) => (true, d),
        None => (false, digits),
    };
    let end = digits.find(';')?;
    let number = u32::from_str_radix(&digits[..end], if hex { 16 } else { 10 }).ok()?;
    // NUL, surrogates and out-of-range values become U+FFFD, as the HTML standard says.
    let c = char::from_u32(number).filter(|&c| c != '\0').unwrap_or('\u{fffd}');
    let used = text.len() - digits.len() + end + 1;
    Some((Cow::Owned(c.to_string()), used))
}

/// `text` starts with `&`: any other reference, through the full table; a
/// lone `&` stays as it is.
fn full_table_reference(text: &str) -> (Cow<'static, str>, usize) {
    // A reference is `&` + up to 32 name characters + `;` (or a legacy name without `;`).
    let end = text[1..]
        .char_indices()
        .take(33)
        .find(|(_, c)| !c.is_ascii_alphanumeric() && *c != '#')
        .map_or(text.len().min(34), |(i, c)| 1 + i + usize::from(c == ';'));
    let candidate = &text[..end];
    let decoded = html_escape::decode_html_entities(candidate);
    if decoded == candidate {
        ("&".into(), 1)
    } else {
        (Cow::Owned(decoded.into_owned()), end)
    }
}

/// Appends `raw` to `out` with whitespace runs collapsed to one space
/// (a run across calls too); trim the result with [`finish`].
pub fn push_collapsed(out: &mut String, raw: &str) {
    // One allocation for the piece instead of doubling up to it.
    out.reserve(raw.len());
    let bytes = raw.as_bytes();
    let (mut i, mut run_start) = (0, 0);
    while i < bytes.len() {
        // Whitespace is ASCII or one of a few characters past U+0080 (NBSP, em space, ...).
        let width = match CLASS[bytes[i] as usize] {
            SPACE => 1,
            MULTI => match raw[i..].chars().next() {
                Some(c) if c.is_whitespace() => c.len_utf8(),
                c => {
                    i += c.map_or(1, char::len_utf8);
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&raw[run_start..i]);
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
        i += width;
        run_start = i;
    }
    out.push_str(&raw[run_start..]);
}

/// Trims the trailing space [`push_collapsed`] may leave.
pub fn finish(mut text: String) -> String {
    if text.ends_with(' ') {
        text.pop();
    }
    text
}

/// Entities decoded, whitespace collapsed, trimmed; `None` when empty.
pub fn clean(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    push_collapsed(&mut out, &decode_entities(raw));
    let out = finish(out);
    (!out.is_empty()).then_some(out)
}

/// Byte classes for [`count_words`] and [`push_collapsed`], as bit flags so
/// that loops test them without branching: ASCII whitespace, ASCII letter or
/// digit, and the bytes of multi-byte characters; other ASCII is 0.
const SPACE: u8 = 1;
const ALNUM: u8 = 2;
const MULTI: u8 = 4;
const CLASS: [u8; 256] = {
    let mut table = [MULTI; 256];
    let mut b = 0;
    while b < 128 {
        table[b] = match b as u8 {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => SPACE,
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => ALNUM,
            _ => 0,
        };
        b += 1;
    }
    table
};

/// Words in `text`: whitespace-separated tokens with a letter or digit.
///
/// A word is counted at its first letter or digit. ASCII text goes 64 bytes
/// at a time: the bytes' classes become two bit masks and the words fall out
/// of a handful of word-wide operations, with no branch per byte (a word
/// boundary every few bytes mispredicts any). Blocks with non-ASCII
/// characters go character by character. This runs over all visible text
/// of every page.
pub fn count_words(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut words, mut has_alnum) = (0, false);
    let mut i = 0;
    while i < bytes.len() {
        let masks = match bytes.get(i..i + 64) {
            Some(block) => ascii_masks(block),
            // The tail (most text nodes are a few dozen bytes), padded with
            // spaces, which start no word.
            None => {
                let mut block = [b' '; 64];
                block[..bytes.len() - i].copy_from_slice(&bytes[i..]);
                ascii_masks(&block)
            }
        };
        if let Some((space, alnum)) = masks {
            words += block_words(space, alnum, &mut has_alnum);
            i += 64;
            continue;
        }
        // A block with non-ASCII characters, or the tail: one character at a
        // time, starting and ending at char boundaries.
        let end = (i + 64).min(bytes.len());
        while i < end {
            let mut class = CLASS[bytes[i] as usize];
            if class == MULTI {
                let c = text[i..].chars().next().unwrap_or(' ');
                i += c.len_utf8() - 1;
                class = if c.is_whitespace() {
                    SPACE
                } else if c.is_alphanumeric() {
                    ALNUM
                } else {
                    0
                };
            }
            i += 1;
            let alnum = class & ALNUM != 0;
            words += usize::from(alnum & !has_alnum);
            has_alnum = (has_alnum | alnum) & (class & SPACE == 0);
        }
    }
    words
}

/// Bit masks of the whitespace and the letter-or-digit bytes of a 64-byte
/// block; `None` if it holds a non-ASCII byte. Sixteen bytes per
/// instruction with SSE2, which every x86-64 processor has.
#[cfg(target_arch = "x86_64")]
fn ascii_masks(block: &[u8]) -> Option<(u64, u64)> {
    let block: &[u8; 64] = block.try_into().ok()?;
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 processor has it.
    unsafe { sse2_masks(block) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn sse2_masks(block: &[u8; 64]) -> Option<(u64, u64)> {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    #[target_feature(enable = "sse2")]
    fn in_range(v: __m128i, lo: i8, hi: i8) -> __m128i {
        _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(lo - 1)), _mm_cmpgt_epi8(_mm_set1_epi8(hi + 1), v))
    }
    let (mut space, mut alnum) = (0u64, 0u64);
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: `chunk` is 16 readable bytes, and the load has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
        if _mm_movemask_epi8(v) != 0 {
            return None;
        }
        // Only ASCII from here, so signed byte comparisons order bytes as unsigned ones would.
        let white = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8)), in_range(v, 0x09, 0x0d));
        let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
        let letter_or_digit =
            _mm_or_si128(in_range(v, b'0' as i8, b'9' as i8), in_range(lower, b'a' as i8, b'z' as i8));
        space |= u64::from(_mm_movemask_epi8(white) as u16) << (16 * k);
        alnum |= u64::from(_mm_movemask_epi8(letter_or_digit) as u16) << (16 * k);
    }
    Some((space, alnum))
}

/// Bit masks of the whitespace and the letter-or-digit bytes of a 64-byte
/// block; `None` if it holds a non-ASCII byte. Byte by byte through the
/// class table where SSE2 is not there (and in tests, as the reference).
#[cfg(any(test, not(target_arch = "x86_64")))]
fn ascii_masks_by_table(block: &[u8]) -> Option<(u64, u64)> {
    let (mut space, mut alnum, mut any) = (0u64, 0u64, 0u8);
    for (k, &b) in block.iter().enumerate() {
        let class = CLASS[b as usize];
        any |= class;
        space |= u64::from(class & SPACE) << k;
        alnum |= u64::from((class & ALNUM) >> 1) << k;
    }
    (any & MULTI == 0).then_some((space, alnum))
}

#[cfg(not(target_arch = "x86_64"))]
use ascii_masks_by_table as ascii_masks;

/// Words starting in one 64-byte ASCII block, given which bytes are
/// whitespace and which letters or digits; `has_alnum` carries whether the
/// token running into the block already has one.
fn block_words(space: u64, alnum: u64, has_alnum: &mut bool) -> usize {
    let other = !(space | alnum);
    let fresh_in = u64::from(!*has_alnum);
    // `fresh`: bytes where the token so far has no letter or digit: each
    // space, filled forward through other bytes until a letter or digit
    // (prefix doubling; a fresh state coming in starts at bit 0).
    let mut fresh = space | (fresh_in & other & 1);
    let mut through = other;
    for shift in [1, 2, 4, 8, 16, 32] {
        fresh |= (fresh << shift) & through;
        through &= through << shift;
    }
    *has_alnum = fresh >> 63 == 0;
    // A word starts at each letter or digit that follows a fresh byte.
    (alnum & ((fresh << 1) | fresh_in)).count_ones() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_text() {
        assert_eq!(clean("  Fish &amp; Chips&nbsp;&#39;x&#39;\n\t "), Some("Fish & Chips 'x'".to_string()));
        assert_eq!(clean("caf&eacute; &lt;b&gt;"), Some("café <b>".to_string()));
        assert_eq!(clean(" \n "), None);
    }

    #[test]
    fn decodes_references_like_the_full_table() {
        for sample in [
            "a &amp; b &lt;c&gt; &quot;q&quot; &apos;s&apos;&nbsp;!",
            "&#39;&#x41;&#X42;",
            "caf&eacute; &hellip; &notin; &copy 2024 &AMP; &unknown; & alone &",
            "&#;&#x;&#12a;&;&amp",
            "日本&amp;語",
        ] {
            assert_eq!(decode_entities(sample), html_escape::decode_html_entities(sample), "{sample:?}");
        }
        // NUL, surrogates and values past U+10FFFF are U+FFFD (HTML standard
        // §13.2.5.80); html-escape leaves them undecoded.
        assert_eq!(decode_entities("&#0;&#xD800;&#1114112;"), "\u{fffd}\u{fffd}\u{fffd}");
    }

    #[test]
    fn collapses_across_pieces() {
        let mut out = String::new();
        for piece in ["  Main ", "<b>", "title", "  x\n\ny ", " "] {
            push_collapsed(&mut out, piece);
        }
        assert_eq!(finish(out), "Main <b>title x y");
        let mut out = String::new();
        push_collapsed(&mut out, "a");
        push_collapsed(&mut out, "b");
        assert_eq!(out, "ab");
    }

    #[test]
    fn counts_words_with_letters_or_digits() {
        assert_eq!(count_words("Hello, world — 42 times! -- ..."), 4);
        assert_eq!(count_words("日本語 テキスト"), 2);
        assert_eq!(count_words("a\u{a0}b\u{2003}c d"), 4);
        assert_eq!(count_words(""), 0);
        let reference = |s: &str| s.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).count();
        for sample in ["x  y", " -- a1 ", "über straße ½", "tab\tsep\nnl"] {
            assert_eq!(count_words(sample), reference(sample), "{sample:?}");
        }
        // Long texts go through the 64-byte blocks: words across block
        // edges, runs of punctuation, blocks with and without non-ASCII.
        let pieces = ["a", "bc", " ", "  ", "--", "-x-", "\n", "é", "—", "日本", "\u{a0}", "9", ".", "\t\t"];
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..300 {
            let mut sample = String::new();
            while sample.len() < 400 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                sample.push_str(pieces[seed as usize % pieces.len()]);
            }
            assert_eq!(count_words(&sample), reference(&sample), "{sample:?}");
        }
        #[cfg(target_arch = "x86_64")]
        for b in 0..=255u8 {
            let mut block = [b'a'; 64];
            block[(b % 64) as usize] = b;
            block[63 - (b % 64) as usize] = b;
            assert_eq!(ascii_masks(&block), ascii_masks_by_table(&block), "byte {b:#x}");
        }
        let ascii = "word -- x.y  z\n".repeat(50);
        assert_eq!(count_words(&ascii), 150);
    }
}
