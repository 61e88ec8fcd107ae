//! A page sent as a JSON string, decoded where it lies.
//!
//! serde_json would scan the string once to check it and again to decode it
//! into a scratch buffer, stop at each of a page's escapes (a 55 KB page as
//! JSON has ~3,000, mostly `\"`), and copy the result into a `String`. Here
//! a quick walk over the body's top-level object finds the page's string;
//! one pass, eight bytes at a time, checks and decodes it into the front of
//! the body's own buffer, which becomes the page; serde_json parses the
//! rest of the body (the other fields, the string left as `""`), so every
//! error but the string's own is still serde's.

use serde_json::value::RawValue;

/// Why a JSON value cannot be a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringError {
    /// The value is not a string; says what it is.
    NotAString(&'static str),
    /// The string is not valid JSON; says why.
    Malformed(&'static str),
}

impl StringError {
    /// The error's words, after the field's path.
    pub fn detail(&self) -> String {
        match self {
            StringError::NotAString(what) => format!("invalid type: {what}, expected a string"),
            StringError::Malformed(why) => (*why).into(),
        }
    }
}

/// What [`lift`] found.
#[derive(Debug)]
pub enum Lift {
    /// The field's string, decoded in the body's buffer, and the body with
    /// `""` in the string's place.
    Found {
        /// The decoded string.
        value: Result<Vec<u8>, StringError>,
        /// The rest of the body, for serde_json.
        rest: Vec<u8>,
    },
    /// The walk found no top-level string of that name (or the body is
    /// not an object it can walk): the body, untouched.
    NotFound(Vec<u8>),
}

/// Finds `field`'s string among the members of the object `body` holds and
/// decodes it in `body`'s buffer.
pub fn lift(mut body: Vec<u8>, field: &str) -> Lift {
    let Some(start) = find_string_member(&body, field) else { return Lift::NotFound(body) };
    let prefix = body[..start].to_vec();
    match decode_at(&mut body, start) {
        Ok((written, end)) => {
            let mut rest = prefix;
            rest.extend_from_slice(b"\"\"");
            rest.extend_from_slice(&body[end..]);
            body.truncate(written);
            let value = match std::str::from_utf8(&body) {
                Ok(_) => Ok(body),
                Err(_) => Err(StringError::Malformed("invalid UTF-8 in a string")),
            };
            Lift::Found { value, rest }
        }
        Err(e) => Lift::Found { value: Err(e), rest: prefix },
    }
}

/// The string `raw` (a value serde_json parsed), decoded into a buffer of its own.
pub fn string_of(raw: &RawValue) -> Result<Vec<u8>, StringError> {
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(StringError::NotAString(kind_of(text)));
    }
    let mut buf = text.as_bytes().to_vec();
    let (written, _) = decode_at(&mut buf, 0)?;
    buf.truncate(written);
    Ok(buf)
}

/// What a JSON value that is not a string is, in serde's words.
fn kind_of(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "boolean",
        Some(b'[') => "sequence",
        Some(b'{') => "map",
        _ => "number",
    }
}

