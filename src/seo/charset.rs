//! From bytes to text: the encoding sniffing of the HTML standard, reduced
//! to what a crawler can know (BOM, transport charset, `<meta>` prescan),
//! with the decoding itself done by encoding_rs.

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

/// How many bytes of the page the `<meta charset>` prescan looks at (as in browsers).
const META_PRESCAN: usize = 1024;

/// A decoded page and the encoding that decoded it.
#[derive(Debug)]
pub struct Decoded {
    /// The page as UTF-8 text.
    pub text: String,
    /// The encoding's WHATWG name, e.g. `UTF-8`, `windows-1252`.
    pub encoding: &'static str,
    /// Where the encoding came from: `bom`, `http`, `meta` or `default`.
    pub source: &'static str,
    /// The charset declared in the document itself, if any.
    pub declared: Option<String>,
    /// Whether some bytes were malformed and replaced with U+FFFD.
    pub had_errors: bool,
}

/// Decodes `bytes`. `content_type` is the HTTP `Content-Type`, if fetched.
/// `unicode`: the bytes are text the transport already decoded (a JSON
/// string), so UTF-8 whatever the page declares; the declaration is still
/// what `source` reports, as that is what the live page would say.
pub fn decode(bytes: &[u8], content_type: Option<&str>, unicode: bool) -> Decoded {
    let declared = meta_charset(&bytes[..bytes.len().min(META_PRESCAN)]);
    let (encoding, source, body) = if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        (encoding, "bom", &bytes[bom_len..])
    } else if unicode {
        (UTF_8, if declared.is_some() { "meta" } else { "default" }, bytes)
    } else if let Some(encoding) = content_type.and_then(http_charset) {
        (encoding, "http", bytes)
    } else if let Some(encoding) = declared.as_deref().and_then(|l| Encoding::for_label(l.as_bytes())) {
        // A page that says UTF-16 in ASCII bytes cannot be UTF-16 (HTML §13.2.3.2).
        let encoding =
            if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE { UTF_8 } else { encoding };
        (encoding, "meta", bytes)
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        return Decoded {
            text: text.to_string(),
            encoding: UTF_8.name(),
            source: "default",
            declared,
            had_errors: false,
        };
    } else {
        // The web's legacy default; it also maps every byte, so nothing is lost.
        (WINDOWS_1252, "default", bytes)
    };
    let (text, had_errors) = encoding.decode_without_bom_handling(body);
    Decoded { text: text.into_owned(), encoding: encoding.name(), source, declared, had_errors }
}

/// `charset=` in a Content-Type value.
fn http_charset(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| Encoding::for_label(value.trim().trim_matches('"').as_bytes()))?
    })
}

/// The charset a `<meta charset>` or `<meta http-equiv=content-type>` in
/// `head` declares.
fn meta_charset(head: &[u8]) -> Option<String> {
    let lower = head.to_ascii_lowercase();
    let mut at = 0;
    while let Some(offset) = lower[at..].windows(5).position(|w| w == b"<meta") {
        let start = at + offset;
        let end = lower[start..].iter().position(|&b| b == b'>').map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(pos) = tag.windows(8).position(|w| w == b"charset=") {
            let value = &tag[pos + 8..];
            let value = value.strip_prefix(b"\"").or_else(|| value.strip_prefix(b"'")).unwrap_or(value);
            let len =
                value.iter().position(|b| matches!(b, b'"' | b'\'' | b';' | b'/' | b' ' | b'>')).unwrap_or(value.len());
            if len > 0 {
                return Some(String::from_utf8_lossy(&value[..len]).into_owned());
            }
        }
        at = end.max(start + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_by_default() {
        let d = decode("<p>héllo</p>".as_bytes(), None, false);
        assert_eq!((d.text.as_str(), d.encoding, d.source), ("<p>héllo</p>", "UTF-8", "default"));
    }

    #[test]
    fn meta_charset_decodes_legacy_pages() {
        let page = b"<html><head><meta charset=\"iso-8859-1\"><title>caf\xe9</title>";
        let d = decode(page, None, false);
        assert_eq!(d.encoding, "windows-1252");
        assert_eq!(d.source, "meta");
        assert_eq!(d.declared.as_deref(), Some("iso-8859-1"));
        assert!(d.text.contains("café"));
        let http_equiv = b"<meta http-equiv=Content-Type content='text/html; charset=Shift_JIS'>\x82\xa0";
        let d = decode(http_equiv, None, false);
        assert_eq!(d.encoding, "Shift_JIS");
        assert!(d.text.ends_with('あ'));
    }

    #[test]
    fn bom_beats_http_beats_meta() {
        let mut page = vec![0xEF, 0xBB, 0xBF];
        page.extend_from_slice("<meta charset=windows-1252>é".as_bytes());
        assert_eq!(decode(&page, Some("text/html; charset=iso-8859-2"), false).source, "bom");
        let d = decode(b"<meta charset=utf-8>\xe9", Some("text/html; charset=ISO-8859-1"), false);
        assert_eq!((d.source, d.text.ends_with('é')), ("http", true));
    }

    #[test]
    fn unicode_text_is_utf8_whatever_it_declares() {
        let page = "<meta charset=iso-8859-1><title>café</title>";
        let d = decode(page.as_bytes(), None, true);
        assert_eq!((d.text.as_str(), d.encoding, d.source), (page, "UTF-8", "meta"));
        assert_eq!(d.declared.as_deref(), Some("iso-8859-1"));
        let d = decode("<p>é".as_bytes(), None, true);
        assert_eq!((d.encoding, d.source), ("UTF-8", "default"));
    }

    #[test]
    fn invalid_utf8_without_declaration_falls_back_to_windows_1252() {
        let d = decode(b"<p>\xff\xfe garbage \x80</p>", None, false);
        assert_eq!(d.encoding, "windows-1252");
        assert!(!d.had_errors);
        let d = decode(b"<meta charset=utf-8><p>\xff</p>", None, false);
        assert!(d.had_errors && d.text.contains('\u{fffd}'));
    }
}