/// Where the string value of the top-level member `field` starts (its
/// opening quote). The walk only skips what it passes; serde_json checks it.
fn find_string_member(body: &[u8], field: &str) -> Option<usize> {
    let mut at = skip_space(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    loop {
        at = skip_space(body, at + 1);
        let key_end = skip_string(body, at)?;
        let key = &body[at..key_end];
        at = skip_space(body, key_end);
        if body.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(body, at + 1);
        // A key spelt with escapes is left to serde_json (and the copy path).
        if key.len() == field.len() + 2 && &key[1..key.len() - 1] == field.as_bytes() {
            return (body.get(at) == Some(&b'"')).then_some(at);
        }
        at = skip_space(body, skip_value(body, at)?);
        if body.get(at) != Some(&b',') {
            return None;
        }
    }
}

fn skip_space(body: &[u8], mut at: usize) -> usize {
    while matches!(body.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The end of the string token at `at` (past its closing quote).
fn skip_string(body: &[u8], at: usize) -> Option<usize> {
    if body.get(at) != Some(&b'"') {
        return None;
    }
    let mut at = at + 1;
    loop {
        at += memchr::memchr2(b'"', b'\\', body.get(at..)?)?;
        match body[at] {
            b'"' => return Some(at + 1),
            _ => at += 2,
        }
    }
}

/// The end of the value at `at`.
fn skip_value(body: &[u8], at: usize) -> Option<usize> {
    match body.get(at)? {
        b'"' => skip_string(body, at),
        b'{' | b'[' => {
            let (mut depth, mut at) = (0usize, at);
            loop {
                match body.get(at)? {
                    b'"' => at = skip_string(body, at)?,
                    b'{' | b'[' => (depth, at) = (depth + 1, at + 1),
                    b'}' | b']' if depth == 1 => return Some(at + 1),
                    b'}' | b']' => (depth, at) = (depth - 1, at + 1),
                    _ => at += 1,
                }
            }
        }
        _ => {
            let len = body[at..].iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'));
            Some(at + len.unwrap_or(body.len() - at).max(1))
        }
    }
}

const ONES: u64 = u64::MAX / 255;

/// Bit 7 of each byte of `chunk` that is `"`, `\` or a control character
/// (below 0x20): the bytes a string's run stops at. Exact for the lowest
/// such byte, which is all that is read (Mycroft's zero-byte test).
fn stops(chunk: u64) -> u64 {
    let quote = chunk ^ (ONES * u64::from(b'"'));
    let backslash = chunk ^ (ONES * u64::from(b'\\'));
    let control = chunk.wrapping_sub(ONES * 0x20) & !chunk;
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & (ONES * 0x80)
}

/// Checks and decodes the JSON string whose opening quote is at `start`,
/// writing it to the front of `buf`; returns its decoded length and the
/// end of its token. Every escape is at least as long as what it stands
/// for, so writes stay behind reads and nothing unread is overwritten.
fn decode_at(buf: &mut [u8], start: usize) -> Result<(usize, usize), StringError> {
    let (mut read, mut write) = (start + 1, 0);
    loop {
        // Runs of plain bytes, eight at a time; the common chunk (no stop in
        // it) moves `read` by a constant, so chunks do not wait on each other.
        while let Some(bytes) = buf.get(read..read + 8) {
            let bytes: [u8; 8] = bytes.try_into().unwrap_or_default();
            let stop = stops(u64::from_le_bytes(bytes));
            if write + 8 <= read {
                // The whole chunk in one store (bytes past a stop are written
                // over later): it lands on bytes already read.
                buf[write..write + 8].copy_from_slice(&bytes);
            } else {
                // Fewer than eight bytes behind `read`: only what is taken,
                // or bytes not yet read would be overwritten.
                let take = if stop == 0 { 8 } else { stop.trailing_zeros() as usize / 8 };
                for (i, &b) in bytes[..take].iter().enumerate() {
                    buf[write + i] = b;
                }
            }
            if stop != 0 {
                let take = stop.trailing_zeros() as usize / 8;
                (read, write) = (read + take, write + take);
                break;
            }
            (read, write) = (read + 8, write + 8);
        }
        let Some(&byte) = buf.get(read) else { return Err(StringError::Malformed("a string is not closed")) };
        match byte {
            b'"' => return Ok((write, read + 1)),
            b'\\' => {
                let next = buf.get(read + 1).copied().unwrap_or_default();
                match SIMPLE_ESCAPES[usize::from(next)] {
                    0 => {
                        let (ch, used) = unicode_escape(&buf[read..])?;
                        // `used` is 6 or 12 and a character at most 4 bytes: `write` stays behind.
                        let len = ch.encode_utf8(&mut buf[write..write + 4]).len();
                        (read, write) = (read + used, write + len);
                    }
                    decoded => {
                        buf[write] = decoded;
                        (read, write) = (read + 2, write + 1);
                    }
                }
            }
            0..0x20 => return Err(StringError::Malformed("a control character in a string")),
            _ => {
                buf[write] = byte;
                (read, write) = (read + 1, write + 1);
            }
        }
    }
}

/// What each byte after a `\` stands for; 0 for `u` and for what is no escape.
const SIMPLE_ESCAPES: [u8; 256] = {
    let mut table = [0; 256];
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'/' as usize] = b'/';
    table[b'b' as usize] = 8;
    table[b'f' as usize] = 12;
    table[b'n' as usize] = b'\n';
    table[b'r' as usize] = b'\r';
    table[b't' as usize] = b'\t';
    table
};

/// The character a `\u` escape (or a surrogate pair of them) at the start of
/// `at` stands for, and its length.
fn unicode_escape(at: &[u8]) -> Result<(char, usize), StringError> {
    if at.get(1) != Some(&b'u') {
        return Err(StringError::Malformed("an invalid escape in a string"));
    }
    let lone = StringError::Malformed("a \\u escape is half of a surrogate pair");
    let high = hex4(at).ok_or(StringError::Malformed("a \\u escape without four hex digits"))?;
    let (code, used) = match high {
        0xD800..=0xDBFF => {
            let low = at.get(6..).and_then(hex4).filter(|low| (0xDC00..=0xDFFF).contains(low));
            let low = low.ok_or(lone)?;
            (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00), 12)
        }
        _ => (high, 6),
    };
    char::from_u32(code).map(|c| (c, used)).ok_or(lone)
}

/// The code unit of a `\uXXXX` at the start of `at`.
fn hex4(at: &[u8]) -> Option<u32> {
    match at.get(..6)? {
        [b'\\', b'u', digits @ ..] => {
            digits.iter().try_fold(0, |code, &d| Some(code * 16 + char::from(d).to_digit(16)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json makes of the string `json`, and what `lift` makes of
    /// it as the `html` member of an object.
    fn both(json: &str) -> (Result<String, ()>, Result<Vec<u8>, StringError>) {
        let expected = serde_json::from_str::<String>(json).map_err(|_| ());
        let body = format!(r#"{{"x":[1,{{"html":"no"}}], "html" : {json},"y":true}}"#).into_bytes();
        let Lift::Found { value, rest } = lift(body, "html") else { panic!("{json} not found") };
        if value.is_ok() {
            assert_eq!(rest, br#"{"x":[1,{"html":"no"}], "html" : "","y":true}"#);
        }
        (expected, value)
    }

    #[test]
    fn decodes_as_serde_json_does() {
        for json in [
            r#""""#,
            r#""plain text""#,
            r#""<a href=\"/x\">caf\u00e9</a>\n""#,
            r#""\\\"\/\b\f\n\r\t""#,
            r#""\ud83d\ude00 and \u20AC and \u0000""#,
            r#""a run longer than eight bytes before an escape\n and after it""#,
            r#""\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"""#,
            "\"caf\u{e9} \u{1f600} raw UTF-8, and more than eight bytes of it\"",
        ] {
            let (expected, got) = both(json);
            assert_eq!(got.map(|b| String::from_utf8(b).unwrap()), Ok(expected.unwrap()), "{json}");
        }
    }

    #[test]
    fn what_serde_json_refuses_is_refused() {
        for json in [
            r#""\ud83d""#,
            r#""\ude00x""#,
            r#""\ud83d\u0041""#,
            r#""a\udbff""#,
            r#""\x""#,
            r#""\u12g4""#,
            r#""\u+123""#,
            "\"a raw\nnewline\"",
            "\"a tab\tinside more than eight bytes\"",
        ] {
            let (expected, got) = both(json);
            assert!(expected.is_err(), "serde_json refuses {json} too");
            assert!(matches!(got, Err(StringError::Malformed(_))), "{json}: {got:?}");
        }
        for body in [r#"{"html":"not closed"#, r#"{"html":"not closed, eight bytes on\""#, r#"{"html":"\u00"#] {
            let value = match lift(body.as_bytes().to_vec(), "html") {
                Lift::Found { value, .. } => value,
                Lift::NotFound(_) => panic!("{body}"),
            };
            assert!(matches!(value, Err(StringError::Malformed(_))), "{body}: {value:?}");
        }
        let invalid_utf8 = b"{\"html\":\"caf\xe9 and then some more text\"}".to_vec();
        assert!(matches!(lift(invalid_utf8, "html"), Lift::Found { value: Err(StringError::Malformed(_)), .. }));
    }

    #[test]
    fn what_the_walk_cannot_place_is_left_to_serde() {
        for body in [
            r#"{"ht\u006dl":"<p>"}"#,
            r#"{"html":5}"#,
            r#"{"url":"x"}"#,
            r#"["html","<p>"]"#,
            r#"{"a" 1,"html":"<p>"}"#,
            r#"{"a":{"b":"}"},"c""#,
            "",
        ] {
            assert!(matches!(lift(body.as_bytes().to_vec(), "html"), Lift::NotFound(_)), "{body}");
        }
        let Lift::Found { value, rest } = lift(br#"  {"a":{"html":"]}"},"b":-1e5 ,"html":"<p>"}"#.to_vec(), "html")
        else {
            panic!("not found")
        };
        assert_eq!((value.unwrap(), rest), (b"<p>".to_vec(), br#"  {"a":{"html":"]}"},"b":-1e5 ,"html":""}"#.to_vec()));
    }

    #[test]
    fn other_values_are_named() {
        let kind = |json: &str| {
            let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
            string_of(&raw).unwrap_err().detail()
        };
        assert_eq!(kind("null"), "invalid type: null, expected a string");
        assert_eq!(kind("true"), "invalid type: boolean, expected a string");
        assert_eq!(kind("-4"), "invalid type: number, expected a string");
        assert_eq!(kind("[1]"), "invalid type: sequence, expected a string");
        assert_eq!(kind("{}"), "invalid type: map, expected a string");
        let raw: Box<RawValue> = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(string_of(&raw).unwrap(), b"a\"b");
    }
}
